//! Options as a binding received them, converted and checked once for every
//! language.
//!
//! A pool size or a timeout arrives from JavaScript as a double and from Python as
//! an arbitrary integer. Converting it in each binding gave three behaviours (a
//! negative pool size wrapped to four billion and aborted the process on a failed
//! allocation; `0 ms` became `1 ms`), so the bindings hand each option as it came
//! (a number as a double, a time as ISO text, metadata as JSON) to the `*Input`
//! types here, whose `into_options` applies the defaults, converts and checks; and
//! [`crate::KeyLeash::connect`] checks the Rust options against the same limits.
//! Every refusal is `invalid_argument` and names the option in the caller's
//! spelling ([`Spelling`]). [`SelfServeInput`]'s `into_options` lives in
//! [`crate::http`], beside the self-serve options it makes, so that this module
//! depends on no adapter.

use std::time::Duration;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::model::{parse_time, CacheOptions, CreateOptions, KeyOptions, Options};
use crate::ratelimit::{Limit, LimitUnit};

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
    if let Some(n) = o.pipeline_depth {
        if !(1..=8).contains(&n) {
            return Err(Error::arg(format!(
                "pipeline_depth must be from 1 to 8, got {n}"
            )));
        }
    }
    Ok(())
}

/// How the caller spells option names, so that a refusal names the option as the
/// caller wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spelling {
    /// `camelCase` (`poolSize`), as the npm package takes its options.
    Camel,
    /// `snake_case` (`pool_size`), as Rust and the Python package take them.
    Snake,
}

impl Spelling {
    fn pick(self, snake: &'static str, camel: &'static str) -> &'static str {
        match self {
            Spelling::Snake => snake,
            Spelling::Camel => camel,
        }
    }
}

/// The options of `connect` as a binding received them: each number as the
/// caller's runtime gave it (a double, whatever its value), the manual clock's
/// start as ISO 8601 text; an absent option (`None`) takes its default.
#[derive(Clone, Debug, Default)]
pub struct ConnectInput {
    /// The keys table (default `sdk_api_keys`).
    pub table_name: Option<String>,
    /// The prefix of minted keys (default `ak_`).
    pub key_prefix: Option<String>,
    /// When set, every scope given to `create` must be in this list.
    pub valid_scopes: Option<Vec<String>>,
    /// Maximum connections: a whole number from 1 to [`MAX_POOL_SIZE`].
    pub pool_size: Option<f64>,
    /// Milliseconds a call waits for a connection: 1 to [`MAX_ACQUIRE_TIMEOUT_MS`].
    pub acquire_timeout_ms: Option<f64>,
    /// Milliseconds one statement may run: 1 to [`MAX_STATEMENT_TIMEOUT_MS`].
    pub statement_timeout_ms: Option<f64>,
    /// A manual clock starting at this instant (ISO 8601 with an offset).
    pub manual_clock: Option<String>,
    /// The validation cache (absent: off).
    pub cache: Option<CacheInput>,
}

/// The validation cache's options as a binding received them (absent: the default).
#[derive(Clone, Debug, Default)]
pub struct CacheInput {
    /// Milliseconds a valid answer may be served: 1 to [`MAX_CACHE_TTL_MS`].
    pub ttl_ms: Option<f64>,
    /// The most answers kept: 1 to [`MAX_CACHE_ENTRIES`].
    pub max_entries: Option<f64>,
}

impl ConnectInput {
    /// The options of [`crate::KeyLeash::connect`], each converted and checked in
    /// the order of the fields, a refusal naming it in `spelling`.
    pub fn into_options(self, spelling: Spelling) -> Result<Options> {
        let d = Options::default();
        let timeout = |ms: Option<f64>, snake, camel, max, default| {
            ms.map_or(Ok(default), |ms| {
                millis(spelling.pick(snake, camel), ms, max)
            })
        };
        Ok(Options {
            table_name: self.table_name.unwrap_or(d.table_name),
            key_prefix: self.key_prefix.unwrap_or(d.key_prefix),
            valid_scopes: self.valid_scopes,
            pool_size: self
                .pool_size
                .map(|n| pool_size(spelling.pick("pool_size", "poolSize"), n))
                .transpose()?,
            acquire_timeout: timeout(
                self.acquire_timeout_ms,
                "acquire_timeout_ms",
                "acquireTimeoutMs",
                MAX_ACQUIRE_TIMEOUT_MS,
                d.acquire_timeout,
            )?,
            statement_timeout: timeout(
                self.statement_timeout_ms,
                "statement_timeout_ms",
                "statementTimeoutMs",
                MAX_STATEMENT_TIMEOUT_MS,
                d.statement_timeout,
            )?,
            clock: match self.manual_clock {
                Some(start) => Clock::manual(parse_time(
                    spelling.pick("manual_clock", "manualClock"),
                    &start,
                )?),
                None => d.clock,
            },
            cache: self.cache.map(|c| c.into_options(spelling)).transpose()?,
            pipeline_depth: None,
        })
    }
}

impl CacheInput {
    /// The validation cache's options, converted and checked, a refusal naming the
    /// option in `spelling` (`cache.ttl_ms`, `cache.ttlMs`, ...).
    pub fn into_options(self, spelling: Spelling) -> Result<CacheOptions> {
        let d = CacheOptions::default();
        Ok(CacheOptions {
            ttl: self.ttl_ms.map_or(Ok(d.ttl), |ms| {
                millis(
                    spelling.pick("cache.ttl_ms", "cache.ttlMs"),
                    ms,
                    MAX_CACHE_TTL_MS,
                )
            })?,
            max_entries: self.max_entries.map_or(Ok(d.max_entries), |n| {
                cache_entries(spelling.pick("cache.max_entries", "cache.maxEntries"), n)
            })?,
        })
    }
}

/// A key's metadata as a binding has it.
#[derive(Clone, Debug, PartialEq)]
pub enum Metadata {
    /// A JSON value (the npm package's addon converts the caller's object into one),
    /// serialized once for the store.
    Value(serde_json::Value),
    /// JSON text as the caller's runtime wrote it (the Python package's
    /// `json.dumps`): checked once and stored as it is, so it is converted only
    /// where it was written.
    Json(String),
}

/// The options of `create` and `ensure_subject` as a binding received them:
/// `expires_at` as ISO 8601 text, the metadata as [`Metadata`]; an absent option
/// takes its default.
#[derive(Clone, Debug, Default)]
pub struct CreateInput {
    /// The owning account (default empty: the parent's, or `ensure_subject`'s subject).
    pub account_id: Option<String>,
    /// The user the key belongs to.
    pub user_id: Option<String>,
    /// Scopes; `None` grants everything.
    pub scopes: Option<Vec<String>>,
    /// The cap in cents; `None` is uncapped.
    pub budget_cents: Option<f64>,
    /// `day`, `week`, `month`, or `None` for a lifetime cap.
    pub budget_period: Option<String>,
    /// Expiry as a duration from now.
    pub expires_in: Option<String>,
    /// Expiry as an ISO 8601 instant with an offset.
    pub expires_at: Option<String>,
    /// The human who authorized the key.
    pub delegated_by: Option<String>,
    /// A label (default `default`).
    pub name: Option<String>,
    /// Free-form JSON kept with the key (at most [`crate::MAX_METADATA_LEN`] bytes
    /// of JSON text).
    pub metadata: Option<Metadata>,
    /// The parent key's id.
    pub parent_id: Option<i64>,
    /// Rate limits (empty: none).
    pub limits: Vec<LimitInput>,
}

/// A rate limit as a binding received it: the unit by name, the numbers as
/// doubles.
#[derive(Clone, Debug, Default)]
pub struct LimitInput {
    /// The limit's name (default: the unit's).
    pub name: Option<String>,
    /// `requests`, `cents` or `concurrent`.
    pub unit: String,
    /// How many per period, or holds at once: a whole number from 1 to
    /// [`crate::ratelimit::MAX_LIMIT`].
    pub limit: f64,
    /// The period of `requests` and `cents` (`1m`, `1h`, …).
    pub period: Option<String>,
    /// How many at once from idle: a whole number from 1 to
    /// [`crate::ratelimit::MAX_LIMIT`] (default `limit`).
    pub burst: Option<f64>,
}

/// The limits of `create` or `set_limits`, each converted by
/// [`LimitInput::into_limit`] (named by its position).
pub fn limits(inputs: Vec<LimitInput>) -> Result<Vec<Limit>> {
    inputs
        .into_iter()
        .enumerate()
        .map(|(i, l)| l.into_limit(i))
        .collect()
}

impl LimitInput {
    /// The limit, its numbers converted (`invalid_argument` naming
    /// `limits[index]` for a fraction or a number out of range); the other rules
    /// are `create`'s.
    pub fn into_limit(self, index: usize) -> Result<Limit> {
        let max = crate::ratelimit::MAX_LIMIT;
        Ok(Limit {
            unit: LimitUnit::parse(&self.unit)?,
            limit: whole(&format!("limits[{index}].limit"), self.limit, 1, max)?,
            burst: self
                .burst
                .map(|b| whole(&format!("limits[{index}].burst"), b, 1, max))
                .transpose()?,
            name: self.name,
            period: self.period,
        })
    }
}

impl CreateInput {
    /// The options `create` takes: metadata JSON text that does not parse is
    /// refused (`metadata must be JSON`), then an `expires_at` that is no ISO 8601
    /// instant, named in `spelling`. The other rules are `create`'s.
    pub fn into_options(self, spelling: Spelling) -> Result<KeyOptions> {
        let (value, text) = match self.metadata {
            None => (None, None),
            Some(Metadata::Value(v)) => (Some(v), None),
            Some(Metadata::Json(text)) => {
                // Parsed to be checked only (a lone surrogate escape included, which
                // no store could keep); what is stored is the text.
                if serde_json::from_str::<serde_json::Value>(&text).is_err() {
                    return Err(Error::arg("metadata must be JSON"));
                }
                (None, Some(text))
            }
        };
        let expires_at = self
            .expires_at
            .map(|t| parse_time(spelling.pick("expires_at", "expiresAt"), &t))
            .transpose()?;
        let mut options = KeyOptions::from(CreateOptions {
            account_id: self.account_id.unwrap_or_default(),
            user_id: self.user_id,
            scopes: self.scopes,
            budget_cents: self.budget_cents,
            budget_period: self.budget_period,
            expires_in: self.expires_in,
            expires_at,
            delegated_by: self.delegated_by,
            name: self.name,
            metadata: value,
            parent_id: self.parent_id,
            limits: limits(self.limits)?,
        });
        if text.is_some() {
            options.metadata = text;
        }
        Ok(options)
    }
}

/// A rate limit of the self-serve routes as a binding received it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum RateLimit {
    /// Not given: the default of [`crate::http::SelfServeOptions`].
    #[default]
    Default,
    /// Turned off (`false`).
    Off,
    /// At most this many an hour, as the caller's runtime gave the number.
    PerHour(f64),
}

/// The options of the self-serve routes as a binding received them: rate limits
/// as numbers (doubles, whatever their value); an absent option takes its default.
#[derive(Clone, Debug, Default)]
pub struct SelfServeInput {
    /// The scopes `POST /signup` may grant.
    pub signup_scopes: Option<Vec<String>>,
    /// Whether signup needs an email (default true).
    pub require_email: Option<bool>,
    /// Expiry of signup keys and the longest a signup may ask for (default `24h`).
    pub signup_expires_in: Option<String>,
    /// Budget of signup keys and the largest a signup may ask for.
    pub signup_budget_cents: Option<f64>,
    /// Period of the signup budget.
    pub signup_budget_period: Option<String>,
    /// Signups per client address per hour.
    pub signup_rate_limit: RateLimit,
    /// Signups per email domain per hour (absent: off).
    pub signup_rate_limit_per_domain: Option<f64>,
    /// Children a key tree may mint per hour.
    pub mint_rate_limit: RateLimit,
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

    // Pins the converters of the bindings' options: one rule, each language's names.
    #[test]
    fn inputs() {
        let e = |input: ConnectInput, spelling| input.into_options(spelling).unwrap_err();
        let pool = ConnectInput {
            pool_size: Some(-1.0),
            ..ConnectInput::default()
        };
        assert_eq!(
            e(pool.clone(), Spelling::Camel).to_string(),
            "invalid argument: poolSize must be a whole number from 1 to 1000, got -1"
        );
        assert!(e(pool, Spelling::Snake)
            .to_string()
            .contains("pool_size must be"));
        let ttl = ConnectInput {
            cache: Some(CacheInput {
                ttl_ms: Some(0.5),
                max_entries: None,
            }),
            ..ConnectInput::default()
        };
        assert!(e(ttl.clone(), Spelling::Camel)
            .to_string()
            .contains("cache.ttlMs must be"));
        assert!(e(ttl, Spelling::Snake)
            .to_string()
            .contains("cache.ttl_ms must be"));
        let clock = ConnectInput {
            manual_clock: Some("soon".into()),
            ..ConnectInput::default()
        };
        assert!(e(clock, Spelling::Camel)
            .to_string()
            .contains("manualClock must be an ISO 8601 time"));
        let o = ConnectInput::default()
            .into_options(Spelling::Camel)
            .unwrap();
        let d = Options::default();
        assert_eq!(
            (o.pool_size, o.acquire_timeout, o.statement_timeout),
            (d.pool_size, d.acquire_timeout, d.statement_timeout)
        );
        assert!(o.cache.is_none() && o.clock.as_manual().is_none());

        let metadata = |m| CreateInput {
            metadata: Some(m),
            ..CreateInput::default()
        };
        let text = metadata(Metadata::Json(r#"{"b":1,"a":"x"}"#.into()))
            .into_options(Spelling::Snake)
            .unwrap();
        assert_eq!(text.metadata.as_deref(), Some(r#"{"b":1,"a":"x"}"#));
        let value = metadata(Metadata::Value(serde_json::json!({"b": 1})))
            .into_options(Spelling::Camel)
            .unwrap();
        assert_eq!(value.metadata.as_deref(), Some(r#"{"b":1}"#));
        for bad in ["{", "", r#"{"a":"\ud800"}"#] {
            let e = metadata(Metadata::Json(bad.into()))
                .into_options(Spelling::Snake)
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                "invalid argument: metadata must be JSON",
                "{bad}"
            );
        }
        let at = CreateInput {
            expires_at: Some("tomorrow".into()),
            ..CreateInput::default()
        };
        assert!(at
            .clone()
            .into_options(Spelling::Snake)
            .unwrap_err()
            .to_string()
            .contains("expires_at must be"));
        assert!(at
            .into_options(Spelling::Camel)
            .unwrap_err()
            .to_string()
            .contains("expiresAt must be"));
    }

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
