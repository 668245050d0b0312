-- References (b) and (c): the database's own limit for a charge, one guarded UPDATE
-- (the cap check in the WHERE clause, so the row lock serializes concurrent charges).
-- Random key: -D keys=<number of keys>; one hot key: -D keys=1.
-- The key is picked as in select.sql (subselect on bench_keys: one statement).
\set n random(1, :keys)
UPDATE sdk_api_keys SET budget_used_micros = budget_used_micros + 1
WHERE key_hash = (SELECT key_hash FROM bench_keys WHERE n = :n)
  AND budget_used_micros + 1 <= budget_micros;
