//! Spending: charges after the fact (`track_usage*`), and holds placed before a
//! spend whose cost is not known yet (reserve, settle, release). Every one goes
//! through the charge group (`group.rs`): concurrent spends are one transaction,
//! decided in arrival order by `spend.rs`.

use crate::client::KeyLeash;
use crate::engine::{ChargeReq, Lookup};
use crate::error::{Error, Result};
use crate::limits::{check_text, MAX_TEXT_LEN};
use crate::model::{
    Charge, ChargeRefusal, ChargeResult, Reserve, ReserveResult, SettleRefusal, SettleResult,
};
use crate::ops::validate::subject_shaped;
use crate::ops::validate::KeyRef;
use crate::spend::{ReserveReq, SpendOutcome, SpendReq};
use crate::{amount, error, key, period};

impl KeyLeash {
    /// Charges `charge.cost_cents` to a key after the fact, atomically: it succeeds
    /// only if used + held + cost ≤ cap, under a row lock, and appends a ledger row.
    /// A zero cost succeeds without numbers and without touching the database.
    /// Refusals (`budget_exceeded`, `invalid_key`, `invalid_cost`, `expired`,
    /// `revoked`) are results; errors are `invalid_argument` (a bad idempotency key)
    /// and `unavailable`.
    pub async fn track_usage(&self, raw_key: &str, charge: Charge) -> Result<ChargeResult> {
        match charge_step(self.key_shaped(raw_key), &charge) {
            Err(answer) => answer,
            Ok(micros) => {
                let lookup = Lookup::Hash(key::hash(raw_key));
                self.charge(lookup, micros, charge).await
            }
        }
    }

    /// The outcome of [`KeyLeash::track_usage`] when it needs no store (a bad
    /// idempotency key, an invalid or zero cost, a malformed key), or `None` when
    /// only the store can answer. Synchronous and cheap, like
    /// [`KeyLeash::validate_now`]; `track_usage` starts with the same check.
    pub fn track_usage_now(&self, raw_key: &str, charge: &Charge) -> Option<Result<ChargeResult>> {
        charge_step(self.key_shaped(raw_key), charge).err()
    }

    /// [`KeyLeash::track_usage`] for a key already parsed and hashed by
    /// [`KeyLeash::key_ref`] (what [`KeyLeash::authenticate_key`] granted).
    pub async fn track_usage_ref(&self, key: &KeyRef, charge: Charge) -> Result<ChargeResult> {
        match charge_step(true, &charge) {
            Err(answer) => answer,
            Ok(micros) => self.charge(key.0.clone(), micros, charge).await,
        }
    }

    /// [`KeyLeash::track_usage`] for a subject row made by [`KeyLeash::ensure_subject`].
    pub async fn track_usage_by_subject(
        &self,
        subject: &str,
        charge: Charge,
    ) -> Result<ChargeResult> {
        match charge_step(subject_shaped(subject), &charge) {
            Err(answer) => answer,
            Ok(micros) => {
                let lookup = Lookup::Subject(subject.into());
                self.charge(lookup, micros, charge).await
            }
        }
    }

    /// [`KeyLeash::track_usage_now`] for [`KeyLeash::track_usage_by_subject`].
    pub fn track_usage_by_subject_now(
        &self,
        subject: &str,
        charge: &Charge,
    ) -> Option<Result<ChargeResult>> {
        charge_step(subject_shaped(subject), charge).err()
    }

    pub(crate) async fn charge(
        &self,
        lookup: Lookup,
        micros: i64,
        charge: Charge,
    ) -> Result<ChargeResult> {
        let req = SpendReq::Charge(ChargeReq {
            lookup,
            micros,
            idempotency_key: charge.idempotency_key,
        });
        match self.inner.charges.call(req).await? {
            SpendOutcome::Charge(result) => Ok(result),
            other => Err(mismatch(&other)),
        }
    }

    /// Holds `reserve.cost_cents` of a key's budget before a spend whose cost is
    /// not known yet (an LLM call): it succeeds only if used + held + estimate ≤
    /// cap for the key and every ancestor, atomically, and then counts as held
    /// until `settle`, `release` or its ttl (default 5 minutes), whichever comes
    /// first. A hold also stops counting when the key's budget period ends.
    /// Refusals (`budget_exceeded`, `invalid_key`, `invalid_cost`, `expired`,
    /// `revoked`) are results; a zero estimate is `invalid_cost`. Errors:
    /// `invalid_duration` (ttl not a duration from 1 second to 1 day),
    /// `invalid_argument` (a bad idempotency key), `unavailable`.
    pub async fn reserve(&self, raw_key: &str, reserve: Reserve) -> Result<ReserveResult> {
        let shaped = self.key_shaped(raw_key);
        self.reserve_lookup(shaped.then(|| Lookup::Hash(key::hash(raw_key))), reserve)
            .await
    }

    /// [`KeyLeash::reserve`] for a key already parsed and hashed by
    /// [`KeyLeash::key_ref`] (what [`KeyLeash::authenticate_key`] granted): the web
    /// integrations' streaming helpers hold on the granted key without its raw key.
    pub async fn reserve_ref(&self, key: &KeyRef, reserve: Reserve) -> Result<ReserveResult> {
        self.reserve_lookup(Some(key.0.clone()), reserve).await
    }

    /// A reserve of `lookup` (`None`: not a key, refused as `invalid_key` once the
    /// arguments are checked).
    async fn reserve_lookup(
        &self,
        lookup: Option<Lookup>,
        reserve: Reserve,
    ) -> Result<ReserveResult> {
        let ttl = hold_ttl(reserve.ttl.as_deref())?;
        if let Some(k) = &reserve.idempotency_key {
            check_text("idempotencyKey", k, MAX_TEXT_LEN, true)?;
        }
        let micros = match amount::cents_to_micros(reserve.cost_cents) {
            Some(m) if m > 0 => m,
            _ => return Ok(ReserveResult::Refused(ChargeRefusal::InvalidCost)),
        };
        let Some(lookup) = lookup else {
            return Ok(ReserveResult::Refused(ChargeRefusal::InvalidKey));
        };
        let req = SpendReq::Reserve(ReserveReq {
            lookup,
            micros,
            ttl,
            idempotency_key: reserve.idempotency_key,
        });
        match self.inner.charges.call(req).await? {
            SpendOutcome::Reserve(result) => Ok(result),
            other => Err(mismatch(&other)),
        }
    }

    /// Charges the actual cost of hold `hold_id` and frees the hold, in one
    /// transaction with a ledger row naming the hold. The cost is recorded in
    /// full even above the hold (the money was spent; the key then reads
    /// `budget_exceeded` until its reset), and even after the hold expired.
    /// Repeating a settle returns the first result and charges nothing more.
    /// Refusals: `unknown_hold`, `hold_released`, `invalid_cost`.
    pub async fn settle(&self, hold_id: i64, cost_cents: f64) -> Result<SettleResult> {
        let Some(micros) = amount::cents_to_micros(cost_cents) else {
            return Ok(SettleResult::Refused(SettleRefusal::InvalidCost));
        };
        if hold_id <= 0 {
            return Ok(SettleResult::Refused(SettleRefusal::UnknownHold));
        }
        match self
            .inner
            .charges
            .call(SpendReq::Settle { hold_id, micros })
            .await?
        {
            SpendOutcome::Settle(result) => Ok(result),
            other => Err(mismatch(&other)),
        }
    }

    /// Frees hold `hold_id` without charging it (the spend did not happen).
    /// Returns whether it freed anything: false for an unknown, settled, released
    /// or already expired hold. A released hold can no longer be settled.
    pub async fn release(&self, hold_id: i64) -> Result<bool> {
        if hold_id <= 0 {
            return Ok(false);
        }
        match self
            .inner
            .charges
            .call(SpendReq::Release { hold_id })
            .await?
        {
            SpendOutcome::Release(freed) => Ok(freed),
            other => Err(mismatch(&other)),
        }
    }
}

/// The error of a batch outcome of the wrong kind (a bug, never a caller's doing).
pub(crate) fn mismatch(outcome: &SpendOutcome) -> Error {
    Error::Unavailable(format!("internal error: a spend batch answered {outcome:?}").into())
}

/// The shortest and longest a hold may count.
const MIN_HOLD_TTL_SECS: i64 = 1;

const MAX_HOLD_TTL_SECS: i64 = 86_400;

/// A hold's ttl: a duration from 1 second to 1 day; 5 minutes when absent.
fn hold_ttl(ttl: Option<&str>) -> Result<chrono::Duration> {
    let Some(ttl) = ttl else {
        return Ok(chrono::Duration::minutes(5));
    };
    let d = period::parse_duration(ttl)?;
    if (MIN_HOLD_TTL_SECS..=MAX_HOLD_TTL_SECS).contains(&d.num_seconds()) {
        Ok(d)
    } else {
        Err(Error::InvalidDuration(format!(
            "{} (a hold's ttl must be 1s to 1d)",
            error::shown(ttl)
        )))
    }
}

/// The part of a charge decided without the store, in this order: a bad
/// idempotency key is an error, an invalid cost `invalid_cost`, a zero cost
/// `Free`, a key (or subject) that cannot exist `invalid_key`. `Err` holds that
/// outcome; `Ok` the cost in micro-cents, for the store to decide.
fn charge_step(known: bool, charge: &Charge) -> std::result::Result<i64, Result<ChargeResult>> {
    if let Some(k) = &charge.idempotency_key {
        check_text("idempotencyKey", k, MAX_TEXT_LEN, true).map_err(Err)?;
    }
    let Some(micros) = amount::cents_to_micros(charge.cost_cents) else {
        return Err(Ok(ChargeResult::Refused(ChargeRefusal::InvalidCost)));
    };
    if micros == 0 {
        return Err(Ok(ChargeResult::Free));
    }
    if !known {
        return Err(Ok(ChargeResult::Refused(ChargeRefusal::InvalidKey)));
    }
    Ok(micros)
}
