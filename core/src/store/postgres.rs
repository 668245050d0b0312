//! The Postgres store: where the charge SQL for Postgres lives.
//!
//! A charge batch is one transaction: lock the named key rows in id order
//! (`FOR UPDATE`), read earlier ledger rows for the batch's idempotency keys, let
//! the engine decide, then one `UPDATE … FROM UNNEST` for the keys and one
//! `INSERT … SELECT FROM UNNEST` for the ledger. The row lock is what makes
//! concurrent charges from any number of processes serialize per key; a repeated
//! idempotency key is found because the second charge reads the ledger only after
//! the first one's transaction has committed and released the lock.
//!
//! SQL text is rendered once at connect time from the validated table names.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection, Executor, Postgres, Row};

use crate::cache::{self, FLUSH_ALL};
use crate::engine::{push_new, KeyRow, Lookup, MAX_DEPTH};
use crate::error::{Error, Result};
use crate::ident::TableNames;
use crate::model::Options;
use crate::spend::{HoldRow, Plan};
use crate::store::arg::Arg;
use crate::store::charge::ChargeSql;
use crate::store::row::{decode_all, hold, key_row};
use crate::store::{
    migrations, rate_sql, schema, split_lookups, AccountLock, Backend, Base, Queries, Tx,
};

/// The columns of a key row, in [`crate::store::row::key_row`]'s order. Hold shares are not among
/// them: the store reads them in a second statement, only for rows whose
/// `holds_until_us` is still ahead ([`crate::store::Store`], `charge.rs`); nor is
/// the account's ceiling, read only for rows whose `ceiling_id` names one.
fn columns() -> &'static str {
    "id::int8, key_hash, account_id, user_id, name, key_prefix, scopes, \
     budget_cents::int8, budget_used_cents::int8, budget_micros, budget_used_micros, \
     budget_held_micros, budget_period, budget_reset_at, budget_anchor_at, expires_at, \
     revoked_at, created_at, last_used_at, delegated_by, external_subject, metadata::text, parent_id::int8, \
     holds_until_us, ceiling_id::int8, rate_limits"
}

/// The sum of the group's `amount_micros`, saturated to the BIGINT range as the
/// stored counters are: Postgres sums BIGINT exactly as NUMERIC, which cannot
/// overflow, and only the clamped result is cast back (a plain `SUM(…)::int8`
/// failed with `bigint out of range` once rows near the limit added past it).
const SPENT: &str =
    "LEAST(GREATEST(SUM(amount_micros), -9223372036854775808), 9223372036854775807)::int8";

/// The columns of a ceiling row, in [`crate::store::row::ceiling`]'s order.
const CEILING_COLUMNS: &str =
    "account_id, id::int8, budget_micros, budget_used_micros, budget_period, \
    budget_reset_at, budget_anchor_at, holds_until_us";

/// The rows matching `cond` and all their ancestors (at most [`MAX_DEPTH`] deep),
/// in id order: one statement, so with `FOR UPDATE` every lock of a charge is taken
/// in the same order and concurrent charges of a family cannot deadlock.
///
/// `id = ANY(ARRAY(…))` rather than `id IN (SELECT …)`: the planner guesses dozens of
/// rows for a recursive CTE and then seq-scans the keys table for the semi-join;
/// the array form is a primary-key index scan. pgbench, 32 clients, 1,000 keys:
/// 4,700 → 9,200 statements/s locked (a plain locked lookup by hash: 11,400).
///
/// The recursive step reads only rows that have a parent: on a small keys table
/// the planner hash-joins the step with a seq scan of the whole table, and with
/// the filter the join sees no outer row and never builds its hash (EXPLAIN
/// ANALYZE of a 30-key lock on 1,000 keys, none with a parent: 0.49 → 0.30 ms).
fn with_ancestors(t: &TableNames, cond: &str, lock: &str) -> String {
    let (keys, columns) = (&t.keys, columns());
    format!(
        "WITH RECURSIVE chain(id, parent_id, depth) AS (SELECT id, parent_id, 1 FROM {keys} WHERE {cond} \
         UNION ALL SELECT k.id, k.parent_id, c.depth + 1 FROM chain c JOIN {keys} k ON k.id = c.parent_id \
         WHERE c.parent_id IS NOT NULL AND c.depth < {MAX_DEPTH}) \
         SELECT {columns} FROM {keys} WHERE id = ANY(ARRAY(SELECT id FROM chain)) ORDER BY id{lock}"
    )
}

/// One statement for a spend batch's whole write (one round trip): the key
/// updates, the ledger rows and, when the batch left keys without budget, the
/// notification to other processes' caches (sent when the transaction commits).
/// Data-modifying CTEs run whether or not the query reads them. With `ceilings`,
/// the updates of negative ids also go to the account ceilings they name. With
/// `holds`, the holds half too: ids for the new holds from their sequence, the
/// holds and their shares, the closed holds, and the shares that no longer count
/// (those of closed holds, and expired ones of the batch's keys); the statement
/// then returns the new holds' ids in order. (The ids and the holds half were two
/// statements of their own: folding them in saves a batch with reserves two round
/// trips, and one with settles one.)
///
/// The updates of keys and of closed holds also say `id = ANY(<the ids>)`: joined
/// to `UNNEST` alone, a plan made while a table is small (a new install's holds
/// table, a generic plan cached by every pooled connection) seq-scans it for good,
/// and the holds table only grows (Rust driver, durable, first run on an empty
/// holds table: 2,248 seq scans reading 10 million rows, 1,541 pairs a second,
/// against 2,376 and 2,525 in the runs after it).
fn write_sql(t: &TableNames, ceilings: bool, holds: bool) -> String {
    let (keys, ledger, accounts) = (&t.keys, &t.ledger, &t.accounts);
    let (holds_table, hold_keys) = (&t.holds, &t.hold_keys);
    // The rate limits come last (after the holds half's parameters when there is one).
    let rl = if holds { 41 } else { 20 };
    let updates = format!(
        "UNNEST($1::int8[], $2::int8[], $3::int4[], $4::int8[], $5::int4[], \
         $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::int8[], ${rl}::text[]) \
         AS u(id, bm, bc, um, uc, ra, aa, lu, hu, rl)"
    );
    let ceilings = if ceilings {
        format!(
            "a AS (UPDATE {accounts} AS a SET budget_used_micros = u.um, budget_reset_at = u.ra, \
             budget_anchor_at = u.aa, holds_until_us = u.hu FROM {updates} WHERE a.id = -u.id), "
        )
    } else {
        String::new()
    };
    let notify = "SELECT pg_notify($18::text, $19::text) WHERE $19::text <> ''";
    let (holds_ctes, last) = if holds {
        (
            format!(
                ", ids AS (SELECT nextval(pg_get_serial_sequence($20, 'id')) AS id, n AS ord \
                 FROM generate_series(1, $21::int8) AS n), \
                 h AS (INSERT INTO {holds_table} (id, key_id, account_id, amount_micros, created_at, expires_at, \
                 idempotency_key, reserved_remaining_micros) \
                 SELECT ids.id, u.key_id, u.account_id, u.amount, u.created_at, u.expires_at, u.idem, u.rem \
                 FROM UNNEST($22::int8[], $23::text[], $24::int8[], $25::timestamptz[], $26::timestamptz[], \
                 $27::text[], $28::int8[]) WITH ORDINALITY \
                 AS u(key_id, account_id, amount, created_at, expires_at, idem, rem, ord) \
                 JOIN ids ON ids.ord = u.ord), \
                 s AS (INSERT INTO {hold_keys} (hold_id, key_id, amount_micros, counts_until_us) \
                 SELECT ids.id, s.key_id, s.amount, s.until_us \
                 FROM UNNEST($29::int8[], $30::int8[], $31::int8[], $32::int8[]) AS s(ord, key_id, amount, until_us) \
                 JOIN ids ON ids.ord = s.ord), \
                 c AS (UPDATE {holds_table} AS x SET state = c.state, settled_micros = c.sm, settled_at = $33, \
                 used_after_micros = c.ua, remaining_after_micros = c.ra \
                 FROM UNNEST($34::int8[], $35::text[], $36::int8[], $37::int8[], $38::int8[]) \
                 AS c(id, state, sm, ua, ra) WHERE x.id = c.id AND x.id = ANY($34::int8[])), \
                 d AS (DELETE FROM {hold_keys} WHERE hold_id = ANY($34::int8[]) \
                 OR (key_id = ANY($39::int8[]) AND counts_until_us <= $40))"
            ),
            format!(
                "SELECT ARRAY(SELECT id FROM ids ORDER BY ord), (SELECT COUNT(*) FROM ({notify}) AS n)"
            ),
        )
    } else {
        (String::new(), format!("SELECT 1 FROM ({notify}) AS n"))
    };
    format!(
        "WITH u AS (UPDATE {keys} AS k SET budget_micros = u.bm, budget_cents = u.bc, \
         budget_used_micros = u.um, budget_used_cents = u.uc, \
         budget_reset_at = u.ra, budget_anchor_at = u.aa, last_used_at = u.lu, holds_until_us = u.hu, \
         rate_limits = COALESCE(u.rl, k.rate_limits) FROM {updates} WHERE k.id = u.id AND k.id = ANY($1::int8[])), {ceilings}\
         l AS (INSERT INTO {ledger} (key_id, account_id, amount_micros, created_at, idempotency_key, \
         used_after_micros, remaining_after_micros, hold_id) \
         SELECT * FROM UNNEST($10::int8[], $11::text[], $12::int8[], $13::timestamptz[], $14::text[], \
         $15::int8[], $16::int8[], $17::int8[])){holds_ctes} \
         {last}"
    )
}

/// Postgres' own statements: the reads of a validate, the locks of a charge and
/// of a write to an account, and a charge's write.
struct Sql {
    by_hash: String,
    by_subject: String,
    ancestors_of: String,
    lock_by_hash: String,
    lock_by_subject: String,
    lock_by_both: String,
    lock_any: String,
    lock_holds: String,
    account_exclusive: String,
    account_shared: String,
    lock_account_keys: String,
    /// [`write_sql`] by (ceilings, holds): `[(no, no), (yes, no), (no, yes), (yes, yes)]`.
    write: [String; 4],
}

impl Sql {
    fn new(t: &TableNames) -> Self {
        let (keys, columns) = (&t.keys, columns());
        let (holds, hold_keys) = (&t.holds, &t.hold_keys);
        Self {
            by_hash: format!("SELECT {columns} FROM {keys} WHERE key_hash = ANY($1)"),
            by_subject: format!("SELECT {columns} FROM {keys} WHERE external_subject = ANY($1)"),
            ancestors_of: with_ancestors(t, "id = ANY($1)", ""),
            lock_by_hash: with_ancestors(t, "key_hash = ANY($1)", " FOR UPDATE"),
            lock_by_subject: with_ancestors(t, "external_subject = ANY($2)", " FOR UPDATE"),
            lock_by_both: with_ancestors(
                t,
                "key_hash = ANY($1) OR external_subject = ANY($2)",
                " FOR UPDATE",
            ),
            lock_any: with_ancestors(
                t,
                "key_hash = ANY($1) OR external_subject = ANY($2) OR id = ANY($3)",
                " FOR UPDATE",
            ),
            lock_holds: format!(
                "SELECT h.id, h.key_id::int8, h.state, h.used_after_micros, h.remaining_after_micros, \
                 (SELECT string_agg(s.key_id::text || ':' || s.amount_micros::text || ':' || s.counts_until_us::text, ',') \
                 FROM {hold_keys} s WHERE s.hold_id = h.id) \
                 FROM {holds} h WHERE h.id = ANY($1) ORDER BY h.id FOR UPDATE"
            ),
            // One advisory lock per keys table and account (the two-int4 key space,
            // apart from the migration's one-int8 lock): setting the account's
            // ceiling takes it exclusive, inserting a key of the account shared.
            account_exclusive: "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))".into(),
            account_shared: "SELECT pg_advisory_xact_lock_shared(hashtext($1), hashtext($2))"
                .into(),
            // Every key of the account, locked in id order as a charge locks its
            // keys, so setting a ceiling and charging never wait for each other in a
            // cycle.
            lock_account_keys: format!(
                "SELECT id FROM {keys} WHERE account_id = $1 ORDER BY id FOR UPDATE"
            ),
            // One statement for the whole write (one round trip): the key updates,
            // the ledger rows and, when the batch left keys without budget, the
            // notification to other processes' caches (sent when the transaction
            // commits). Data-modifying CTEs run whether or not the query reads them.
            write: [
                write_sql(t, false, false),
                write_sql(t, true, false),
                write_sql(t, false, true),
                write_sql(t, true, true),
            ],
        }
    }
}

/// The statements the shared store code runs ([`Queries`]), in Postgres' dialect.
/// The notifications name the channel in the text: it is hex digits
/// ([`TableNames::channel`]).
fn queries(t: TableNames) -> Queries {
    let (keys, ledger, columns) = (&t.keys, &t.ledger, columns());
    let (holds, hold_keys, accounts) = (&t.holds, &t.hold_keys, &t.accounts);
    let channel = t.channel();
    let insert = format!(
        "INSERT INTO {keys} (account_id, user_id, key_hash, key_prefix, name, scopes, budget_cents, \
         budget_used_cents, budget_micros, budget_used_micros, budget_held_micros, budget_period, \
         budget_reset_at, budget_anchor_at, expires_at, delegated_by, external_subject, metadata, created_at, \
         parent_id, ceiling_id, rate_limits) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, 0, 0, $9, $10, $11, $12, $13, $14, \
         $15::jsonb, $11, $16, (SELECT id FROM {accounts} WHERE account_id = $1), $17)"
    );
    Queries {
        insert_subject: format!(
            "{insert} ON CONFLICT (external_subject) WHERE external_subject IS NOT NULL DO NOTHING"
        ),
        insert: format!("{insert} RETURNING id::int8"),
        set_ceiling: format!(
            "INSERT INTO {accounts} AS a (account_id, budget_micros, budget_used_micros, \
             budget_period, budget_reset_at, budget_anchor_at, created_at, updated_at) \
             VALUES ($1, $2, 0, $3, $4, $5, $5, $5) ON CONFLICT (account_id) DO UPDATE SET \
             budget_micros = EXCLUDED.budget_micros, updated_at = EXCLUDED.updated_at, \
             budget_used_micros = CASE WHEN a.budget_period IS NOT DISTINCT FROM EXCLUDED.budget_period \
             THEN a.budget_used_micros ELSE 0 END, \
             budget_reset_at = CASE WHEN a.budget_period IS NOT DISTINCT FROM EXCLUDED.budget_period \
             THEN a.budget_reset_at ELSE EXCLUDED.budget_reset_at END, \
             budget_anchor_at = CASE WHEN a.budget_period IS NOT DISTINCT FROM EXCLUDED.budget_period \
             THEN a.budget_anchor_at ELSE EXCLUDED.budget_anchor_at END"
        ),
        drop_ceiling: format!("DELETE FROM {accounts} WHERE account_id = $1"),
        // The hints, then the notification: delivered when the transaction commits.
        hint_account: format!(
            "WITH u AS (UPDATE {keys} SET ceiling_id = (SELECT id FROM {accounts} WHERE account_id = $1) \
             WHERE account_id = $1 \
             AND ceiling_id IS DISTINCT FROM (SELECT id FROM {accounts} WHERE account_id = $1)) \
             SELECT pg_notify('{channel}', '{FLUSH_ALL}')"
        ),
        lock_ceilings: format!(
            "SELECT {CEILING_COLUMNS} FROM {accounts} WHERE id = ANY($1) ORDER BY id FOR UPDATE"
        ),
        priors: format!(
            "SELECT key_id::int8, idempotency_key, amount_micros, used_after_micros, remaining_after_micros, \
             NULL::int8, NULL::timestamptz, NULL::text FROM {ledger} \
             WHERE key_id = ANY($1) AND idempotency_key = ANY($2) \
             UNION ALL SELECT key_id::int8, idempotency_key, amount_micros, NULL::int8, \
             reserved_remaining_micros, id, expires_at, state FROM {holds} \
             WHERE key_id = ANY($1) AND idempotency_key = ANY($2)"
        ),
        by_id: with_ancestors(&t, "id = $1", ""),
        list: format!("SELECT {columns} FROM {keys} WHERE account_id = $1 ORDER BY id"),
        ceilings: format!("SELECT {CEILING_COLUMNS} FROM {accounts} WHERE id = ANY($1)"),
        shares: format!(
            "SELECT key_id::int8, string_agg(amount_micros::text || ':' || counts_until_us::text, ',') \
             FROM {hold_keys} WHERE key_id = ANY($1) GROUP BY key_id"
        ),
        roll: format!(
            "UPDATE {keys} SET budget_used_micros = 0, budget_used_cents = 0, budget_reset_at = $2, \
             budget_anchor_at = $3 WHERE id = $1 AND budget_reset_at IS NOT DISTINCT FROM $4 \
             RETURNING id::int8"
        ),
        roll_ceiling: format!(
            "UPDATE {accounts} SET budget_used_micros = 0, budget_reset_at = $2, budget_anchor_at = $3 \
             WHERE id = -$1 AND budget_reset_at IS NOT DISTINCT FROM $4 \
             RETURNING id::int8"
        ),
        // The revoke and its notification to other processes' caches are one
        // statement: one cannot commit without the other. (The channel is
        // hex digits: see `TableNames::channel`.)
        revoke: format!(
            "WITH r AS (UPDATE {keys} SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING id) \
             SELECT r.id::int8 FROM r, LATERAL (SELECT pg_notify('{channel}', r.id::text)) AS n"
        ),
        revoke_in_account: format!(
            "WITH r AS (UPDATE {keys} SET revoked_at = $2 WHERE id = $1 AND account_id = $3 \
             AND revoked_at IS NULL RETURNING id) \
             SELECT r.id::int8 FROM r, LATERAL (SELECT pg_notify('{channel}', r.id::text)) AS n"
        ),
        usage: format!(
            "SELECT id, key_id::int8, amount_micros, created_at, idempotency_key, hold_id FROM {ledger} \
             WHERE key_id = $1 AND ($2::timestamptz IS NULL OR created_at >= $2) \
             AND ($3::timestamptz IS NULL OR created_at < $3) ORDER BY id"
        ),
        // Aggregate first, then look up the few keys that made the cut.
        top_keys: format!(
            "WITH s AS (SELECT key_id, {SPENT} AS spent, COUNT(*)::int8 AS n \
             FROM {ledger} WHERE ($1::timestamptz IS NULL OR created_at >= $1) \
             AND ($2::timestamptz IS NULL OR created_at < $2) \
             GROUP BY key_id ORDER BY spent DESC, key_id LIMIT $3) \
             SELECT s.key_id::int8, k.account_id, k.name, k.key_prefix, s.spent, s.n \
             FROM s LEFT JOIN {keys} k ON k.id = s.key_id ORDER BY s.spent DESC, s.key_id"
        ),
        top_accounts: format!(
            "SELECT NULL::int8, account_id, NULL::text, NULL::text, {SPENT} AS spent, \
             COUNT(*)::int8 FROM {ledger} WHERE ($1::timestamptz IS NULL OR created_at >= $1) \
             AND ($2::timestamptz IS NULL OR created_at < $2) \
             GROUP BY account_id ORDER BY spent DESC, account_id LIMIT $3"
        ),
        // The same prefix match as on SQLite (which has no case-sensitive LIKE).
        accounts: format!(
            "SELECT DISTINCT account_id FROM {keys} WHERE account_id IS NOT NULL AND ($1 = '' \
             OR substr(account_id, 1, length($1)) = $1 OR substr(key_prefix, 1, length($1)) = $1) \
             ORDER BY account_id LIMIT $2"
        ),
        days_of_key: format!(
            "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS d, \
             {SPENT} FROM {ledger} WHERE key_id = $1 AND created_at >= $2 \
             GROUP BY d ORDER BY d"
        ),
        days_of_account: format!(
            "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS d, \
             {SPENT} FROM {ledger} WHERE account_id = $1 AND created_at >= $2 \
             GROUP BY d ORDER BY d"
        ),
        count: format!(
            "SELECT COUNT(*)::int8 FROM {ledger} WHERE ($1::timestamptz IS NULL OR created_at >= $1) \
             AND ($2::timestamptz IS NULL OR created_at < $2)"
        ),
        export: format!(
            "SELECT id::int8, key_id::int8, account_id, amount_micros, created_at, idempotency_key, \
             hold_id::int8 FROM {ledger} WHERE ($1::timestamptz IS NULL OR created_at >= $1) \
             AND ($2::timestamptz IS NULL OR created_at < $2) ORDER BY id"
        ),
        rate: rate_sql(&format!("{} AS r", t.rate), "r.tat", "$"),
        schema: schema(migrations!("postgres"), &t),
        names: t,
    }
}

/// A Postgres-backed store.
pub(crate) struct PgStore {
    /// The pool and the shared statements.
    base: Base<Postgres>,
    sql: Sql,
    /// How to open a connection: the validation cache's listener opens its own.
    connect: Box<PgConnectOptions>,
    /// The `NOTIFY` channel of this keys table ([`TableNames::channel`]).
    channel: String,
}

impl PgStore {
    /// Connects a pool to `url` (the URL is never echoed in an error).
    pub async fn connect(url: &str, options: &Options, names: TableNames) -> Result<Self> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|_| Error::arg("the database URL is not a valid postgres:// URL"))?
            .application_name("keyleash")
            .options([(
                "statement_timeout",
                format!("{}ms", options.statement_timeout.as_millis().max(1)),
            )]);
        // sqlx's pool retries a refused connection until the acquire timeout and then
        // says only "pool timed out". One direct attempt first says at once what
        // failed and where (host and port: the URL's password is never shown).
        let probe = tokio::time::timeout(
            options.acquire_timeout,
            PgConnection::connect_with(&connect),
        );
        match probe.await {
            Ok(Ok(conn)) => conn.close().await?,
            Ok(Err(sqlx::Error::Io(e))) => return Err(unreachable(&connect, &e.to_string())),
            Ok(Err(e @ sqlx::Error::Database(_))) => return Err(e.into()),
            Ok(Err(e)) => return Err(unreachable(&connect, &e.to_string())),
            Err(_) => return Err(unreachable(&connect, "timed out")),
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.unwrap_or(10))
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect.clone());
        Ok(Self {
            sql: Sql::new(&names),
            channel: names.channel(),
            base: Base {
                pool,
                queries: queries(names),
            },
            connect: Box::new(connect),
        })
    }

    /// Where the validation cache listens: the connect options and the channel.
    pub fn listen_target(&self) -> (PgConnectOptions, String) {
        ((*self.connect).clone(), self.channel.clone())
    }
}

impl Backend for PgStore {
    type Db = Postgres;

    fn base(&self) -> &Base<Postgres> {
        &self.base
    }

    /// Reads the named rows, then the ancestors of those that have a parent: a key
    /// without a parent (the common case) costs one plain index lookup, not the
    /// recursive query. Two statements, so a family read here may mix two instants;
    /// charges, which must not, lock the whole family in one statement.
    async fn fetch(&self, lookups: &[Lookup]) -> Result<Vec<KeyRow>> {
        let (hashes, subjects) = split_lookups(lookups.iter());
        let mut rows = Vec::with_capacity(lookups.len());
        for (sql, values) in [
            (&self.sql.by_hash, hashes),
            (&self.sql.by_subject, subjects),
        ] {
            if !values.is_empty() {
                for r in sqlx::query(sql)
                    .bind(values)
                    .fetch_all(&self.base.pool)
                    .await?
                {
                    push_new(&mut rows, key_row(&r)?);
                }
            }
        }
        let parents: Vec<i64> = rows
            .iter()
            .filter_map(|r| r.parent_id)
            .filter(|p| rows.iter().all(|r| r.id != *p))
            .collect();
        if !parents.is_empty() {
            let found = sqlx::query(&self.sql.ancestors_of)
                .bind(&parents)
                .fetch_all(&self.base.pool)
                .await?;
            for r in &found {
                push_new(&mut rows, key_row(r)?);
            }
        }
        Ok(rows)
    }

    /// `BEGIN` and, in the same round trip, generic plans for the transaction's
    /// prepared statements (`plan_cache_mode`): each of them is a lookup by key,
    /// hash or id whose plan does not depend on the values, and a custom plan
    /// is planned again at every execution, which for a spend batch's write (a
    /// dozen CTEs over `UNNEST` arrays) cost more than running it. Durable
    /// Postgres, Rust driver, 32 callers, 1,000 keys, 4 s, alternating
    /// (server-wide setting): reserve+settle 4,188 / 4,421 -> 5,447 / 5,110
    /// pairs a second, charge 15,053 / 13,951 -> 15,499 / 15,454.
    async fn begin(&self) -> Result<Tx<'_, PgStore>> {
        let tx = self
            .base
            .pool
            .begin_with("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan")
            .await?;
        Ok(Tx { tx, store: self })
    }

    /// A transaction of its own, without the statement timeout: the server sends
    /// rows as the reader takes them (sqlx reads the socket as the stream is
    /// polled), so memory stays constant however long the window.
    async fn begin_export(&self) -> Result<Tx<'_, PgStore>> {
        let mut tx = self.base.pool.begin().await?;
        tx.execute(sqlx::raw_sql("SET LOCAL statement_timeout = 0"))
            .await?;
        Ok(Tx { tx, store: self })
    }

    /// The account's advisory lock, shared or exclusive, until the transaction
    /// ends; exclusive, also the account's keys `FOR UPDATE` in id order. Setting
    /// a ceiling holds it exclusive, so an `INSERT` (which reads the ceiling after
    /// the lock is granted) sees every ceiling committed before it, and a ceiling
    /// set after it sees the key (see docs/storage.md). An insert is four round
    /// trips (BEGIN, lock, INSERT, COMMIT).
    async fn begin_account(&self, account_id: &str, lock: AccountLock) -> Result<Tx<'_, PgStore>> {
        let mut tx = self.begin().await?;
        let (sql, keys) = (&self.sql, &self.base.queries.names.keys);
        let account = [Arg::Text(keys), Arg::Text(account_id)];
        match lock {
            AccountLock::Shared => tx.all(&sql.account_shared, &account).await?,
            AccountLock::Exclusive => {
                tx.all(&sql.account_exclusive, &account).await?;
                tx.all(&sql.lock_account_keys, &account[1..]).await?
            }
        };
        Ok(tx)
    }

    async fn apply_schema(&self, schema: &[String]) -> Result<()> {
        let names = &self.base.queries.names;
        let mut tx = self.base.pool.begin().await?;
        // Adding columns to a large, busy table may wait for locks longer than a
        // request should: the migration has no statement timeout.
        // `RawSql::execute` is a generic `async fn` whose future rustc cannot prove
        // `Send` when a caller spawns `migrate` (the bindings do): call the
        // executor's boxed `execute` instead.
        tx.execute(sqlx::raw_sql("SET LOCAL statement_timeout = 0"))
            .await?;
        // Serialize concurrent migrations of the same table (CREATE … IF NOT EXISTS
        // is not safe against a concurrent identical CREATE).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("keyleash:{}", names.keys))
            .execute(&mut *tx)
            .await?;
        if let Some(name) = &names.schema {
            tx.execute(sqlx::raw_sql(&format!(
                "CREATE SCHEMA IF NOT EXISTS \"{name}\""
            )))
            .await?;
        }
        for stmt in schema {
            tx.execute(sqlx::raw_sql(stmt)).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Postgres' SQL for the steps of a charge (`charge.rs`): one locking statement for
/// the whole family in id order, and `UNNEST` arrays for the writes.
impl ChargeSql for Tx<'_, PgStore> {
    async fn lock_holds(&mut self, ids: &[i64]) -> Result<Vec<HoldRow>> {
        let store = self.store;
        let rows = self.all(&store.sql.lock_holds, &[Arg::Ids(ids)]).await?;
        Ok(decode_all(&rows, hold)?)
    }

    async fn lock(&mut self, lookups: &[&Lookup], ids: &[i64]) -> Result<Vec<KeyRow>> {
        let sql = &self.store.sql;
        let (hashes, subjects) = split_lookups(lookups.iter().copied());
        let lock = match (hashes.is_empty(), subjects.is_empty(), ids.is_empty()) {
            (false, true, true) => &sql.lock_by_hash,
            (true, false, true) => &sql.lock_by_subject,
            (_, _, true) => &sql.lock_by_both,
            _ => &sql.lock_any,
        };
        let args = [Arg::Texts(&hashes), Arg::Texts(&subjects), Arg::Ids(ids)];
        let n = if ids.is_empty() { 2 } else { 3 };
        let rows = self.all(lock, &args[..n]).await?;
        Ok(decode_all(&rows, key_row)?)
    }

    async fn write(&mut self, plan: &Plan, now: DateTime<Utc>) -> Result<Vec<i64>> {
        let (u, l) = (&plan.updates, &plan.ledger);
        let ceilings = u.iter().any(|u| u.id < 0);
        let holds = !(plan.new_holds.is_empty()
            && plan.closed_holds.is_empty()
            && plan.stale_shares.is_empty());
        let sql = &self.store.sql.write[usize::from(ceilings) + 2 * usize::from(holds)];
        let q = sqlx::query(sql)
            .bind(u.iter().map(|u| u.id).collect::<Vec<_>>())
            .bind(u.iter().map(|u| u.budget_micros).collect::<Vec<_>>())
            .bind(u.iter().map(|u| u.budget_cents).collect::<Vec<_>>())
            .bind(u.iter().map(|u| u.used_micros).collect::<Vec<_>>())
            .bind(u.iter().map(|u| u.used_cents).collect::<Vec<_>>())
            .bind(u.iter().map(|u| u.reset_at).collect::<Vec<_>>())
            .bind(u.iter().map(|u| u.anchor_at).collect::<Vec<_>>())
            .bind(u.iter().map(|u| u.last_used_at).collect::<Vec<_>>())
            .bind(u.iter().map(|u| u.holds_until_us).collect::<Vec<_>>())
            .bind(l.iter().map(|l| l.key_id).collect::<Vec<_>>())
            .bind(
                l.iter()
                    .map(|l| l.account_id.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(l.iter().map(|l| l.amount_micros).collect::<Vec<_>>())
            .bind(l.iter().map(|l| l.created_at).collect::<Vec<_>>())
            .bind(
                l.iter()
                    .map(|l| l.idempotency_key.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(l.iter().map(|l| l.used_after_micros).collect::<Vec<_>>())
            .bind(
                l.iter()
                    .map(|l| l.remaining_after_micros)
                    .collect::<Vec<_>>(),
            )
            .bind(l.iter().map(|l| l.hold_id).collect::<Vec<_>>())
            .bind(&self.store.channel)
            .bind(cache::payload(&plan.exhausted));
        let limits = u
            .iter()
            .map(|u| u.rate_limits.as_deref())
            .collect::<Vec<_>>();
        if !holds {
            q.bind(limits).fetch_all(&mut *self.tx).await?;
            return Ok(Vec::new());
        }
        let (n, c) = (&plan.new_holds, &plan.closed_holds);
        // Each share names its hold by the hold's 1-based position in `n`.
        let shares: Vec<(i64, i64, i64, i64)> = (1..)
            .zip(n)
            .flat_map(|(ord, h)| {
                h.shares
                    .iter()
                    .map(move |(k, s)| (ord, *k, s.amount, s.until_us))
            })
            .collect();
        let row = q
            .bind(&self.store.queries().names.holds)
            .bind(i64::try_from(n.len()).unwrap_or(i64::MAX))
            .bind(n.iter().map(|h| h.key_id).collect::<Vec<_>>())
            .bind(
                n.iter()
                    .map(|h| h.account_id.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(n.iter().map(|h| h.amount_micros).collect::<Vec<_>>())
            .bind(n.iter().map(|h| h.created_at).collect::<Vec<_>>())
            .bind(n.iter().map(|h| h.expires_at).collect::<Vec<_>>())
            .bind(
                n.iter()
                    .map(|h| h.idempotency_key.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(n.iter().map(|h| h.remaining_micros).collect::<Vec<_>>())
            .bind(shares.iter().map(|s| s.0).collect::<Vec<_>>())
            .bind(shares.iter().map(|s| s.1).collect::<Vec<_>>())
            .bind(shares.iter().map(|s| s.2).collect::<Vec<_>>())
            .bind(shares.iter().map(|s| s.3).collect::<Vec<_>>())
            .bind(now)
            .bind(c.iter().map(|h| h.id).collect::<Vec<_>>())
            .bind(c.iter().map(|h| h.state.as_str()).collect::<Vec<_>>())
            .bind(c.iter().map(|h| h.settled_micros).collect::<Vec<_>>())
            .bind(c.iter().map(|h| h.used_after_micros).collect::<Vec<_>>())
            .bind(
                c.iter()
                    .map(|h| h.remaining_after_micros)
                    .collect::<Vec<_>>(),
            )
            .bind(&plan.stale_shares)
            .bind(now.timestamp_micros())
            .bind(limits)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(row.try_get::<Vec<i64>, _>(0)?)
    }
}

/// The error of a server that could not be reached: where (never the password)
/// and why.
fn unreachable(connect: &PgConnectOptions, why: &str) -> Error {
    let place = match connect.get_socket() {
        Some(dir) => format!("the socket in {}", dir.display()),
        None => format!("{}:{}", connect.get_host(), connect.get_port()),
    };
    Error::Unavailable(format!("could not connect to Postgres at {place}: {why}").into())
}
