//! Range checks of the connect options, shared by every language.
//!
//! A pool size or a timeout arrives from JavaScript as a double and from Python as
//! an arbitrary integer. Converting it in each binding gave three behaviours (a
//! negative pool size wrapped to four billion and aborted the process on a failed
//! allocation; `0 ms` became `1 ms`), so the bindings hand the number as it came to
//! these functions, and [`crate::KeyLeash::connect`] checks the Rust options
//! against the same limits. Every refusal is `invalid_argument` and names the
//! option in the caller's spelling.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::model::Options;

/// The largest connection pool accepted.
pub const MAX_POOL_SIZE: u32 = 1000;
/// The longest acquire timeout accepted, in milliseconds (10 minutes).
pub const MAX_ACQUIRE_TIMEOUT_MS: u64 = 600_000;
/// The longest statement timeout accepted, in milliseconds (one day).
pub const MAX_STATEMENT_TIMEOUT_MS: u64 = 86_400_000;

/// The longest validation-cache time to live accepted, in milliseconds (1 hour).
pub const MAX_CACHE_TTL_MS: u64 = 3_600_000;
/// The most validation-cache entries accepted.
pub const MAX_CACHE_ENTRIES: u64 = 1_000_000;

/// Converts a validation cache's `maxEntries` given as a number: a whole number
/// from 1 to [`MAX_CACHE_ENTRIES`], else `invalid_argument` naming `field`.
pub fn cache_entries(field: &str, n: f64) -> Result<usize> {
    whole(field, n, 1, MAX_CACHE_ENTRIES).map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// Converts a pool size given as a number: a whole number from 1 to
/// [`MAX_POOL_SIZE`], else `invalid_argument` naming `field`.
pub fn pool_size(field: &str, n: f64) -> Result<u32> {
    whole(field, n, 1, u64::from(MAX_POOL_SIZE)).map(|n| u32::try_from(n).unwrap_or(MAX_POOL_SIZE))
}

/// Converts a timeout given as a number of milliseconds: a whole number from 1 to
/// `max_ms`, else `invalid_argument` naming `field`. Zero is refused rather than
/// read as "no timeout": a store that hangs must fail closed.
pub fn millis(field: &str, ms: f64, max_ms: u64) -> Result<Duration> {
    whole(field, ms, 1, max_ms).map(Duration::from_millis)
}

/// Checks the options of `connect` against the limits above (for Rust callers,
/// whose values did not go through the converters).
pub(crate) fn check(o: &Options) -> Result<()> {
    if let Some(n) = o.pool_size {
        pool_size("pool_size", f64::from(n))?;
    }
    for (field, d, max) in [
        ("acquire_timeout", o.acquire_timeout, MAX_ACQUIRE_TIMEOUT_MS),
        (
            "statement_timeout",
            o.statement_timeout,
            MAX_STATEMENT_TIMEOUT_MS,
        ),
    ] {
        let ms = d.as_millis();
        if ms < 1 || ms > u128::from(max) {
            return Err(Error::arg(format!(
                "{field} must be from 1 ms to {max} ms, got {ms} ms"
            )));
        }
    }
    if let Some(c) = &o.cache {
        let ms = c.ttl.as_millis();
        if ms < 1 || ms > u128::from(MAX_CACHE_TTL_MS) {
            return Err(Error::arg(format!(
                "cache.ttl must be from 1 ms to {MAX_CACHE_TTL_MS} ms, got {ms} ms"
            )));
        }
        #[allow(clippy::cast_precision_loss)] // at most usize, compared to 1e6
        cache_entries("cache.max_entries", c.max_entries as f64)?;
    }
    Ok(())
}

fn whole(field: &str, n: f64, min: u64, max: u64) -> Result<u64> {
    #[allow(clippy::cast_precision_loss)] // min and max are far below 2^53
    let in_range = n.fract() == 0.0 && n >= min as f64 && n <= max as f64;
    if in_range {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked above
        return Ok(n as u64);
    }
    Err(Error::arg(format!(
        "{field} must be a whole number from {min} to {max}, got {n}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Pins the refusals that used to wrap around or abort, and the accepted edges.
    #[test]
    fn limits() {
        for bad in [
            -1.0,
            0.0,
            1.5,
            1001.0,
            2_147_483_648.0,
            1e10,
            f64::NAN,
            f64::INFINITY,
        ] {
            let e = pool_size("poolSize", bad).unwrap_err();
            assert_eq!(e.code(), "invalid_argument");
            assert!(e
                .to_string()
                .contains("poolSize must be a whole number from 1 to 1000, got"));
        }
        assert_eq!(pool_size("poolSize", 1.0).unwrap(), 1);
        assert_eq!(pool_size("poolSize", 1000.0).unwrap(), 1000);
        for bad in [-5.0, 0.0, 600_001.0, 0.5] {
            assert!(millis("acquireTimeoutMs", bad, MAX_ACQUIRE_TIMEOUT_MS).is_err());
        }
        assert_eq!(
            millis("acquireTimeoutMs", 600_000.0, MAX_ACQUIRE_TIMEOUT_MS).unwrap(),
            Duration::from_secs(600)
        );
        let o = Options {
            statement_timeout: Duration::ZERO,
            ..Options::default()
        };
        assert!(check(&o)
            .unwrap_err()
            .to_string()
            .contains("statement_timeout"));
        assert!(check(&Options::default()).is_ok());
        for bad in [
            crate::model::CacheOptions {
                ttl: Duration::ZERO,
                max_entries: 10,
            },
            crate::model::CacheOptions {
                ttl: Duration::from_secs(3601),
                max_entries: 10,
            },
            crate::model::CacheOptions {
                ttl: Duration::from_secs(1),
                max_entries: 0,
            },
            crate::model::CacheOptions {
                ttl: Duration::from_secs(1),
                max_entries: 1_000_001,
            },
        ] {
            let o = Options {
                cache: Some(bad),
                ..Options::default()
            };
            let e = check(&o).unwrap_err();
            assert!(e.to_string().contains("cache."), "{e}");
        }
    }
}
