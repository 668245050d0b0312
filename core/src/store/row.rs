//! The rows the stores' statements return, each kind decoded once for both stores.
//!
//! Each backend's row type implements [`Columns`], the column reader the decoders
//! below are generic over: plain values are read alike by both drivers, and the
//! two kinds of column the stores hold differently have a getter each
//! ([`Columns::time`], [`Columns::scopes`]). Each decoder is a generic function,
//! so a store's rows decode with static dispatch.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Postgres, Row, Sqlite, Type};

use crate::engine::{CeilingCols, KeyRow, PriorCharge};
use crate::model::{LedgerEntry, LedgerRecord, Spender};
use crate::ratelimit;
use crate::spend::{HoldRow, HoldState, PriorHold};
use crate::store::codec::{parse_hold_shares, Stamp};

/// A column type both drivers decode alike: integers, text, booleans and their
/// `Option`s.
pub(crate) trait Plain:
    for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>
{
}

impl<T> Plain for T where
    T: for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>
{
}

/// One result row of a store, read by column index.
pub(crate) trait Columns {
    /// Column `i` as a plain value.
    fn get<T: Plain>(&self, i: usize) -> Result<T, sqlx::Error>;
    /// The nullable text in column `i`, borrowed from the row.
    fn text(&self, i: usize) -> Result<Option<&str>, sqlx::Error>;
    /// The nullable timestamp in column `i`: `timestamptz` on Postgres, the
    /// [`crate::store::codec::Stamp`] text on SQLite.
    fn time(&self, i: usize) -> Result<Option<DateTime<Utc>>, sqlx::Error>;
    /// The nullable scopes in column `i`: `text[]` on Postgres, a JSON array on
    /// SQLite.
    fn scopes(&self, i: usize) -> Result<Option<Vec<String>>, sqlx::Error>;
}

impl Columns for PgRow {
    fn get<T: Plain>(&self, i: usize) -> Result<T, sqlx::Error> {
        self.try_get(i)
    }
    fn text(&self, i: usize) -> Result<Option<&str>, sqlx::Error> {
        self.try_get(i)
    }
    fn time(&self, i: usize) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        self.try_get(i)
    }
    fn scopes(&self, i: usize) -> Result<Option<Vec<String>>, sqlx::Error> {
        self.try_get(i)
    }
}

impl Columns for SqliteRow {
    fn get<T: Plain>(&self, i: usize) -> Result<T, sqlx::Error> {
        self.try_get(i)
    }
    fn text(&self, i: usize) -> Result<Option<&str>, sqlx::Error> {
        self.try_get(i)
    }
    fn time(&self, i: usize) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        Ok(self.try_get::<Option<Stamp>, _>(i)?.map(|s| s.0))
    }
    /// Unreadable scopes grant nothing (fail closed) rather than everything.
    fn scopes(&self, i: usize) -> Result<Option<Vec<String>>, sqlx::Error> {
        let text: Option<&str> = self.try_get(i)?;
        Ok(text.map(|s| serde_json::from_str(s).unwrap_or_default()))
    }
}

/// `rows`, each decoded by `decode`.
pub(crate) fn decode_all<R, T>(
    rows: &[R],
    decode: impl Fn(&R) -> Result<T, sqlx::Error>,
) -> Result<Vec<T>, sqlx::Error> {
    rows.iter().map(decode).collect()
}

/// A key row read with the store's key columns (`id, key_hash, …, ceiling_id`).
/// Hold shares are not among them: the store reads them in a second statement,
/// only for rows whose `holds_until_us` is still ahead.
pub(crate) fn key_row<R: Columns>(r: &R) -> Result<KeyRow, sqlx::Error> {
    Ok(KeyRow {
        id: r.get(0)?,
        key_hash: r.get(1)?,
        account_id: r.get(2)?,
        user_id: r.get(3)?,
        name: r.get(4)?,
        key_prefix: r.get(5)?,
        scopes: r.scopes(6)?,
        budget_cents: r.get(7)?,
        budget_used_cents: r.get(8)?,
        budget_micros: r.get(9)?,
        budget_used_micros: r.get(10)?,
        budget_held_micros: r.get::<Option<i64>>(11)?.unwrap_or(0),
        budget_period: r.get(12)?,
        budget_reset_at: r.time(13)?,
        budget_anchor_at: r.time(14)?,
        expires_at: r.time(15)?,
        revoked_at: r.time(16)?,
        created_at: r.time(17)?,
        last_used_at: r.time(18)?,
        delegated_by: r.get(19)?,
        external_subject: r.get(20)?,
        metadata: r.get(21)?,
        parent_id: r.get(22)?,
        holds_until_us: r.get(23)?,
        holds: Vec::new(),
        ceiling_id: r.get(24)?,
        limits: ratelimit::decode(r.text(25)?)?,
    })
}

/// An account ceiling read with the store's ceiling columns (`account_id, id,
/// budget_micros, budget_used_micros, budget_period, budget_reset_at,
/// budget_anchor_at, holds_until_us`), as the budget row the core uses.
pub(crate) fn ceiling<R: Columns>(r: &R) -> Result<KeyRow, sqlx::Error> {
    let cols = CeilingCols {
        id: r.get(1)?,
        budget_micros: r.get(2)?,
        used_micros: r.get(3)?,
        period: r.get(4)?,
        reset_at: r.time(5)?,
        anchor_at: r.time(6)?,
        holds_until_us: r.get(7)?,
    };
    Ok(cols.into_row(r.get(0)?))
}

/// A hold locked for a settle or release: id, key id, state, used and remaining
/// after, and its shares' text (`key_id:amount:until_us,…`).
pub(crate) fn hold<R: Columns>(r: &R) -> Result<HoldRow, sqlx::Error> {
    Ok(HoldRow {
        id: r.get(0)?,
        key_id: r.get(1)?,
        state: HoldState::parse(r.text(2)?.unwrap_or_default()),
        used_after_micros: r.get(3)?,
        remaining_after_micros: r.get(4)?,
        shares: parse_hold_shares(r.get(5)?)?,
    })
}

/// The rows of a priors statement, split into charges (no hold id) and
/// reserves. Columns: key id, idempotency key, amount, then a charge's used and
/// remaining after it (remaining is a reserve's too), and a reserve's hold id
/// (NULL for a charge), expiry and state.
pub(crate) fn priors<R: Columns>(
    rows: &[R],
) -> Result<(Vec<PriorCharge>, Vec<PriorHold>), sqlx::Error> {
    let (mut charges, mut holds) = (Vec::new(), Vec::new());
    for r in rows {
        let (key_id, idempotency_key, amount_micros) = (r.get(0)?, r.get(1)?, r.get(2)?);
        match r.get(5)? {
            None => charges.push(PriorCharge {
                key_id,
                idempotency_key,
                amount_micros,
                used_after_micros: r.get::<Option<i64>>(3)?.unwrap_or(0),
                remaining_after_micros: r.get(4)?,
            }),
            Some(hold_id) => holds.push(PriorHold {
                key_id,
                idempotency_key,
                hold_id,
                amount_micros,
                expires_at: r.time(6)?.unwrap_or_default(),
                remaining_micros: r.get(4)?,
                state: HoldState::parse(r.text(7)?.unwrap_or_default()),
            }),
        }
    }
    Ok((charges, holds))
}

/// A ledger row of `usage`: id, key id, amount, time, idempotency key, hold id.
pub(crate) fn entry<R: Columns>(r: &R) -> Result<LedgerEntry, sqlx::Error> {
    Ok(LedgerEntry {
        id: r.get(0)?,
        key_id: r.get(1)?,
        amount_cents: crate::amount::micros_to_cents(r.get(2)?),
        created_at: r.time(3)?.unwrap_or_default(),
        idempotency_key: r.get(4)?,
        hold_id: r.get(5)?,
    })
}

/// A row of `top`: key id, account, name, display prefix, sum, count.
pub(crate) fn spender<R: Columns>(r: &R) -> Result<Spender, sqlx::Error> {
    Ok(Spender {
        key_id: r.get(0)?,
        account_id: r.get(1)?,
        name: r.get(2)?,
        key_prefix: r.get(3)?,
        spent_cents: crate::amount::micros_to_cents(r.get(4)?),
        charges: r.get(5)?,
    })
}

/// A ledger row of an export (id, key id, account, amount, time, idempotency key,
/// hold id) as its record, whose id is `id_prefix` and the row's id.
pub(crate) fn record<R: Columns>(r: &R, id_prefix: &str) -> Result<LedgerRecord, sqlx::Error> {
    let ledger_id: i64 = r.get(0)?;
    let micros: i64 = r.get(3)?;
    Ok(LedgerRecord {
        id: format!("{id_prefix}{ledger_id}"),
        ledger_id,
        key_id: r.get(1)?,
        account_id: r.get(2)?,
        amount_cents: crate::amount::micros_to_cents(micros),
        amount_micros: micros,
        created_at: r.time(4)?.unwrap_or_default(),
        idempotency_key: r.get(5)?,
        hold_id: r.get(6)?,
    })
}

/// The first column of a row.
pub(crate) fn first<R: Columns, A: Plain>(r: &R) -> Result<A, sqlx::Error> {
    r.get(0)
}

/// The first two columns of a row.
pub(crate) fn pair<R: Columns, A: Plain, B: Plain>(r: &R) -> Result<(A, B), sqlx::Error> {
    Ok((r.get(0)?, r.get(1)?))
}
