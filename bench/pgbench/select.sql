-- Reference (a): the database's own limit for a validate, one indexed SELECT by key_hash.
--
-- Every pgbench script here picks its key as `\set n random(1, :keys)` and resolves it
-- inside the statement with a subselect on the helper table bench_keys(n, key_hash)
-- (filled by bench/run.py from the keys keyleash created), so the reference stays ONE
-- statement and one round trip (the alternatives, a \gset lookup first or one script
-- per key, add a round trip or exceed pgbench's 128-script limit). The subselect is
-- one primary-key probe of a 1,000-row table: it costs every reference the same
-- small amount. The hot-key variant is the same script run with -D keys=1.
\set n random(1, :keys)
SELECT * FROM sdk_api_keys WHERE key_hash = (SELECT key_hash FROM bench_keys WHERE n = :n);
