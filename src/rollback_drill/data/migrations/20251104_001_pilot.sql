-- G5 schema: what the pilot (compliance-service) runs on. RB-LAUNCH-002 Step 3 reverts to this version.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS flows (
    id           bigserial PRIMARY KEY,
    repo         text NOT NULL,
    family       text NOT NULL DEFAULT 'compliance',
    block_type   text NOT NULL DEFAULT 'attestation',
    status       text NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'refused')),
    cause        text,
    duration_s   double precision,
    cost_usd     numeric(10, 4),
    gates_passed integer CHECK (gates_passed BETWEEN 0 AND 5),
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX IF NOT EXISTS flows_repo_started ON flows (repo, started_at);
CREATE TABLE IF NOT EXISTS tasks (
    id         bigserial PRIMARY KEY,
    flow_id    bigint NOT NULL REFERENCES flows (id) ON DELETE CASCADE,
    name       text NOT NULL,
    status     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO schema_migrations (version) VALUES ('20251104_001') ON CONFLICT DO NOTHING;
