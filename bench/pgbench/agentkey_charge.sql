-- The peer: the statement agentkey (katrinalaszlo/agentkey, src/index.ts,
-- trackUsageByColumn) issues for one successful charge: one autocommit UPDATE that
-- rolls an elapsed period and charges whole cents under a guard in its WHERE clause,
-- RETURNING the new usage. (Its follow-up SELECT runs only when the UPDATE matched no
-- row, which the bench's big budgets never cause.) Parameters as agentkey binds them:
-- $1 the cost rounded up to whole cents (-D cost=1), $2 the key hash (here the
-- subselect of select.sql), $3/$4 the next day / month boundary as ISO strings
-- (-D next_day=..., -D next_month=...). Random key: -D keys=<n>; hot key: -D keys=1.
\set n random(1, :keys)
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
