-- The peer, per HTTP request of the examples' POST /v1/chat: what agentkey issues for
-- its middleware's validate followed by the route's trackUsage of the same key
-- (agentkey_validate.sql, then agentkey_charge.sql), all autocommit. The reference
-- for the Express and FastAPI rows. Random key: -D keys=<n>; hot key: -D keys=1.
\set n random(1, :keys)
SELECT id, account_id, user_id, name, scopes, budget_cents, budget_used_cents,
       budget_period, budget_reset_at, expires_at, delegated_by, revoked_at
FROM sdk_api_keys WHERE key_hash = (SELECT key_hash FROM bench_keys WHERE n = :n) \gset v_
UPDATE sdk_api_keys SET last_used_at = NOW() WHERE id = :v_id;
UPDATE sdk_api_keys
SET budget_used_cents = (CASE WHEN budget_period IS NOT NULL AND budget_reset_at IS NOT NULL AND budget_reset_at <= NOW()
                              THEN 0 ELSE COALESCE(budget_used_cents, 0) END) + :cost,
    budget_reset_at = CASE WHEN budget_period IS NOT NULL AND budget_reset_at IS NOT NULL AND budget_reset_at <= NOW()
      THEN (CASE WHEN budget_period = 'month' THEN :next_month::timestamptz ELSE :next_day::timestamptz END)
      ELSE budget_reset_at END
WHERE key_hash = (SELECT key_hash FROM bench_keys WHERE n = :n) AND revoked_at IS NULL
  AND (budget_cents IS NULL OR (CASE WHEN budget_period IS NOT NULL AND budget_reset_at IS NOT NULL AND budget_reset_at <= NOW()
                                     THEN 0 ELSE COALESCE(budget_used_cents, 0) END) + :cost <= budget_cents)
RETURNING budget_used_cents, budget_cents;
