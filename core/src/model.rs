//! The public option and result types, shaped like docs/api.md.
//!
//! Amounts are cents as `f64` at this boundary (exact micro-cents inside); times are
//! UTC. Results serialize (serde) to exactly the camelCase JSON of docs/api.md, with
//! timestamps as ISO 8601 with milliseconds and `Z`, so bindings can pass them on.

use std::fmt;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::clock::Clock;

/// Options of [`crate::KeyLeash::connect`].
#[derive(Clone, Debug)]
pub struct Options {
    /// The keys table, `name` or `schema.name` (Postgres only). Default `sdk_api_keys`.
    pub table_name: String,
    /// The prefix of minted keys: 1 to 16 of `[A-Za-z0-9_-]`. Default `ak_`.
    pub key_prefix: String,
    /// When set, every scope given to `create`/`ensure_subject` must be in it.
    pub valid_scopes: Option<Vec<String>>,
    /// Maximum connections. Default 10 for Postgres, 4 for a SQLite file, and always
    /// 1 for `sqlite::memory:` (an in-memory database lives in one connection).
    pub pool_size: Option<u32>,
    /// How long a call waits for a connection before failing with `unavailable`.
    /// Default 5 s: a store that is down fails closed instead of hanging.
    pub acquire_timeout: StdDuration,
    /// The longest one statement may run (Postgres `statement_timeout`, SQLite's
    /// busy timeout), so a stuck lock fails with `unavailable` instead of hanging.
    /// Default 10 s. `migrate` is exempt on Postgres.
    pub statement_timeout: StdDuration,
    /// The source of "now". Default [`Clock::System`].
    pub clock: Clock,
    /// The opt-in validation cache (`None`, the default, is off). See
    /// [`CacheOptions`] and docs/semantics.md "Validation cache".
    pub cache: Option<CacheOptions>,
    /// How many spend batches of one lane may be in flight on Postgres, each
    /// started once the one before holds its row locks: 1 to 8. `None`, the
    /// default, is 1: two were measured slower on a durable server and with
    /// `fsync` off (docs/semantics.md, "Concurrency"). A knob for measurements
    /// and tests, not part of the bindings' API; SQLite always runs one batch at
    /// a time.
    #[doc(hidden)]
    pub pipeline_depth: Option<usize>,
}

/// The validation cache of one `KeyLeash`: valid answers are kept in this process
/// for at most `ttl` (and never past the key's expiry or budget reset), at most
/// `max_entries` of them. On Postgres, revokes and exhausted budgets reach every
/// process within milliseconds through `LISTEN`/`NOTIFY`; changes made by hand
/// in SQL are seen after `ttl`. Charges never read the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheOptions {
    /// How long a valid answer may be served: 1 ms to 1 hour. Default 10 s.
    pub ttl: StdDuration,
    /// The most answers kept: 1 to 1,000,000; the oldest goes first. Default 10,000.
    pub max_entries: usize,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            ttl: StdDuration::from_secs(10),
            max_entries: 10_000,
        }
    }
}

/// Counters of a validation cache ([`crate::KeyLeash::cache_stats`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheStats {
    /// Answers held now.
    pub entries: usize,
    /// Validates answered from the cache.
    pub hits: u64,
    /// Validates that went to the store.
    pub misses: u64,
    /// Whether the cache serves answers: on Postgres only while its `LISTEN`
    /// connection is up; always on SQLite.
    pub listening: bool,
    /// How many times the `LISTEN` connection was lost (each emptied the cache).
    pub disconnects: u64,
    /// The Postgres channel the cache listens on (`None` on SQLite). After changing
    /// keys by hand in SQL, `SELECT pg_notify('<channel>', '*')` empties every
    /// process's cache at once.
    pub channel: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            table_name: "sdk_api_keys".into(),
            key_prefix: "ak_".into(),
            valid_scopes: None,
            pool_size: None,
            acquire_timeout: StdDuration::from_secs(5),
            statement_timeout: StdDuration::from_secs(10),
            clock: Clock::System,
            cache: None,
            pipeline_depth: None,
        }
    }
}

/// What a new key (or subject row) may do, spend and until when. Only `account_id`
/// is required by `create`; `ensure_subject` defaults it to the subject.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// The owning account (1 to 512 bytes).
    pub account_id: String,
    /// The user the key belongs to, if any.
    pub user_id: Option<String>,
    /// Scopes; `None` grants everything. Checked against `valid_scopes`.
    pub scopes: Option<Vec<String>>,
    /// The spending cap in cents; `None` is uncapped. 0 to 1e12, sub-cent allowed.
    pub budget_cents: Option<f64>,
    /// `day`, `week`, `month`, or `None` for a lifetime cap.
    pub budget_period: Option<String>,
    /// Expiry as a duration from now (`30s`, `15m`, `12h`, `7d`, `2w`, `1mo`).
    pub expires_in: Option<String>,
    /// Expiry as an instant, which must be in the future. Exclusive with `expires_in`.
    pub expires_at: Option<DateTime<Utc>>,
    /// The human who authorized the key (delegation).
    pub delegated_by: Option<String>,
    /// A label. Default `default`.
    pub name: Option<String>,
    /// Free-form JSON kept with the key (at most 16 KiB serialized).
    pub metadata: Option<serde_json::Value>,
    /// The parent key's id: every charge of the new key also counts against the
    /// parent and its ancestors, and revoking or expiring one of them disables it.
    /// The parent must be live and of the same account (an empty `account_id`
    /// takes the parent's).
    pub parent_id: Option<i64>,
    /// Rate limits (at most 8, names unique): every charge and reserve of the
    /// key counts against them and against its ancestors' (see
    /// [`crate::ratelimit`]). Empty: none.
    pub limits: Vec<crate::ratelimit::Limit>,
}

/// What [`crate::KeyLeash::create`] and [`crate::KeyLeash::ensure_subject`] take:
/// [`CreateOptions`] with the metadata as the JSON text the store keeps. A
/// `CreateOptions` converts into one (its metadata serialized once);
/// [`crate::options::CreateInput`] makes one from options as a binding received
/// them, whose metadata may already be JSON text.
#[derive(Clone, Debug)]
pub struct KeyOptions {
    /// The options; their `metadata` is always `None`, it is `metadata` below.
    pub(crate) options: CreateOptions,
    /// The metadata as JSON text.
    pub(crate) metadata: Option<String>,
}

impl From<CreateOptions> for KeyOptions {
    fn from(mut options: CreateOptions) -> Self {
        let metadata = options.metadata.take().map(|v| v.to_string());
        Self { options, metadata }
    }
}

/// A charge: the cost in cents and an optional idempotency key.
#[derive(Clone, Debug, Default)]
pub struct Charge {
    /// The cost in cents: finite and ≥ 0, rounded to the nearest micro-cent.
    pub cost_cents: f64,
    /// Names the charge, per key: a repeat with the same cost is applied once and
    /// answers [`ChargeResult::Replayed`] (the first result, marked as a repeat);
    /// the same name with another cost, or one a reserve used, is refused
    /// (`idempotency_conflict`). 1 to 256 bytes.
    pub idempotency_key: Option<String>,
}

impl Charge {
    /// A charge of `cost_cents` without an idempotency key.
    pub fn cents(cost_cents: f64) -> Self {
        Self {
            cost_cents,
            idempotency_key: None,
        }
    }

    /// The same charge, made idempotent under `key`.
    #[must_use]
    pub fn idempotent(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// The result of `create`. The raw key is here once and never again; `Debug`
/// redacts it so it cannot leak into a log.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    /// The raw key to hand to the caller.
    pub key: String,
    /// The key's id.
    pub id: i64,
    /// Its scopes (`None` = all).
    pub scopes: Option<Vec<String>>,
    /// Its cap in cents (`None` = uncapped).
    pub budget_cents: Option<f64>,
    /// Its budget period.
    pub budget_period: Option<String>,
    /// When it expires.
    #[serde(serialize_with = "ser_opt_time")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedKey")
            .field("key", &"<redacted>")
            .field("id", &self.id)
            .field("scopes", &self.scopes)
            .field("budget_cents", &self.budget_cents)
            .field("budget_period", &self.budget_period)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why a key is not valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidReason {
    /// Unknown, malformed, or its checksum is wrong.
    Invalid,
    /// Its expiry has passed (or its parent's).
    Expired,
    /// It was revoked (or its parent was).
    Revoked,
    /// Its used + held amount has reached its cap (or an ancestor's).
    BudgetExceeded,
}

impl InvalidReason {
    /// The wire name: `invalid`, `expired`, `revoked` or `budget_exceeded`.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::Invalid => "invalid",
            InvalidReason::Expired => "expired",
            InvalidReason::Revoked => "revoked",
            InvalidReason::BudgetExceeded => "budget_exceeded",
        }
    }
}

/// A valid key as `validate` sees it, after any elapsed period rolled over.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    /// The key's id.
    pub id: i64,
    /// The owning account ("" if the column is NULL in an adopted table).
    pub account_id: String,
    /// The owning user.
    pub user_id: Option<String>,
    /// Scopes (`None` = all).
    pub scopes: Option<Vec<String>>,
    /// The cap in cents (`None` = uncapped).
    pub budget_cents: Option<f64>,
    /// Spent in the current period, in cents.
    pub budget_used_cents: f64,
    /// Held by in-flight reservations, in cents.
    pub budget_held_cents: f64,
    /// `cap - used - held`, never below 0 (`None` = uncapped).
    pub budget_remaining_cents: Option<f64>,
    /// The budget period.
    pub budget_period: Option<String>,
    /// The next reset.
    #[serde(serialize_with = "ser_opt_time")]
    pub budget_reset_at: Option<DateTime<Utc>>,
    /// The expiry.
    #[serde(serialize_with = "ser_opt_time")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The human who authorized the key.
    pub delegated_by: Option<String>,
    /// The label.
    pub name: String,
    /// The key's own rate limits (its ancestors' bind it too); absent from the
    /// JSON when it has none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<crate::ratelimit::LimitView>,
}

impl KeyInfo {
    /// Whether this key grants `scope` (see [`crate::has_scope`]).
    pub fn has_scope(&self, scope: &str) -> bool {
        crate::scope::has_scope(self.scopes.as_deref(), scope)
    }
}

/// The result of `validate`: `{valid: true, ...}` or `{valid: false, reason}`.
#[derive(Clone, Debug, PartialEq)]
pub enum Validation {
    /// The key may be used.
    Valid(Box<KeyInfo>),
    /// The key may not be used, and why.
    Invalid(InvalidReason),
}

impl Validation {
    /// Whether the key is valid.
    pub fn is_valid(&self) -> bool {
        matches!(self, Validation::Valid(_))
    }

    /// The key's details when valid.
    pub fn info(&self) -> Option<&KeyInfo> {
        match self {
            Validation::Valid(info) => Some(info),
            Validation::Invalid(_) => None,
        }
    }

    /// The reason when not valid.
    pub fn reason(&self) -> Option<InvalidReason> {
        match self {
            Validation::Valid(_) => None,
            Validation::Invalid(r) => Some(*r),
        }
    }

    /// Whether the key is valid and grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.info().is_some_and(|i| i.has_scope(scope))
    }
}

impl Serialize for Validation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Valid<'a> {
            valid: bool,
            #[serde(flatten)]
            info: &'a KeyInfo,
        }
        match self {
            Validation::Valid(info) => Valid { valid: true, info }.serialize(s),
            Validation::Invalid(reason) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("valid", &false)?;
                m.serialize_entry("reason", reason)?;
                m.end()
            }
        }
    }
}

/// Why a charge was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeRefusal {
    /// It would take the key (or an ancestor) past its cap.
    BudgetExceeded,
    /// No such key (unknown, malformed or bad checksum).
    InvalidKey,
    /// The cost is NaN, infinite, negative or above 1e12 cents.
    InvalidCost,
    /// The key has expired.
    Expired,
    /// The key was revoked.
    Revoked,
    /// The idempotency key was first used for another operation: a charge of
    /// another cost, a reserve of another estimate, or a reserve where this is a
    /// charge (or a charge where this is a reserve). Nothing changed.
    IdempotencyConflict,
    /// A reserve repeated an idempotency key: the first hold is named in the
    /// result, and nothing new is held (see [`ReserveResult::Replayed`]).
    IdempotencyReplayed,
    /// A rate limit of the key or an ancestor refused it (see [`RateLimited`]).
    RateLimited,
}

/// A refusal by a rate limit: which one, and when the same request could pass.
/// Nothing was counted against any limit or budget.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimited {
    /// The refusing limit's name (the one that frees last, when several refuse).
    pub limit: String,
    /// Seconds until the same request would pass (rounded up to the
    /// millisecond), or `None` when it never can under this limit: a cost above
    /// the limit's burst, or a `concurrent` limit, which frees when a hold ends.
    pub retry_after: Option<f64>,
}

impl ChargeRefusal {
    /// The wire name, e.g. `budget_exceeded`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeRefusal::BudgetExceeded => "budget_exceeded",
            ChargeRefusal::InvalidKey => "invalid_key",
            ChargeRefusal::InvalidCost => "invalid_cost",
            ChargeRefusal::Expired => "expired",
            ChargeRefusal::Revoked => "revoked",
            ChargeRefusal::IdempotencyConflict => "idempotency_conflict",
            ChargeRefusal::IdempotencyReplayed => "idempotency_replayed",
            ChargeRefusal::RateLimited => "rate_limited",
        }
    }
}

/// The result of a charge (`track_usage`).
#[derive(Clone, Debug, PartialEq)]
pub enum ChargeResult {
    /// Charged.
    Charged {
        /// Spent in the current period after this charge, in cents.
        budget_used_cents: f64,
        /// What is left, never below 0 (`None` = uncapped).
        budget_remaining_cents: Option<f64>,
    },
    /// A repeat of an idempotency key already charged with the same cost: the
    /// first charge's numbers, nothing charged again. It succeeds (the cost is on
    /// the ledger, once) but it is no new charge: an app must not serve new work
    /// under it. Serialized with `"replayed": "charged"`.
    Replayed {
        /// Spent after the first charge, in cents.
        budget_used_cents: f64,
        /// What was left after the first charge (`None` = uncapped).
        budget_remaining_cents: Option<f64>,
    },
    /// A zero cost: it succeeds, changes nothing and reports no numbers.
    Free,
    /// Refused; nothing changed.
    Refused(ChargeRefusal),
    /// Refused by a rate limit (reason `rate_limited`); nothing changed.
    /// Serialized with the limit's name and `retryAfter`.
    Limited(RateLimited),
}

impl ChargeResult {
    /// Whether the charge succeeded (including a zero cost).
    pub fn success(&self) -> bool {
        !matches!(self, ChargeResult::Refused(_) | ChargeResult::Limited(_))
    }

    /// The refusal reason, if refused.
    pub fn reason(&self) -> Option<ChargeRefusal> {
        match self {
            ChargeResult::Refused(r) => Some(*r),
            ChargeResult::Limited(_) => Some(ChargeRefusal::RateLimited),
            _ => None,
        }
    }
}

impl Serialize for ChargeResult {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("success", &self.success())?;
        match self {
            ChargeResult::Charged {
                budget_used_cents,
                budget_remaining_cents,
            } => {
                m.serialize_entry("budgetUsedCents", budget_used_cents)?;
                m.serialize_entry("budgetRemainingCents", budget_remaining_cents)?;
            }
            ChargeResult::Replayed {
                budget_used_cents,
                budget_remaining_cents,
            } => {
                m.serialize_entry("budgetUsedCents", budget_used_cents)?;
                m.serialize_entry("budgetRemainingCents", budget_remaining_cents)?;
                m.serialize_entry("replayed", "charged")?;
            }
            ChargeResult::Free => {}
            ChargeResult::Refused(reason) => m.serialize_entry("reason", reason)?,
            ChargeResult::Limited(limited) => limited.entries(&mut m)?,
        }
        m.end()
    }
}

impl RateLimited {
    /// The refusal `r`, its wait in seconds rounded up to the millisecond.
    pub(crate) fn from(r: crate::ratelimit::Refused) -> Self {
        Self {
            limit: r.limit,
            retry_after: r
                .retry_after_us
                .map(|us| (us.saturating_add(999) / 1000) as f64 / 1000.0),
        }
    }

    /// Writes `reason`, `limit` and `retryAfter` into a result's map.
    fn entries<M: SerializeMap>(&self, m: &mut M) -> Result<(), M::Error> {
        m.serialize_entry("reason", &ChargeRefusal::RateLimited)?;
        m.serialize_entry("limit", &self.limit)?;
        m.serialize_entry("retryAfter", &self.retry_after)
    }
}

/// A hold to place before a spend whose cost is not known yet (`reserve`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reserve {
    /// The estimate to hold, in cents: finite, > 0, at most 1e12.
    pub cost_cents: f64,
    /// How long the hold counts if nobody settles or releases it: a duration
    /// (`30s`, `5m`, `2h`), 1 second to 1 day. Default 5 minutes.
    pub ttl: Option<String>,
    /// Names the reserve: a repeat of the same key is not held again but answers
    /// [`ReserveResult::Replayed`] (the first hold, and where it stands); the same
    /// name with another estimate, or one a charge used, is refused
    /// (`idempotency_conflict`).
    pub idempotency_key: Option<String>,
}

impl Reserve {
    /// A hold of `cost_cents` with the default ttl.
    pub fn cents(cost_cents: f64) -> Self {
        Self {
            cost_cents,
            ..Self::default()
        }
    }

    /// The same hold, counting for `ttl` (a duration such as `30s`).
    pub fn ttl(mut self, ttl: impl Into<String>) -> Self {
        self.ttl = Some(ttl.into());
        self
    }

    /// The same hold, placed at most once for `key`.
    pub fn idempotent(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// The result of `reserve`.
#[derive(Clone, Debug, PartialEq)]
pub enum ReserveResult {
    /// The hold is placed.
    Held {
        /// What `settle` and `release` name it by.
        hold_id: i64,
        /// When it stops counting unless settled or released first.
        expires_at: DateTime<Utc>,
        /// What can still be spent after it, in cents (`None` = uncapped).
        budget_remaining_cents: Option<f64>,
    },
    /// A repeat of an idempotency key that already placed a hold (with the same
    /// estimate): nothing new is held, and it is not a success, so no caller can
    /// take it for budget to spend, even while the first hold is still held.
    /// Serialized as `{"success": false, "reason": "idempotency_replayed",
    /// "replayed": "held" | "settled" | "released", "holdId", "expiresAt",
    /// "budgetRemainingCents"}`: the first hold's numbers and where it stands, so
    /// the caller that placed it (after a crash, say) can still settle it.
    Replayed {
        /// The first hold's id.
        hold_id: i64,
        /// Where the first hold stands now.
        state: HoldStatus,
        /// When the first hold stops (or stopped) counting.
        expires_at: DateTime<Utc>,
        /// What could still be spent after the first hold (`None` = uncapped).
        budget_remaining_cents: Option<f64>,
    },
    /// Refused; nothing is held.
    Refused(ChargeRefusal),
    /// Refused by a rate limit (reason `rate_limited`); nothing is held.
    Limited(RateLimited),
}

/// Where a hold stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    /// Neither settled nor released (it may have expired).
    Held,
    /// Settled: its actual cost is on the ledger.
    Settled,
    /// Released uncharged.
    Released,
}

impl HoldStatus {
    /// The status as docs/api.md writes it: `held`, `settled` or `released`.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Held => "held",
            HoldStatus::Settled => "settled",
            HoldStatus::Released => "released",
        }
    }
}

impl ReserveResult {
    /// Whether a new hold was placed.
    pub fn success(&self) -> bool {
        matches!(self, ReserveResult::Held { .. })
    }

    /// The new hold's id, if one was placed (not for a replay).
    pub fn hold_id(&self) -> Option<i64> {
        match self {
            ReserveResult::Held { hold_id, .. } => Some(*hold_id),
            ReserveResult::Replayed { .. }
            | ReserveResult::Refused(_)
            | ReserveResult::Limited(_) => None,
        }
    }
}

impl Serialize for ReserveResult {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("success", &self.success())?;
        match self {
            ReserveResult::Held {
                hold_id,
                expires_at,
                budget_remaining_cents,
            } => {
                m.serialize_entry("holdId", hold_id)?;
                m.serialize_entry("expiresAt", &crate::model::iso(expires_at))?;
                m.serialize_entry("budgetRemainingCents", budget_remaining_cents)?;
            }
            ReserveResult::Replayed {
                hold_id,
                state,
                expires_at,
                budget_remaining_cents,
            } => {
                m.serialize_entry("reason", &ChargeRefusal::IdempotencyReplayed)?;
                m.serialize_entry("replayed", state)?;
                m.serialize_entry("holdId", hold_id)?;
                m.serialize_entry("expiresAt", &crate::model::iso(expires_at))?;
                m.serialize_entry("budgetRemainingCents", budget_remaining_cents)?;
            }
            ReserveResult::Refused(reason) => m.serialize_entry("reason", reason)?,
            ReserveResult::Limited(limited) => limited.entries(&mut m)?,
        }
        m.end()
    }
}

/// Why a settle was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SettleRefusal {
    /// No hold has this id.
    UnknownHold,
    /// The hold was released: its spend was declared not to have happened.
    HoldReleased,
    /// The cost is NaN, infinite, negative or above 1e12 cents.
    InvalidCost,
}

/// The result of `settle`.
#[derive(Clone, Debug, PartialEq)]
pub enum SettleResult {
    /// The actual cost is charged and the hold freed (or, for a repeated settle,
    /// the first settle's result).
    Settled {
        /// Spent in the key's current period after the settle, in cents.
        budget_used_cents: f64,
        /// What is left, never below 0 (`None` = uncapped).
        budget_remaining_cents: Option<f64>,
    },
    /// Refused; nothing changed.
    Refused(SettleRefusal),
}

impl SettleResult {
    /// Whether the settle was recorded.
    pub fn success(&self) -> bool {
        matches!(self, SettleResult::Settled { .. })
    }
}

impl Serialize for SettleResult {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("success", &self.success())?;
        match self {
            SettleResult::Settled {
                budget_used_cents,
                budget_remaining_cents,
            } => {
                m.serialize_entry("budgetUsedCents", budget_used_cents)?;
                m.serialize_entry("budgetRemainingCents", budget_remaining_cents)?;
            }
            SettleResult::Refused(reason) => m.serialize_entry("reason", reason)?,
        }
        m.end()
    }
}

/// One key of an account as `list` returns it: everything but the secret.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeySummary {
    /// The key's id.
    pub id: i64,
    /// The owning account.
    pub account_id: String,
    /// The owning user.
    pub user_id: Option<String>,
    /// The label.
    pub name: String,
    /// The display prefix (the first characters of the raw key), for recognizing it.
    pub key_prefix: String,
    /// Scopes (`None` = all).
    pub scopes: Option<Vec<String>>,
    /// The cap in cents.
    pub budget_cents: Option<f64>,
    /// Spent in the current period, in cents.
    pub budget_used_cents: f64,
    /// Held by in-flight reservations, in cents.
    pub budget_held_cents: f64,
    /// The budget period.
    pub budget_period: Option<String>,
    /// The next reset.
    #[serde(serialize_with = "ser_opt_time")]
    pub budget_reset_at: Option<DateTime<Utc>>,
    /// The expiry.
    #[serde(serialize_with = "ser_opt_time")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    #[serde(serialize_with = "ser_opt_time")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was created.
    #[serde(serialize_with = "ser_opt_time")]
    pub created_at: Option<DateTime<Utc>>,
    /// When it was last charged.
    #[serde(serialize_with = "ser_opt_time")]
    pub last_used_at: Option<DateTime<Utc>>,
    /// The human who authorized it.
    pub delegated_by: Option<String>,
    /// The external subject, for subject-bound rows.
    pub external_subject: Option<String>,
    /// The metadata given at creation.
    pub metadata: Option<serde_json::Value>,
    /// The key's own rate limits; absent from the JSON when it has none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<crate::ratelimit::LimitView>,
}

/// One row of the ledger: a successful charge.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    /// The row's id (increasing in commit order per key).
    pub id: i64,
    /// The charged key.
    pub key_id: i64,
    /// The amount in cents (exact to the micro-cent).
    pub amount_cents: f64,
    /// When it was charged (by the core's clock).
    #[serde(serialize_with = "ser_time")]
    pub created_at: DateTime<Utc>,
    /// The idempotency key it was charged under.
    pub idempotency_key: Option<String>,
    /// The hold it settled, for settles.
    pub hold_id: Option<i64>,
}

/// A time window for `usage`: `from` inclusive, `to` exclusive; open when `None`.
#[derive(Clone, Copy, Debug, Default)]
pub struct UsageRange {
    /// Earliest instant included.
    pub from: Option<DateTime<Utc>>,
    /// First instant excluded.
    pub to: Option<DateTime<Utc>>,
}

impl UsageRange {
    /// The window of `span` ending now: from `day`, `week` or `month` before `now`
    /// (a month is a calendar month, clamped like a budget period), or from the
    /// beginning for `all`, with no end, so a charge stamped at `now` (or by a
    /// server whose clock runs a little ahead) counts. Anything else is
    /// `invalid_period`.
    pub fn trailing(span: &str, now: DateTime<Utc>) -> crate::error::Result<Self> {
        let from = match span {
            "all" => None,
            other => Some(crate::period::Period::parse(other)?.boundary(now, -1)),
        };
        Ok(Self { from, to: None })
    }
}

/// Where a key stands, as [`crate::KeyLeash::get`] reports it: the first of
/// `revoked`, `expired` (itself or an ancestor) and `budget_exceeded` (itself, an
/// ancestor or its account's ceiling) that applies, else `active`. The same order
/// and rules as `validate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// The key may be used.
    Active,
    /// It (or an ancestor) was revoked.
    Revoked,
    /// It (or an ancestor) has expired.
    Expired,
    /// Its used + held amount has reached its cap (or an ancestor's or the ceiling's).
    BudgetExceeded,
}

impl KeyStatus {
    /// The wire name: `active`, `revoked`, `expired` or `budget_exceeded`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Expired => "expired",
            KeyStatus::BudgetExceeded => "budget_exceeded",
        }
    }
}

/// One key by id ([`crate::KeyLeash::get`]): its summary (no secret: neither the
/// raw key nor its hash), what is left to spend and its status, read at one instant.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyDetails {
    /// Everything `list` shows of the key (rolled over to now).
    #[serde(flatten)]
    pub key: KeySummary,
    /// The smallest of `cap - used - held` over the key, its ancestors and its
    /// account's ceiling, never below 0 (`None` = none of them is capped).
    pub budget_remaining_cents: Option<f64>,
    /// Whether the key may be used now, and if not why.
    pub status: KeyStatus,
}

/// What [`crate::KeyLeash::top_spenders`] groups the ledger by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpendBy {
    /// One row per key.
    Key,
    /// One row per account (the account recorded on each ledger row).
    Account,
}

/// Whose spend [`crate::KeyLeash::spend_per_day`] adds up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpendOf<'a> {
    /// One key's ledger rows.
    Key(i64),
    /// The ledger rows recorded under an account.
    Account(&'a str),
}

/// One UTC day of [`crate::KeyLeash::spend_per_day`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DaySpend {
    /// The UTC date, `YYYY-MM-DD`.
    pub day: String,
    /// The sum of that day's ledger amounts, in cents (exact to the micro-cent).
    pub cents: f64,
}

/// An account's ceiling as [`crate::KeyLeash::accounts`] shows it, rolled over to now.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CeilingView {
    /// The cap on what the account's keys spend together, in cents.
    pub budget_cents: Option<f64>,
    /// Spent in the current period, in cents.
    pub budget_used_cents: f64,
    /// Held by in-flight reservations, in cents.
    pub budget_held_cents: f64,
    /// `cap - used - held`, never below 0.
    pub budget_remaining_cents: Option<f64>,
    /// `day`, `week`, `month`, or `None` for a lifetime ceiling.
    pub budget_period: Option<String>,
    /// The next reset.
    #[serde(serialize_with = "ser_opt_time")]
    pub budget_reset_at: Option<DateTime<Utc>>,
}

/// One account as [`crate::KeyLeash::accounts`] shows it: its ceiling and its keys.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    /// The account.
    pub account_id: String,
    /// Its ceiling, if it has one.
    pub ceiling: Option<CeilingView>,
    /// Its keys (revoked ones included), by id, each as [`crate::KeyLeash::get`]
    /// reports it: no raw key, no hash.
    pub keys: Vec<KeyDetails>,
}

/// A page of [`crate::KeyLeash::accounts`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountsPage {
    /// The accounts, by id.
    pub accounts: Vec<AccountView>,
    /// Whether more accounts matched than the limit let through.
    pub truncated: bool,
}

/// One row of [`crate::KeyLeash::top_spenders`]: a key or an account and what its
/// ledger rows in the window add up to.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spender {
    /// The key (grouping by key), else `None`.
    pub key_id: Option<i64>,
    /// The account: the key's (by key; `None` if the key row is gone) or the
    /// ledger rows' (by account; `None` for rows written without one).
    pub account_id: Option<String>,
    /// The key's label (by key).
    pub name: Option<String>,
    /// The key's display prefix (by key).
    pub key_prefix: Option<String>,
    /// The sum of the ledger amounts in the window, in cents (exact to the micro-cent).
    pub spent_cents: f64,
    /// How many ledger rows (charges and settles) that sum is made of.
    pub charges: i64,
}

/// One ledger row as [`crate::KeyLeash::export_ledger`] streams it, for a billing
/// or metering system: every field of the row (no secret) plus `id`, a stable
/// identifier derived from the ledger table and the row's id, so a window sent
/// twice can be deduplicated downstream.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerRecord {
    /// `kl_` + 16 hex digits of the SHA-256 of the qualified ledger table name
    /// (preceded by the export namespace and `/`, when one is given) + `_` + the
    /// ledger row's id. The same row always gets the same id.
    pub id: String,
    /// The ledger row's id.
    pub ledger_id: i64,
    /// The charged key.
    pub key_id: i64,
    /// The key's account when it was charged (`None` for rows written without one).
    pub account_id: Option<String>,
    /// The amount in cents (exact to the micro-cent).
    pub amount_cents: f64,
    /// The amount in micro-cents (millionths of a cent), an exact integer.
    pub amount_micros: i64,
    /// When it was charged (by the core's clock).
    #[serde(serialize_with = "ser_time")]
    pub created_at: DateTime<Utc>,
    /// The idempotency key it was charged under.
    pub idempotency_key: Option<String>,
    /// The hold it settled, for settles.
    pub hold_id: Option<i64>,
}

/// Parses an RFC 3339 / ISO 8601 instant with an offset (`2026-01-15T12:00:00Z`,
/// `…+02:00`), as the bindings receive times. Anything else is `invalid_argument`
/// naming `field`.
pub fn parse_time(field: &str, value: &str) -> crate::error::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            crate::error::Error::InvalidArgument(format!(
                "{field} must be an ISO 8601 time with an offset, like 2026-01-15T12:00:00Z, got {}",
                crate::error::shown(value)
            ))
        })
}

/// ISO 8601 UTC with milliseconds and `Z`, as JavaScript's `toISOString`.
pub fn iso(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn ser_time<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&iso(t))
}

#[allow(clippy::ref_option)]
fn ser_opt_time<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&iso(t)),
        None => s.serialize_none(),
    }
}
