//! Budget periods, their boundaries, and duration strings.
//!
//! A periodic budget has an *anchor* (the instant the key was created) and resets
//! at every boundary after it: `day` every 24 h, `week` every 7 days, `month` on the
//! anchor's day of the month at the anchor's time, clamped to the month's length
//! (Jan 31 → Feb 28/29 → Mar 31 → Apr 30). Boundaries are always computed from the
//! anchor, never from the previous boundary, so clamping never drifts. UTC throughout.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

use crate::error::{bare, Error, Result};

/// How often a budget resets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    /// Every 24 hours from the anchor.
    Day,
    /// Every 7 days from the anchor.
    Week,
    /// Every calendar month on the anchor's day, clamped to the month's length.
    Month,
}

impl Period {
    /// Parses `day`, `week` or `month`; anything else is [`Error::InvalidPeriod`].
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "day" => Ok(Period::Day),
            "week" => Ok(Period::Week),
            "month" => Ok(Period::Month),
            _ => Err(Error::InvalidPeriod(format!(
                "{} (expected \"day\", \"week\", \"month\" or none)",
                bare(s)
            ))),
        }
    }

    /// The stored and public name.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    /// The `k`-th boundary after `anchor` (`k = 0` is the anchor itself).
    pub fn boundary(self, anchor: DateTime<Utc>, k: i64) -> DateTime<Utc> {
        match self {
            Period::Day => anchor + Duration::days(k),
            Period::Week => anchor + Duration::weeks(k),
            Period::Month => add_months(anchor, k),
        }
    }

    /// The first boundary strictly after `now` (and after `anchor`): the next reset.
    pub fn next_after(self, anchor: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        if now < anchor {
            return self.boundary(anchor, 1);
        }
        // Estimate the index, then correct by at most a step or two either way.
        let mut k = match self {
            Period::Day => (now - anchor).num_days(),
            Period::Week => (now - anchor).num_weeks(),
            Period::Month => {
                i64::from(now.year() - anchor.year()) * 12 + i64::from(now.month())
                    - i64::from(anchor.month())
            }
        }
        .max(0);
        while k > 0 && self.boundary(anchor, k) > now {
            k -= 1;
        }
        while self.boundary(anchor, k) <= now {
            k += 1;
        }
        self.boundary(anchor, k)
    }
}

impl Period {
    /// The period's length in days, nominally (a month counts 30): to order periods.
    pub fn nominal_days(self) -> u32 {
        match self {
            Period::Day => 1,
            Period::Week => 7,
            Period::Month => 30,
        }
    }

    /// Whether `t` is one of the boundaries of `anchor` (the anchor itself included).
    pub fn is_boundary(self, anchor: DateTime<Utc>, t: DateTime<Utc>) -> bool {
        t == anchor || (t > anchor && self.next_after(anchor, t - Duration::microseconds(1)) == t)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `anchor` moved by `months` calendar months, keeping its day (clamped) and time.
fn add_months(anchor: DateTime<Utc>, months: i64) -> DateTime<Utc> {
    let total = i64::from(anchor.year()) * 12 + i64::from(anchor.month0()) + months;
    let year = i32::try_from(total.div_euclid(12)).unwrap_or(i32::MAX);
    let month0 = u32::try_from(total.rem_euclid(12)).unwrap_or(0);
    let day = anchor.day().min(days_in_month(year, month0 + 1));
    NaiveDate::from_ymd_opt(year, month0 + 1, day)
        .map(|d| d.and_time(anchor.time()).and_utc())
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(ny, nm, 1)
        .and_then(|d| d.pred_opt())
        .map_or(28, |d| d.day())
}

/// The longest duration accepted: 100 years of 365 days, in seconds.
const MAX_DURATION_SECS: i64 = 100 * 365 * 86_400;

/// Parses `<n>s|m|h|d|w|mo` (`m` is minutes, `mo` is 30 days) with `n` a whole
/// decimal number. Zero is allowed: `expiresIn: "0h"` is how agentkey's users make
/// a key that is expired from the instant it is created. Anything else, or more
/// than 100 years, is [`Error::InvalidDuration`].
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || {
        Error::InvalidDuration(format!(
            "{} (expected a whole number followed by s, m, h, d, w or mo, e.g. \"7d\")",
            bare(s)
        ))
    };
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = s.split_at(digits);
    if num.is_empty() || num.len() > 12 {
        return Err(bad());
    }
    let n: i64 = num.parse().map_err(|_| bad())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "mo" => 30 * 86_400,
        _ => return Err(bad()),
    };
    match n.checked_mul(unit_secs) {
        Some(secs) if secs <= MAX_DURATION_SECS => Ok(Duration::seconds(secs)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    // Pins what counts as on an anchor's schedule: a reset time edited off it re-anchors.
    #[test]
    fn boundaries_of_an_anchor() {
        let a = t("2026-01-15T12:00:00Z");
        assert!(Period::Month.is_boundary(a, a));
        assert!(Period::Month.is_boundary(a, t("2026-03-15T12:00:00Z")));
        assert!(!Period::Month.is_boundary(a, t("2026-03-31T12:00:00Z")));
        assert!(Period::Day.is_boundary(a, t("2026-01-20T12:00:00Z")));
        assert!(!Period::Day.is_boundary(a, t("2026-01-20T12:00:00.001Z")));
        assert!(!Period::Week.is_boundary(a, t("2026-01-01T12:00:00Z")));
        let end = t("2026-01-31T00:00:00Z");
        assert!(Period::Month.is_boundary(end, t("2026-02-28T00:00:00Z")));
    }

    // Pins the clamped month sequence from an anchor on the 31st, across a leap year.
    #[test]
    fn month_keeps_anchor_day() {
        let a = t("2024-01-31T12:00:00Z");
        let seq: Vec<_> = (1..=4)
            .map(|k| Period::Month.boundary(a, k).to_rfc3339())
            .collect();
        assert_eq!(
            seq,
            [
                "2024-02-29T12:00:00+00:00",
                "2024-03-31T12:00:00+00:00",
                "2024-04-30T12:00:00+00:00",
                "2024-05-31T12:00:00+00:00"
            ]
        );
        assert_eq!(
            Period::Month.boundary(t("2025-01-31T00:00:00Z"), 1),
            t("2025-02-28T00:00:00Z")
        );
        assert_eq!(
            Period::Month.boundary(t("2025-11-30T00:00:00Z"), 3),
            t("2026-02-28T00:00:00Z")
        );
    }

    // Pins "next reset = first boundary after now, however many were missed" and "now == boundary has elapsed".
    #[test]
    fn next_after_skips_missed_periods() {
        let a = t("2026-01-31T12:00:00Z");
        assert_eq!(Period::Month.next_after(a, a), t("2026-02-28T12:00:00Z"));
        assert_eq!(
            Period::Month.next_after(a, t("2026-02-28T12:00:00Z")),
            t("2026-03-31T12:00:00Z")
        );
        assert_eq!(
            Period::Month.next_after(a, t("2026-07-15T00:00:00Z")),
            t("2026-07-31T12:00:00Z")
        );
        assert_eq!(
            Period::Day.next_after(a, t("2026-02-05T11:59:59Z")),
            t("2026-02-05T12:00:00Z")
        );
        assert_eq!(
            Period::Day.next_after(a, t("2026-02-05T12:00:00Z")),
            t("2026-02-06T12:00:00Z")
        );
        assert_eq!(
            Period::Week.next_after(a, t("2026-02-14T12:00:00Z")),
            t("2026-02-21T12:00:00Z")
        );
        assert_eq!(
            Period::Month.next_after(a, t("2025-12-01T00:00:00Z")),
            t("2026-02-28T12:00:00Z")
        );
    }

    // Pins the duration grammar, including the m/mo distinction and rejected forms.
    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::seconds(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::minutes(5));
        assert_eq!(parse_duration("2h").unwrap(), Duration::hours(2));
        assert_eq!(parse_duration("7d").unwrap(), Duration::days(7));
        assert_eq!(parse_duration("1w").unwrap(), Duration::days(7));
        assert_eq!(parse_duration("1mo").unwrap(), Duration::days(30));
        // Zero is agentkey's way to make an already-expired key.
        assert_eq!(parse_duration("0h").unwrap(), Duration::zero());
        assert_eq!(parse_duration("0s").unwrap(), Duration::zero());
        let e = parse_duration("7days").unwrap_err().to_string();
        assert!(e.starts_with("Invalid duration: 7days"), "{e}");
        for bad in [
            "",
            "d",
            "-1d",
            "1.5h",
            "1 d",
            "1D",
            "1y",
            "7dd",
            " 7d",
            "99999999999999d",
            "1217mo",
            "5215w",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_duration", "{bad:?}");
        }
    }
}
