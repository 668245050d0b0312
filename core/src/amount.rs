//! Money: exact integer micro-cents inside, cents as a number outside.
//!
//! 1 cent = 1,000,000 micro-cents. Every amount that enters the core is a finite,
//! non-negative number of cents, rounded to the nearest micro-cent; a positive
//! amount never rounds to zero. Arithmetic on stored amounts saturates instead of
//! overflowing, and comparisons against a cap are done in `i128`, so no sum of
//! valid amounts can wrap.
//!
//! agentkey's INTEGER columns (`budget_cents`, `budget_used_cents`) are kept as
//! *mirrors* of the exact values: the cap rounded down and the usage rounded up
//! (both conservative), saturated to the `INTEGER` range.

/// Micro-cents in one cent.
pub const MICROS_PER_CENT: i64 = 1_000_000;

/// The largest amount accepted anywhere, in cents (ten billion dollars).
pub const MAX_CENTS: f64 = 1e12;

/// Converts a caller's cents to micro-cents: `None` when the number is NaN,
/// infinite, negative or above [`MAX_CENTS`].
pub fn cents_to_micros(cents: f64) -> Option<i64> {
    if !cents.is_finite() || !(0.0..=MAX_CENTS).contains(&cents) {
        return None;
    }
    let scaled = (cents * 1e6).round();
    // In range by the check above: |scaled| <= 1e18 < i64::MAX.
    #[allow(clippy::cast_possible_truncation)]
    let micros = scaled as i64;
    Some(if cents > 0.0 { micros.max(1) } else { micros })
}

/// Micro-cents as cents, the public unit (exact for every value below 2^53 micro-cents).
#[allow(clippy::cast_precision_loss)]
pub fn micros_to_cents(micros: i64) -> f64 {
    micros as f64 / 1e6
}

/// The value of agentkey's `budget_cents` column for an exact cap: rounded down.
pub fn cap_mirror(micros: i64) -> i32 {
    saturate_i32(micros.div_euclid(MICROS_PER_CENT))
}

/// The value of agentkey's `budget_used_cents` column for an exact usage: rounded up.
pub fn used_mirror(micros: i64) -> i32 {
    let whole = micros.div_euclid(MICROS_PER_CENT);
    let up = if micros.rem_euclid(MICROS_PER_CENT) > 0 {
        whole + 1
    } else {
        whole
    };
    saturate_i32(up)
}

/// Whole cents from an agentkey column, as micro-cents (saturating).
pub fn whole_cents_to_micros(cents: i64) -> i64 {
    cents.saturating_mul(MICROS_PER_CENT)
}

fn saturate_i32(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Pins the rounding rule: nearest micro-cent, positive never zero, bad input refused.
    #[test]
    fn converts_cents() {
        assert_eq!(cents_to_micros(1.0), Some(1_000_000));
        assert_eq!(cents_to_micros(0.001), Some(1_000));
        assert_eq!(cents_to_micros(0.0000004), Some(1));
        assert_eq!(cents_to_micros(0.0000016), Some(2));
        assert_eq!(cents_to_micros(0.0), Some(0));
        assert_eq!(cents_to_micros(-0.0), Some(0));
        assert_eq!(cents_to_micros(-1.0), None);
        assert_eq!(cents_to_micros(f64::NAN), None);
        assert_eq!(cents_to_micros(f64::INFINITY), None);
        assert_eq!(cents_to_micros(1e12 + 1.0), None);
        assert_eq!(micros_to_cents(1_000), 0.001);
    }

    // Pins 1,000 charges of 0.001 cents summing to exactly one cent.
    #[test]
    fn sub_cent_sums_are_exact() {
        let one = cents_to_micros(0.001).unwrap();
        assert_eq!((0..1000).map(|_| one).sum::<i64>(), MICROS_PER_CENT);
    }

    // Pins the conservative mirrors: cap rounded down, usage rounded up, saturated.
    #[test]
    fn mirrors() {
        assert_eq!(cap_mirror(2_500_000), 2);
        assert_eq!(used_mirror(2_500_000), 3);
        assert_eq!(used_mirror(2_000_000), 2);
        assert_eq!(used_mirror(1), 1);
        assert_eq!(cap_mirror(i64::MAX), i32::MAX);
    }
}
