-- The peer: the statements agentkey (katrinalaszlo/agentkey, src/index.ts,
-- validateByColumn) issues for one validate of a key whose period has not rolled:
-- a SELECT by key_hash, then (fire-and-forget in agentkey, so not in its caller's
-- latency, but the database does the work) UPDATE last_used_at by id. No transaction:
-- agentkey runs each statement through pool.query, autocommit.
-- The hash is resolved by the same subselect as select.sql; the id comes from the
-- SELECT's row (\gset), as agentkey passes row.id.
\set n random(1, :keys)
SELECT id, account_id, user_id, name, scopes, budget_cents, budget_used_cents,
       budget_period, budget_reset_at, expires_at, delegated_by, revoked_at
FROM sdk_api_keys WHERE key_hash = (SELECT key_hash FROM bench_keys WHERE n = :n) \gset v_
UPDATE sdk_api_keys SET last_used_at = NOW() WHERE id = :v_id;
