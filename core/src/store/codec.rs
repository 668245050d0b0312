//! The text formats the stores use, each decoded in one place: hold shares, which
//! each store aggregates into one text column per row (`amount:until_us,…` for a
//! key's shares, `key_id:amount:until_us,…` for a hold's), and SQLite's
//! timestamps ([`Stamp`]). A malformed value (only an SQL edit can make one) is a
//! decode error, never a guess.

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{Sqlite, SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Type};

use crate::engine::{HoldShare, KeyRow};

/// A timestamp as SQLite holds it here: fixed-width UTC text with microseconds
/// (`2026-01-15T12:00:00.000000Z`), which sorts as time does. Read back: RFC 3339,
/// or SQLite's own `YYYY-MM-DD HH:MM:SS[.f]` (UTC), as agentkey's tables have it.
/// Bound and read like any column type, in one place each (`arg.rs`, `row.rs`), so
/// no statement converts by hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp(pub DateTime<Utc>);

impl Type<Sqlite> for Stamp {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Sqlite> for Stamp {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        let text = self.0.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        <String as Encode<'q, Sqlite>>::encode(text, buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Stamp {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<'r, Sqlite>>::decode(value)?;
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Ok(Stamp(t.with_timezone(&Utc)));
        }
        let t = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .map_err(|e| format!("bad timestamp in the keys table: {e}"))?;
        Ok(Stamp(t.and_utc()))
    }
}

/// Parses the `amount:until_us,…` text both stores aggregate a row's holds into.
pub(crate) fn parse_shares(text: Option<String>) -> Result<Vec<HoldShare>, sqlx::Error> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let bad = || sqlx::Error::Decode(format!("a malformed hold share in {text:?}").into());
    text.split(',')
        .map(|share| {
            let (amount, until) = share.split_once(':').ok_or_else(bad)?;
            Ok(HoldShare {
                amount: amount.parse().map_err(|_| bad())?,
                until_us: until.parse().map_err(|_| bad())?,
            })
        })
        .collect()
}

/// Puts the shares a store read for `ids` (`key id, amount:until_us,…`) into `rows`.
pub(crate) fn fill_shares(
    rows: &mut [KeyRow],
    shares: &[(i64, Option<String>)],
) -> Result<(), sqlx::Error> {
    for (id, text) in shares {
        if let Some(row) = rows.iter_mut().find(|r| r.id == *id) {
            row.holds = parse_shares(text.clone())?;
        }
    }
    Ok(())
}

/// Parses the `key_id:amount:until_us,…` text both stores aggregate a hold's
/// shares into.
pub(crate) fn parse_hold_shares(
    text: Option<String>,
) -> Result<Vec<(i64, HoldShare)>, sqlx::Error> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let bad = || sqlx::Error::Decode(format!("a malformed hold share in {text:?}").into());
    text.split(',')
        .map(|share| {
            let mut parts = share.split(':').map(str::parse::<i64>);
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(Ok(key)), Some(Ok(amount)), Some(Ok(until_us)), None) => {
                    Ok((key, HoldShare { amount, until_us }))
                }
                _ => Err(bad()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Pins the share texts: what the stores aggregate parses, anything else is a
    // decode error.
    #[test]
    fn share_texts() {
        let text = "3000000:1768478700000000,2000000:1768478700000001";
        let shares = parse_shares(Some(text.into())).unwrap();
        assert_eq!(shares.len(), 2);
        assert_eq!(
            (shares[1].amount, shares[1].until_us),
            (2_000_000, 1_768_478_700_000_001)
        );
        assert!(parse_shares(None).unwrap().is_empty());
        assert!(parse_shares(Some("1:x".into())).is_err());
        assert!(parse_shares(Some("12".into())).is_err());
        let hold = parse_hold_shares(Some("7:5000000:99".into())).unwrap();
        assert_eq!(
            hold,
            vec![(
                7,
                HoldShare {
                    amount: 5_000_000,
                    until_us: 99
                }
            )]
        );
        assert!(parse_hold_shares(Some("7:5000000".into())).is_err());
    }
}
