-- Phase 6 (10 repos): per-repo budgets and concurrency, read by FlowEngine before every flow.
CREATE TABLE IF NOT EXISTS repo_quotas (
    repo              text PRIMARY KEY,
    daily_budget_usd  numeric(10, 2) NOT NULL CONSTRAINT repo_quotas_budget_valid CHECK (daily_budget_usd >= 0),
    max_concurrency   integer NOT NULL DEFAULT 5 CHECK (max_concurrency > 0),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE flows ADD COLUMN IF NOT EXISTS quota_checked boolean NOT NULL DEFAULT false;
INSERT INTO schema_migrations (version) VALUES ('20251117_001') ON CONFLICT DO NOTHING;
