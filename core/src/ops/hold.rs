//! A hold as a handle: [`Hold`], made from a reserve's held result, counts what
//! has been consumed under the hold and ends it exactly once. The first of settle
//! and release decides; every later call answers as the store answers a repeat (a
//! settle replays the first settle's result, a settle after a release is
//! `hold_released`, a release after a settle frees nothing), without a second trip
//! to the store. The web integrations' `Spend` (Node's `lib/spend.js`, Python's
//! `spend.py`) wrap it and add only what belongs to their runtime.
//!
//! Invariants and hazards:
//! - The decision is taken when `settle`, `release` or `cut_short` is called, not
//!   when its [`Ending`] is awaited: a caller that reads `state` or calls `add` right
//!   after sees the hold ended, even before the store has answered.
//! - The first ending is one shared future kept in the handle, asked of the store
//!   once: concurrent and later callers await that same call. A caller that stops
//!   waiting (a cancelled request) neither cancels it nor loses its answer for the
//!   others: the store work runs in the charge group's spawned runner (`group.rs`),
//!   and the next caller to await resumes the shared future where it was.
//! - Like any future, the store is asked only once an ending is awaited (by its
//!   caller or by a repeat); the bindings always await the first.
//! - The first ending's outcome is final, an error included (`unavailable`):
//!   repeats get the same code and message, as the bindings answered before the
//!   handle existed. A retry that must reach the store again calls
//!   [`KeyLeash::settle`] with [`Hold::hold_id`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use chrono::{DateTime, Utc};
use futures::future::{self, BoxFuture, FutureExt};

use crate::client::KeyLeash;
use crate::error::{Error, Result};
use crate::model::{HoldStatus, Reserve, ReserveResult, SettleRefusal, SettleResult};
use crate::ops::validate::KeyRef;

impl KeyLeash {
    /// [`KeyLeash::reserve_ref`], with the hold as a [`Hold`] when one was placed;
    /// any other result (a refusal, a replay of an idempotency key) comes back as
    /// it is, in `Err`. The web integrations' `reserve` on a granted key: one call,
    /// no second lookup.
    pub async fn reserve_ref_hold(
        &self,
        key: &KeyRef,
        reserve: Reserve,
    ) -> Result<std::result::Result<Hold, ReserveResult>> {
        let estimate_cents = reserve.cost_cents;
        let result = self.reserve_ref(key, reserve).await?;
        Ok(Hold::new(self, result, estimate_cents))
    }
}

/// A hold placed by a reserve, and what has been consumed under it so far.
/// [`Hold::add`] counts consumed cost as the work goes (a chunk sent, a token
/// priced); [`Hold::settle`] charges the actual cost (default: what was added), in
/// full even above the estimate; [`Hold::release`] frees it uncharged;
/// [`Hold::cut_short`] ends a stream that did not end normally. The first ending
/// decides (see the module's invariants). A hold nobody ends frees itself at
/// [`Hold::expires_at`]. Cheap to clone: clones are the same hold.
#[derive(Clone)]
pub struct Hold(Arc<Inner>);

struct Inner {
    kl: KeyLeash,
    hold_id: i64,
    expires_at: DateTime<Utc>,
    budget_remaining_cents: Option<f64>,
    estimate_cents: f64,
    state: Mutex<State>,
}

/// What changes: the consumed total and the first ending, under one lock.
struct State {
    consumed: f64,
    first: Option<First>,
}

/// One store call's outcome, shared by every caller that awaits it.
type Shared<T> = future::Shared<BoxFuture<'static, Arc<Result<T>>>>;

/// The ending that decided, still running or done.
enum First {
    Settle(Shared<SettleResult>),
    Release(Shared<bool>),
}

impl First {
    fn status(&self) -> HoldStatus {
        match self {
            First::Settle(_) => HoldStatus::Settled,
            First::Release(_) => HoldStatus::Released,
        }
    }
}

impl Hold {
    /// The handle of `result` when it placed a hold ([`ReserveResult::Held`]) of
    /// `estimate_cents` through `kl`; any other result comes back as it is.
    pub fn new(
        kl: &KeyLeash,
        result: ReserveResult,
        estimate_cents: f64,
    ) -> std::result::Result<Hold, ReserveResult> {
        let ReserveResult::Held {
            hold_id,
            expires_at,
            budget_remaining_cents,
        } = result
        else {
            return Err(result);
        };
        Ok(Hold(Arc::new(Inner {
            kl: kl.clone(),
            hold_id,
            expires_at,
            budget_remaining_cents,
            estimate_cents,
            state: Mutex::new(State {
                consumed: 0.0,
                first: None,
            }),
        })))
    }

    /// The hold's id, as [`KeyLeash::settle`] and [`KeyLeash::release`] take it.
    pub fn hold_id(&self) -> i64 {
        self.0.hold_id
    }

    /// When the hold stops counting by itself.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }

    /// What could still be spent after the hold, in cents (`None` = uncapped).
    pub fn budget_remaining_cents(&self) -> Option<f64> {
        self.0.budget_remaining_cents
    }

    /// The estimate held, in cents.
    pub fn estimate_cents(&self) -> f64 {
        self.0.estimate_cents
    }

    /// The cost added so far, in cents.
    pub fn consumed_cents(&self) -> f64 {
        self.lock().consumed
    }

    /// `Held` until the first settle or release, then `Settled` or `Released`
    /// (from the call on, before the store has answered).
    pub fn state(&self) -> HoldStatus {
        self.lock()
            .first
            .as_ref()
            .map_or(HoldStatus::Held, First::status)
    }

    /// Counts `cents` (finite, ≥ 0) as consumed and returns the total so far.
    /// Refused once the hold is settled or released: the cost would be lost.
    pub fn add(&self, cents: f64) -> std::result::Result<f64, AddRefused> {
        if !cents.is_finite() || cents < 0.0 {
            return Err(AddRefused::NotAnAmount);
        }
        let mut state = self.lock();
        if let Some(first) = &state.first {
            return Err(AddRefused::Ended(first.status()));
        }
        state.consumed += cents;
        Ok(state.consumed)
    }

    /// Charges `cost_cents` (default: [`Hold::consumed_cents`]) and frees the hold:
    /// [`KeyLeash::settle`]'s result. The first settle's result is every repeat's
    /// (another cost included); after a release it is
    /// [`SettleRefusal::HoldReleased`]. A cost the store refuses (`invalid_cost`)
    /// still decides: the hold is settled for this handle, the refusal its answer.
    pub fn settle(&self, cost_cents: Option<f64>) -> Ending<SettleResult> {
        let mut state = self.lock();
        self.settle_locked(&mut state, cost_cents)
    }

    /// Frees the hold uncharged: whether it freed anything ([`KeyLeash::release`]).
    /// A repeat gets the first release's answer; after a settle, false.
    pub fn release(&self) -> Ending<bool> {
        let mut state = self.lock();
        self.release_locked(&mut state)
    }

    /// How a stream that did not end normally ends, decided under one lock: what
    /// was consumed is settled, and a hold with nothing consumed is released.
    pub fn cut_short(&self) -> Ending<CutShort> {
        let mut state = self.lock();
        if state.consumed > 0.0 {
            self.settle_locked(&mut state, None).map(CutShort::Settled)
        } else {
            self.release_locked(&mut state).map(CutShort::Released)
        }
    }

    fn settle_locked(&self, state: &mut State, cost_cents: Option<f64>) -> Ending<SettleResult> {
        match &state.first {
            Some(First::Settle(shared)) => Ending::shared(shared.clone(), true),
            Some(First::Release(_)) => {
                Ending::ready(SettleResult::Refused(SettleRefusal::HoldReleased))
            }
            None => {
                let kl = self.0.kl.clone();
                let (hold_id, cost) = (self.0.hold_id, cost_cents.unwrap_or(state.consumed));
                let shared = async move { Arc::new(kl.settle(hold_id, cost).await) }
                    .boxed()
                    .shared();
                state.first = Some(First::Settle(shared.clone()));
                Ending::shared(shared, false)
            }
        }
    }

    fn release_locked(&self, state: &mut State) -> Ending<bool> {
        match &state.first {
            Some(First::Release(shared)) => Ending::shared(shared.clone(), true),
            Some(First::Settle(_)) => Ending::ready(false),
            None => {
                let (kl, hold_id) = (self.0.kl.clone(), self.0.hold_id);
                let shared = async move { Arc::new(kl.release(hold_id).await) }
                    .boxed()
                    .shared();
                state.first = Some(First::Release(shared.clone()));
                Ending::shared(shared, false)
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hold")
            .field("hold_id", &self.0.hold_id)
            .field("estimate_cents", &self.0.estimate_cents)
            .field("consumed_cents", &self.consumed_cents())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// The answer to one call of [`Hold::settle`], [`Hold::release`] or
/// [`Hold::cut_short`]: a future of its result. The call has decided by the time
/// this exists; awaiting it waits for the store (at most once per hold).
#[must_use = "the store is asked when an ending is awaited"]
pub struct Ending<T> {
    answer: BoxFuture<'static, Result<T>>,
    repeat: bool,
}

impl<T: Clone + Send + Sync + 'static> Ending<T> {
    /// The outcome of `shared`, as each caller's own copy.
    fn shared(shared: Shared<T>, repeat: bool) -> Self {
        let answer = async move {
            match &*shared.await {
                Ok(v) => Ok(v.clone()),
                Err(e) => Err(e.for_each_caller()),
            }
        };
        Ending {
            answer: answer.boxed(),
            repeat,
        }
    }

    /// An answer that needs no store: the hold was already ended the other way.
    fn ready(value: T) -> Self {
        Ending {
            answer: future::ready(Ok(value)).boxed(),
            repeat: false,
        }
    }

    fn map<U: Send + 'static>(self, f: fn(T) -> U) -> Ending<U> {
        Ending {
            answer: self.answer.map(move |r| r.map(f)).boxed(),
            repeat: self.repeat,
        }
    }
}

impl<T> Ending<T> {
    /// Whether this call repeats the hold's first ending (a settle after a
    /// settle, a release after a release): its answer is that ending's result.
    /// A binding that gave the first caller an object (a promise) can give every
    /// repeat that same object instead of awaiting this.
    pub fn repeats_first(&self) -> bool {
        self.repeat
    }
}

impl<T> Future for Ending<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.answer.poll_unpin(cx)
    }
}

impl<T> fmt::Debug for Ending<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ending")
            .field("repeats_first", &self.repeat)
            .finish_non_exhaustive()
    }
}

/// How [`Hold::cut_short`] ended the hold.
#[derive(Clone, Debug, PartialEq)]
pub enum CutShort {
    /// Something was consumed: the settle's result.
    Settled(SettleResult),
    /// Nothing was: the release's answer (whether it freed anything).
    Released(bool),
}

/// Why [`Hold::add`] refused an amount: an `invalid_argument`, whose message is
/// this value's `Display` (the one every binding gives).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddRefused {
    /// The amount is negative, NaN or infinite.
    NotAnAmount,
    /// The hold is already settled or released: the cost would be lost.
    Ended(HoldStatus),
}

impl AddRefused {
    /// The error code: always `invalid_argument`.
    pub fn code(self) -> &'static str {
        "invalid_argument"
    }
}

impl fmt::Display for AddRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddRefused::NotAnAmount => f.write_str("cents must be a finite number ≥ 0"),
            AddRefused::Ended(status) => write!(
                f,
                "the hold is already {}: nothing more can be added",
                status.as_str()
            ),
        }
    }
}

impl std::error::Error for AddRefused {}

impl From<AddRefused> for Error {
    fn from(e: AddRefused) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}
