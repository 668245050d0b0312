-- Holds: an estimate reserved before a spend (reserve), later settled with the real
-- cost or released. A hold counts against its key and every ancestor through one
-- {{hold_keys}} row each, until `counts_until_us`: the earlier of the hold's expiry
-- and that key's period end when the hold was made (microseconds since the epoch).
-- What a key holds is the sum of its rows still counting, computed when the key is
-- read: an expired hold, or one of an elapsed period, stops counting by itself.
-- On the key row: the latest instant a share of this key may count until. A charge
-- locks the key row, and reads its shares (in a statement after the lock, so that
-- it sees what the previous lock holder committed) only while this is in the future.
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS holds_until_us BIGINT;
CREATE TABLE IF NOT EXISTS {{holds}} (
  id BIGSERIAL PRIMARY KEY,
  key_id INTEGER NOT NULL,
  account_id TEXT,
  amount_micros BIGINT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL,
  idempotency_key TEXT,
  -- What the reserve left to spend, replayed when the reserve is repeated.
  reserved_remaining_micros BIGINT,
  -- held, settled or released
  state TEXT NOT NULL DEFAULT 'held',
  settled_micros BIGINT,
  settled_at TIMESTAMPTZ,
  -- The settle's result, replayed when the settle is repeated.
  used_after_micros BIGINT,
  remaining_after_micros BIGINT
);
CREATE UNIQUE INDEX IF NOT EXISTS {{base}}_holds_idem_key
  ON {{holds}} (key_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS {{hold_keys}} (
  hold_id BIGINT NOT NULL,
  key_id INTEGER NOT NULL,
  amount_micros BIGINT NOT NULL,
  counts_until_us BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS {{base}}_hold_keys_key ON {{hold_keys}} (key_id);
CREATE INDEX IF NOT EXISTS {{base}}_hold_keys_hold ON {{hold_keys}} (hold_id);
