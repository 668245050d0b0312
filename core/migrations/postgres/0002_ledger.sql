-- The ledger: one row per successful charge (and, later, per settle). A key's
-- budget_used_micros always equals the sum of its rows since the last reset.
CREATE TABLE IF NOT EXISTS {{ledger}} (
  id BIGSERIAL PRIMARY KEY,
  key_id INTEGER NOT NULL,
  account_id TEXT,
  amount_micros BIGINT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL,
  idempotency_key TEXT,
  hold_id BIGINT,
  -- The charge's result, replayed verbatim when the idempotency key repeats.
  used_after_micros BIGINT NOT NULL,
  remaining_after_micros BIGINT
);
CREATE UNIQUE INDEX IF NOT EXISTS {{base}}_ledger_idem_key
  ON {{ledger}} (key_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS {{base}}_ledger_key_time ON {{ledger}} (key_id, created_at);
