-- Account ceilings (setAccountBudget): one budget over the sum of an account's keys.
-- A ceiling is one more member of every budget chain of its account's keys: a
-- charge or a hold fits only if it also fits here, and adds here too, under the
-- same lock. Hold shares name it as key_id = -id in {{hold_keys}} (ids of keys are
-- positive), so held is computed the same way as a key's.
-- On every key: the id of its account's ceiling, or NULL. Reads fetch a ceiling
-- only for keys that name one (a join in every read cost validates a sixth of
-- their speed); setAccountBudget keeps the column of all the account's keys
-- current, and create writes it.
ALTER TABLE {{keys}} ADD COLUMN IF NOT EXISTS ceiling_id INTEGER;
CREATE TABLE IF NOT EXISTS {{accounts}} (
  id SERIAL PRIMARY KEY,
  account_id TEXT NOT NULL UNIQUE,
  budget_micros BIGINT NOT NULL,
  budget_used_micros BIGINT NOT NULL DEFAULT 0,
  budget_period TEXT,
  budget_reset_at TIMESTAMPTZ,
  budget_anchor_at TIMESTAMPTZ,
  holds_until_us BIGINT,
  created_at TIMESTAMPTZ NOT NULL,
  updated_at TIMESTAMPTZ NOT NULL
);
