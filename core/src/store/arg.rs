//! The values a statement is run with, backend-neutral: each driver binds an
//! [`Arg`] in its own types ([`BindArgs`]) and runs a statement with them
//! ([`Driver`]), so the shared store code says only which statement, which
//! values, in which order.

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::Serialize;
use sqlx::postgres::{PgArguments, PgConnection, PgRow};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::{Database, Postgres, Sqlite};

use crate::error::Result;
use crate::store::codec::Stamp;
use crate::store::row::Columns;
use crate::store::{NewCeiling, NewKey};

/// One value bound to a statement parameter.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Text(&'a str),
    OptText(Option<&'a str>),
    /// A timestamp or NULL: `timestamptz` on Postgres, `Stamp` text on SQLite.
    Time(Option<DateTime<Utc>>),
    /// Ids: `int8[]` on Postgres, a JSON array (for `json_each`) on SQLite.
    Ids(&'a [i64]),
    /// Texts: `text[]` on Postgres, a JSON array (for `json_each`) on SQLite.
    Texts(&'a [&'a str]),
    /// Scopes or NULL: `text[]` on Postgres, a JSON array on SQLite.
    Scopes(Option<&'a [String]>),
}

/// The values of the key insert, in its parameter order.
pub(crate) fn key_args(k: &NewKey) -> [Arg<'_>; 17] {
    [
        Arg::Text(&k.account_id),
        Arg::OptText(k.user_id.as_deref()),
        Arg::Text(&k.key_hash),
        Arg::Text(&k.key_prefix),
        Arg::Text(&k.name),
        Arg::Scopes(k.scopes.as_deref()),
        Arg::OptInt(k.budget_cents.map(i64::from)),
        Arg::OptInt(k.budget_micros),
        Arg::OptText(k.budget_period.as_deref()),
        Arg::Time(k.budget_reset_at),
        Arg::Time(Some(k.created_at)),
        Arg::Time(k.expires_at),
        Arg::OptText(k.delegated_by.as_deref()),
        Arg::OptText(k.external_subject.as_deref()),
        Arg::OptText(k.metadata.as_deref()),
        Arg::OptInt(k.parent_id),
        Arg::OptText(k.rate_limits.as_deref()),
    ]
}

/// The values of the ceiling upsert, in its parameter order.
pub(crate) fn ceiling_args<'a>(account_id: &'a str, c: &'a NewCeiling) -> [Arg<'a>; 5] {
    [
        Arg::Text(account_id),
        Arg::Int(c.budget_micros),
        Arg::OptText(c.period.as_deref()),
        Arg::Time(c.reset_at),
        Arg::Time(Some(c.now)),
    ]
}

/// A driver the shared store code runs its statements on.
pub(crate) trait Driver: Database<Row: Columns> {
    /// Every row `sql` returns for `args` on `conn` (a pooled connection or a
    /// transaction's).
    async fn all(
        conn: &mut Self::Connection,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<Self::Row>>;

    /// The rows `sql` returns for `args` on `conn`, as they arrive.
    fn stream<'e>(
        conn: &'e mut Self::Connection,
        sql: &'e str,
        args: &'e [Arg<'e>],
    ) -> BoxStream<'e, Result<Self::Row, sqlx::Error>>;
}

impl Driver for Postgres {
    async fn all(conn: &mut PgConnection, sql: &str, args: &[Arg<'_>]) -> Result<Vec<PgRow>> {
        Ok(sqlx::query(sql).bind_args(args).fetch_all(conn).await?)
    }

    fn stream<'e>(
        conn: &'e mut PgConnection,
        sql: &'e str,
        args: &'e [Arg<'e>],
    ) -> BoxStream<'e, Result<PgRow, sqlx::Error>> {
        sqlx::query(sql).bind_args(args).fetch(conn)
    }
}

impl Driver for Sqlite {
    async fn all(
        conn: &mut SqliteConnection,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<SqliteRow>> {
        Ok(sqlx::query(sql).bind_args(args).fetch_all(conn).await?)
    }

    fn stream<'e>(
        conn: &'e mut SqliteConnection,
        sql: &'e str,
        args: &'e [Arg<'e>],
    ) -> BoxStream<'e, Result<SqliteRow, sqlx::Error>> {
        sqlx::query(sql).bind_args(args).fetch(conn)
    }
}

/// A statement that takes [`Arg`]s, bound in the store's own types.
pub(crate) trait BindArgs<'q> {
    /// The statement with `args` bound, in order.
    fn bind_args(self, args: &[Arg<'q>]) -> Self;
}

impl<'q> BindArgs<'q> for Query<'q, Postgres, PgArguments> {
    fn bind_args(mut self, args: &[Arg<'q>]) -> Self {
        for &arg in args {
            self = match arg {
                Arg::Int(v) => self.bind(v),
                Arg::OptInt(v) => self.bind(v),
                Arg::Text(v) => self.bind(v),
                Arg::OptText(v) => self.bind(v),
                Arg::Time(v) => self.bind(v),
                Arg::Ids(v) => self.bind(v),
                Arg::Texts(v) => self.bind(v),
                Arg::Scopes(v) => self.bind(v),
            };
        }
        self
    }
}

/// Timestamps as [`Stamp`] text, lists as JSON arrays.
impl<'q> BindArgs<'q> for Query<'q, Sqlite, SqliteArguments<'q>> {
    fn bind_args(mut self, args: &[Arg<'q>]) -> Self {
        for &arg in args {
            self = match arg {
                Arg::Int(v) => self.bind(v),
                Arg::OptInt(v) => self.bind(v),
                Arg::Text(v) => self.bind(v),
                Arg::OptText(v) => self.bind(v),
                Arg::Time(v) => self.bind(v.map(Stamp)),
                Arg::Ids(v) => self.bind(json(v)),
                Arg::Texts(v) => self.bind(json(v)),
                Arg::Scopes(v) => self.bind(v.map(json)),
            };
        }
        self
    }
}

/// `v` as JSON text (a list of ids or strings cannot fail to serialize).
pub(crate) fn json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
