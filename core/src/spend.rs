//! A batch of spends (charges, reserves, settles, releases) decided in arrival
//! order, as pure functions over rows loaded under lock.
//!
//! Every request sees the state every earlier request of the batch left, so a
//! batch's outcomes are what the requests would have had one at a time. The
//! rules:
//! - A charge or a reserve fits only if used + held + amount ≤ cap for the key and
//!   every ancestor. A charge adds to `used`; a reserve adds a hold to `held`.
//! - A hold counts against each budget of its chain until the earlier of its
//!   expiry and the end of that budget's period at the time of the reserve
//!   ([`HoldShare`]): it frees itself, and never counts in a later period.
//! - A settle records the actual cost in full (no fit check: the money was spent)
//!   in the key's current period, with a ledger row naming the hold, and frees the
//!   hold. Repeating it returns the first result; settling a released hold is
//!   refused (`hold_released`); an expired hold still settles.
//! - A release frees the hold and returns whether the hold was still counting
//!   against its key; repeating it, or releasing a settled hold, returns false.
//! - An idempotency key names one operation of one key: a charge of a cost, or a
//!   reserve of an estimate. A repeat with the same cost is a replay: a charge
//!   answers the first result marked `Replayed`; a reserve answers
//!   `Replayed` with the first hold and where it stands, and is not a success
//!   (nothing new to spend under, even while the first hold is held). A repeat
//!   of another cost, or of the other kind, is `idempotency_conflict`. A refused
//!   request names nothing: its key can be used again.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use crate::amount::micros_to_cents;
use crate::engine::{
    chain, chain_status, min_remaining, Budget, ChargeReq, HoldShare, KeyRow, KeyUpdate,
    LedgerInsert, Lookup, PriorCharge,
};
use crate::model::{
    ChargeRefusal, ChargeResult, HoldStatus, InvalidReason, RateLimited, ReserveResult,
    SettleRefusal, SettleResult,
};
use crate::ratelimit::{self, KeyLimit, LimitUnit, Refused};

/// One request of a spend batch.
#[derive(Clone, Debug)]
pub(crate) enum SpendReq {
    /// A positive charge (`track_usage`).
    Charge(ChargeReq),
    /// A hold of a positive estimate.
    Reserve(ReserveReq),
    /// The actual cost (≥ 0) of a hold.
    Settle { hold_id: i64, micros: i64 },
    /// Frees a hold.
    Release { hold_id: i64 },
    /// Replaces the rate limits of key `key_id` (of `account_id` when given),
    /// carrying over what kept limits counted ([`ratelimit::carry`]).
    SetLimits {
        key_id: i64,
        account_id: Option<String>,
        limits: Vec<KeyLimit>,
    },
}

/// A reserve, checked: `micros` > 0, `ttl` within its bounds.
#[derive(Clone, Debug)]
pub(crate) struct ReserveReq {
    pub lookup: Lookup,
    pub micros: i64,
    pub ttl: Duration,
    pub idempotency_key: Option<String>,
}

impl SpendReq {
    /// The key this request names by hash or subject (charges and reserves).
    pub fn lookup(&self) -> Option<&Lookup> {
        match self {
            SpendReq::Charge(c) => Some(&c.lookup),
            SpendReq::Reserve(r) => Some(&r.lookup),
            SpendReq::Settle { .. } | SpendReq::Release { .. } | SpendReq::SetLimits { .. } => None,
        }
    }

    /// The hold this request names (settles and releases).
    pub fn hold_id(&self) -> Option<i64> {
        match self {
            SpendReq::Settle { hold_id, .. } | SpendReq::Release { hold_id } => Some(*hold_id),
            SpendReq::Charge(_) | SpendReq::Reserve(_) | SpendReq::SetLimits { .. } => None,
        }
    }

    /// The key this request names by id (a change of its limits).
    pub fn key_id(&self) -> Option<i64> {
        match self {
            SpendReq::SetLimits { key_id, .. } => Some(*key_id),
            _ => None,
        }
    }

    /// The idempotency key of a charge or a reserve.
    pub fn idempotency_key(&self) -> Option<&str> {
        match self {
            SpendReq::Charge(c) => c.idempotency_key.as_deref(),
            SpendReq::Reserve(r) => r.idempotency_key.as_deref(),
            SpendReq::Settle { .. } | SpendReq::Release { .. } | SpendReq::SetLimits { .. } => None,
        }
    }
}

/// One outcome of a spend batch, of the request's kind.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SpendOutcome {
    Charge(ChargeResult),
    Reserve(ReserveResult),
    Settle(SettleResult),
    Release(bool),
    /// Whether the key was found (of the account, when one was named).
    SetLimits(bool),
}

/// Where a hold stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HoldState {
    Held,
    Settled,
    Released,
}

impl HoldState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldState::Held => "held",
            HoldState::Settled => "settled",
            HoldState::Released => "released",
        }
    }

    /// The state of a stored name; an unknown one (an SQL edit) counts as released.
    pub fn parse(s: &str) -> Self {
        match s {
            "held" => HoldState::Held,
            "settled" => HoldState::Settled,
            _ => HoldState::Released,
        }
    }
}

/// A hold row, loaded under lock with what it still counts against.
#[derive(Clone, Debug)]
pub(crate) struct HoldRow {
    pub id: i64,
    pub key_id: i64,
    pub state: HoldState,
    /// A settled hold's result, replayed when the settle is repeated.
    pub used_after_micros: Option<i64>,
    pub remaining_after_micros: Option<i64>,
    /// Its shares: (key id, share), one per budget it was counted against.
    pub shares: Vec<(i64, HoldShare)>,
}

/// A hold found under a reserve's idempotency key.
#[derive(Clone, Debug)]
pub(crate) struct PriorHold {
    pub key_id: i64,
    pub idempotency_key: String,
    pub hold_id: i64,
    /// What it held: a repeat must name the same estimate.
    pub amount_micros: i64,
    pub expires_at: DateTime<Utc>,
    pub remaining_micros: Option<i64>,
    pub state: HoldState,
}

/// What each (key id, idempotency key) already named.
type NamedOps = HashMap<(i64, String), Named>;

/// What an idempotency key already named, per key: what a repeat is checked
/// against and answered with.
#[derive(Clone, Debug)]
enum Named {
    /// A charge of `micros`, and its result.
    Charge {
        micros: i64,
        used: i64,
        remaining: Option<i64>,
    },
    /// A reserve of `micros`. `first` is the index of its outcome in this batch
    /// (`usize::MAX` for a hold stored before it), whose id the store fills in.
    Hold {
        micros: i64,
        first: usize,
        hold_id: i64,
        expires_at: DateTime<Utc>,
        remaining: Option<i64>,
        state: HoldState,
    },
}

impl HoldState {
    /// The public name of the state.
    fn status(self) -> HoldStatus {
        match self {
            HoldState::Held => HoldStatus::Held,
            HoldState::Settled => HoldStatus::Settled,
            HoldState::Released => HoldStatus::Released,
        }
    }
}

/// A hold to insert. Its id comes from the store; `outcome` is the index of the
/// reserve's outcome, whose `hold_id` the store fills in.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NewHold {
    pub outcome: usize,
    pub key_id: i64,
    pub account_id: Option<String>,
    pub amount_micros: i64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub idempotency_key: Option<String>,
    pub remaining_micros: Option<i64>,
    pub shares: Vec<(i64, HoldShare)>,
}

/// A hold that this batch settled or released.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ClosedHold {
    pub id: i64,
    pub state: HoldState,
    pub settled_micros: Option<i64>,
    pub used_after_micros: Option<i64>,
    pub remaining_after_micros: Option<i64>,
}

/// What a batch decided: one outcome per request, and the writes.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub outcomes: Vec<SpendOutcome>,
    pub updates: Vec<KeyUpdate>,
    pub ledger: Vec<LedgerInsert>,
    pub new_holds: Vec<NewHold>,
    pub closed_holds: Vec<ClosedHold>,
    /// Keys with shares that no longer count: the write deletes them.
    pub stale_shares: Vec<i64>,
    /// Reserves replayed inside the batch: (outcome, outcome of the first reserve).
    pub repeats: Vec<(usize, usize)>,
    /// The keys whose cached valid answers are stale: those the batch left
    /// without budget, then those whose limits it changed.
    pub exhausted: Vec<i64>,
    /// The keys whose limits the batch changed (moved into `exhausted` at the end).
    changed: Vec<i64>,
}

impl Plan {
    /// Puts the ids the store gave the new holds (in `new_holds` order) into the
    /// reserves' outcomes, and into those of reserves repeated in the batch.
    pub fn fill_hold_ids(&mut self, ids: &[i64]) {
        for (hold, id) in self.new_holds.iter().zip(ids) {
            if let Some(SpendOutcome::Reserve(ReserveResult::Held { hold_id, .. })) =
                self.outcomes.get_mut(hold.outcome)
            {
                *hold_id = *id;
            }
        }
        for &(repeat, first) in &self.repeats {
            let Some(&SpendOutcome::Reserve(ReserveResult::Held { hold_id: id, .. })) =
                self.outcomes.get(first)
            else {
                continue;
            };
            if let Some(SpendOutcome::Reserve(ReserveResult::Replayed { hold_id, .. })) =
                self.outcomes.get_mut(repeat)
            {
                *hold_id = id;
            }
        }
    }

    /// Whether the plan writes anything.
    pub fn writes(&self) -> bool {
        !(self.updates.is_empty()
            && self.ledger.is_empty()
            && self.new_holds.is_empty()
            && self.closed_holds.is_empty())
    }
}

struct State {
    budget: Budget,
    /// The row must be written (used or the period changed).
    dirty: bool,
    /// Used or held changed.
    touched: bool,
    used_now: bool,
    holds_until_us: Option<i64>,
    /// Until when each hold share of the row that counts now counts, as the batch
    /// changes them: complete, since the store reads a row's shares whenever its
    /// `holds_until_us` is ahead and the row's lock keeps others from adding any.
    /// Once the batch closes the share that made the hint, the hint comes down
    /// to the latest of these (none: no hint), and the row's next spend reads no
    /// shares.
    open: Vec<i64>,
    /// The row's rate limits as the batch counts against them.
    limits: Vec<KeyLimit>,
    /// `limits` changed: the row's `rate_limits` must be written.
    limits_dirty: bool,
}

/// A rate limit's new state: (row id, index among the row's limits, TAT).
type Counted = Vec<(i64, usize, i128)>;

/// The budgets of the locked rows, as the batch changes them.
struct Budgets<'a> {
    rows: &'a [KeyRow],
    now: DateTime<Utc>,
    states: HashMap<i64, State>,
    order: Vec<i64>,
}

impl<'a> Budgets<'a> {
    /// The chain of `row`, each member's state loaded (rolled over) on first use.
    fn enter(&mut self, row: &'a KeyRow) -> Vec<&'a KeyRow> {
        let chain = chain(self.rows, row);
        for r in &chain {
            self.states.entry(r.id).or_insert_with(|| {
                self.order.push(r.id);
                let (budget, rolled) = r.budget(self.now);
                let now_us = self.now.timestamp_micros();
                let open = if r.holds_until_us.is_some_and(|u| u > now_us) {
                    r.holds
                        .iter()
                        .filter(|s| s.until_us > now_us)
                        .map(|s| s.until_us)
                        .collect()
                } else {
                    Vec::new()
                };
                State {
                    budget,
                    dirty: rolled,
                    touched: false,
                    used_now: false,
                    holds_until_us: r.holds_until_us,
                    open,
                    limits: r.limits.clone(),
                    limits_dirty: false,
                }
            });
        }
        chain
    }

    fn budget(&self, id: i64) -> &Budget {
        &self.states[&id].budget
    }

    fn fits(&self, chain: &[&KeyRow], micros: i64) -> bool {
        chain.iter().all(|r| self.budget(r.id).fits(micros))
    }

    /// Adds `micros` to `used` (a charge, a settle) or to `held` (a reserve) of
    /// every member of `chain`.
    fn add(&mut self, chain: &[&KeyRow], micros: i64, to_used: bool) {
        for (i, r) in chain.iter().enumerate() {
            if let Some(s) = self.states.get_mut(&r.id) {
                s.touched = true;
                if to_used {
                    s.budget.used = s.budget.used.saturating_add(micros);
                    s.dirty = true;
                    s.used_now |= i == 0;
                } else {
                    s.budget.held = s.budget.held.saturating_add(micros);
                }
            }
        }
    }

    /// What a request of `micros` against `chain` does to the chain's rate
    /// limits: a charge (`hold` false) counts a request and its cents; a reserve
    /// (`hold` true) counts a request and one more open hold, and its estimate
    /// must fit the cents limits, which count only what its settle records. The
    /// new states to record, or the refusal that frees last. Nothing changes
    /// here: the caller records them only once everything else admitted the
    /// request, so a refused request counts against nothing.
    fn limits(&self, chain: &[&KeyRow], micros: i64, hold: bool) -> Result<Counted, RateLimited> {
        let mut counted = Vec::new();
        let mut refused: Option<Refused> = None;
        let mut refuse = |r: Refused| {
            let wait = |r: &Refused| r.retry_after_us.unwrap_or(i64::MAX);
            if refused.as_ref().is_none_or(|f| wait(&r) > wait(f)) {
                refused = Some(r);
            }
        };
        for r in chain {
            let s = &self.states[&r.id];
            for (i, l) in s.limits.iter().enumerate() {
                if hold {
                    if let Err(r) = l.admits_hold(s.open.len()) {
                        refuse(r);
                        continue;
                    }
                }
                match l.next(self.now, micros) {
                    Ok(tat) if tat != l.tat && !(hold && l.unit == LimitUnit::Cents) => {
                        counted.push((r.id, i, tat));
                    }
                    Ok(_) => {}
                    Err(r) => refuse(r),
                }
            }
        }
        match refused {
            Some(r) => Err(RateLimited::from(r)),
            None => Ok(counted),
        }
    }

    /// Replaces the limits of key `id` (of `account`, when given), carrying over
    /// what kept limits counted; whether the key was found.
    fn set_limits(&mut self, id: i64, account: Option<&str>, limits: &[KeyLimit]) -> bool {
        let rows = self.rows;
        let Some(row) = rows.iter().find(|r| r.id == id && !r.is_ceiling()) else {
            return false;
        };
        if account.is_some_and(|a| row.account_id.as_deref() != Some(a)) {
            return false;
        }
        self.enter(row);
        let now = self.now;
        if let Some(s) = self.states.get_mut(&id) {
            s.limits = ratelimit::carry(&s.limits, limits.to_vec(), now);
            s.limits_dirty = true;
            s.dirty = true;
        }
        true
    }

    /// Records what [`Budgets::limits`] counted.
    fn count(&mut self, counted: Counted) {
        for (id, i, tat) in counted {
            if let Some(s) = self.states.get_mut(&id) {
                s.limits[i].tat = tat;
                s.limits_dirty = true;
                s.dirty = true;
            }
        }
    }

    /// Records a settle's `micros` against the cents limits of `chain`, whatever
    /// they say: the money was spent, so a limit it overran refuses until it has
    /// paid the excess off.
    fn force(&mut self, chain: &[&KeyRow], micros: i64) {
        let now = self.now;
        for r in chain {
            if let Some(s) = self.states.get_mut(&r.id) {
                for l in s.limits.iter_mut().filter(|l| l.unit == LimitUnit::Cents) {
                    let tat = l.force(now, micros);
                    if tat != l.tat {
                        l.tat = tat;
                        s.limits_dirty = true;
                        s.dirty = true;
                    }
                }
            }
        }
    }

    /// Takes a hold's shares still counting out of the budgets they count against;
    /// whether one of them was the hold's own key's.
    fn free(&mut self, hold: &HoldRow) -> bool {
        let now_us = self.now.timestamp_micros();
        let mut own = false;
        for (key_id, share) in &hold.shares {
            if share.until_us <= now_us {
                continue;
            }
            own |= *key_id == hold.key_id;
            if let Some(s) = self.states.get_mut(key_id) {
                s.budget.held = s.budget.held.saturating_sub(share.amount).max(0);
                s.touched = true;
                if let Some(i) = s.open.iter().position(|u| *u == share.until_us) {
                    s.open.swap_remove(i);
                }
            }
        }
        own
    }

    /// The key's `used` and the chain's smallest remaining.
    fn after(&self, chain: &[&KeyRow]) -> (i64, Option<i64>) {
        let used = self.budget(chain[0].id).used;
        (used, min_remaining(chain.iter().map(|r| self.budget(r.id))))
    }

    /// The hold share of each member of `chain` for a hold expiring at `expires_at`.
    fn shares(&self, chain: &[&KeyRow], expires_at: DateTime<Utc>) -> Vec<(i64, HoldShare)> {
        chain
            .iter()
            .map(|r| {
                let b = self.budget(r.id);
                let period_end = b.reset_at.filter(|_| b.period.is_some());
                let until = period_end.map_or(expires_at, |end| end.min(expires_at));
                (
                    r.id,
                    HoldShare {
                        amount: 0,
                        until_us: until.timestamp_micros(),
                    },
                )
            })
            .collect()
    }

    /// The touched keys left without budget.
    fn exhausted(&self) -> Vec<i64> {
        let spent = |id: &&i64| {
            let s = &self.states[*id];
            s.touched && s.budget.exhausted()
        };
        self.order.iter().filter(spent).copied().collect()
    }

    fn updates(mut self) -> Vec<KeyUpdate> {
        let now = self.now;
        let now_us = now.timestamp_micros();
        for state in self.states.values_mut() {
            // A hint still ahead that no open share reaches any more comes down.
            let latest = state.open.iter().max().copied();
            if state.holds_until_us.is_some_and(|u| u > now_us) && latest < state.holds_until_us {
                state.holds_until_us = latest;
                state.dirty = true;
            }
        }
        self.order
            .iter()
            .filter_map(|id| {
                let state = &self.states[id];
                state.dirty.then(|| {
                    let row = self.rows.iter().find(|r| r.id == *id);
                    let last_used = if state.used_now {
                        Some(now)
                    } else {
                        row.and_then(|r| r.last_used_at)
                    };
                    let mut update =
                        KeyUpdate::new(*id, &state.budget, last_used, state.holds_until_us);
                    if state.limits_dirty {
                        // Empty text, not NULL, when none are left: NULL keeps the column.
                        update.rate_limits =
                            Some(ratelimit::encode(&state.limits).unwrap_or_default());
                    }
                    update
                })
            })
            .collect()
    }
}

/// Why a key of `chain` may not be charged or held against, if it may not.
fn refusal(chain: &[&KeyRow], now: DateTime<Utc>) -> Option<ChargeRefusal> {
    match chain_status(chain, now)? {
        InvalidReason::Revoked => Some(ChargeRefusal::Revoked),
        _ => Some(ChargeRefusal::Expired),
    }
}

/// Decides a batch in arrival order against `rows` (the named keys and their
/// ancestors, locked by the caller) and `holds` (the named holds, locked), with
/// `priors` and `prior_holds` what the batch's idempotency keys already stored.
pub(crate) fn plan(
    rows: &[KeyRow],
    holds: &[HoldRow],
    priors: &[PriorCharge],
    prior_holds: &[PriorHold],
    reqs: &[SpendReq],
    now: DateTime<Utc>,
) -> Plan {
    let mut b = Budgets {
        rows,
        now,
        states: HashMap::new(),
        order: Vec::new(),
    };
    let mut named: NamedOps = priors
        .iter()
        .map(|p| {
            let prior = Named::Charge {
                micros: p.amount_micros,
                used: p.used_after_micros,
                remaining: p.remaining_after_micros,
            };
            ((p.key_id, p.idempotency_key.clone()), prior)
        })
        .collect();
    named.extend(prior_holds.iter().map(|p| {
        let prior = Named::Hold {
            micros: p.amount_micros,
            first: usize::MAX,
            hold_id: p.hold_id,
            expires_at: p.expires_at,
            remaining: p.remaining_micros,
            state: p.state,
        };
        ((p.key_id, p.idempotency_key.clone()), prior)
    }));
    let mut holds: HashMap<i64, HoldRow> = holds.iter().map(|h| (h.id, h.clone())).collect();
    let mut plan = Plan::default();
    let now_us = now.timestamp_micros();
    // Shares that no longer count: seen expired, or all of them once the row's
    // latest share instant has passed (the store then did not read them).
    plan.stale_shares = rows
        .iter()
        .filter(|r| {
            r.holds.iter().any(|s| s.until_us <= now_us)
                || r.holds_until_us.is_some_and(|u| u <= now_us)
        })
        .map(|r| r.id)
        .collect();

    for req in reqs {
        let outcome = match req {
            SpendReq::Charge(c) => SpendOutcome::Charge(charge(&mut b, &mut plan, &mut named, c)),
            SpendReq::Reserve(r) => {
                let index = plan.outcomes.len();
                let seen = (&mut named, &holds);
                SpendOutcome::Reserve(reserve(&mut b, &mut plan, seen, r, index))
            }
            SpendReq::Settle { hold_id, micros } => {
                SpendOutcome::Settle(settle(&mut b, &mut plan, &mut holds, *hold_id, *micros))
            }
            SpendReq::Release { hold_id } => {
                SpendOutcome::Release(release(&mut b, &mut plan, &mut holds, *hold_id))
            }
            SpendReq::SetLimits {
                key_id,
                account_id,
                limits,
            } => {
                let found = b.set_limits(*key_id, account_id.as_deref(), limits);
                if found {
                    // Cached valid answers show the limits: every cache drops the key.
                    plan.changed.push(*key_id);
                }
                SpendOutcome::SetLimits(found)
            }
        };
        plan.outcomes.push(outcome);
    }
    plan.exhausted = b.exhausted();
    plan.exhausted.append(&mut plan.changed);
    plan.updates = b.updates();
    plan
}

fn charge(
    b: &mut Budgets<'_>,
    plan: &mut Plan,
    seen: &mut NamedOps,
    req: &ChargeReq,
) -> ChargeResult {
    let Some(row) = b.rows.iter().find(|r| req.lookup.matches(r)) else {
        return ChargeResult::Refused(ChargeRefusal::InvalidKey);
    };
    if let Some(prior) = req
        .idempotency_key
        .as_ref()
        .and_then(|k| seen.get(&(row.id, k.clone())))
    {
        return match prior {
            Named::Charge {
                micros,
                used,
                remaining,
            } if *micros == req.micros => ChargeResult::Replayed {
                budget_used_cents: micros_to_cents(*used),
                budget_remaining_cents: remaining.map(micros_to_cents),
            },
            _ => ChargeResult::Refused(ChargeRefusal::IdempotencyConflict),
        };
    }
    let chain = b.enter(row);
    if let Some(refused) = refusal(&chain, b.now) {
        return ChargeResult::Refused(refused);
    }
    if !b.fits(&chain, req.micros) {
        return ChargeResult::Refused(ChargeRefusal::BudgetExceeded);
    }
    match b.limits(&chain, req.micros, false) {
        Ok(counted) => b.count(counted),
        Err(limited) => return ChargeResult::Limited(limited),
    }
    b.add(&chain, req.micros, true);
    let (used, remaining) = b.after(&chain);
    plan.ledger.push(LedgerInsert {
        key_id: row.id,
        account_id: row.account_id.clone(),
        amount_micros: req.micros,
        created_at: b.now,
        idempotency_key: req.idempotency_key.clone(),
        hold_id: None,
        used_after_micros: used,
        remaining_after_micros: remaining,
    });
    if let Some(k) = &req.idempotency_key {
        let named = Named::Charge {
            micros: req.micros,
            used,
            remaining,
        };
        seen.insert((row.id, k.clone()), named);
    }
    ChargeResult::Charged {
        budget_used_cents: micros_to_cents(used),
        budget_remaining_cents: remaining.map(micros_to_cents),
    }
}

fn reserve(
    b: &mut Budgets<'_>,
    plan: &mut Plan,
    (seen, holds): (&mut NamedOps, &HashMap<i64, HoldRow>),
    req: &ReserveReq,
    index: usize,
) -> ReserveResult {
    let Some(row) = b.rows.iter().find(|r| req.lookup.matches(r)) else {
        return ReserveResult::Refused(ChargeRefusal::InvalidKey);
    };
    if let Some(prior) = req
        .idempotency_key
        .as_ref()
        .and_then(|k| seen.get(&(row.id, k.clone())))
    {
        let Named::Hold {
            micros,
            first,
            hold_id,
            expires_at,
            remaining,
            state,
        } = prior
        else {
            return ReserveResult::Refused(ChargeRefusal::IdempotencyConflict);
        };
        if *micros != req.micros {
            return ReserveResult::Refused(ChargeRefusal::IdempotencyConflict);
        }
        // A repeat inside this batch gets the first reserve's hold id once the
        // store has assigned it.
        if *first != usize::MAX {
            plan.repeats.push((index, *first));
        }
        // A settle or release earlier in this batch moved the hold on.
        let state = holds.get(hold_id).map_or(*state, |h| h.state);
        return ReserveResult::Replayed {
            hold_id: *hold_id,
            state: state.status(),
            expires_at: *expires_at,
            budget_remaining_cents: remaining.map(micros_to_cents),
        };
    }
    let chain = b.enter(row);
    if let Some(refused) = refusal(&chain, b.now) {
        return ReserveResult::Refused(refused);
    }
    if !b.fits(&chain, req.micros) {
        return ReserveResult::Refused(ChargeRefusal::BudgetExceeded);
    }
    match b.limits(&chain, req.micros, true) {
        Ok(counted) => b.count(counted),
        Err(limited) => return ReserveResult::Limited(limited),
    }
    let expires_at = b.now + req.ttl;
    let mut shares = b.shares(&chain, expires_at);
    for (key_id, share) in &mut shares {
        share.amount = req.micros;
        // The key row must say its shares may count until then (see HoldShare).
        if let Some(s) = b.states.get_mut(key_id) {
            s.holds_until_us = Some(s.holds_until_us.unwrap_or(0).max(share.until_us));
            s.open.push(share.until_us);
            s.dirty = true;
        }
    }
    b.add(&chain, req.micros, false);
    let (_, remaining) = b.after(&chain);
    plan.new_holds.push(NewHold {
        outcome: index,
        key_id: row.id,
        account_id: row.account_id.clone(),
        amount_micros: req.micros,
        created_at: b.now,
        expires_at,
        idempotency_key: req.idempotency_key.clone(),
        remaining_micros: remaining,
        shares,
    });
    if let Some(k) = &req.idempotency_key {
        let named = Named::Hold {
            micros: req.micros,
            first: index,
            hold_id: 0,
            expires_at,
            remaining,
            state: HoldState::Held,
        };
        seen.insert((row.id, k.clone()), named);
    }
    ReserveResult::Held {
        hold_id: 0,
        expires_at,
        budget_remaining_cents: remaining.map(micros_to_cents),
    }
}

fn settle(
    b: &mut Budgets<'_>,
    plan: &mut Plan,
    holds: &mut HashMap<i64, HoldRow>,
    hold_id: i64,
    micros: i64,
) -> SettleResult {
    let Some(hold) = holds.get_mut(&hold_id) else {
        return SettleResult::Refused(SettleRefusal::UnknownHold);
    };
    match hold.state {
        HoldState::Released => return SettleResult::Refused(SettleRefusal::HoldReleased),
        HoldState::Settled => {
            return SettleResult::Settled {
                budget_used_cents: micros_to_cents(hold.used_after_micros.unwrap_or(0)),
                budget_remaining_cents: hold.remaining_after_micros.map(micros_to_cents),
            }
        }
        HoldState::Held => {}
    }
    let Some(row) = b.rows.iter().find(|r| r.id == hold.key_id) else {
        // The key row is gone (deleted by hand): nothing to charge it to.
        return SettleResult::Refused(SettleRefusal::UnknownHold);
    };
    let chain = b.enter(row);
    b.free(hold);
    if micros > 0 {
        b.add(&chain, micros, true);
        b.force(&chain, micros);
    }
    let (used, remaining) = b.after(&chain);
    if micros > 0 {
        plan.ledger.push(LedgerInsert {
            key_id: row.id,
            account_id: row.account_id.clone(),
            amount_micros: micros,
            created_at: b.now,
            idempotency_key: None,
            hold_id: Some(hold_id),
            used_after_micros: used,
            remaining_after_micros: remaining,
        });
    }
    hold.state = HoldState::Settled;
    hold.used_after_micros = Some(used);
    hold.remaining_after_micros = remaining;
    plan.closed_holds.push(ClosedHold {
        id: hold_id,
        state: HoldState::Settled,
        settled_micros: Some(micros),
        used_after_micros: Some(used),
        remaining_after_micros: remaining,
    });
    SettleResult::Settled {
        budget_used_cents: micros_to_cents(used),
        budget_remaining_cents: remaining.map(micros_to_cents),
    }
}

fn release(
    b: &mut Budgets<'_>,
    plan: &mut Plan,
    holds: &mut HashMap<i64, HoldRow>,
    hold_id: i64,
) -> bool {
    let Some(hold) = holds.get_mut(&hold_id) else {
        return false;
    };
    if hold.state != HoldState::Held {
        return false;
    }
    if let Some(row) = b.rows.iter().find(|r| r.id == hold.key_id) {
        b.enter(row);
    }
    let freed = b.free(hold);
    hold.state = HoldState::Released;
    plan.closed_holds.push(ClosedHold {
        id: hold_id,
        state: HoldState::Released,
        settled_micros: None,
        used_after_micros: None,
        remaining_after_micros: None,
    });
    freed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::{row, t};

    fn charge_of(cents: i64, idem: Option<&str>) -> SpendReq {
        SpendReq::Charge(ChargeReq {
            lookup: Lookup::Hash("h".into()),
            micros: cents * 1_000_000,
            idempotency_key: idem.map(Into::into),
        })
    }

    fn reserve_of(cents: i64, minutes: i64) -> SpendReq {
        SpendReq::Reserve(ReserveReq {
            lookup: Lookup::Hash("h".into()),
            micros: cents * 1_000_000,
            ttl: Duration::minutes(minutes),
            idempotency_key: None,
        })
    }

    fn run(rows: &[KeyRow], holds: &[HoldRow], reqs: &[SpendReq]) -> Plan {
        plan(rows, holds, &[], &[], reqs, t("2026-01-15T12:00:00Z"))
    }

    /// The hold `plan` would have stored for its `n`th new hold, as a store loads it.
    fn stored(p: &Plan, n: usize, id: i64) -> HoldRow {
        let h = &p.new_holds[n];
        HoldRow {
            id,
            key_id: h.key_id,
            state: HoldState::Held,
            used_after_micros: None,
            remaining_after_micros: None,
            shares: h.shares.clone(),
        }
    }

    fn with_holds(mut r: KeyRow, holds: &[&HoldRow]) -> KeyRow {
        r.holds = holds
            .iter()
            .flat_map(|h| h.shares.iter().filter(|(k, _)| *k == r.id).map(|(_, s)| *s))
            .collect();
        r
    }

    // Pins arrival-order semantics inside one batch: the cap holds exactly and each outcome sees the previous ones.
    #[test]
    fn batch_is_sequential() {
        let reqs: Vec<_> = (0..7).map(|_| charge_of(20, None)).collect();
        let p = run(&[row(Some(100))], &[], &reqs);
        let ok = p
            .outcomes
            .iter()
            .filter(|o| matches!(o, SpendOutcome::Charge(c) if c.success()))
            .count();
        assert_eq!(ok, 5);
        let charged = ChargeResult::Charged {
            budget_used_cents: 100.0,
            budget_remaining_cents: Some(0.0),
        };
        assert_eq!(p.outcomes[4], SpendOutcome::Charge(charged));
        let refused = ChargeResult::Refused(ChargeRefusal::BudgetExceeded);
        assert_eq!(p.outcomes[5], SpendOutcome::Charge(refused));
        assert_eq!(p.ledger.len(), 5);
        assert_eq!(p.updates.len(), 1);
        assert_eq!(p.updates[0].used_micros, 100_000_000);
        assert_eq!(p.updates[0].used_cents, 100);
        assert_eq!(p.exhausted, vec![1]);
    }

    // Pins that a repeated idempotency key inside one batch is applied once and replays the first result.
    #[test]
    fn idempotent_in_batch() {
        let a = charge_of(10, Some("x"));
        let p = run(&[row(Some(100))], &[], &[a.clone(), charge_of(5, None), a]);
        assert_eq!(p.ledger.len(), 2);
        let first = ChargeResult::Charged {
            budget_used_cents: 10.0,
            budget_remaining_cents: Some(90.0),
        };
        let replay = ChargeResult::Replayed {
            budget_used_cents: 10.0,
            budget_remaining_cents: Some(90.0),
        };
        assert_eq!(p.outcomes[0], SpendOutcome::Charge(first));
        assert_eq!(p.outcomes[2], SpendOutcome::Charge(replay));
        assert_eq!(p.updates[0].used_micros, 15_000_000);
    }

    // Pins that an idempotency key names one operation: another cost, or a
    // reserve under a charge's key (and the reverse), is a conflict that changes nothing.
    #[test]
    fn idempotency_key_is_bound_to_its_operation() {
        let conflict = |o: &SpendOutcome| match o {
            SpendOutcome::Charge(c) => c.reason() == Some(ChargeRefusal::IdempotencyConflict),
            SpendOutcome::Reserve(r) => {
                *r == ReserveResult::Refused(ChargeRefusal::IdempotencyConflict)
            }
            _ => false,
        };
        let mut hold = reserve_of(10, 5);
        if let SpendReq::Reserve(req) = &mut hold {
            req.idempotency_key = Some("x".into());
        }
        let mut bigger_hold = reserve_of(20, 5);
        if let SpendReq::Reserve(req) = &mut bigger_hold {
            req.idempotency_key = Some("y".into());
        }
        let reqs = [
            charge_of(10, Some("x")),
            charge_of(11, Some("x")),
            hold.clone(),
            reserve_of(10, 5),
            bigger_hold.clone(),
            charge_of(20, Some("y")),
        ];
        let p = run(&[row(Some(100))], &[], &reqs);
        let conflicts: Vec<bool> = p.outcomes.iter().map(conflict).collect();
        assert_eq!(conflicts, [false, true, true, false, false, true]);
        assert_eq!(p.ledger.len(), 1);
        assert_eq!(p.new_holds.len(), 2);
    }

    // Pins that holds count against the cap for reserves and charges alike, and
    // that a reserve writes no key row (held is computed from the holds).
    #[test]
    fn holds_count_against_the_cap() {
        let p = run(
            &[row(Some(100))],
            &[],
            &[
                reserve_of(60, 5),
                reserve_of(50, 5),
                charge_of(41, None),
                charge_of(40, None),
            ],
        );
        let ok: Vec<bool> = p
            .outcomes
            .iter()
            .map(|o| match o {
                SpendOutcome::Reserve(r) => r.success(),
                SpendOutcome::Charge(c) => c.success(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(ok, [true, false, false, true]);
        assert_eq!(p.new_holds.len(), 1);
        assert_eq!(p.new_holds[0].shares[0].1.amount, 60_000_000);
        assert_eq!(p.new_holds[0].remaining_micros, Some(40_000_000));
        assert_eq!(p.updates[0].used_micros, 40_000_000);
        assert_eq!(p.exhausted, vec![1]);
    }

    // Pins settle: the actual cost in full (above the hold too), the hold freed,
    // one ledger row naming the hold; a repeat replays; released is refused.
    #[test]
    fn settle_records_the_actual_cost_once() {
        let first = run(&[row(Some(100))], &[], &[reserve_of(30, 5)]);
        let hold = stored(&first, 0, 7);
        let key = with_holds(row(Some(100)), &[&hold]);
        let settle = SpendReq::Settle {
            hold_id: 7,
            micros: 120_000_000,
        };
        let p = run(
            std::slice::from_ref(&key),
            std::slice::from_ref(&hold),
            &[settle.clone(), settle, charge_of(1, None)],
        );
        let settled = SettleResult::Settled {
            budget_used_cents: 120.0,
            budget_remaining_cents: Some(0.0),
        };
        assert_eq!(p.outcomes[0], SpendOutcome::Settle(settled.clone()));
        assert_eq!(p.outcomes[1], SpendOutcome::Settle(settled));
        let refused = ChargeResult::Refused(ChargeRefusal::BudgetExceeded);
        assert_eq!(p.outcomes[2], SpendOutcome::Charge(refused));
        assert_eq!(p.ledger.len(), 1);
        assert_eq!(p.ledger[0].hold_id, Some(7));
        assert_eq!(p.closed_holds.len(), 1);
        assert_eq!(p.closed_holds[0].settled_micros, Some(120_000_000));
        let released = HoldRow {
            state: HoldState::Released,
            ..hold
        };
        let p = run(
            &[key],
            &[released],
            &[SpendReq::Settle {
                hold_id: 7,
                micros: 1,
            }],
        );
        let refused = SettleResult::Refused(SettleRefusal::HoldReleased);
        assert_eq!(p.outcomes[0], SpendOutcome::Settle(refused));
        let p = run(
            &[row(Some(100))],
            &[],
            &[SpendReq::Settle {
                hold_id: 8,
                micros: 1,
            }],
        );
        let unknown = SettleResult::Refused(SettleRefusal::UnknownHold);
        assert_eq!(p.outcomes[0], SpendOutcome::Settle(unknown));
    }

    // Pins release: frees the hold (a charge then fits), true once; false for an
    // expired hold, a repeat, or an unknown id.
    #[test]
    fn release_frees_once() {
        let first = run(&[row(Some(100))], &[], &[reserve_of(80, 5)]);
        let hold = stored(&first, 0, 3);
        let key = with_holds(row(Some(100)), &[&hold]);
        let release = SpendReq::Release { hold_id: 3 };
        let p = run(
            std::slice::from_ref(&key),
            std::slice::from_ref(&hold),
            &[
                charge_of(30, None),
                release.clone(),
                release,
                charge_of(30, None),
            ],
        );
        let outcomes: Vec<String> = p.outcomes.iter().map(|o| format!("{o:?}")).collect();
        assert!(outcomes[0].contains("BudgetExceeded"), "{outcomes:?}");
        assert_eq!(p.outcomes[1], SpendOutcome::Release(true));
        assert_eq!(p.outcomes[2], SpendOutcome::Release(false));
        assert!(outcomes[3].contains("Charged"), "{outcomes:?}");
        let later = t("2026-01-15T12:06:00Z");
        let p = plan(
            &[key],
            &[hold],
            &[],
            &[],
            &[SpendReq::Release { hold_id: 3 }],
            later,
        );
        assert_eq!(p.outcomes[0], SpendOutcome::Release(false));
        assert_eq!(p.closed_holds.len(), 1, "an expired hold is still closed");
        assert_eq!(p.stale_shares, vec![1]);
    }

    // Pins the period edge: a hold counts in its period only (until the reset),
    // and a settle in the next period records the cost there.
    #[test]
    fn a_hold_counts_in_its_own_period() {
        let mut daily = row(Some(100));
        daily.budget_period = Some("day".into());
        daily.budget_anchor_at = Some(t("2026-01-14T12:30:00Z"));
        daily.budget_reset_at = Some(t("2026-01-15T12:30:00Z"));
        let first = run(&[daily.clone()], &[], &[reserve_of(90, 60)]);
        let hold = stored(&first, 0, 5);
        assert_eq!(
            hold.shares[0].1.until_us,
            t("2026-01-15T12:30:00Z").timestamp_micros()
        );
        let key = with_holds(daily, &[&hold]);
        let next = t("2026-01-15T12:40:00Z");
        let (v, _) = key.validate(&[], next);
        assert_eq!(v.info().unwrap().budget_held_cents, 0.0);
        let settle = SpendReq::Settle {
            hold_id: 5,
            micros: 70_000_000,
        };
        let p = plan(
            &[key],
            &[hold],
            &[],
            &[],
            &[settle, charge_of(31, None)],
            next,
        );
        let settled = SettleResult::Settled {
            budget_used_cents: 70.0,
            budget_remaining_cents: Some(30.0),
        };
        assert_eq!(p.outcomes[0], SpendOutcome::Settle(settled));
        let refused = ChargeResult::Refused(ChargeRefusal::BudgetExceeded);
        assert_eq!(p.outcomes[1], SpendOutcome::Charge(refused));
    }

    // Pins a reserve repeated in one batch: one hold, the repeat pointed at it.
    #[test]
    fn idempotent_reserve_in_batch() {
        let mut r = reserve_of(10, 5);
        if let SpendReq::Reserve(req) = &mut r {
            req.idempotency_key = Some("call-1".into());
        }
        let mut p = run(&[row(Some(100))], &[], &[r.clone(), r]);
        assert_eq!(p.new_holds.len(), 1);
        assert_eq!(p.repeats, vec![(1, 0)]);
        p.fill_hold_ids(&[7]);
        let SpendOutcome::Reserve(ReserveResult::Held { expires_at, .. }) = p.outcomes[0] else {
            panic!("the first reserve holds: {:?}", p.outcomes[0]);
        };
        let replay = ReserveResult::Replayed {
            hold_id: 7,
            state: HoldStatus::Held,
            expires_at,
            budget_remaining_cents: Some(90.0),
        };
        assert_eq!(p.outcomes[1], SpendOutcome::Reserve(replay));
        assert!(!replay_success(&p.outcomes[1]));
    }

    fn replay_success(o: &SpendOutcome) -> bool {
        matches!(o, SpendOutcome::Reserve(r) if r.success())
    }

    // Pins that a replayed reserve says where its hold stands after a settle or
    // release earlier in the batch, and is never a success.
    #[test]
    fn replayed_reserve_of_a_closed_hold() {
        let held = HoldRow {
            id: 3,
            key_id: 1,
            state: HoldState::Held,
            used_after_micros: None,
            remaining_after_micros: None,
            shares: vec![(
                1,
                HoldShare {
                    amount: 5_000_000,
                    until_us: i64::MAX,
                },
            )],
        };
        let prior = PriorHold {
            key_id: 1,
            idempotency_key: "x".into(),
            hold_id: 3,
            amount_micros: 5_000_000,
            expires_at: t("2026-01-15T12:05:00Z"),
            remaining_micros: Some(5_000_000),
            state: HoldState::Held,
        };
        let mut again = reserve_of(5, 5);
        if let SpendReq::Reserve(req) = &mut again {
            req.idempotency_key = Some("x".into());
        }
        let reqs = [
            again.clone(),
            SpendReq::Settle {
                hold_id: 3,
                micros: 9_000_000,
            },
            again,
        ];
        let rows = [with_holds(row(Some(10)), &[&held])];
        let p = plan(
            &rows,
            &[held],
            &[],
            &[prior],
            &reqs,
            t("2026-01-15T12:00:00Z"),
        );
        let state = |o: &SpendOutcome| match o {
            SpendOutcome::Reserve(ReserveResult::Replayed {
                state, hold_id: 3, ..
            }) => Some(*state),
            _ => None,
        };
        assert_eq!(state(&p.outcomes[0]), Some(HoldStatus::Held));
        assert_eq!(state(&p.outcomes[2]), Some(HoldStatus::Settled));
        assert!(!replay_success(&p.outcomes[0]) && !replay_success(&p.outcomes[2]));
        assert!(p.new_holds.is_empty());
    }

    fn limited(mut r: KeyRow, limits: &[crate::ratelimit::Limit]) -> KeyRow {
        r.limits = ratelimit::checked(limits).unwrap().unwrap();
        r
    }

    /// The limits the plan writes for `id`.
    fn limits_of(p: &Plan, id: i64) -> Vec<KeyLimit> {
        let u = p.updates.iter().find(|u| u.id == id).expect("an update");
        ratelimit::decode(u.rate_limits.as_deref()).unwrap()
    }

    fn limited_by(o: &SpendOutcome) -> Option<(String, Option<f64>)> {
        match o {
            SpendOutcome::Charge(ChargeResult::Limited(l))
            | SpendOutcome::Reserve(ReserveResult::Limited(l)) => {
                Some((l.limit.clone(), l.retry_after))
            }
            _ => None,
        }
    }

    // Pins that a limit refuses in arrival order, says when to retry, and counts only what it admitted.
    #[test]
    fn a_request_limit_refuses_past_its_burst() {
        use crate::ratelimit::{Limit, LimitUnit};
        let key = limited(row(Some(100)), &[Limit::per(LimitUnit::Requests, 3, "1m")]);
        let reqs: Vec<_> = (0..5).map(|_| charge_of(10, None)).collect();
        let p = run(&[key], &[], &reqs);
        let charged = p
            .outcomes
            .iter()
            .filter(|o| matches!(o, SpendOutcome::Charge(c) if c.success()));
        assert_eq!(charged.count(), 3);
        assert_eq!(
            limited_by(&p.outcomes[3]),
            Some(("requests".into(), Some(20.0)))
        );
        assert_eq!(p.ledger.len(), 3);
        let now_us = t("2026-01-15T12:00:00Z").timestamp_micros();
        let tat = limits_of(&p, 1)[0].tat;
        assert_eq!(tat, i128::from(now_us) * 3 + 3 * 60_000_000);
    }

    // Pins all or nothing: a request any member refuses counts against no limit and no budget.
    #[test]
    fn a_refused_request_counts_nowhere() {
        use crate::ratelimit::{Limit, LimitUnit};
        let parent = KeyRow {
            id: 2,
            key_hash: "p".into(),
            ..limited(row(Some(1000)), &[Limit::per(LimitUnit::Cents, 25, "1m")])
        };
        let child = KeyRow {
            parent_id: Some(2),
            ..limited(
                row(Some(1000)),
                &[Limit::per(LimitUnit::Requests, 10, "1m")],
            )
        };
        let reqs: Vec<_> = (0..4).map(|_| charge_of(10, None)).collect();
        let p = run(&[child, parent], &[], &reqs);
        assert!(limited_by(&p.outcomes[1]).is_none());
        assert_eq!(
            limited_by(&p.outcomes[2]).map(|l| l.0),
            Some("cents".into())
        );
        assert_eq!(p.ledger.len(), 2);
        let now_us = i128::from(t("2026-01-15T12:00:00Z").timestamp_micros());
        // The child's requests limit counted the two charges that passed, not four.
        assert_eq!(limits_of(&p, 1)[0].tat, now_us * 10 + 2 * 60_000_000);
        let used = p.updates.iter().find(|u| u.id == 2).unwrap().used_micros;
        assert_eq!(used, 20_000_000);
        // Over budget and over a limit: the budget's reason, and nothing counted.
        let spent = KeyRow {
            budget_used_micros: Some(100_000_000),
            budget_used_cents: Some(100),
            ..limited(row(Some(100)), &[Limit::per(LimitUnit::Requests, 1, "1m")])
        };
        let p = run(&[spent], &[], &[charge_of(1, None)]);
        let refused = ChargeResult::Refused(ChargeRefusal::BudgetExceeded);
        assert_eq!(p.outcomes[0], SpendOutcome::Charge(refused));
        assert!(p.updates.iter().all(|u| u.rate_limits.is_none()));
    }

    // Pins that a replay is no new request, a settle's cents count whatever the limit says, and concurrent counts open holds.
    #[test]
    fn replays_settles_and_open_holds() {
        use crate::ratelimit::{Limit, LimitUnit};
        let key = limited(row(None), &[Limit::per(LimitUnit::Requests, 1, "1m")]);
        let p = run(
            &[key],
            &[],
            &[charge_of(1, Some("a")), charge_of(1, Some("a"))],
        );
        assert!(matches!(
            p.outcomes[1],
            SpendOutcome::Charge(ChargeResult::Replayed { .. })
        ));

        let key = limited(row(None), &[Limit::concurrent(2).named("streams")]);
        let reqs = [reserve_of(1, 5), reserve_of(1, 5), reserve_of(1, 5)];
        let p = run(std::slice::from_ref(&key), &[], &reqs);
        assert_eq!(p.new_holds.len(), 2);
        assert_eq!(limited_by(&p.outcomes[2]), Some(("streams".into(), None)));
        // With the two holds stored, a release frees a slot for the next reserve.
        let (a, b) = (stored(&p, 0, 7), stored(&p, 1, 8));
        let mut held = with_holds(key, &[&a, &b]);
        held.holds_until_us = Some(a.shares[0].1.until_us);
        let reqs = [
            reserve_of(1, 5),
            SpendReq::Release { hold_id: 7 },
            reserve_of(1, 5),
        ];
        let p = run(&[held], &[a, b], &reqs);
        assert!(limited_by(&p.outcomes[0]).is_some());
        assert_eq!(p.new_holds.len(), 1);

        // A settle of 30 cents against 10 a minute: the next charge waits 2 minutes.
        let key = limited(row(None), &[Limit::per(LimitUnit::Cents, 10, "1m")]);
        let first = run(std::slice::from_ref(&key), &[], &[reserve_of(5, 5)]);
        let hold = stored(&first, 0, 9);
        let settle = SpendReq::Settle {
            hold_id: 9,
            micros: 30_000_000,
        };
        let p = run(&[key], &[hold], &[settle, charge_of(1, None)]);
        assert_eq!(
            limited_by(&p.outcomes[1]),
            Some(("cents".into(), Some(126.0)))
        );
    }
}
