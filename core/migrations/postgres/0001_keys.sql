-- The keys table: agentkey's table and columns, adopted in place, plus keyleash's own.
-- Every statement is idempotent (IF NOT EXISTS): migrate() runs them all, every time,
-- in one transaction, and never drops or rewrites anything a user already has.

CREATE TABLE IF NOT EXISTS {{keys}} (
  id SERIAL PRIMARY KEY,
  account_id TEXT,
  key_hash TEXT NOT NULL UNIQUE,
  key_prefix TEXT NOT NULL,
  name TEXT NOT NULL DEFAULT 'default',
  created_at TIMESTAMPTZ DEFAULT NOW(),
  last_used_at TIMESTAMPTZ,
  revoked_at TIMESTAMPTZ
);

-- agentkey's columns, with agentkey's types and meaning (whole cents in INTEGER).
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS account_id TEXT;
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS key_prefix TEXT;
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS name TEXT DEFAULT 'default';
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS created_at TIMESTAMPTZ DEFAULT NOW();
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS last_used_at TIMESTAMPTZ;
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS revoked_at TIMESTAMPTZ;
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS user_id TEXT;
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS scopes TEXT[];
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS budget_cents INTEGER;
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS budget_used_cents INTEGER DEFAULT 0;
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS budget_period TEXT;
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS budget_reset_at TIMESTAMPTZ;
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS expires_at TIMESTAMPTZ;
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS delegated_by TEXT;
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS external_subject TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS {{base}}_external_subject_key
  ON {{keys}} (external_subject) WHERE external_subject IS NOT NULL;

-- keyleash's columns. Exact amounts in micro-cents (1 cent = 1,000,000); a NULL
-- means "not written by keyleash yet" and the agentkey column is used instead.
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS budget_micros BIGINT;
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS budget_used_micros BIGINT;
-- In-flight holds (reserve/settle), counted against the cap.
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS budget_held_micros BIGINT NOT NULL DEFAULT 0;
-- The instant periods are counted from (month resets keep its day of the month).
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS budget_anchor_at TIMESTAMPTZ;
-- Hierarchical budgets: the key this one draws on.
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS parent_id INTEGER;
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS metadata JSONB;
CREATE INDEX IF NOT EXISTS {{base}}_account_idx ON {{keys}} (account_id);
CREATE INDEX IF NOT EXISTS {{base}}_parent_idx ON {{keys}} (parent_id) WHERE parent_id IS NOT NULL;
