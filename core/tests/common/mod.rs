//! Test harness: every test runs against a real SQLite file and a real Postgres
//! (`DATABASE_URL`, which `make test` provides by starting a private cluster), each
//! in its own freshly migrated table, with a manual clock.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Utc};
use keyleash::{
    Charge, ChargeResult, Clock, CreateOptions, InvalidReason, KeyInfo, KeyLeash, ManualClock,
    Options,
};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{PgPool, SqlitePool};

/// The manual clock's first reading in every test (docs/conformance.md's default).
pub const START: &str = "2026-01-15T12:00:00Z";

/// Which store a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per store, as `<name>::sqlite` and `<name>::postgres`.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name($crate::common::Kind::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name($crate::common::Kind::Postgres).await
            }
        }
    };
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn unique(tag: &str) -> String {
    format!(
        "{tag}_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A database URL for `kind`: a new SQLite file, or `DATABASE_URL`.
pub fn url(kind: Kind) -> String {
    match kind {
        Kind::Sqlite => {
            // The time too: pids wrap around, and a file an earlier run left under
            // the same pid and sequence number would be opened with its tables.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let name = format!("{}_{nanos}.db", unique("keyleash_test"));
            let path = std::env::temp_dir().join(name);
            format!("sqlite://{}", path.display())
        }
        Kind::Postgres => std::env::var("DATABASE_URL").unwrap_or_else(|_| {
            panic!(
                "DATABASE_URL is not set: run `make test`, which starts a private Postgres cluster"
            )
        }),
    }
}

pub fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("test timestamp")
}

/// A migrated keyleash on its own table, plus a raw pool to inspect the database.
pub struct Db {
    pub kind: Kind,
    pub url: String,
    pub table: String,
    pub kl: KeyLeash,
    raw: Raw,
}

/// A pool outside keyleash, to prepare or inspect a database in plain SQL.
pub enum Raw {
    Pg(PgPool),
    Lite(SqlitePool),
}

impl Raw {
    /// Connects to `url` (creating a SQLite file if missing).
    pub async fn connect(kind: Kind, url: &str) -> Raw {
        match kind {
            Kind::Postgres => Raw::Pg(PgPool::connect(url).await.expect("raw pg pool")),
            Kind::Sqlite => {
                let options = url
                    .parse::<SqliteConnectOptions>()
                    .expect("sqlite url")
                    .create_if_missing(true);
                Raw::Lite(
                    SqlitePool::connect_with(options)
                        .await
                        .expect("raw sqlite pool"),
                )
            }
        }
    }

    /// Runs statements.
    pub async fn exec(&self, sql: &str) {
        match self {
            Raw::Pg(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            Raw::Lite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A scalar query returning an optional BIGINT.
    pub async fn scalar(&self, sql: &str) -> Option<i64> {
        match self {
            Raw::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            Raw::Lite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// A scalar query returning an optional TEXT.
    pub async fn text(&self, sql: &str) -> Option<String> {
        match self {
            Raw::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            Raw::Lite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// Create options for `account` with nothing else set.
pub fn opts(account: &str) -> CreateOptions {
    CreateOptions {
        account_id: account.into(),
        ..Default::default()
    }
}

/// Create options for `account` with a cap of `cents` per `period`.
pub fn budget(account: &str, cents: f64, period: Option<&str>) -> CreateOptions {
    CreateOptions {
        budget_cents: Some(cents),
        budget_period: period.map(Into::into),
        ..opts(account)
    }
}

/// The details of a key that must be valid.
pub async fn info_of(kl: &KeyLeash, raw: &str) -> KeyInfo {
    kl.validate(raw)
        .await
        .expect("validate")
        .info()
        .expect("a valid key")
        .clone()
}

impl Db {
    /// Opens `kind` with default options and a manual clock at [`START`].
    pub async fn open(kind: Kind) -> Db {
        Db::with(kind, Options::default()).await
    }

    /// Opens `kind` with `options` (a fresh table name and, unless a manual clock
    /// is given, a manual clock at [`START`]) and migrates.
    pub async fn with(kind: Kind, mut options: Options) -> Db {
        let table = unique("t");
        options.table_name = table.clone();
        if options.clock.as_manual().is_none() {
            options.clock = Clock::manual(t(START));
        }
        let url = url(kind);
        let kl = KeyLeash::connect(&url, options).await.expect("connect");
        kl.migrate().await.expect("migrate");
        let raw = Raw::connect(kind, &url).await;
        Db {
            kind,
            url,
            table,
            kl,
            raw,
        }
    }

    /// Another keyleash on the same table and clock (another pool, as another process would have).
    pub async fn another(&self) -> KeyLeash {
        let options = Options {
            table_name: self.table.clone(),
            clock: self.kl.clock().clone(),
            ..Options::default()
        };
        KeyLeash::connect(&self.url, options)
            .await
            .expect("connect")
    }

    /// The details of a key that must be valid.
    pub async fn info(&self, raw: &str) -> KeyInfo {
        info_of(&self.kl, raw).await
    }

    /// Why a key is not valid (`None` when it is).
    pub async fn reason(&self, raw: &str) -> Option<InvalidReason> {
        self.kl.validate(raw).await.expect("validate").reason()
    }

    /// Charges `cents` to a key.
    pub async fn charge(&self, raw: &str, cents: f64) -> ChargeResult {
        self.kl
            .track_usage(raw, Charge::cents(cents))
            .await
            .expect("track_usage")
    }

    pub fn clock(&self) -> &ManualClock {
        self.kl.clock().as_manual().expect("manual clock")
    }

    fn render(&self, sql: &str) -> String {
        sql.replace("{keys}", &self.table)
            .replace("{ledger}", &format!("{}_ledger", self.table))
            .replace("{holds}", &format!("{}_holds", self.table))
            .replace("{hold_keys}", &format!("{}_hold_keys", self.table))
            .replace("{accounts}", &format!("{}_accounts", self.table))
    }

    /// Runs a statement; `{keys}`, `{ledger}`, `{holds}`, `{hold_keys}` and
    /// `{accounts}` name this test's tables.
    pub async fn exec(&self, sql: &str) {
        self.raw.exec(&self.render(sql)).await;
    }

    /// A scalar BIGINT query on this test's tables.
    pub async fn scalar(&self, sql: &str) -> Option<i64> {
        self.raw.scalar(&self.render(sql)).await
    }

    /// A scalar TEXT query on this test's tables.
    pub async fn text(&self, sql: &str) -> Option<String> {
        self.raw.text(&self.render(sql)).await
    }

    /// One integer column of a key's row (agentkey's INTEGER columns included).
    pub async fn column(&self, id: i64, column: &str) -> Option<i64> {
        self.scalar(&format!(
            "SELECT CAST({column} AS BIGINT) FROM {{keys}} WHERE id = {id}"
        ))
        .await
    }

    /// The key's exact usage counter, in micro-cents.
    pub async fn used_micros(&self, id: i64) -> i64 {
        self.scalar(&format!(
            "SELECT budget_used_micros FROM {{keys}} WHERE id = {id}"
        ))
        .await
        .expect("counter")
    }

    /// The sum of the key's ledger rows, in micro-cents, and their number.
    pub async fn ledger(&self, id: i64) -> (i64, i64) {
        let sum = self
            .scalar(&format!("SELECT CAST(COALESCE(SUM(amount_micros), 0) AS BIGINT) FROM {{ledger}} WHERE key_id = {id}"))
            .await
            .unwrap_or(0);
        let n = self
            .scalar(&format!(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM {{ledger}} WHERE key_id = {id}"
            ))
            .await
            .unwrap_or(0);
        (sum, n)
    }
}

impl Drop for Db {
    /// Removes a test's SQLite files (open handles keep working until closed).
    fn drop(&mut self) {
        if let Some(path) = self.url.strip_prefix("sqlite://") {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
        }
    }
}
