-- RB-LAUNCH-002 Step 3: take TaskDB back to the pilot's G5 schema (20251104_001).
-- Undoes every Phase 6/7 migration, newest first, in one transaction: it either all applies or none of it does.
BEGIN;
DROP TABLE IF EXISTS model_routes;
ALTER TABLE flows DROP COLUMN IF EXISTS provider;
DROP TABLE IF EXISTS repo_quotas;
ALTER TABLE flows DROP COLUMN IF EXISTS quota_checked;
DELETE FROM schema_migrations WHERE version > '20251104_001';
COMMIT;
