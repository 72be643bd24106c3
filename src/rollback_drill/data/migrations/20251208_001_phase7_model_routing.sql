-- Phase 7 (50+ repos): which model provider served each flow, for multi-provider routing.
CREATE TABLE IF NOT EXISTS model_routes (
    id        bigserial PRIMARY KEY,
    flow_id   bigint NOT NULL REFERENCES flows (id) ON DELETE CASCADE,
    provider  text NOT NULL CHECK (provider IN ('anthropic', 'openai', 'google')),
    routed_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE flows ADD COLUMN IF NOT EXISTS provider text;
INSERT INTO schema_migrations (version) VALUES ('20251208_001') ON CONFLICT DO NOTHING;
