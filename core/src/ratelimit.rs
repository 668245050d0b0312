//! A key's rate limits: how many requests it may make and how many cents it may
//! spend per period, and how many holds it may keep open at once, decided as pure
//! functions in the same batch as the spend they guard (`spend.rs`).
//!
//! `requests` and `cents` limits are a GCRA (generic cell rate algorithm): each
//! keeps one number, the theoretical arrival time (TAT), the instant at which its
//! bucket would be empty again. A cost `c` moves it to `max(TAT, now) + c × period
//! / limit`; the cost is admitted when that is at most `burst × period / limit`
//! ahead of now. So `burst` may come at once from idle, then `limit` per
//! `period`; any span of time `w` admits at most `burst + limit × w / period`.
//! Times are kept exactly as microseconds multiplied by the limit in cost units
//! (a request is one unit, a cent a million micro-cents), so no rounding lets one
//! more through. A `concurrent` limit counts the holds open against the key (its
//! own and its descendants'), from the hold shares the store already reads: a
//! hold stops counting when it is settled, released or expires.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{shown, Error, Result};
use crate::period::parse_duration;

/// What a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitUnit {
    /// One per charge or reserve (a replay counts nothing).
    Requests,
    /// The cents that charges and settles record (spend velocity).
    Cents,
    /// Holds open at once.
    Concurrent,
}

impl LimitUnit {
    /// The wire name: `requests`, `cents` or `concurrent`.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitUnit::Requests => "requests",
            LimitUnit::Cents => "cents",
            LimitUnit::Concurrent => "concurrent",
        }
    }

    /// The unit named `name`, else `invalid_argument`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "requests" => Ok(LimitUnit::Requests),
            "cents" => Ok(LimitUnit::Cents),
            "concurrent" => Ok(LimitUnit::Concurrent),
            other => Err(Error::arg(format!(
                "limit unit {} must be requests, cents or concurrent",
                shown(other)
            ))),
        }
    }

    /// Cost units per unit of the limit: micro-cents for `cents`.
    fn scale(self) -> i128 {
        match self {
            LimitUnit::Cents => 1_000_000,
            _ => 1,
        }
    }
}

/// A rate limit as a caller gives it to `create` or `set_limits`.
#[derive(Clone, Debug, PartialEq)]
pub struct Limit {
    /// Names the limit in refusals and HTTP headers: 1 to 32 of `a-z 0-9 _ -`,
    /// unique among the key's limits. Default: the unit's name.
    pub name: Option<String>,
    /// What it counts.
    pub unit: LimitUnit,
    /// How many per period (`requests`, whole `cents`), or holds open at once
    /// (`concurrent`): 1 to [`MAX_LIMIT`].
    pub limit: u64,
    /// The period of `requests` and `cents` (`1s`, `1m`, `1h`, `1d`; 1 second to
    /// 31 days); a `concurrent` limit has none.
    pub period: Option<String>,
    /// How many may come at once from idle (`requests`, `cents`): 1 to
    /// [`MAX_LIMIT`], default `limit`; a `concurrent` limit has none.
    pub burst: Option<u64>,
}

impl Limit {
    /// A limit of `limit` `unit` per `period` (burst `limit`).
    pub fn per(unit: LimitUnit, limit: u64, period: &str) -> Self {
        Self {
            name: None,
            unit,
            limit,
            period: Some(period.to_string()),
            burst: None,
        }
    }

    /// At most `limit` holds open at once.
    pub fn concurrent(limit: u64) -> Self {
        Self {
            name: None,
            unit: LimitUnit::Concurrent,
            limit,
            period: None,
            burst: None,
        }
    }

    /// The same limit under `name`.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The same limit with `burst`.
    #[must_use]
    pub fn with_burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }
}

/// A key's rate limit as its views show it (`validate`, `list`, `get`): what it
/// allows, not how much of it is used (a cached answer would show that stale).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitView {
    /// Its name.
    pub name: String,
    /// What it counts.
    pub unit: LimitUnit,
    /// How many per period, or holds open at once.
    pub limit: u64,
    /// The period in whole seconds (`None` for `concurrent`).
    pub period_seconds: Option<u64>,
    /// How many may come at once from idle (`None` for `concurrent`).
    pub burst: Option<u64>,
}

/// The views of `limits`.
pub(crate) fn views(limits: &[KeyLimit]) -> Vec<LimitView> {
    limits
        .iter()
        .map(|l| {
            let timed = l.unit != LimitUnit::Concurrent;
            LimitView {
                name: l.name.clone(),
                unit: l.unit,
                limit: l.limit,
                period_seconds: timed.then(|| u64::try_from(l.period_us / 1_000_000).unwrap_or(0)),
                burst: timed.then_some(l.burst),
            }
        })
        .collect()
}

/// The largest `limit` and `burst` accepted.
pub const MAX_LIMIT: u64 = 1_000_000_000_000;
/// The most limits a key may have.
pub const MAX_LIMITS: usize = 8;
/// The longest name of a limit, in bytes.
pub const MAX_LIMIT_NAME: usize = 32;
/// The longest period, in seconds (31 days).
const MAX_PERIOD_S: i64 = 31 * 86_400;

/// A limit as the store keeps it (JSON in the key row's `rate_limits`), with its
/// state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyLimit {
    pub name: String,
    pub unit: LimitUnit,
    pub limit: u64,
    /// The period in microseconds (0 for `concurrent`).
    #[serde(default)]
    pub period_us: i64,
    /// 0 for `concurrent`.
    #[serde(default)]
    pub burst: u64,
    /// The TAT, in microseconds × `limit` × the unit's scale (0: idle).
    #[serde(default)]
    pub tat: i128,
}

/// What a limit said of a request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Refused {
    /// The refusing limit's name.
    pub limit: String,
    /// When the same request could pass, in microseconds from now; `None` when
    /// it never can (a cost above the limit's burst).
    pub retry_after_us: Option<i64>,
}

/// Checks `limits` (a key's, as a caller gave them) and makes their stored form,
/// each idle; an empty list is `None` (no limits). Errors are `invalid_argument`
/// naming the limit.
pub(crate) fn checked(limits: &[Limit]) -> Result<Option<Vec<KeyLimit>>> {
    if limits.len() > MAX_LIMITS {
        return Err(Error::arg(format!(
            "a key has at most {MAX_LIMITS} limits, got {}",
            limits.len()
        )));
    }
    let mut out: Vec<KeyLimit> = Vec::with_capacity(limits.len());
    for l in limits {
        let name = l
            .name
            .clone()
            .unwrap_or_else(|| l.unit.as_str().to_string());
        let named = |what: &str| Error::arg(format!("limit {}: {what}", shown(&name)));
        let ok_name = (1..=MAX_LIMIT_NAME).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok_name {
            return Err(named(&format!(
                "a name must be 1 to {MAX_LIMIT_NAME} of a-z 0-9 _ -"
            )));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(named("two limits have this name"));
        }
        if !(1..=MAX_LIMIT).contains(&l.limit) {
            return Err(named(&format!(
                "limit must be a whole number from 1 to {MAX_LIMIT}, got {}",
                l.limit
            )));
        }
        let (period_us, burst) = if l.unit == LimitUnit::Concurrent {
            if l.period.is_some() || l.burst.is_some() {
                return Err(named("a concurrent limit takes no period and no burst"));
            }
            (0, 0)
        } else {
            let Some(period) = &l.period else {
                return Err(named("a requests or cents limit needs a period"));
            };
            let d = parse_duration(period)
                .ok()
                .filter(|d| (1..=MAX_PERIOD_S).contains(&d.num_seconds()));
            let Some(d) = d else {
                return Err(named(&format!(
                    "period must be a duration of 1 second to 31 days (30s, 1m, 1h, 1d), got {}",
                    shown(period)
                )));
            };
            let burst = l.burst.unwrap_or(l.limit);
            if !(1..=MAX_LIMIT).contains(&burst) {
                return Err(named(&format!(
                    "burst must be a whole number from 1 to {MAX_LIMIT}, got {burst}"
                )));
            }
            (d.num_microseconds().unwrap_or(i64::MAX), burst)
        };
        out.push(KeyLimit {
            name,
            unit: l.unit,
            limit: l.limit,
            period_us,
            burst,
            tat: 0,
        });
    }
    Ok((!out.is_empty()).then_some(out))
}

/// `new` (checked, idle) with what `old` had counted carried over: a limit of
/// the same name and unit keeps the cost it has counted and not yet paid off at
/// `now`, restated at its new rate (a bucket half full stays half used in cost
/// units, whatever its new limit or period), so changing a limit opens no fresh
/// burst. Any other limit starts idle.
pub(crate) fn carry(old: &[KeyLimit], new: Vec<KeyLimit>, now: DateTime<Utc>) -> Vec<KeyLimit> {
    new.into_iter()
        .map(|mut n| {
            let before = old.iter().find(|o| o.name == n.name && o.unit == n.unit);
            if let Some(o) = before.filter(|o| o.unit != LimitUnit::Concurrent) {
                let now_us = i128::from(now.timestamp_micros());
                let owed = o.tat - now_us * o.units();
                let period = i128::from(o.period_us.max(1));
                if owed > 0 {
                    // The cost still counted, rounded up, then at the new rate.
                    let cost = (owed + period - 1) / period;
                    n.tat = now_us * n.units() + cost * i128::from(n.period_us);
                }
            }
            n
        })
        .collect()
}

/// The stored form of `limits` (JSON text), `None` for none.
pub(crate) fn encode(limits: &[KeyLimit]) -> Option<String> {
    (!limits.is_empty()).then(|| serde_json::to_string(limits).unwrap_or_default())
}

/// The limits a key row's `rate_limits` column holds. A column that does not
/// parse (an edit by hand) is an error rather than no limits: a key must not
/// lose its limits to a typo.
pub(crate) fn decode(text: Option<&str>) -> Result<Vec<KeyLimit>, sqlx::Error> {
    match text {
        None | Some("") => Ok(Vec::new()),
        Some(t) => serde_json::from_str(t).map_err(|e| {
            sqlx::Error::Decode(format!("a malformed rate_limits column: {e}").into())
        }),
    }
}

impl KeyLimit {
    /// `limit` × the unit's scale: cost units per period.
    fn units(&self) -> i128 {
        i128::from(self.limit) * self.unit.scale()
    }

    /// What a request costs this limit: `requests` one, `cents` its micro-cents
    /// (`micros`), `concurrent` nothing (see [`KeyLimit::admits_hold`]).
    fn cost(&self, micros: i64) -> i128 {
        match self.unit {
            LimitUnit::Requests => 1,
            LimitUnit::Cents => i128::from(micros.max(0)),
            LimitUnit::Concurrent => 0,
        }
    }

    /// The TAT after a request of `micros` at `now`, counting it; `Err` when the
    /// limit refuses it. A `concurrent` limit admits everything here.
    pub fn next(&self, now: DateTime<Utc>, micros: i64) -> Result<i128, Refused> {
        let cost = self.cost(micros);
        if self.unit == LimitUnit::Concurrent || cost == 0 {
            return Ok(self.tat);
        }
        let units = self.units();
        let period = i128::from(self.period_us);
        let now = i128::from(now.timestamp_micros()) * units;
        let tat = self.tat.max(now) + cost * period;
        let window = i128::from(self.burst) * self.unit.scale() * period;
        if tat - now <= window {
            return Ok(tat);
        }
        let retry_after_us = (cost * period <= window).then(|| {
            let wait = tat - now - window;
            i64::try_from((wait + units - 1) / units).unwrap_or(i64::MAX)
        });
        Err(Refused {
            limit: self.name.clone(),
            retry_after_us,
        })
    }

    /// The TAT after counting a cost that must be recorded whatever the limit
    /// says (a settle: the money was spent).
    pub fn force(&self, now: DateTime<Utc>, micros: i64) -> i128 {
        let cost = self.cost(micros);
        if self.unit == LimitUnit::Concurrent || cost == 0 {
            return self.tat;
        }
        let now = i128::from(now.timestamp_micros()) * self.units();
        self.tat.max(now) + cost * i128::from(self.period_us)
    }

    /// Whether a `concurrent` limit admits one more hold with `open` holds open;
    /// other units admit every hold here.
    pub fn admits_hold(&self, open: usize) -> Result<(), Refused> {
        if self.unit != LimitUnit::Concurrent || (open as u64) < self.limit {
            return Ok(());
        }
        Err(Refused {
            limit: self.name.clone(),
            retry_after_us: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn t(us: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(1_800_000_000_000_000 + us).unwrap()
    }

    fn one(l: Limit) -> KeyLimit {
        checked(&[l]).unwrap().unwrap().remove(0)
    }

    /// Admits what `l` lets through of `n` requests of `micros` at `at`.
    fn admit(l: &mut KeyLimit, at: DateTime<Utc>, micros: i64, n: usize) -> usize {
        (0..n)
            .filter(|_| match l.next(at, micros) {
                Ok(tat) => {
                    l.tat = tat;
                    true
                }
                Err(_) => false,
            })
            .count()
    }

    #[test]
    fn a_burst_then_the_rate() {
        // 7 a second, burst 7: an odd rate, where rounding each step would lose one.
        let mut l = one(Limit::per(LimitUnit::Requests, 7, "1s"));
        assert_eq!(admit(&mut l, t(0), 0, 10), 7);
        let refused = l.next(t(0), 0).unwrap_err();
        assert_eq!(refused.limit, "requests");
        // The next one is due 1/7 s from now.
        assert_eq!(refused.retry_after_us, Some(142_858));
        assert!(l.next(t(142_857), 0).is_err());
        assert_eq!(admit(&mut l, t(142_858), 0, 3), 1);
        // A full second later the whole burst is back, and no more.
        assert_eq!(admit(&mut l, t(1_142_858), 0, 10), 7);
    }

    #[test]
    fn any_span_admits_at_most_burst_plus_the_rate() {
        // 100 a minute, burst 10, hammered every 10 ms for three minutes.
        let mut l = one(Limit::per(LimitUnit::Requests, 100, "1m").with_burst(10));
        let mut admitted = Vec::new();
        for step in 0..18_000 {
            let at = t(step * 10_000);
            if admit(&mut l, at, 0, 1) == 1 {
                admitted.push(step * 10_000);
            }
        }
        // Every 60 s span: at most 10 + 100.
        for (i, start) in admitted.iter().enumerate() {
            let within = admitted[i..]
                .iter()
                .take_while(|a| **a < start + 60_000_000)
                .count();
            assert!(within <= 110, "{within} in the minute from {start}");
        }
        // And the long-run rate is the limit: 10 + 100 a minute for 3 minutes ±1.
        assert!((309..=311).contains(&admitted.len()), "{}", admitted.len());
    }

    #[test]
    fn cents_count_micro_cents_and_a_settle_goes_into_debt() {
        let mut l = one(Limit::per(LimitUnit::Cents, 10, "1m"));
        // 10 cents at once, in quarter cents: 40 pass, the 41st does not.
        assert_eq!(admit(&mut l, t(0), 250_000, 50), 40);
        // A cost above the burst never passes: no retry time.
        let fresh = one(Limit::per(LimitUnit::Cents, 10, "1m"));
        assert_eq!(
            fresh.next(t(0), 11_000_000).unwrap_err().retry_after_us,
            None
        );
        // A settle of 20 cents at an idle limit is recorded: 2 minutes of debt.
        let mut l = one(Limit::per(LimitUnit::Cents, 10, "1m"));
        l.tat = l.force(t(0), 20_000_000);
        let wait = l.next(t(0), 1_000_000).unwrap_err().retry_after_us.unwrap();
        assert_eq!(wait, 66_000_000);
        assert!(l.next(t(66_000_000), 1_000_000).is_ok());
    }

    #[test]
    fn concurrent_counts_open_holds() {
        let l = one(Limit::concurrent(3).named("streams"));
        assert!(l.admits_hold(2).is_ok());
        assert_eq!(l.admits_hold(3).unwrap_err().limit, "streams");
        assert_eq!(l.next(t(0), 5), Ok(0), "a concurrent limit has no rate");
    }

    #[test]
    fn bad_limits_are_refused() {
        let bad = [
            Limit::per(LimitUnit::Requests, 0, "1m"),
            Limit::per(LimitUnit::Requests, MAX_LIMIT + 1, "1m"),
            Limit::per(LimitUnit::Requests, 5, "0s"),
            Limit::per(LimitUnit::Requests, 5, "32d"),
            Limit::per(LimitUnit::Requests, 5, "soon"),
            Limit::per(LimitUnit::Requests, 5, "1m").with_burst(0),
            Limit::per(LimitUnit::Requests, 5, "1m").named("Upper"),
            Limit::per(LimitUnit::Requests, 5, "1m").named(""),
            Limit::per(LimitUnit::Requests, 5, "1m").named("x".repeat(33)),
            Limit::concurrent(2).with_burst(3),
            Limit {
                period: None,
                ..Limit::per(LimitUnit::Cents, 5, "1m")
            },
        ];
        for l in bad {
            let e = checked(std::slice::from_ref(&l)).unwrap_err();
            assert_eq!(e.code(), "invalid_argument", "{l:?}");
        }
        let twice = [Limit::concurrent(2), Limit::concurrent(3)];
        assert!(checked(&twice)
            .unwrap_err()
            .to_string()
            .contains("two limits"));
        let many = vec![Limit::concurrent(1); MAX_LIMITS + 1];
        assert!(checked(&many).is_err());
        assert_eq!(checked(&[]).unwrap(), None);
    }

    #[test]
    fn a_changed_limit_keeps_what_it_counted() {
        // 10 a minute, 6 used: raised to 20 a minute, 14 more pass at once; a
        // period of an hour for the same 10 leaves 4.
        let mut l = one(Limit::per(LimitUnit::Requests, 10, "1m"));
        assert_eq!(admit(&mut l, t(0), 0, 6), 6);
        let old = vec![l];
        let raised = checked(&[Limit::per(LimitUnit::Requests, 20, "1m")])
            .unwrap()
            .unwrap();
        let mut raised = carry(&old, raised, t(0)).remove(0);
        assert_eq!(admit(&mut raised, t(0), 0, 30), 14);
        let slower = checked(&[Limit::per(LimitUnit::Requests, 10, "1h")])
            .unwrap()
            .unwrap();
        let mut slower = carry(&old, slower, t(0)).remove(0);
        assert_eq!(admit(&mut slower, t(0), 0, 30), 4);
        // Renamed, or of another unit: a new limit, idle.
        let renamed = checked(&[Limit::per(LimitUnit::Requests, 10, "1m").named("rpm")]);
        assert_eq!(carry(&old, renamed.unwrap().unwrap(), t(0))[0].tat, 0);
        // Paid off by now: idle too.
        let later = checked(&[Limit::per(LimitUnit::Requests, 10, "1m")])
            .unwrap()
            .unwrap();
        assert_eq!(carry(&old, later, t(60_000_000))[0].tat, 0);
    }

    #[test]
    fn the_stored_form_round_trips() {
        let mut l = one(Limit::per(LimitUnit::Cents, 1_000_000_000_000, "31d"));
        l.tat = l.force(t(0) + Duration::days(1), 1_000_000);
        let text = encode(std::slice::from_ref(&l)).unwrap();
        assert_eq!(decode(Some(&text)).unwrap(), vec![l]);
        assert!(decode(Some("[{")).is_err());
        assert!(decode(None).unwrap().is_empty());
    }
}
