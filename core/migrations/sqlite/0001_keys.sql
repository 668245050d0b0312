-- The keys table: agentkey's table and columns, adopted in place, plus keyleash's own.
-- SQLite flavour of core/migrations/postgres/0001_keys.sql (same columns, SQLite types:
-- timestamps are TEXT 'YYYY-MM-DDTHH:MM:SS.ffffffZ', scopes and metadata are JSON TEXT).
-- SQLite has no ADD COLUMN IF NOT EXISTS: migrate() skips an ADD COLUMN whose column
-- exists, so every statement is idempotent and the file runs in full every time.

CREATE TABLE IF NOT EXISTS {{keys}} (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  account_id TEXT,
  key_hash TEXT NOT NULL UNIQUE,
  key_prefix TEXT NOT NULL,
  name TEXT NOT NULL DEFAULT 'default',
  created_at TEXT,
  last_used_at TEXT,
  revoked_at TEXT
);

-- agentkey's columns, with agentkey's types and meaning (whole cents in INTEGER).
ALTER TABLE {{keys}} ADD COLUMN account_id TEXT;
ALTER TABLE {{keys}} ADD COLUMN key_prefix TEXT;
ALTER TABLE {{keys}} ADD COLUMN name TEXT DEFAULT 'default';
ALTER TABLE {{keys}} ADD COLUMN created_at TEXT;
ALTER TABLE {{keys}} ADD COLUMN last_used_at TEXT;
ALTER TABLE {{keys}} ADD COLUMN revoked_at TEXT;
ALTER TABLE {{keys}} ADD COLUMN user_id TEXT;
ALTER TABLE {{keys}} ADD COLUMN scopes TEXT;
ALTER TABLE {{keys}} ADD COLUMN budget_cents INTEGER;
ALTER TABLE {{keys}} ADD COLUMN budget_used_cents INTEGER DEFAULT 0;
ALTER TABLE {{keys}} ADD COLUMN budget_period TEXT;
ALTER TABLE {{keys}} ADD COLUMN budget_reset_at TEXT;
ALTER TABLE {{keys}} ADD COLUMN expires_at TEXT;
ALTER TABLE {{keys}} ADD COLUMN delegated_by TEXT;
ALTER TABLE {{keys}} ADD COLUMN external_subject TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS {{base}}_external_subject_key
  ON {{keys}} (external_subject) WHERE external_subject IS NOT NULL;

-- keyleash's columns. Exact amounts in micro-cents (1 cent = 1,000,000); a NULL
-- means "not written by keyleash yet" and the agentkey column is used instead.
ALTER TABLE {{keys}} ADD COLUMN budget_micros BIGINT;
ALTER TABLE {{keys}} ADD COLUMN budget_used_micros BIGINT;
-- In-flight holds (reserve/settle), counted against the cap.
ALTER TABLE {{keys}} ADD COLUMN budget_held_micros BIGINT NOT NULL DEFAULT 0;
-- The instant periods are counted from (month resets keep its day of the month).
ALTER TABLE {{keys}} ADD COLUMN budget_anchor_at TEXT;
-- Hierarchical budgets: the key this one draws on.
ALTER TABLE {{keys}} ADD COLUMN parent_id INTEGER;
ALTER TABLE {{keys}} ADD COLUMN metadata TEXT;
CREATE INDEX IF NOT EXISTS {{base}}_account_idx ON {{keys}} (account_id);
CREATE INDEX IF NOT EXISTS {{base}}_parent_idx ON {{keys}} (parent_id) WHERE parent_id IS NOT NULL;
