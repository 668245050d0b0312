//! Storage: one module per backend, and one `Store` that runs the one in use.
//!
//! Every operation of [`Store`] is written once, here, over the small surface
//! each backend provides ([`Backend`]): a read (or a one-statement write) is
//! "this statement, these values, decode each row with that"; a write is its
//! statements in a transaction the backend opens with the locks it needs
//! ([`Tx`]). What a backend writes itself is only what differs: its dialect of
//! the shared statements ([`Queries`]), its reads of a validate, its
//! transactions and locks, its migration, and the steps of a charge that differ
//! (`charge.rs`).
//!
//! - `row.rs`: the column reader each driver's row implements, and the decoder
//!   of each kind of row, once for both.
//! - `arg.rs`: the values statements are run with ([`arg::Arg`]), how each
//!   driver binds them, and how it runs a statement ([`arg::Driver`]).
//! - `codec.rs`: the text formats (hold shares, SQLite's timestamps).
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
use futures::stream::BoxStream;
use futures::{Stream, TryStreamExt};
use sqlx::{Database, Pool};
use tokio::sync::mpsc::Sender;

use crate::engine::{hinted, missing_ceilings, KeyRow, KeyUpdate, Lookup};
use crate::error::Result;
use crate::group::{Limits, Locked};
use crate::ident::TableNames;
use crate::model::{LedgerEntry, LedgerRecord, SpendBy, SpendOf, Spender, UsageRange};
use crate::spend::SpendReq;
use crate::store::arg::{ceiling_args, key_args, Arg, Driver};
use crate::store::codec::fill_shares;
use crate::store::row::{ceiling, decode_all, entry, first, key_row, pair, record, spender};

pub(crate) mod arg;
pub(crate) mod charge;
pub(crate) mod codec;
pub(crate) mod postgres;
pub(crate) mod row;
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
    /// Its rate limits, idle ([`crate::ratelimit::encode`]); `None` for none.
    pub rate_limits: Option<String>,
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
    /// The limits of each charge lane (each runs one batch at a time).
    pub charges: Limits,
    /// How many charge lanes (`lanes.rs`).
    pub lanes: usize,
}

/// The most calls waiting for one store, per kind; one more is `unavailable`.
const MAX_QUEUE: usize = 10_000;

/// How many spend batches of one lane are in flight on Postgres unless
/// `Options::pipeline_depth` says otherwise: one. Two (the next batch started
/// once the one before holds its row locks, `group.rs`) were measured slower on
/// both `fsync` settings: the second batch's commit arrives while the first's
/// WAL flush runs and waits for a flush of its own, so the flushes per second do
/// not rise, and the callers are split into smaller batches (`store::group_limits`).
const PIPELINE_DEPTH: usize = 1;

impl Store {
    /// The grouping of this store. Charges: one runner per lane (`lanes.rs`),
    /// each batch one transaction of many charges: calls arriving meanwhile
    /// gather into the lane's next batch. One runner per lane is what keeps an
    /// account's arrival order. On Postgres one lane per 10 connections of the pool
    /// (1 with the default pool of 10, at most 4), one batch in flight each
    /// ([`PIPELINE_DEPTH`]; on a durable server, 32 callers, 1,000 keys, Rust,
    /// alternating: 7,496 / 8,880 / 8,730 / 9,166 charges a second with one batch
    /// against 7,191 / 7,398 / 6,386 / 6,825 with two, at the same ~550 commits
    /// and WAL flushes a second; 64 callers 13,583 / 15,450 against 10,662 /
    /// 13,194; with `fsync` off two cost a fifth). More lanes split
    /// the same callers into smaller batches, which costs more per charge on a
    /// small machine: on 2 cores, 32 callers, 2 lanes instead of 1 halved the
    /// charges per second with `fsync` off (CPU-bound) and did not raise them with
    /// it on; a lane's use is that a spend waiting on a row lock another process
    /// holds holds up only its own lane, which a big pool can afford.
    /// On SQLite one lane, one batch at a time: one writer per database file in
    /// this process, so charges never queue on SQLite's lock through the busy
    /// timeout. Validates: up to 4 batches in flight on Postgres (more would
    /// split the same callers into smaller batches; on a small machine the cost
    /// per statement, not the database, is the limit) and the remaining
    /// connections on SQLite. Spends and validates together use at most the pool.
    pub fn group_limits(&self, pool_size: Option<u32>, depth: Option<usize>) -> GroupLimits {
        let limits = |max_batch, in_flight, depth| Limits {
            max_batch,
            max_queue: MAX_QUEUE,
            in_flight,
            depth,
        };
        match self {
            Store::Postgres(_) => {
                let pool = usize::try_from(pool_size.unwrap_or(10)).unwrap_or(1);
                let in_flight = (pool / 2).clamp(1, 4);
                let depth = depth.unwrap_or(PIPELINE_DEPTH);
                GroupLimits {
                    validates: limits(256, in_flight, 1),
                    charges: limits(128, 1, depth),
                    lanes: (pool / 10).clamp(1, 4),
                }
            }
            Store::Sqlite(s) => GroupLimits {
                validates: limits(256, s.connections().saturating_sub(1).max(1), 1),
                charges: limits(128, 1, 1),
                lanes: 1,
            },
        }
    }
}

/// The hashes and the subjects among `lookups`, to bind as two lists (both
/// stores read a batch's keys with one statement per kind of name).
pub(crate) fn split_lookups<'a>(
    lookups: impl Iterator<Item = &'a Lookup>,
) -> (Vec<&'a str>, Vec<&'a str>) {
    let mut hashes = Vec::new();
    let mut subjects = Vec::new();
    for l in lookups {
        match l {
            Lookup::Hash(h) => hashes.push(h.as_str()),
            Lookup::Subject(s) => subjects.push(s.as_str()),
        }
    }
    (hashes, subjects)
}

/// Runs `$call` with `$s` bound to the store in use: one arm per backend, so
/// `$call` is checked (and any generic function it names instantiated) once for
/// each store's types, with static dispatch.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Postgres($s) => $call,
            Store::Sqlite($s) => $call,
        }
    };
}

/// The migration files of the store whose directory under `core/migrations/` is
/// `$dir`, in order: both stores have the same files, each in its dialect.
macro_rules! migrations {
    ($dir:literal) => {
        &[
            include_str!(concat!("../../migrations/", $dir, "/0001_keys.sql")),
            include_str!(concat!("../../migrations/", $dir, "/0002_ledger.sql")),
            include_str!(concat!("../../migrations/", $dir, "/0003_rate.sql")),
            include_str!(concat!("../../migrations/", $dir, "/0004_holds.sql")),
            include_str!(concat!("../../migrations/", $dir, "/0005_accounts.sql")),
            include_str!(concat!("../../migrations/", $dir, "/0006_rate_limits.sql")),
        ]
    };
}
pub(crate) use migrations;

/// What each store provides its own way: its driver, its pool and statements,
/// how it reads the keys of a validate, and the transactions it writes (or
/// exports) in, with the locks each needs. [`Store`] runs every operation over
/// these, written once for both.
pub(crate) trait Backend: Sized {
    /// The store's driver.
    type Db: Driver;

    /// The store's pool and shared statements.
    fn base(&self) -> &Base<Self::Db>;

    /// The store's pool.
    fn pool(&self) -> &Pool<Self::Db> {
        &self.base().pool
    }

    /// The table names and the statements the shared code runs, in the store's
    /// dialect.
    fn queries(&self) -> &Queries {
        &self.base().queries
    }

    /// Reads the rows named by `lookups` and their ancestors (no lock), in any
    /// order, without hold shares or ceilings.
    async fn fetch(&self, lookups: &[Lookup]) -> Result<Vec<KeyRow>>;

    /// Opens the transaction of a spend batch (`charge.rs`).
    async fn begin(&self) -> Result<Tx<'_, Self>>;

    /// Opens the transaction an export streams in, without the statement timeout
    /// (a slow reader must not cut an export short).
    async fn begin_export(&self) -> Result<Tx<'_, Self>>;

    /// Opens a transaction that writes a key or the ceiling of `account_id`,
    /// holding what `lock` asks for.
    async fn begin_account(&self, account_id: &str, lock: AccountLock) -> Result<Tx<'_, Self>>;

    /// Runs `schema` ([`Queries::schema`]) in one transaction, as the store must
    /// for the migration to be idempotent and safe to run concurrently.
    async fn apply_schema(&self, schema: &[String]) -> Result<()>;

    /// The rows `sql` returns for `args`, outside any transaction, each decoded
    /// by `decode`.
    async fn rows<T>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        decode: impl Fn(&Row<Self>) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>> {
        let mut conn = self.pool().acquire().await?;
        let rows = Self::Db::all(&mut conn, sql, args).await?;
        Ok(decode_all(&rows, decode)?)
    }
}

/// A result row of the store `S`.
pub(crate) type Row<S> = <<S as Backend>::Db as Database>::Row;

/// An open transaction of the store `S`; dropped without [`Tx::commit`], it rolls
/// back. Each store implements the steps of a charge that differ on its own
/// ([`charge::ChargeSql`]).
pub(crate) struct Tx<'a, S: Backend> {
    tx: sqlx::Transaction<'static, S::Db>,
    store: &'a S,
}

impl<S: Backend> Tx<'_, S> {
    /// Every row `sql` returns for `args`, in this transaction.
    pub async fn all(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row<S>>> {
        S::Db::all(&mut self.tx, sql, args).await
    }

    /// The rows `sql` returns for `args`, in this transaction, as they arrive.
    pub fn stream<'e>(
        &'e mut self,
        sql: &'e str,
        args: &'e [Arg<'e>],
    ) -> BoxStream<'e, Result<Row<S>, sqlx::Error>> {
        S::Db::stream(&mut self.tx, sql, args)
    }

    /// Commits the transaction, which releases its locks.
    pub async fn commit(self) -> Result<()> {
        Ok(self.tx.commit().await?)
    }
}

/// What each store holds alike: its pool and the statements the shared code runs.
pub(crate) struct Base<DB: Database> {
    pub pool: Pool<DB>,
    pub queries: Queries,
}

/// A schema: the migration `files`, rendered with the table names `names` and
/// split into statements, in order.
pub(crate) fn schema(files: &[&str], names: &TableNames) -> Vec<String> {
    files
        .iter()
        .flat_map(|file| statements(&names.render(file)))
        .collect()
}

/// What a write of an account's keys or ceiling holds until it commits, where a
/// store takes locks for it (Postgres; SQLite's one writer at a time holds all of
/// it). Inserting a key and setting its account's ceiling exclude each other, so
/// a key's ceiling hint is never stale (see docs/storage.md).
pub(crate) enum AccountLock {
    /// Inserting a key of the account: no ceiling of the account is set
    /// meanwhile.
    Shared,
    /// Setting the account's ceiling: no key of the account is inserted
    /// meanwhile, and its keys are locked as a charge locks them (in id order,
    /// before any ceiling), so the two never wait for each other in a cycle.
    Exclusive,
}

/// What every backend provides, written once over [`Backend`]. Errors are
/// [`crate::Error::Unavailable`] (or `NotMigrated`): the arguments were checked
/// before they got here.
impl Store {
    /// Creates or adopts the schema; idempotent and safe to run concurrently.
    pub async fn migrate(&self) -> Result<()> {
        dispatch!(self, s => s.apply_schema(&s.queries().schema).await)
    }
    /// Inserts a minted key and returns its id.
    pub async fn insert_key(&self, key: &NewKey) -> Result<i64> {
        only(self.insert(key, |q| &q.insert).await?)
    }
    /// Inserts a subject row unless one exists for its subject.
    pub async fn insert_subject(&self, key: &NewKey) -> Result<()> {
        self.insert(key, |q| &q.insert_subject).await?;
        Ok(())
    }
    /// Inserts `key` with the statement `sql` picks, which reads its account's
    /// ceiling id into the hint: in a transaction holding the account's lock
    /// shared, so that it sees every ceiling set before it and a ceiling set after
    /// it sees the key. The ids the statement returns.
    async fn insert(&self, key: &NewKey, sql: impl Fn(&Queries) -> &String) -> Result<Vec<i64>> {
        let args = key_args(key);
        dispatch!(self, s => {
            let mut tx = s.begin_account(&key.account_id, AccountLock::Shared).await?;
            let ids = tx.all(sql(s.queries()), &args).await?;
            tx.commit().await?;
            Ok(decode_all(&ids, first)?)
        })
    }
    /// Reads the key `id` and its ancestors (no lock), with the hold shares that may
    /// count at `now`; empty when there is no such key.
    pub async fn get(&self, id: i64, now: DateTime<Utc>) -> Result<Vec<KeyRow>> {
        let args = [Arg::Int(id)];
        let rows = dispatch!(self, s => s.rows(&s.queries().by_id, &args, key_row).await)?;
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
            let args = [Arg::Ids(&ceilings)];
            rows.extend(dispatch!(self, s => s.rows(&s.queries().ceilings, &args, ceiling).await)?);
        }
        let ids = hinted(&rows, now);
        if !ids.is_empty() {
            let args = [Arg::Ids(&ids)];
            let shares = dispatch!(self, s => s.rows(&s.queries().shares, &args, pair).await)?;
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
        let u = update;
        let args = [
            Arg::Int(u.id),
            Arg::Time(u.reset_at),
            Arg::Time(u.anchor_at),
            Arg::Time(seen_reset),
        ];
        let rolled = dispatch!(self, s => {
            let q = s.queries();
            let sql = if u.is_ceiling() { &q.roll_ceiling } else { &q.roll };
            s.rows(sql, &args, first::<_, i64>).await
        })?;
        Ok(!rolled.is_empty())
    }
    /// Applies a batch of spends (charges, reserves, settles, releases)
    /// atomically, in order, through the one pipeline (`charge.rs`).
    pub async fn charge(
        &self,
        reqs: &[SpendReq],
        now: DateTime<Utc>,
        locked: Locked,
    ) -> Result<charge::Charged> {
        dispatch!(self, s => charge::run(s.begin().await?, reqs, now, locked).await)
    }
    /// Sets (`Some`) or removes (`None`) the ceiling of `account_id` and points
    /// the hints of the account's keys at it, in one transaction holding the
    /// account's lock exclusive: whatever fails, nothing of it is written. On
    /// Postgres the hints' statement also flushes every process's validation
    /// cache (their answers did not know the new ceiling) when it commits. A new
    /// ceiling starts with nothing used; changing only the amount keeps what was
    /// used; changing the period starts it over.
    pub async fn set_ceiling(&self, account_id: &str, ceiling: Option<&NewCeiling>) -> Result<()> {
        let account = [Arg::Text(account_id)];
        dispatch!(self, s => {
            let q = s.queries();
            let mut tx = s.begin_account(account_id, AccountLock::Exclusive).await?;
            match ceiling {
                Some(c) => tx.all(&q.set_ceiling, &ceiling_args(account_id, c)).await?,
                None => tx.all(&q.drop_ceiling, &account).await?,
            };
            tx.all(&q.hint_account, &account).await?;
            tx.commit().await
        })
    }
    /// Sets `revoked_at` on a live key (of `account_id`, when given); on Postgres,
    /// in the same statement, tells other processes' validation caches.
    pub async fn revoke(
        &self,
        key_id: i64,
        account_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut args = vec![Arg::Int(key_id), Arg::Time(Some(now))];
        args.extend(account_id.map(Arg::Text));
        let revoked = dispatch!(self, s => {
            let q = s.queries();
            let sql = if account_id.is_some() { &q.revoke_in_account } else { &q.revoke };
            s.rows(sql, &args, first::<_, i64>).await
        })?;
        Ok(!revoked.is_empty())
    }
    /// The rows of an account, by id, with the hold shares that may count at `now`.
    pub async fn list(&self, account_id: &str, now: DateTime<Utc>) -> Result<Vec<KeyRow>> {
        let args = [Arg::Text(account_id)];
        let rows = dispatch!(self, s => s.rows(&s.queries().list, &args, key_row).await)?;
        self.with_shares(rows, now).await
    }
    /// A key's ledger rows in a window, oldest first.
    pub async fn usage(&self, key_id: i64, range: UsageRange) -> Result<Vec<LedgerEntry>> {
        let args = [Arg::Int(key_id), Arg::Time(range.from), Arg::Time(range.to)];
        dispatch!(self, s => s.rows(&s.queries().usage, &args, entry).await)
    }
    /// The `limit` biggest spenders of `range`, by sum of ledger amounts, biggest
    /// first (ties by key id or account). One aggregate over the ledger rows of
    /// the window: off the hot path, for operators.
    pub async fn top(&self, by: SpendBy, range: UsageRange, limit: i64) -> Result<Vec<Spender>> {
        let args = [Arg::Time(range.from), Arg::Time(range.to), Arg::Int(limit)];
        dispatch!(self, s => {
            let q = s.queries();
            let sql = match by {
                SpendBy::Key => &q.top_keys,
                SpendBy::Account => &q.top_accounts,
            };
            s.rows(sql, &args, spender).await
        })
    }
    /// Up to `limit` account ids, in order, that start with `prefix` or own a key
    /// whose display prefix does (all accounts for an empty `prefix`).
    pub async fn accounts(&self, prefix: &str, limit: i64) -> Result<Vec<String>> {
        let args = [Arg::Text(prefix), Arg::Int(limit)];
        dispatch!(self, s => s.rows(&s.queries().accounts, &args, first).await)
    }
    /// The sums of a key's or an account's ledger amounts per UTC day
    /// (`YYYY-MM-DD`) from `from` on, by day, days without rows left out.
    pub async fn spend_days(
        &self,
        of: SpendOf<'_>,
        from: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>> {
        let whose = match of {
            SpendOf::Key(id) => Arg::Int(id),
            SpendOf::Account(a) => Arg::Text(a),
        };
        let args = [whose, Arg::Time(Some(from))];
        dispatch!(self, s => {
            let q = s.queries();
            let sql = match of {
                SpendOf::Key(_) => &q.days_of_key,
                SpendOf::Account(_) => &q.days_of_account,
            };
            s.rows(sql, &args, pair).await
        })
    }
    /// How many ledger rows `range` holds.
    pub async fn count(&self, range: UsageRange) -> Result<i64> {
        let args = [Arg::Time(range.from), Arg::Time(range.to)];
        only(dispatch!(self, s => s.rows(&s.queries().count, &args, first).await)?)
    }
    /// Sends the ledger rows of `range`, in id order, to `out` as they arrive from
    /// one streamed statement (without the statement timeout: a slow reader must
    /// not cut an export short). Stops early, without error, when `out` is closed.
    /// `id_prefix` starts every record's id.
    pub async fn export(&self, range: UsageRange, id_prefix: &str, out: &ExportSink) -> Result<()> {
        let args = [Arg::Time(range.from), Arg::Time(range.to)];
        dispatch!(self, s => {
            let mut tx = s.begin_export().await?;
            let rows = tx.stream(&s.queries().export, &args);
            send_all(rows, |r| record(r, id_prefix), out).await
        })
    }
    /// The table names of this store.
    pub fn names(&self) -> &TableNames {
        dispatch!(self, s => &s.queries().names)
    }
    /// Closes the pool.
    pub async fn close(&self) {
        dispatch!(self, s => s.pool().close().await)
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
        let args = [
            Arg::Text(bucket),
            Arg::Int(now_ms),
            Arg::Int(interval_ms),
            Arg::Int(window_ms),
        ];
        let (tat, allowed): (i64, bool) =
            only(dispatch!(self, s => s.rows(&s.queries().rate, &args, pair).await)?)?;
        Ok((!allowed).then(|| (tat + interval_ms - window_ms - now_ms).max(1)))
    }
}

/// The one row of a statement that always returns one.
fn only<T>(rows: Vec<T>) -> Result<T> {
    Ok(rows.into_iter().next().ok_or(sqlx::Error::RowNotFound)?)
}

/// Sends each row of `rows`, decoded by `decode`, to `out`; stops early, without
/// error, when `out` is closed.
async fn send_all<R, T>(
    mut rows: impl Stream<Item = Result<R, sqlx::Error>> + Unpin,
    decode: impl Fn(&R) -> Result<T, sqlx::Error>,
    out: &Sender<Result<T>>,
) -> Result<()> {
    while let Some(r) = rows.try_next().await? {
        if out.send(Ok(decode(&r)?)).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// Where an export sends its records (a bounded channel: constant memory, and the
/// statement waits while the reader is behind).
pub(crate) type ExportSink = Sender<Result<LedgerRecord>>;

/// The table names, and the statements [`Store`]'s shared code runs, each rendered
/// by the backend in its dialect from those names. Numbers are parameters, in the
/// order the shared code binds them; "key columns" and "ceiling columns" are the
/// column lists [`key_row`] and [`ceiling`] decode.
pub(crate) struct Queries {
    pub names: TableNames,
    /// The store's migration files, rendered and split into statements, in order
    /// ([`schema`]).
    pub schema: Vec<String>,
    /// Inserts a key, its ceiling hint read from its account: 1 account, 2 user,
    /// 3 hash, 4 display prefix, 5 name, 6 scopes, 7 cents, 8 micros, 9 period,
    /// 10 reset, 11 created, 12 expires, 13 delegated by, 14 subject, 15 metadata,
    /// 16 parent ([`arg::key_args`]). The id.
    pub insert: String,
    /// [`Queries::insert`] of a subject row, unless one exists for its subject.
    pub insert_subject: String,
    /// Sets an account's ceiling: a new one starts empty, its period anchored
    /// now; a changed amount keeps what was used; a changed period starts over.
    /// 1 account, 2 micros, 3 period, 4 first reset, 5 now
    /// ([`arg::ceiling_args`]).
    pub set_ceiling: String,
    /// Removes an account's ceiling: 1 account.
    pub drop_ceiling: String,
    /// Points every key of an account at its ceiling (or none), written only
    /// where it differs; on Postgres, also the notification that flushes every
    /// process's validation cache, delivered when the transaction commits: 1
    /// account.
    pub hint_account: String,
    /// A key and all its ancestors (at most [`crate::engine::MAX_DEPTH`] deep),
    /// by id: 1 id. Key columns.
    pub by_id: String,
    /// The keys of an account, by id: 1 account. Key columns.
    pub list: String,
    /// Account ceilings: 1 ids. Ceiling columns.
    pub ceilings: String,
    /// [`Queries::ceilings`] locked for a spend batch, after every key, in id
    /// order (on SQLite a plain read: the batch holds the database's write lock).
    pub lock_ceilings: String,
    /// The hold shares of keys: 1 ids. Key id, `amount:until_us,…`.
    pub shares: String,
    /// What keys stored under idempotency keys, charges (ledger rows) and
    /// reserves (holds) in one: 1 key ids, 2 idempotency keys. The columns
    /// [`row::priors`] decodes.
    pub priors: String,
    /// A key's rollover, if its reset time is still the one seen: 1 id, 2 reset,
    /// 3 anchor, 4 reset seen. The id, if rolled.
    pub roll: String,
    /// [`Queries::roll`] of an account ceiling: 1 is the ceiling's row id (negative).
    pub roll_ceiling: String,
    /// Revokes a live key (on Postgres, and tells other processes' caches): 1 id,
    /// 2 now. The id, if revoked.
    pub revoke: String,
    /// [`Queries::revoke`] of a key of an account: 3 account.
    pub revoke_in_account: String,
    /// A key's ledger rows, oldest first: 1 key id, 2 from, 3 to (either NULL:
    /// open). Id, key id, amount, time, idempotency key, hold id.
    pub usage: String,
    /// The biggest spending keys: 1 from, 2 to, 3 limit. Key id, account, name,
    /// prefix, sum, count.
    pub top_keys: String,
    /// [`Queries::top_keys`] by account (key id, name and prefix NULL).
    pub top_accounts: String,
    /// Account ids by prefix: 1 prefix, 2 limit.
    pub accounts: String,
    /// A key's sums per UTC day: 1 key id, 2 from. Day, sum.
    pub days_of_key: String,
    /// [`Queries::days_of_key`] of an account: 1 account.
    pub days_of_account: String,
    /// How many ledger rows: 1 from, 2 to. One count.
    pub count: String,
    /// The ledger rows of a window, by id: 1 from, 2 to. Id, key id, account,
    /// amount, time, idempotency key, hold id.
    pub export: String,
    /// The GCRA upsert ([`rate_sql`]). Tat, allowed.
    pub rate: String,
}

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
