//! The budget rules, as pure functions over rows read from a store.
//!
//! Both stores load the rows a call touches (under a row lock for charges), hand
//! them here with "now", and write back what this module decides. Keeping the rules
//! out of SQL makes SQLite and Postgres behave identically by construction, and
//! lets a batch of charges be decided in arrival order exactly as if each had been
//! run alone: [`crate::spend::plan`] threads each key's state from one request to the next.
//!
//! Reconciling agentkey's columns: `budget_cents` / `budget_used_cents` are whole-cent
//! mirrors of keyleash's exact `budget_micros` / `budget_used_micros`. When a mirror
//! no longer matches the exact value it was written from, someone edited it in SQL
//! (or the row predates keyleash) and the mirror wins. When the exact column is NULL
//! the mirror is used as well.

use chrono::{DateTime, Utc};

use crate::amount::{cap_mirror, micros_to_cents, used_mirror, whole_cents_to_micros};
use crate::model::{InvalidReason, KeyDetails, KeyInfo, KeyStatus, KeySummary, Validation};
use crate::period::Period;
use crate::ratelimit::{self, KeyLimit};

/// A keys-table row as both stores load it. Integer columns are widened to `i64`.
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyRow {
    pub id: i64,
    pub key_hash: String,
    pub account_id: Option<String>,
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub key_prefix: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub budget_cents: Option<i64>,
    pub budget_used_cents: Option<i64>,
    pub budget_micros: Option<i64>,
    pub budget_used_micros: Option<i64>,
    pub budget_held_micros: i64,
    pub budget_period: Option<String>,
    pub budget_reset_at: Option<DateTime<Utc>>,
    pub budget_anchor_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub delegated_by: Option<String>,
    pub external_subject: Option<String>,
    pub metadata: Option<String>,
    pub parent_id: Option<i64>,
    /// The latest instant (µs since the epoch) a hold share of this row may count
    /// until: its shares must be read only while this is in the future.
    pub holds_until_us: Option<i64>,
    /// The holds counting against this row (its own and its descendants').
    pub holds: Vec<HoldShare>,
    /// The id of its account's ceiling, if the account has one (a hint the store
    /// keeps on every key, so that reads fetch ceilings only when there is one).
    pub ceiling_id: Option<i64>,
    /// Its rate limits, with their state (`rate_limits`).
    pub limits: Vec<KeyLimit>,
}

/// One hold's claim on one key's budget: `amount` micro-cents, counted while
/// now is before `until_us` (microseconds since the epoch): the earlier of the
/// hold's expiry and the end of the key's period the hold was made in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HoldShare {
    pub amount: i64,
    pub until_us: i64,
}

/// The ids of `rows` whose hold shares may still count at `now`: only those need
/// their shares read (`store::codec::fill_shares`).
pub(crate) fn hinted(rows: &[KeyRow], now: DateTime<Utc>) -> Vec<i64> {
    let now_us = now.timestamp_micros();
    rows.iter()
        .filter(|r| r.holds_until_us.is_some_and(|u| u > now_us))
        .map(|r| r.id)
        .collect()
}

/// What `shares` hold at `now`: the sum of those still counting.
fn held_at(shares: &[HoldShare], now: DateTime<Utc>) -> i64 {
    let now_us = now.timestamp_micros();
    shares
        .iter()
        .filter(|s| s.until_us > now_us)
        .fold(0i64, |sum, s| sum.saturating_add(s.amount.max(0)))
}

/// The longest chain of parents followed (a key and up to 15 ancestors); a longer
/// or cyclic chain (possible only through SQL edits) is cut there.
pub(crate) const MAX_DEPTH: usize = 16;

/// An account ceiling's columns as both stores read them beside a key row.
#[derive(Clone, Debug)]
pub(crate) struct CeilingCols {
    pub id: i64,
    pub budget_micros: i64,
    pub used_micros: i64,
    pub period: Option<String>,
    pub reset_at: Option<DateTime<Utc>>,
    pub anchor_at: Option<DateTime<Utc>>,
    pub holds_until_us: Option<i64>,
}

impl CeilingCols {
    /// The ceiling of `account_id` as a budget row: id `-id` (keys' ids are
    /// positive), no hash, never revoked or expired. The whole-cent mirrors are
    /// derived from the exact columns, so the exact values are the ones used.
    pub fn into_row(self, account_id: Option<String>) -> KeyRow {
        KeyRow {
            id: -self.id,
            account_id,
            budget_cents: Some(i64::from(cap_mirror(self.budget_micros))),
            budget_micros: Some(self.budget_micros),
            budget_used_cents: Some(i64::from(used_mirror(self.used_micros))),
            budget_used_micros: Some(self.used_micros),
            budget_period: self.period,
            budget_reset_at: self.reset_at,
            budget_anchor_at: self.anchor_at,
            holds_until_us: self.holds_until_us,
            ..KeyRow::default()
        }
    }
}

/// Adds `row` to `rows` unless a row with its id is there already (families and
/// accounts share rows).
pub(crate) fn push_new(rows: &mut Vec<KeyRow>, row: KeyRow) {
    if rows.iter().all(|r| r.id != row.id) {
        rows.push(row);
    }
}

/// `row` followed by its ancestors found in `rows`, nearest first, then its
/// account's ceiling when `rows` has it.
pub(crate) fn chain<'a>(rows: &'a [KeyRow], row: &'a KeyRow) -> Vec<&'a KeyRow> {
    let mut out = ancestry(rows, row);
    if let Some(ceiling) = row
        .ceiling_id
        .and_then(|id| rows.iter().find(|r| r.id == -id))
    {
        out.push(ceiling);
    }
    out
}

/// The ids of the ceilings `rows` name that are not among them yet.
pub(crate) fn missing_ceilings(rows: &[KeyRow]) -> Vec<i64> {
    let mut ids: Vec<i64> = Vec::new();
    for id in rows.iter().filter_map(|r| r.ceiling_id) {
        if !ids.contains(&id) && rows.iter().all(|r| r.id != -id) {
            ids.push(id);
        }
    }
    ids
}

/// `row` followed by its ancestors found in `rows`, nearest first.
pub(crate) fn ancestry<'a>(rows: &'a [KeyRow], row: &'a KeyRow) -> Vec<&'a KeyRow> {
    let mut out = vec![row];
    let mut next = row.parent_id;
    while let Some(id) = next {
        if out.len() == MAX_DEPTH || out.iter().any(|r| r.id == id) {
            break;
        }
        let Some(parent) = rows.iter().find(|r| r.id == id) else {
            break;
        };
        out.push(parent);
        next = parent.parent_id;
    }
    out
}

/// Revoked anywhere in the chain beats expired anywhere in it; `None` when neither.
pub(crate) fn chain_status(chain: &[&KeyRow], now: DateTime<Utc>) -> Option<InvalidReason> {
    let statuses: Vec<_> = chain.iter().filter_map(|r| r.status(now)).collect();
    statuses
        .iter()
        .find(|s| **s == InvalidReason::Revoked)
        .or_else(|| statuses.first())
        .copied()
}

/// The smallest remaining amount over budgets (`None` when none is capped).
pub(crate) fn min_remaining<'a>(budgets: impl Iterator<Item = &'a Budget>) -> Option<i64> {
    budgets.filter_map(Budget::remaining).min()
}

/// A key's live budget after reconciling mirrors and rolling elapsed periods.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Budget {
    pub cap: Option<i64>,
    pub used: i64,
    pub held: i64,
    pub period: Option<Period>,
    pub reset_at: Option<DateTime<Utc>>,
    pub anchor: Option<DateTime<Utc>>,
}

impl Budget {
    /// Whether `extra` more micro-cents fit under the cap (used + held + extra ≤ cap).
    pub fn fits(&self, extra: i64) -> bool {
        self.cap.is_none_or(|cap| {
            i128::from(self.used) + i128::from(self.held) + i128::from(extra) <= i128::from(cap)
        })
    }

    pub fn exhausted(&self) -> bool {
        self.cap
            .is_some_and(|cap| i128::from(self.used) + i128::from(self.held) >= i128::from(cap))
    }

    fn remaining(&self) -> Option<i64> {
        self.cap.map(|cap| {
            cap.saturating_sub(self.used)
                .saturating_sub(self.held)
                .max(0)
        })
    }
}

/// The values written back to a keys row after a charge or a rollover.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct KeyUpdate {
    pub id: i64,
    pub budget_micros: Option<i64>,
    pub budget_cents: Option<i32>,
    pub used_micros: i64,
    pub used_cents: i32,
    pub held_micros: i64,
    pub reset_at: Option<DateTime<Utc>>,
    pub anchor_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub holds_until_us: Option<i64>,
    /// The row's rate limits as they are to be written, when the batch counted
    /// against them (`None`: the column stays as it is).
    pub rate_limits: Option<String>,
}

impl KeyUpdate {
    /// The row as written after a change to `b`.
    pub fn new(
        id: i64,
        b: &Budget,
        last_used_at: Option<DateTime<Utc>>,
        holds_until_us: Option<i64>,
    ) -> Self {
        Self {
            id,
            budget_micros: b.cap,
            budget_cents: b.cap.map(cap_mirror),
            used_micros: b.used,
            used_cents: used_mirror(b.used),
            held_micros: b.held,
            reset_at: b.reset_at,
            anchor_at: b.anchor,
            last_used_at,
            holds_until_us,
            rate_limits: None,
        }
    }

    /// Whether this update is of an account ceiling rather than a key.
    pub fn is_ceiling(&self) -> bool {
        self.id < 0
    }
}

/// A ledger row to insert.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LedgerInsert {
    pub key_id: i64,
    pub account_id: Option<String>,
    pub amount_micros: i64,
    pub created_at: DateTime<Utc>,
    pub idempotency_key: Option<String>,
    /// The hold a settle closed.
    pub hold_id: Option<i64>,
    pub used_after_micros: i64,
    pub remaining_after_micros: Option<i64>,
}

/// A rollover to persist: the reset time it was computed from, and the new values.
pub(crate) type Roll = (Option<DateTime<Utc>>, KeyUpdate);

/// An earlier charge found in the ledger under an idempotency key.
#[derive(Clone, Debug)]
pub(crate) struct PriorCharge {
    pub key_id: i64,
    pub idempotency_key: String,
    /// What it charged: a repeat must name the same cost.
    pub amount_micros: i64,
    pub used_after_micros: i64,
    pub remaining_after_micros: Option<i64>,
}

/// How a charge names its key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Lookup {
    /// SHA-256 hex of a raw key.
    Hash(String),
    /// An external subject.
    Subject(String),
}

impl Lookup {
    /// Whether `row` is the key this lookup names.
    pub fn matches(&self, row: &KeyRow) -> bool {
        match self {
            Lookup::Hash(h) => &row.key_hash == h,
            Lookup::Subject(s) => row.external_subject.as_deref() == Some(s),
        }
    }
}

/// One positive, validated charge of a batch.
#[derive(Clone, Debug)]
pub(crate) struct ChargeReq {
    pub lookup: Lookup,
    pub micros: i64,
    pub idempotency_key: Option<String>,
}

impl KeyRow {
    /// Whether this row is an account ceiling rather than a key.
    pub fn is_ceiling(&self) -> bool {
        self.id < 0
    }

    fn period(&self) -> Option<Period> {
        // An unknown period written by hand in SQL is treated as a lifetime cap.
        self.budget_period
            .as_deref()
            .and_then(|p| Period::parse(p).ok())
    }

    /// The reconciled budget at `now`, and whether an elapsed period was rolled.
    pub fn budget(&self, now: DateTime<Utc>) -> (Budget, bool) {
        let cap = match (self.budget_cents, self.budget_micros) {
            (None, _) => None,
            (Some(c), Some(m)) if i64::from(cap_mirror(m)) == c => Some(m),
            (Some(c), _) => Some(whole_cents_to_micros(c.max(0))),
        };
        let mirror_used = self.budget_used_cents.unwrap_or(0);
        let used = match self.budget_used_micros {
            Some(m) if i64::from(used_mirror(m)) == mirror_used => m,
            _ => whole_cents_to_micros(mirror_used.max(0)),
        };
        let period = self.period();
        let mut b = Budget {
            cap,
            used,
            held: self
                .budget_held_micros
                .max(0)
                .saturating_add(held_at(&self.holds, now)),
            period,
            reset_at: self.budget_reset_at,
            anchor: self.budget_anchor_at,
        };
        let Some(period) = period else {
            return (b, false);
        };
        match self.budget_reset_at {
            Some(reset) if now >= reset => {
                // Boundaries count from the anchor. A row without one (from agentkey)
                // counts from its last reset time, which is itself a boundary; so
                // does a row whose reset time was edited by hand off the anchor's
                // schedule (the edit wins: a month re-anchors on the edited day).
                let anchor = self
                    .budget_anchor_at
                    .filter(|&a| period.is_boundary(a, reset))
                    .unwrap_or(reset);
                b.used = 0;
                b.anchor = Some(anchor);
                b.reset_at = Some(period.next_after(anchor, now));
                (b, true)
            }
            Some(_) => (b, false),
            None => {
                // A period without a reset time (cleared by hand): start counting again.
                let anchor = self.budget_anchor_at.or(self.created_at).unwrap_or(now);
                b.anchor = Some(anchor);
                b.reset_at = Some(period.next_after(anchor, now));
                (b, true)
            }
        }
    }

    /// What a cached valid answer for this row depends on: the ids of its chain,
    /// and the earliest expiry or next budget reset in it (the answer must not be
    /// served past that instant).
    pub fn cache_bounds(
        &self,
        rows: &[KeyRow],
        now: DateTime<Utc>,
    ) -> (Vec<i64>, Option<DateTime<Utc>>) {
        let chain = chain(rows, self);
        let ids = chain.iter().map(|r| r.id).collect();
        let bound = chain
            .iter()
            .flat_map(|r| [r.expires_at, r.budget(now).0.reset_at])
            .flatten()
            .min();
        (ids, bound)
    }

    /// Revoked beats expired; `None` when neither.
    fn status(&self, now: DateTime<Utc>) -> Option<InvalidReason> {
        if self.revoked_at.is_some() {
            Some(InvalidReason::Revoked)
        } else if self.expires_at.is_some_and(|e| now >= e) {
            Some(InvalidReason::Expired)
        } else {
            None
        }
    }

    /// `validate`'s answer for this row at `now`, given `rows` holding its ancestors,
    /// and the rollovers to persist (each with the reset time it was computed from).
    /// Revoked or expired ancestors disable the key; any exhausted budget in the
    /// chain is `budget_exceeded`; the remaining amount is the chain's smallest.
    pub fn validate(&self, rows: &[KeyRow], now: DateTime<Utc>) -> (Validation, Vec<Roll>) {
        let chain = chain(rows, self);
        let mut rolls = Vec::new();
        let budgets: Vec<Budget> = chain
            .iter()
            .map(|r| {
                let (b, rolled) = r.budget(now);
                if rolled {
                    let update = KeyUpdate::new(r.id, &b, r.last_used_at, r.holds_until_us);
                    rolls.push((r.budget_reset_at, update));
                }
                b
            })
            .collect();
        if let Some(reason) = chain_status(&chain, now) {
            return (Validation::Invalid(reason), rolls);
        }
        if budgets.iter().any(Budget::exhausted) {
            return (Validation::Invalid(InvalidReason::BudgetExceeded), rolls);
        }
        let b = &budgets[0];
        let info = KeyInfo {
            id: self.id,
            account_id: self.account_id.clone().unwrap_or_default(),
            user_id: self.user_id.clone(),
            scopes: self.scopes.clone(),
            budget_cents: b.cap.map(micros_to_cents),
            budget_used_cents: micros_to_cents(b.used),
            budget_held_cents: micros_to_cents(b.held),
            budget_remaining_cents: min_remaining(budgets.iter()).map(micros_to_cents),
            budget_period: b.period.map(|p| p.as_str().to_string()),
            budget_reset_at: b.reset_at.filter(|_| b.period.is_some()),
            expires_at: self.expires_at,
            delegated_by: self.delegated_by.clone(),
            name: self.name.clone().unwrap_or_else(|| "default".into()),
            limits: ratelimit::views(&self.limits),
        };
        (Validation::Valid(Box::new(info)), rolls)
    }

    /// The row as `get` shows it at `now`, given `rows` holding its ancestors and
    /// ceiling: its summary, the chain's smallest remaining amount and its status,
    /// decided in `validate`'s order. Read-only: an elapsed period is rolled in the
    /// answer, not persisted.
    pub fn details(&self, rows: &[KeyRow], now: DateTime<Utc>) -> KeyDetails {
        let chain = chain(rows, self);
        let budgets: Vec<Budget> = chain.iter().map(|r| r.budget(now).0).collect();
        let status = match chain_status(&chain, now) {
            Some(InvalidReason::Revoked) => KeyStatus::Revoked,
            Some(_) => KeyStatus::Expired,
            None if budgets.iter().any(Budget::exhausted) => KeyStatus::BudgetExceeded,
            None => KeyStatus::Active,
        };
        KeyDetails {
            key: self.summary(now),
            budget_remaining_cents: min_remaining(budgets.iter()).map(micros_to_cents),
            status,
        }
    }

    /// A ceiling row as the admin page shows it at `now` (rolled over).
    pub fn ceiling_view(&self, now: DateTime<Utc>) -> crate::model::CeilingView {
        let (b, _) = self.budget(now);
        crate::model::CeilingView {
            budget_cents: b.cap.map(micros_to_cents),
            budget_used_cents: micros_to_cents(b.used),
            budget_held_cents: micros_to_cents(b.held),
            budget_remaining_cents: b.remaining().map(micros_to_cents),
            budget_period: b.period.map(|p| p.as_str().to_string()),
            budget_reset_at: b.reset_at.filter(|_| b.period.is_some()),
        }
    }

    /// The row as `list` shows it at `now` (rolled over, no secret).
    pub fn summary(&self, now: DateTime<Utc>) -> KeySummary {
        let (b, _) = self.budget(now);
        KeySummary {
            id: self.id,
            account_id: self.account_id.clone().unwrap_or_default(),
            user_id: self.user_id.clone(),
            name: self.name.clone().unwrap_or_else(|| "default".into()),
            key_prefix: self.key_prefix.clone().unwrap_or_default(),
            scopes: self.scopes.clone(),
            budget_cents: b.cap.map(micros_to_cents),
            budget_used_cents: micros_to_cents(b.used),
            budget_held_cents: micros_to_cents(b.held),
            budget_period: b.period.map(|p| p.as_str().to_string()),
            budget_reset_at: b.reset_at.filter(|_| b.period.is_some()),
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            delegated_by: self.delegated_by.clone(),
            external_subject: self.external_subject.clone(),
            metadata: self
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok()),
            limits: ratelimit::views(&self.limits),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    pub(crate) fn row(cap_cents: Option<i64>) -> KeyRow {
        KeyRow {
            id: 1,
            key_hash: "h".into(),
            budget_cents: cap_cents,
            budget_micros: cap_cents.map(|c| c * 1_000_000),
            budget_used_cents: Some(0),
            budget_used_micros: Some(0),
            ..KeyRow::default()
        }
    }

    // Pins that an SQL edit of agentkey's whole-cent columns wins over the exact columns.
    #[test]
    fn mirrors_edited_in_sql_win() {
        let now = t("2026-01-15T12:00:00Z");
        let mut r = row(Some(100));
        r.budget_used_micros = Some(40_500_000);
        r.budget_used_cents = Some(41);
        assert_eq!(r.budget(now).0.used, 40_500_000);
        r.budget_used_cents = Some(0);
        assert_eq!(r.budget(now).0.used, 0);
        r.budget_cents = Some(200);
        assert_eq!(r.budget(now).0.cap, Some(200_000_000));
        r.budget_cents = None;
        assert_eq!(r.budget(now).0.cap, None);
    }

    // Pins how holds count: each share until its instant (exclusive), so an expired
    // hold or one of an elapsed period stops counting with no write.
    #[test]
    fn hold_shares_count_until_their_instant() {
        let until = t("2026-01-15T12:05:00Z").timestamp_micros();
        let mut r = row(Some(10));
        r.holds = vec![
            HoldShare {
                amount: 3_000_000,
                until_us: until,
            },
            HoldShare {
                amount: 2_000_000,
                until_us: until + 1,
            },
        ];
        assert_eq!(r.budget(t("2026-01-15T12:00:00Z")).0.held, 5_000_000);
        assert_eq!(r.budget(t("2026-01-15T12:05:00Z")).0.held, 2_000_000);
        let (v, _) = r.validate(&[], t("2026-01-15T12:00:00Z"));
        assert_eq!(v.info().unwrap().budget_remaining_cents, Some(5.0));
        assert_eq!(r.budget(t("2026-01-15T12:06:00Z")).0.held, 0);
    }

    // Pins lazy rollover: usage to zero at the exact reset instant, next reset after now.
    #[test]
    fn rollover_at_the_instant() {
        let mut r = row(Some(100));
        r.budget_used_micros = Some(100_000_000);
        r.budget_used_cents = Some(100);
        r.budget_period = Some("day".into());
        r.budget_anchor_at = Some(t("2026-01-15T12:00:00Z"));
        r.budget_reset_at = Some(t("2026-01-16T12:00:00Z"));
        let (v, roll) = r.validate(&[], t("2026-01-16T11:59:59.999999Z"));
        assert_eq!(v, Validation::Invalid(InvalidReason::BudgetExceeded));
        assert!(roll.is_empty());
        let (v, roll) = r.validate(&[], t("2026-01-19T12:00:00Z"));
        let info = v.info().unwrap();
        assert_eq!(info.budget_used_cents, 0.0);
        assert_eq!(info.budget_reset_at, Some(t("2026-01-20T12:00:00Z")));
        assert_eq!(roll[0].1.used_micros, 0);
    }
}
