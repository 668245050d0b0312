//! The embedded SQLite store: where the charge SQL for SQLite lives.
//!
//! Same steps as the Postgres store, under `BEGIN IMMEDIATE`, which takes SQLite's
//! write lock up front: concurrent writers (tasks or processes) queue on the lock
//! (`busy_timeout`) instead of failing on a lock upgrade. Timestamps are TEXT
//! `YYYY-MM-DDTHH:MM:SS.ffffffZ` (fixed width, so text order is time order);
//! scopes and metadata are JSON text.
//!
//! `sqlite::memory:` is one database per connection, so its pool has exactly one
//! connection that is never recycled.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow};
use sqlx::{Executor, Sqlite};

use crate::engine::{push_new, KeyRow, Lookup, MAX_DEPTH};
use crate::error::{Error, Result};
use crate::ident::TableNames;
use crate::model::Options;
use crate::spend::{HoldRow, Plan};
use crate::store::arg::json;
use crate::store::charge::ChargeSql;
use crate::store::codec::Stamp;
use crate::store::row::{hold, key_row};
use crate::store::{
    migrations, rate_sql, schema, split_lookups, AccountLock, Backend, Base, Queries, Tx,
};

/// The columns of a key row, in [`crate::store::row::key_row`]'s order. Hold shares are not among
/// them: the store reads them in a second statement, only for rows whose
/// `holds_until_us` is still ahead ([`crate::store::Store`], `charge.rs`).
const COLUMNS: &str = "id, key_hash, account_id, user_id, name, key_prefix, scopes, budget_cents, \
    budget_used_cents, budget_micros, budget_used_micros, budget_held_micros, budget_period, \
    budget_reset_at, budget_anchor_at, expires_at, revoked_at, created_at, last_used_at, delegated_by, \
    external_subject, metadata, parent_id, holds_until_us, ceiling_id, rate_limits";

/// The columns of a ceiling row, in [`crate::store::row::ceiling`]'s order.
const CEILING_COLUMNS: &str = "account_id, id, budget_micros, budget_used_micros, budget_period, \
    budget_reset_at, budget_anchor_at, holds_until_us";

/// The sum of a group's `amount_micros` in two exact parts, `hi` and `lo`: the
/// sums of each amount's upper 32 bits (arithmetic shift) and of its lower 32
/// bits. SQLite's own `SUM` fails the whole query with `integer overflow` once
/// a group passes the 64-bit range, and `TOTAL` is a float (inexact above 2^53
/// micro-cents); these two parts cannot overflow below 2^31 rows per group.
/// [`SPENT_OF_PARTS`] puts them together.
const SPENT_PARTS: &str = "SUM(amount_micros >> 32) AS hi, SUM(amount_micros & 4294967295) AS lo";

/// `hi * 2^32 + lo` from [`SPENT_PARTS`], exact where it fits a 64-bit integer
/// and saturated to that range where it does not, as the stored counters are.
/// The carry of `lo` moves into `hi` first, so the product and the sum below
/// stay within the range.
const SPENT_OF_PARTS: &str = "CASE WHEN hi + (lo >> 32) > 2147483647 THEN 9223372036854775807     WHEN hi + (lo >> 32) < -2147483648 THEN -9223372036854775807 - 1     ELSE (hi + (lo >> 32)) * 4294967296 + (lo & 4294967295) END";

/// The row matching `cond` and all its ancestors (at most [`MAX_DEPTH`] deep).
fn with_ancestors(t: &TableNames, cond: &str) -> String {
    let (keys, columns) = (&t.keys, COLUMNS);
    format!(
        "WITH RECURSIVE chain(id, parent_id, depth) AS (SELECT id, parent_id, 1 FROM {keys} WHERE {cond} \
         UNION ALL SELECT k.id, k.parent_id, c.depth + 1 FROM {keys} k JOIN chain c ON k.id = c.parent_id \
         WHERE c.depth < {MAX_DEPTH}) \
         SELECT {columns} FROM {keys} WHERE id IN (SELECT id FROM chain) ORDER BY id"
    )
}

/// SQLite's own statements: the lookups of a validate or a charge, and the
/// row-at-a-time statements of a charge's lock and write.
struct Sql {
    /// The rows whose hash is in a JSON array, with their ancestors.
    by_hashes: String,
    /// The rows whose subject is in a JSON array, with their ancestors.
    by_subjects: String,
    /// The rows whose id is in a JSON array, with their ancestors.
    by_ids: String,
    lock_hold: String,
    insert_hold: String,
    insert_share: String,
    close_hold: String,
    delete_shares: String,
    update: String,
    update_ceiling: String,
    ledger_insert: String,
}

impl Sql {
    fn new(t: &TableNames) -> Self {
        let (keys, ledger) = (&t.keys, &t.ledger);
        let (holds, hold_keys, accounts) = (&t.holds, &t.hold_keys, &t.accounts);
        Self {
            by_hashes: with_ancestors(t, "key_hash IN (SELECT value FROM json_each(?1))"),
            by_subjects: with_ancestors(t, "external_subject IN (SELECT value FROM json_each(?1))"),
            by_ids: with_ancestors(t, "id IN (SELECT value FROM json_each(?1))"),
            lock_hold: format!(
                "SELECT h.id, h.key_id, h.state, h.used_after_micros, h.remaining_after_micros, \
                 (SELECT group_concat(s.key_id || ':' || s.amount_micros || ':' || s.counts_until_us, ',') \
                 FROM {hold_keys} s WHERE s.hold_id = h.id) FROM {holds} h WHERE h.id = ?1"
            ),
            insert_hold: format!(
                "INSERT INTO {holds} (key_id, account_id, amount_micros, created_at, expires_at, idempotency_key, \
                 reserved_remaining_micros) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id"
            ),
            insert_share: format!(
                "INSERT INTO {hold_keys} (hold_id, key_id, amount_micros, counts_until_us) VALUES (?1, ?2, ?3, ?4)"
            ),
            close_hold: format!(
                "UPDATE {holds} SET state = ?2, settled_micros = ?3, settled_at = ?4, used_after_micros = ?5, \
                 remaining_after_micros = ?6 WHERE id = ?1"
            ),
            // The shares that no longer count: those of closed holds, and expired
            // ones of the batch's keys.
            delete_shares: format!(
                "DELETE FROM {hold_keys} WHERE hold_id IN (SELECT value FROM json_each(?1)) \
                 OR (key_id IN (SELECT value FROM json_each(?2)) AND counts_until_us <= ?3)"
            ),
            update: format!(
                "UPDATE {keys} SET budget_micros = ?2, budget_cents = ?3, budget_used_micros = ?4, \
                 budget_used_cents = ?5, budget_reset_at = ?6, budget_anchor_at = ?7, \
                 last_used_at = ?8, holds_until_us = ?9, rate_limits = COALESCE(?10, rate_limits) \
                 WHERE id = ?1"
            ),
            update_ceiling: format!(
                "UPDATE {accounts} SET budget_used_micros = ?2, budget_reset_at = ?3, budget_anchor_at = ?4, \
                 holds_until_us = ?5 WHERE id = -?1"
            ),
            ledger_insert: format!(
                "INSERT INTO {ledger} (key_id, account_id, amount_micros, created_at, idempotency_key, \
                 used_after_micros, remaining_after_micros, hold_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ),
        }
    }
}

/// The statements the shared store code runs ([`Queries`]), in SQLite's dialect.
fn queries(t: TableNames) -> Queries {
    let (keys, ledger, columns) = (&t.keys, &t.ledger, COLUMNS);
    let (holds, hold_keys, accounts) = (&t.holds, &t.hold_keys, &t.accounts);
    let insert = format!(
        "INSERT INTO {keys} (account_id, user_id, key_hash, key_prefix, name, scopes, budget_cents, \
         budget_used_cents, budget_micros, budget_used_micros, budget_held_micros, budget_period, \
         budget_reset_at, budget_anchor_at, expires_at, delegated_by, external_subject, metadata, created_at, \
         parent_id, ceiling_id, rate_limits) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, 0, 0, ?9, ?10, ?11, ?12, ?13, ?14, \
         ?15, ?11, ?16, (SELECT id FROM {accounts} WHERE account_id = ?1), ?17)"
    );
    Queries {
        insert_subject: format!(
            "{insert} ON CONFLICT (external_subject) WHERE external_subject IS NOT NULL DO NOTHING"
        ),
        insert: format!("{insert} RETURNING id"),
        // As on Postgres: a new ceiling starts empty; a changed amount keeps
        // what was used; a changed period starts over.
        set_ceiling: format!(
            "INSERT INTO {accounts} AS a (account_id, budget_micros, budget_used_micros, budget_period, \
             budget_reset_at, budget_anchor_at, created_at, updated_at) VALUES (?1, ?2, 0, ?3, ?4, ?5, ?5, ?5) \
             ON CONFLICT (account_id) DO UPDATE SET budget_micros = excluded.budget_micros, \
             updated_at = excluded.updated_at, \
             budget_used_micros = CASE WHEN a.budget_period IS excluded.budget_period \
             THEN a.budget_used_micros ELSE 0 END, \
             budget_reset_at = CASE WHEN a.budget_period IS excluded.budget_period \
             THEN a.budget_reset_at ELSE excluded.budget_reset_at END, \
             budget_anchor_at = CASE WHEN a.budget_period IS excluded.budget_period \
             THEN a.budget_anchor_at ELSE excluded.budget_anchor_at END"
        ),
        drop_ceiling: format!("DELETE FROM {accounts} WHERE account_id = ?1"),
        // Every key of the account names its ceiling (or none), as the hint
        // reads go by.
        hint_account: format!(
            "UPDATE {keys} SET ceiling_id = (SELECT id FROM {accounts} WHERE account_id = ?1) \
             WHERE account_id = ?1 \
             AND ceiling_id IS NOT (SELECT id FROM {accounts} WHERE account_id = ?1)"
        ),
        // Idempotency keys of a batch, one statement: ids and keys as JSON arrays.
        // Charges (no hold id) and reserves under them.
        priors: format!(
            "SELECT key_id, idempotency_key, amount_micros, used_after_micros, remaining_after_micros, \
             NULL, NULL, NULL FROM {ledger} \
             WHERE key_id IN (SELECT value FROM json_each(?1)) \
             AND idempotency_key IN (SELECT value FROM json_each(?2)) \
             UNION ALL SELECT key_id, idempotency_key, amount_micros, NULL, reserved_remaining_micros, \
             id, expires_at, state FROM {holds} \
             WHERE key_id IN (SELECT value FROM json_each(?1)) \
             AND idempotency_key IN (SELECT value FROM json_each(?2))"
        ),
        by_id: with_ancestors(&t, "id = ?1"),
        list: format!("SELECT {columns} FROM {keys} WHERE account_id = ?1 ORDER BY id"),
        ceilings: format!(
            "SELECT {CEILING_COLUMNS} FROM {accounts} WHERE id IN (SELECT value FROM json_each(?1))"
        ),
        // Under `BEGIN IMMEDIATE` a plain read is as locked as the keys'.
        lock_ceilings: format!(
            "SELECT {CEILING_COLUMNS} FROM {accounts} WHERE id IN (SELECT value FROM json_each(?1))"
        ),
        shares: format!(
            "SELECT key_id, group_concat(amount_micros || ':' || counts_until_us, ',') FROM {hold_keys} \
             WHERE key_id IN (SELECT value FROM json_each(?1)) GROUP BY key_id"
        ),
        roll: format!(
            "UPDATE {keys} SET budget_used_micros = 0, budget_used_cents = 0, budget_reset_at = ?2, \
             budget_anchor_at = ?3 WHERE id = ?1 AND budget_reset_at IS ?4 RETURNING id"
        ),
        roll_ceiling: format!(
            "UPDATE {accounts} SET budget_used_micros = 0, budget_reset_at = ?2, budget_anchor_at = ?3 \
             WHERE id = -?1 AND budget_reset_at IS ?4 RETURNING id"
        ),
        revoke: format!("UPDATE {keys} SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL RETURNING id"),
        revoke_in_account: format!(
            "UPDATE {keys} SET revoked_at = ?2 WHERE id = ?1 AND account_id = ?3 AND revoked_at IS NULL RETURNING id"
        ),
        usage: format!(
            "SELECT id, key_id, amount_micros, created_at, idempotency_key, hold_id FROM {ledger} \
             WHERE key_id = ?1 AND (?2 IS NULL OR created_at >= ?2) AND (?3 IS NULL OR created_at < ?3) \
             ORDER BY id"
        ),
        // As on Postgres: aggregate first, then look up the keys that made the cut.
        top_keys: format!(
            "WITH p AS (SELECT key_id, {SPENT_PARTS}, COUNT(*) AS n FROM {ledger} \
             WHERE (?1 IS NULL OR created_at >= ?1) AND (?2 IS NULL OR created_at < ?2) \
             GROUP BY key_id), \
             s AS (SELECT key_id, {SPENT_OF_PARTS} AS spent, n FROM p \
             ORDER BY spent DESC, key_id LIMIT ?3) \
             SELECT s.key_id, k.account_id, k.name, k.key_prefix, s.spent, s.n \
             FROM s LEFT JOIN {keys} k ON k.id = s.key_id ORDER BY s.spent DESC, s.key_id"
        ),
        top_accounts: format!(
            "SELECT NULL, account_id, NULL, NULL, {SPENT_OF_PARTS} AS spent, n FROM \
             (SELECT account_id, {SPENT_PARTS}, COUNT(*) AS n FROM {ledger} \
             WHERE (?1 IS NULL OR created_at >= ?1) AND (?2 IS NULL OR created_at < ?2) \
             GROUP BY account_id) ORDER BY spent DESC, account_id LIMIT ?3"
        ),
        // Case-sensitive prefix matches on both stores (SQLite's LIKE is not).
        accounts: format!(
            "SELECT DISTINCT account_id FROM {keys} WHERE account_id IS NOT NULL AND (?1 = '' \
             OR substr(account_id, 1, length(?1)) = ?1 OR substr(key_prefix, 1, length(?1)) = ?1) \
             ORDER BY account_id LIMIT ?2"
        ),
        // Stored times are fixed-width UTC text: the first 10 characters are the day.
        days_of_key: format!(
            "SELECT d, {SPENT_OF_PARTS} FROM (SELECT substr(created_at, 1, 10) AS d, {SPENT_PARTS} \
             FROM {ledger} WHERE key_id = ?1 AND created_at >= ?2 GROUP BY d) ORDER BY d"
        ),
        days_of_account: format!(
            "SELECT d, {SPENT_OF_PARTS} FROM (SELECT substr(created_at, 1, 10) AS d, {SPENT_PARTS} \
             FROM {ledger} WHERE account_id = ?1 AND created_at >= ?2 GROUP BY d) ORDER BY d"
        ),
        count: format!(
            "SELECT COUNT(*) FROM {ledger} \
             WHERE (?1 IS NULL OR created_at >= ?1) AND (?2 IS NULL OR created_at < ?2)"
        ),
        export: format!(
            "SELECT id, key_id, account_id, amount_micros, created_at, idempotency_key, hold_id \
             FROM {ledger} WHERE (?1 IS NULL OR created_at >= ?1) AND (?2 IS NULL OR created_at < ?2) \
             ORDER BY id"
        ),
        rate: rate_sql(&t.rate, "tat", "?"),
        schema: schema(migrations!("sqlite"), &t),
        names: t,
    }
}

/// A SQLite-backed store.
pub(crate) struct SqliteStore {
    /// The pool and the shared statements.
    base: Base<Sqlite>,
    /// The pool's size (1 for an in-memory database).
    connections: usize,
    sql: Sql,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url`.
    pub async fn connect(url: &str, options: &Options, names: TableNames) -> Result<Self> {
        if names.schema.is_some() {
            return Err(Error::arg(
                "a schema-qualified tableName is only supported on Postgres",
            ));
        }
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut connect = SqliteConnectOptions::from_str(url)
            .map_err(|_| Error::arg("the database URL is not a valid sqlite: URL"))?
            .create_if_missing(true)
            .busy_timeout(options.statement_timeout);
        if !memory {
            connect = connect.journal_mode(SqliteJournalMode::Wal);
            // SQLite's own error for a missing directory is "unable to open database
            // file", which does not say which file: say it, and why.
            let path = connect.get_filename();
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            if let Some(dir) = dir.filter(|d| !d.is_dir()) {
                return Err(Error::Unavailable(
                    format!(
                        "cannot open the SQLite database {}: the directory {} does not exist",
                        path.display(),
                        dir.display()
                    )
                    .into(),
                ));
            }
        }
        let max = if memory {
            1
        } else {
            options.pool_size.unwrap_or(4)
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .acquire_timeout(options.acquire_timeout)
            .idle_timeout(if memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if memory {
                None
            } else {
                Some(Duration::from_secs(1800))
            })
            .connect_with(connect)
            .await?;
        Ok(Self {
            connections: usize::try_from(max).unwrap_or(1),
            sql: Sql::new(&names),
            base: Base {
                pool,
                queries: queries(names),
            },
        })
    }

    /// The pool's size.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// Reads the rows `lookups` and `ids` name, with their ancestors, on `conn`:
    /// one statement per kind of name (hash, subject, id) for the whole batch, each
    /// family row once. A statement is a round trip to the connection's worker
    /// thread, which costs more than the lookup itself.
    async fn family<'a>(
        &self,
        conn: &mut sqlx::SqliteConnection,
        lookups: impl Iterator<Item = &'a Lookup>,
        ids: &[i64],
    ) -> Result<Vec<KeyRow>> {
        let (hashes, subjects) = split_lookups(lookups);
        let mut rows = Vec::with_capacity(hashes.len() + subjects.len() + ids.len());
        for (sql, names) in [
            (&self.sql.by_hashes, json_of(&hashes)),
            (&self.sql.by_subjects, json_of(&subjects)),
            (&self.sql.by_ids, json_of(ids)),
        ] {
            if let Some(names) = names {
                let found = sqlx::query(sql).bind(names).fetch_all(&mut *conn).await?;
                decode_into(&mut rows, &found)?;
            }
        }
        Ok(rows)
    }
}

/// `values` as a JSON array for `json_each`, or `None` when there are none.
fn json_of<T: serde::Serialize>(values: &[T]) -> Option<String> {
    (!values.is_empty()).then(|| json(values))
}

impl Backend for SqliteStore {
    type Db = Sqlite;

    fn base(&self) -> &Base<Sqlite> {
        &self.base
    }

    /// One statement per kind of lookup, on one connection.
    async fn fetch(&self, lookups: &[Lookup]) -> Result<Vec<KeyRow>> {
        let mut conn = self.base.pool.acquire().await?;
        self.family(&mut conn, lookups.iter(), &[]).await
    }

    /// `BEGIN IMMEDIATE`: the database's write lock, up front.
    async fn begin(&self) -> Result<Tx<'_, SqliteStore>> {
        let tx = self.base.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Tx { tx, store: self })
    }

    /// A read transaction on a pooled connection (a WAL reader: writers go on).
    /// SQLite has no statement timeout: its timeout is the wait for a lock.
    async fn begin_export(&self) -> Result<Tx<'_, SqliteStore>> {
        let tx = self.base.pool.begin().await?;
        Ok(Tx { tx, store: self })
    }

    /// The database's write lock is all a write of an account needs: writers are
    /// serialized, so a key inserted before or after a ceiling is set sees it.
    /// SQLite has no notifications: other processes' cached answers expire by
    /// their ttl.
    async fn begin_account(
        &self,
        _account_id: &str,
        _lock: AccountLock,
    ) -> Result<Tx<'_, SqliteStore>> {
        self.begin().await
    }

    async fn apply_schema(&self, schema: &[String]) -> Result<()> {
        let mut tx = self.base.pool.begin_with("BEGIN IMMEDIATE").await?;
        for stmt in schema {
            // The executor's boxed `execute`, not `RawSql::execute`: see the
            // Postgres store's `apply_schema`.
            match tx.execute(sqlx::raw_sql(stmt)).await {
                // SQLite has no ADD COLUMN IF NOT EXISTS: an existing column is fine.
                Err(sqlx::Error::Database(e)) if e.message().contains("duplicate column name") => {}
                other => {
                    other?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// SQLite's SQL for the steps of a charge (`charge.rs`), under `BEGIN IMMEDIATE`:
/// the write lock is the database's, so "lock" is a plain read of each family.
impl ChargeSql for Tx<'_, SqliteStore> {
    async fn lock_holds(&mut self, ids: &[i64]) -> Result<Vec<HoldRow>> {
        let mut holds: Vec<HoldRow> = Vec::new();
        for &id in ids {
            if holds.iter().any(|h| h.id == id) {
                continue;
            }
            let found = sqlx::query(&self.store.sql.lock_hold)
                .bind(id)
                .fetch_optional(&mut *self.tx)
                .await?;
            if let Some(r) = found {
                holds.push(hold(&r)?);
            }
        }
        Ok(holds)
    }

    /// One statement per kind of name: the transaction already holds the
    /// database's write lock (`BEGIN IMMEDIATE`).
    async fn lock(&mut self, lookups: &[&Lookup], ids: &[i64]) -> Result<Vec<KeyRow>> {
        self.store
            .family(&mut self.tx, lookups.iter().copied(), ids)
            .await
    }

    /// SQLite has no notifications: `exhausted` reaches only this process's cache
    /// (through the caller), others see it when their entries expire.
    async fn write(&mut self, plan: &Plan, now: DateTime<Utc>) -> Result<Vec<i64>> {
        for u in plan.updates.iter().filter(|u| u.is_ceiling()) {
            sqlx::query(&self.store.sql.update_ceiling)
                .bind(u.id)
                .bind(u.used_micros)
                .bind(u.reset_at.map(Stamp))
                .bind(u.anchor_at.map(Stamp))
                .bind(u.holds_until_us)
                .execute(&mut *self.tx)
                .await?;
        }
        for u in plan.updates.iter().filter(|u| !u.is_ceiling()) {
            sqlx::query(&self.store.sql.update)
                .bind(u.id)
                .bind(u.budget_micros)
                .bind(u.budget_cents)
                .bind(u.used_micros)
                .bind(u.used_cents)
                .bind(u.reset_at.map(Stamp))
                .bind(u.anchor_at.map(Stamp))
                .bind(u.last_used_at.map(Stamp))
                .bind(u.holds_until_us)
                .bind(u.rate_limits.as_deref())
                .execute(&mut *self.tx)
                .await?;
        }
        for l in &plan.ledger {
            sqlx::query(&self.store.sql.ledger_insert)
                .bind(l.key_id)
                .bind(&l.account_id)
                .bind(l.amount_micros)
                .bind(Stamp(l.created_at))
                .bind(&l.idempotency_key)
                .bind(l.used_after_micros)
                .bind(l.remaining_after_micros)
                .bind(l.hold_id)
                .execute(&mut *self.tx)
                .await?;
        }
        let mut ids = Vec::with_capacity(plan.new_holds.len());
        for h in &plan.new_holds {
            let id: i64 = sqlx::query_scalar(&self.store.sql.insert_hold)
                .bind(h.key_id)
                .bind(&h.account_id)
                .bind(h.amount_micros)
                .bind(Stamp(h.created_at))
                .bind(Stamp(h.expires_at))
                .bind(&h.idempotency_key)
                .bind(h.remaining_micros)
                .fetch_one(&mut *self.tx)
                .await?;
            for (key_id, share) in &h.shares {
                sqlx::query(&self.store.sql.insert_share)
                    .bind(id)
                    .bind(key_id)
                    .bind(share.amount)
                    .bind(share.until_us)
                    .execute(&mut *self.tx)
                    .await?;
            }
            ids.push(id);
        }
        for c in &plan.closed_holds {
            sqlx::query(&self.store.sql.close_hold)
                .bind(c.id)
                .bind(c.state.as_str())
                .bind(c.settled_micros)
                .bind(Stamp(now))
                .bind(c.used_after_micros)
                .bind(c.remaining_after_micros)
                .execute(&mut *self.tx)
                .await?;
        }
        if !plan.closed_holds.is_empty() || !plan.stale_shares.is_empty() {
            let closed: Vec<i64> = plan.closed_holds.iter().map(|c| c.id).collect();
            sqlx::query(&self.store.sql.delete_shares)
                .bind(serde_json::to_string(&closed).unwrap_or_default())
                .bind(serde_json::to_string(&plan.stale_shares).unwrap_or_default())
                .bind(now.timestamp_micros())
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(ids)
    }
}

/// Decodes key rows read with [`COLUMNS`] into `rows`, each key once.
fn decode_into(rows: &mut Vec<KeyRow>, found: &[SqliteRow]) -> Result<(), sqlx::Error> {
    for r in found {
        push_new(rows, key_row(r)?);
    }
    Ok(())
}
