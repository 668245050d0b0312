//! The clock every time comparison uses.
//!
//! The core never asks the database for the time: each statement receives "now"
//! from this clock as a parameter, so a test can set and advance time and get
//! exactly the behaviour a real deployment would have at that instant. Readings
//! are truncated to microseconds, the precision of Postgres' `timestamptz`, so a
//! value read back from either store equals the value written.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, SubsecRound, Utc};

/// Where "now" comes from: the system clock, or a manual clock a test controls.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The system's UTC clock.
    #[default]
    System,
    /// A clock that only moves when told to; see [`ManualClock`].
    Manual(ManualClock),
}

impl Clock {
    /// A manual clock starting at `start`.
    pub fn manual(start: DateTime<Utc>) -> Self {
        Clock::Manual(ManualClock::new(start))
    }

    /// The current time, truncated to microseconds.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now().trunc_subsecs(6),
            Clock::Manual(m) => m.now(),
        }
    }

    /// The manual clock's handle, or `None` for the system clock.
    pub fn as_manual(&self) -> Option<&ManualClock> {
        match self {
            Clock::Manual(m) => Some(m),
            Clock::System => None,
        }
    }
}

/// A shared, settable clock. Clones read and move the same time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A manual clock reading `start` (truncated to microseconds).
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(start.trunc_subsecs(6))),
        }
    }

    /// The current reading.
    pub fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }

    /// Sets the reading to `at` (truncated to microseconds); it may go backwards.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.lock() = at.trunc_subsecs(6);
    }

    /// Moves the reading forward (or back, for a negative `by`).
    pub fn advance(&self, by: Duration) {
        let mut now = self.lock();
        *now = (*now + by).trunc_subsecs(6);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        // A poisoned lock still holds a valid time: keep using it.
        self.now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A span given as any mix of seconds, minutes, hours and days (as the bindings'
/// `advance` and the conformance vectors give it), rounded to the microsecond.
/// Fails with `invalid_argument` unless the total is finite and within ±3000 years.
pub fn span(seconds: f64, minutes: f64, hours: f64, days: f64) -> crate::error::Result<Duration> {
    let micros = (seconds + 60.0 * minutes + 3_600.0 * hours + 86_400.0 * days) * 1e6;
    if !micros.is_finite() || micros.abs() > 1e17 {
        return Err(crate::error::Error::InvalidArgument(
            "advance needs finite amounts totalling at most about 3000 years".into(),
        ));
    }
    #[allow(clippy::cast_possible_truncation)] // bounded just above
    Ok(Duration::microseconds(micros.round() as i64))
}
