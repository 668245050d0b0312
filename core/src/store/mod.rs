//! Storage: one module per backend, one `Store` that dispatches to the one in use.
//!
//! - `charge.rs`: how a charge batch is decided and written, once for both stores
//!   (lock, prior idempotent charges, plan, write, commit), over each store's SQL.
//! - `postgres.rs`: the production store. Charges lock the touched rows
//!   (`SELECT … FOR UPDATE`, in id order so concurrent batches cannot deadlock) and
//!   write back with one `UPDATE … FROM UNNEST` and one `INSERT … SELECT FROM
//!   UNNEST`, all in one transaction.
//! - `sqlite.rs`: the embedded store, the same steps under `BEGIN IMMEDIATE`.
//!
//! Every method is batch-shaped where the hot path is (`fetch`, `charge`): a caller
//! that groups concurrent requests passes them in arrival order and gets one outcome
//! each, identical to running them one at a time. Every statement receives "now"
//! from the core's clock; none reads the database's clock. Every statement on the
//! hot path touches the rows of the keys it names (and their ledger rows) only.

use chrono::{DateTime, Utc};

use crate::engine::{hinted, missing_ceilings, KeyRow, KeyUpdate, Lookup};
use crate::error::Result;
use crate::group::Limits;
use crate::ident::TableNames;
use crate::model::{LedgerEntry, LedgerRecord, SpendBy, SpendOf, Spender, UsageRange};
use crate::spend::SpendReq;
use crate::store::codec::fill_shares;

pub(crate) mod charge;
pub(crate) mod codec;
pub(crate) mod postgres;
pub(crate) mod sqlite;

/// A row to insert for `create` / `ensure_subject`.
#[derive(Clone, Debug)]
pub(crate) struct NewKey {
    pub account_id: String,
    pub user_id: Option<String>,
    pub key_hash: String,
    pub key_prefix: String,
    pub name: String,
    pub scopes: Option<Vec<String>>,
    pub budget_micros: Option<i64>,
    pub budget_cents: Option<i32>,
    pub budget_period: Option<String>,
    pub budget_reset_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub delegated_by: Option<String>,
    pub external_subject: Option<String>,
    pub metadata: Option<String>,
    pub created_at: DateTime<Utc>,
    pub parent_id: Option<i64>,
}

/// An account ceiling to set (`set_account_budget`).
#[derive(Clone, Debug)]
pub(crate) struct NewCeiling {
    pub budget_micros: i64,
    pub period: Option<String>,
    /// The first reset of a new (or re-periodized) ceiling's period, from `now`.
    pub reset_at: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
}

/// The store of one `KeyLeash`.
pub(crate) enum Store {
    Postgres(postgres::PgStore),
    Sqlite(sqlite::SqliteStore),
}

/// How calls are grouped on one store (`group.rs`).
pub(crate) struct GroupLimits {
    pub validates: Limits,
    pub charges: Limits,
}

/// The most calls waiting for one store, per kind; one more is `unavailable`.
const MAX_QUEUE: usize = 10_000;

impl Store {
    /// The grouping of this store. Charges: one batch in flight (one transaction),
    /// on both stores. That is what keeps arrival order: two charge batches in
    /// flight could take a shared row's lock in either order (a property test
    /// caught exactly that with four), and one transaction of many charges is cheap:
    /// calls arriving meanwhile gather into the next batch. On SQLite it also means
    /// one writer per database file in this process, so charges never queue on
    /// SQLite's lock through the busy timeout. Validates: up to 4 batches in flight
    /// on Postgres (more would split the same callers into smaller batches; on a
    /// small machine the cost per statement, not the database, is the limit) and
    /// the remaining connections on SQLite.
    pub fn group_limits(&self, pool_size: Option<u32>) -> GroupLimits {
        let limits = |max_batch, in_flight| Limits {
            max_batch,
            max_queue: MAX_QUEUE,
            in_flight,
        };
        match self {
            Store::Postgres(_) => {
                let pool = usize::try_from(pool_size.unwrap_or(10)).unwrap_or(1);
                let in_flight = (pool / 2).clamp(1, 4);
                GroupLimits {
                    validates: limits(256, in_flight),
                    charges: limits(128, 1),
                }
            }
            Store::Sqlite(s) => GroupLimits {
                validates: limits(256, s.connections().saturating_sub(1).max(1)),
                charges: limits(128, 1),
            },
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Postgres($s) => $call,
            Store::Sqlite($s) => $call,
        }
    };
}

/// What every backend provides, dispatched to the store in use. Errors are
/// [`crate::Error::Unavailable`] (or `NotMigrated`): the arguments were checked
/// before they got here.
impl Store {
    /// Creates or adopts the schema; idempotent and safe to run concurrently.
    pub async fn migrate(&self) -> Result<()> {
        dispatch!(self, s => s.migrate().await)
    }
    /// Inserts a minted key and returns its id.
    pub async fn insert_key(&self, key: &NewKey) -> Result<i64> {
        dispatch!(self, s => s.insert_key(key).await)
    }
    /// Inserts a subject row unless one exists for its subject.
    pub async fn insert_subject(&self, key: &NewKey) -> Result<()> {
        dispatch!(self, s => s.insert_subject(key).await)
    }
    /// Reads the key `id` and its ancestors (no lock), with the hold shares that may
    /// count at `now`; empty when there is no such key.
    pub async fn get(&self, id: i64, now: DateTime<Utc>) -> Result<Vec<KeyRow>> {
        let rows = dispatch!(self, s => s.get(id).await)?;
        self.with_shares(rows, now).await
    }
    /// Reads the rows named by `lookups` and their ancestors (no lock), with the
    /// hold shares that may count at `now`, in any order.
    pub async fn fetch(&self, lookups: &[Lookup], now: DateTime<Utc>) -> Result<Vec<KeyRow>> {
        let rows = dispatch!(self, s => s.fetch(lookups).await)?;
        self.with_shares(rows, now).await
    }
    /// `rows` with their hold shares, read in a second statement only for rows whose
    /// `holds_until_us` is after `now` (a subquery in every read cost a fifth of
    /// the validates per second, even behind a `CASE`).
    ///
    /// Before the shares, the account ceilings the rows' hints name, in one more
    /// statement only when there are any (a join in every read cost validates a
    /// sixth of their speed).
    async fn with_shares(&self, mut rows: Vec<KeyRow>, now: DateTime<Utc>) -> Result<Vec<KeyRow>> {
        let ceilings = missing_ceilings(&rows);
        if !ceilings.is_empty() {
            rows.extend(dispatch!(self, s => s.ceilings(&ceilings).await)?);
        }
        let ids = hinted(&rows, now);
        if !ids.is_empty() {
            let shares = dispatch!(self, s => s.shares(&ids).await)?;
            fill_shares(&mut rows, &shares)?;
        }
        Ok(rows)
    }
    /// Persists a rollover computed from a row whose reset time was `seen_reset`;
    /// false if the row changed meanwhile (someone else rolled or charged it).
    pub async fn persist_roll(
        &self,
        seen_reset: Option<DateTime<Utc>>,
        update: &KeyUpdate,
    ) -> Result<bool> {
        dispatch!(self, s => s.persist_roll(seen_reset, update).await)
    }
    /// Applies a batch of spends (charges, reserves, settles, releases)
    /// atomically, in order.
    pub async fn charge(&self, reqs: &[SpendReq], now: DateTime<Utc>) -> Result<charge::Charged> {
        dispatch!(self, s => s.charge(reqs, now).await)
    }
    /// Sets (`Some`) or removes (`None`) the ceiling of `account_id`. A new
    /// ceiling starts with nothing used; changing only the amount keeps what was
    /// used; changing the period starts it over.
    pub async fn set_ceiling(&self, account_id: &str, ceiling: Option<&NewCeiling>) -> Result<()> {
        dispatch!(self, s => s.set_ceiling(account_id, ceiling).await)
    }
    /// Sets `revoked_at` on a live key (of `account_id`, when given).
    pub async fn revoke(
        &self,
        key_id: i64,
        account_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        dispatch!(self, s => s.revoke(key_id, account_id, now).await)
    }
    /// The rows of an account, by id, with the hold shares that may count at `now`.
    pub async fn list(&self, account_id: &str, now: DateTime<Utc>) -> Result<Vec<KeyRow>> {
        let rows = dispatch!(self, s => s.list(account_id).await)?;
        self.with_shares(rows, now).await
    }
    /// A key's ledger rows in a window, oldest first.
    pub async fn usage(&self, key_id: i64, range: UsageRange) -> Result<Vec<LedgerEntry>> {
        dispatch!(self, s => s.usage(key_id, range).await)
    }
    /// The `limit` biggest spenders of `range`, by sum of ledger amounts, biggest
    /// first (ties by key id or account). One aggregate over the ledger rows of
    /// the window: off the hot path, for operators.
    pub async fn top(&self, by: SpendBy, range: UsageRange, limit: i64) -> Result<Vec<Spender>> {
        dispatch!(self, s => s.top(by, range, limit).await)
    }
    /// Up to `limit` account ids, in order, that start with `prefix` or own a key
    /// whose display prefix does (all accounts for an empty `prefix`).
    pub async fn accounts(&self, prefix: &str, limit: i64) -> Result<Vec<String>> {
        dispatch!(self, s => s.accounts(prefix, limit).await)
    }
    /// The sums of a key's or an account's ledger amounts per UTC day
    /// (`YYYY-MM-DD`) from `from` on, by day, days without rows left out.
    pub async fn spend_days(
        &self,
        of: SpendOf<'_>,
        from: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>> {
        dispatch!(self, s => s.spend_days(of, from).await)
    }
    /// How many ledger rows `range` holds.
    pub async fn count(&self, range: UsageRange) -> Result<i64> {
        dispatch!(self, s => s.count(range).await)
    }
    /// Sends the ledger rows of `range`, in id order, to `out` as they arrive from
    /// one streamed statement (without the statement timeout: a slow reader must
    /// not cut an export short). Stops early, without error, when `out` is closed.
    /// `id_prefix` starts every record's id.
    pub async fn export(&self, range: UsageRange, id_prefix: &str, out: &ExportSink) -> Result<()> {
        dispatch!(self, s => s.export(range, id_prefix, out).await)
    }
    /// The table names of this store.
    pub fn names(&self) -> &TableNames {
        dispatch!(self, s => s.names())
    }
    /// One GCRA rate-limit check of `bucket`, in one atomic statement: `None` when
    /// the event is allowed (and counted), else how many milliseconds until it
    /// would be. `interval_ms` is the window divided by the limit; at most
    /// `window_ms` worth of events may be outstanding.
    pub async fn rate_check(
        &self,
        bucket: &str,
        now_ms: i64,
        interval_ms: i64,
        window_ms: i64,
    ) -> Result<Option<i64>> {
        let (tat, allowed) =
            dispatch!(self, s => s.rate_upsert(bucket, now_ms, interval_ms, window_ms).await)?;
        Ok((!allowed).then(|| (tat + interval_ms - window_ms - now_ms).max(1)))
    }
    /// Closes the pool.
    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }
}

/// Where an export sends its records (a bounded channel: constant memory, and the
/// statement waits while the reader is behind).
pub(crate) type ExportSink = tokio::sync::mpsc::Sender<Result<LedgerRecord>>;

/// The GCRA upsert, rendered per backend: a new bucket starts allowed; an existing
/// one moves its theoretical arrival time (`tat`) on by one interval when the
/// event fits the window, and is left as it was (`allowed` false) when it does not.
/// `SET` expressions read the row as it was before the statement.
/// Parameters: 1 bucket, 2 now (ms), 3 interval (ms), 4 window (ms).
pub(crate) fn rate_sql(rate: &str, old_tat: &str, p: &str) -> String {
    let next = format!("(CASE WHEN {old_tat} > {p}2 THEN {old_tat} ELSE {p}2 END + {p}3)");
    let fits = format!("({next} - {p}2 <= {p}4)");
    format!(
        "INSERT INTO {rate} (bucket, tat, allowed) VALUES ({p}1, {p}2 + {p}3, TRUE) \
         ON CONFLICT (bucket) DO UPDATE SET allowed = {fits}, \
         tat = CASE WHEN {fits} THEN {next} ELSE {old_tat} END RETURNING tat, allowed"
    )
}

/// Splits a rendered migration into statements (they end with `;` at a line end;
/// `--` comment lines are dropped). Migrations contain no `;` inside literals.
pub(crate) fn statements(sql: &str) -> Vec<String> {
    let body: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect();
    body.split(";\n")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}
