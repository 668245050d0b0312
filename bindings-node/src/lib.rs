//! The napi-rs binding of keyleash: the native half of the npm package.
//!
//! Each method converts its arguments, calls the core and converts the result
//! (the core's serde JSON, already in the camelCase shape of docs/api.md) or the error. The
//! JavaScript half (`index.js`) wraps this class: it turns errors into
//! `KeyLeashError` with a `.code`, and adds the agentkey drop-in and Express.
//!
//! Errors cross the boundary typed: each is a JavaScript `Error` whose `code` is the
//! core's error code (`invalid_argument`, `unavailable`, …) and whose message is the
//! core's message; messages never contain a raw key or a URL.

use std::future::Future;

use keyleash::http::{Access, Reply, Route, SelfServeOptions};
use keyleash::options::{
    CacheInput, ConnectInput, CreateInput, LimitInput, Metadata, RateLimit, SelfServeInput,
    Spelling,
};
use keyleash::UsageRange;
use napi::bindgen_prelude::{ClassInstance, PromiseRaw, ToNapiValue};
use napi::{Either, Env, JsError};
use napi_derive::napi;
use serde_json::{json, Value};

/// An error as it crosses into JavaScript: napi makes it an `Error` whose `code` is
/// this status, the core's error code ([`keyleash::Error::code`]), and whose
/// message is the core's message.
type Error = napi::Error<&'static str>;

/// The result of a call of this binding: its error is thrown (or rejects the
/// call's promise) as an [`Error`].
type Result<T, E = Error> = std::result::Result<T, E>;

/// Options of `KeyLeash.connect`.
#[napi(object)]
pub struct ConnectOptions {
    /// The keys table, `name` or `schema.name` (Postgres only). Default `sdk_api_keys`.
    pub table_name: Option<String>,
    /// The prefix of minted keys. Default `ak_`.
    pub key_prefix: Option<String>,
    /// When set, every scope given to `create` must be in this list.
    pub valid_scopes: Option<Vec<String>>,
    /// Maximum connections: 1 to 1000 (default 10 for Postgres, 4 for a SQLite file).
    /// A double, so the core (not napi's wrapping conversion) checks the range.
    pub pool_size: Option<f64>,
    /// How long a call waits for a connection before `unavailable`, in ms: 1 to
    /// 600000. Default 5000.
    pub acquire_timeout_ms: Option<f64>,
    /// The longest one statement may run before `unavailable`, in ms: 1 to
    /// 86400000. Default 10000.
    pub statement_timeout_ms: Option<f64>,
    /// Use a manual clock starting at this ISO 8601 instant (for tests).
    pub manual_clock: Option<String>,
    /// The opt-in validation cache (absent: off).
    pub cache: Option<CacheOptions>,
}

/// Options of the validation cache (`connect({cache: {...}})`).
#[napi(object)]
pub struct CacheOptions {
    /// How long a valid answer may be served, in ms: 1 to 3600000. Default 10000.
    pub ttl_ms: Option<f64>,
    /// The most answers kept: 1 to 1000000. Default 10000.
    pub max_entries: Option<f64>,
}

/// Options of `create` and `ensureSubject`.
#[napi(object)]
pub struct CreateOptions {
    /// The owning account (required by `create` unless `parentId` is given).
    pub account_id: Option<String>,
    /// The user the key belongs to.
    pub user_id: Option<String>,
    /// Scopes; null grants everything.
    pub scopes: Option<Vec<String>>,
    /// The cap in cents; null is uncapped.
    pub budget_cents: Option<f64>,
    /// `day`, `week`, `month`, or null for a lifetime cap.
    pub budget_period: Option<String>,
    /// Expiry as a duration from now: `30s`, `15m`, `12h`, `7d`, `2w`, `1mo`.
    pub expires_in: Option<String>,
    /// Expiry as an ISO 8601 instant in the future.
    pub expires_at: Option<String>,
    /// The human who authorized the key.
    pub delegated_by: Option<String>,
    /// A label. Default `default`.
    pub name: Option<String>,
    /// The parent key: the new key's charges also count against it.
    pub parent_id: Option<i64>,
    /// Free-form JSON kept with the key (at most 16 KiB).
    pub metadata: Option<Value>,
    /// Rate limits: requests or cents per period, holds open at once.
    pub limits: Option<Vec<LimitOptions>>,
}

/// A rate limit of `create`.
#[napi(object)]
pub struct LimitOptions {
    /// Names it in refusals and headers (default: the unit's name).
    pub name: Option<String>,
    /// `requests`, `cents` or `concurrent`.
    pub unit: String,
    /// How many per period, or holds open at once.
    pub limit: f64,
    /// The period of `requests` and `cents`: `1s`, `1m`, `1h`, `1d`.
    pub period: Option<String>,
    /// How many may come at once from idle (default `limit`).
    pub burst: Option<f64>,
}

/// A charge.
#[napi(object)]
pub struct ChargeOptions {
    /// The cost in cents: finite and ≥ 0.
    pub cost_cents: f64,
    /// Applied once per key and idempotency key; repeats return the first result.
    pub idempotency_key: Option<String>,
}

/// A hold to place before a spend (`reserve`).
#[napi(object)]
pub struct ReserveOptions {
    /// The estimate in cents: finite and > 0.
    pub cost_cents: f64,
    /// How long it counts unless settled or released: `30s` to `1d`; default `5m`.
    pub ttl: Option<String>,
    /// Applied once per key and idempotency key; repeats return the first hold.
    pub idempotency_key: Option<String>,
}

impl From<ReserveOptions> for keyleash::Reserve {
    fn from(o: ReserveOptions) -> Self {
        keyleash::Reserve {
            cost_cents: o.cost_cents,
            ttl: o.ttl,
            idempotency_key: o.idempotency_key,
        }
    }
}

/// How far to move a manual clock (any mix; negative moves back).
#[napi(object)]
pub struct AdvanceBy {
    /// Seconds.
    pub seconds: Option<f64>,
    /// Minutes.
    pub minutes: Option<f64>,
    /// Hours.
    pub hours: Option<f64>,
    /// Days.
    pub days: Option<f64>,
}

/// Options of the self-serve routes.
#[napi(object)]
pub struct RouteOptions {
    /// The scopes `POST /signup` may grant (none when unset).
    pub signup_scopes: Option<Vec<String>>,
    /// Whether signup needs an email. Default true.
    pub require_email_for_signup: Option<bool>,
    /// Expiry of signup keys and the longest a signup may ask for. Default `24h`.
    pub signup_expires_in: Option<String>,
    /// Budget of signup keys and the largest a signup may ask for.
    pub signup_budget_cents: Option<f64>,
    /// Period of the signup budget: a signup asking for another one is refused.
    pub signup_budget_period: Option<String>,
    /// Signups per client address per hour: 1 to 1000000, default 20; `false`
    /// turns the limit off.
    pub signup_rate_limit: Option<Either<f64, bool>>,
    /// Signups per email domain per hour: 1 to 1000000; default none.
    pub signup_rate_limit_per_domain: Option<f64>,
    /// Children a key tree (a root key and its descendants together) may mint
    /// through `POST /sdk-keys` per hour: 1 to 1000000, default 50; `false` turns
    /// the limit off.
    pub mint_rate_limit: Option<Either<f64, bool>>,
}

/// A rate limit as JavaScript gave it: a number, or `false` for off.
fn rate_limit(limit: Option<Either<f64, bool>>, field: &str) -> Result<RateLimit> {
    Ok(match limit {
        None => RateLimit::Default,
        Some(Either::A(n)) => RateLimit::PerHour(n),
        Some(Either::B(false)) => RateLimit::Off,
        Some(Either::B(true)) => return Err(arg(&format!("{field} must be a number or false"))),
    })
}

impl RouteOptions {
    /// The core's options, converted and checked by the core.
    fn into_core(self) -> Result<SelfServeOptions> {
        SelfServeInput {
            signup_scopes: self.signup_scopes,
            require_email: self.require_email_for_signup,
            signup_expires_in: self.signup_expires_in,
            signup_budget_cents: self.signup_budget_cents,
            signup_budget_period: self.signup_budget_period,
            signup_rate_limit: rate_limit(self.signup_rate_limit, "signupRateLimit")?,
            signup_rate_limit_per_domain: self.signup_rate_limit_per_domain,
            mint_rate_limit: rate_limit(self.mint_rate_limit, "mintRateLimit")?,
        }
        .into_options()
        .map_err(err)
    }
}

/// One request to the admin page, as `adminRouter` hands it to the core.
#[napi(object)]
pub struct AdminRequest {
    /// The HTTP method.
    pub method: String,
    /// The path below the mount point (`""`, `/`, `/api/accounts`, …).
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// The mount point as the browser sees it (`/admin`).
    pub base: String,
    /// The headers as a flat list: name, value, name, value, …
    pub headers: Vec<String>,
    /// The body, when there is one.
    pub body: Option<napi::bindgen_prelude::Buffer>,
}

/// The core's answer to an admin page request.
#[napi(object)]
pub struct AdminReply {
    /// The HTTP status.
    pub status: u32,
    /// The headers as a flat list: name, value, name, value, …
    pub headers: Vec<String>,
    /// The body.
    pub body: napi::bindgen_prelude::Buffer,
}

/// Runs the `keyleash` command line on `args` (without the program's name) in
/// this process, blocking it until the command ends, and returns its exit status
/// (`npx keyleash` calls it).
#[napi]
pub fn run_cli(args: Vec<String>) -> u32 {
    u32::from(keyleash_cli::run(
        std::iter::once("keyleash".to_string()).chain(args),
    ))
}

/// Checks the options of the self-serve routes, so a bad one fails when the routes
/// are made rather than on the first request.
#[napi]
pub fn check_route_options(options: RouteOptions) -> Result<()> {
    options.into_core().map(|_| ())
}

/// The largest request body the self-serve routes read, in bytes.
#[napi]
#[allow(clippy::cast_possible_truncation)] // 65536
pub const MAX_BODY_BYTES: u32 = keyleash::http::MAX_BODY_BYTES as u32;

/// The core's answer to a body over `MAX_BODY_BYTES`: `{status: 413, body}`.
#[napi]
pub fn payload_too_large() -> Value {
    reply(Reply::payload_too_large())
}

/// The core's answer to a reserve refused where work was to be served
/// (`streamWithHold`), from the result's `reason` and `replayed`: `{status, body}`
/// (409 for a replay, 429 `budget_exceeded`, 422 `idempotency_conflict`, else 401).
#[napi]
pub fn spend_refused(reason: String, replayed: Option<String>) -> Value {
    reply(Reply::spend_refused(&reason, replayed.as_deref()))
}

/// The core's answer to a charge or reserve a key's rate limit refused, from the
/// result's `limit` and `retryAfter`: `{status: 429, body, retryAfter}` (whole
/// seconds for a `Retry-After` header, absent when waiting will not help).
#[napi]
pub fn rate_limited(limit: String, retry_after: Option<f64>) -> Value {
    reply(Reply::limited(&limit, retry_after))
}

/// The core's answer to a key store failure where a request was to be served:
/// `{status: 500, body: {error: "auth_unavailable"}, cause}`, `cause` being the
/// error's `message`, to report (never sent).
#[napi]
pub fn store_failed(message: String) -> Value {
    reply(Reply::store_failed(message))
}

/// Whether an error of `code` is the key store failing (`unavailable`,
/// `not_migrated`), answered `storeFailed`, rather than the caller's mistake.
#[napi]
pub fn is_store_failure(code: String) -> bool {
    keyleash::http::is_store_failure(&code)
}

/// The largest admin page request body a mount reads, in bytes (16 KiB).
#[napi]
#[allow(clippy::cast_possible_truncation)] // 16384
pub const ADMIN_MAX_BODY_BYTES: u32 = keyleash::admin::ADMIN_MAX_BODY_BYTES as u32;

/// The core's answer when `adminRouter`'s `authorize` refuses: 401 with a
/// `WWW-Authenticate: Basic` challenge.
#[napi]
pub fn admin_unauthorized() -> AdminReply {
    admin_reply(keyleash::AdminResponse::unauthorized())
}

/// The core's answer to an admin page body over `ADMIN_MAX_BODY_BYTES`: 413.
#[napi]
pub fn admin_payload_too_large() -> AdminReply {
    admin_reply(keyleash::AdminResponse::payload_too_large())
}

/// Whether `scopes` (a key's scopes; null = all) grant `scope`: exact match,
/// `admin`, or a trailing `.*` segment. Pure and synchronous.
#[napi]
pub fn has_scope(scopes: Option<Vec<String>>, scope: String) -> bool {
    keyleash::has_scope(scopes.as_deref(), &scope)
}

/// The codes of the core's errors (`keyleash::Error::CODES`): a native error whose
/// `code` is one of them is the core's, any other is napi's own.
#[napi]
pub fn error_codes() -> Vec<&'static str> {
    keyleash::Error::CODES.to_vec()
}

/// `validateRefs`' answers: the texts, or when a validate failed, each answer a text
/// or the failed call's [`Error`].
type Answers = Either<Vec<String>, Vec<Either<String, Error>>>;

/// The native keyleash handle. Use the `KeyLeash` class of the package instead.
#[napi]
pub struct NativeKeyLeash {
    inner: keyleash::KeyLeash,
}

/// The reply of `authenticateKey`.
#[napi(object, object_from_js = false)]
pub struct Authenticated {
    /// 200 when granted, else the denial's status.
    pub status: u32,
    /// The validation result when granted, else the denial's body, as JSON text:
    /// the grant crosses as cheaply as a validate answer does.
    pub body: String,
    /// A store failure to log (never sent).
    pub cause: Option<String>,
    /// The granted key, to charge it.
    pub key: Option<NativeKeyRef>,
}

/// A key the validation cache missed (`validateNowOrRef`), hashed once: an opaque
/// handle holding the key's SHA-256 (never the key), for `validateRefs`.
#[napi]
pub struct MissedKey {
    key: keyleash::KeyRef,
}

/// A key the middleware granted, to charge it without its raw key (it holds the
/// key's hash). Use `req.agentKey.charge` instead.
#[napi]
pub struct NativeKeyRef {
    inner: keyleash::KeyLeash,
    key: keyleash::KeyRef,
}

#[napi]
impl NativeKeyRef {
    /// Charges the key, as `trackUsage` with its raw key would.
    #[napi]
    pub fn charge<'env>(
        &self,
        env: &'env Env,
        charge: ChargeOptions,
    ) -> Result<PromiseRaw<'env, String>> {
        let (kl, key) = (self.inner.clone(), self.key.clone());
        spawn(env, async move {
            to_text(&kl.track_usage_ref(&key, charge.into()).await?)
        })
    }

    /// Holds an estimate of the key's budget, as `reserve` with its raw key would:
    /// the hold's handle when it holds, else the result (a refusal or a replay) as
    /// JSON text, in one crossing: `req.agentKey.reserve` wraps the handle in a `Spend`.
    #[napi(ts_return_type = "Promise<string | NativeHold>")]
    pub fn reserve<'env>(
        &self,
        env: &'env Env,
        reserve: ReserveOptions,
    ) -> Result<PromiseRaw<'env, Either<String, NativeHold>>> {
        let (kl, key) = (self.inner.clone(), self.key.clone());
        spawn(env, async move {
            match kl.reserve_ref_hold(&key, reserve.into()).await? {
                Ok(hold) => Ok(Either::B(NativeHold { hold })),
                Err(result) => to_text(&result).map(Either::A),
            }
        })
    }
}

/// The core's error as it crosses: its code and its message.
fn err(e: keyleash::Error) -> Error {
    Error::new(e.code(), e)
}

/// Runs a core call as its own task; the promise it returns resolves with the
/// call's value or rejects with its [`Error`]. The core's futures are `Send` only
/// once they own everything they use (sqlx's executors are generic over
/// lifetimes), so each call moves a clone of the handle into a `'static` task.
fn spawn<'env, T, F>(env: &'env Env, fut: F) -> Result<PromiseRaw<'env, T>>
where
    F: Future<Output = keyleash::Result<T>> + Send + 'static,
    T: ToNapiValue + Send + 'static,
{
    let task = async move {
        Ok(match tokio::spawn(fut).await {
            Ok(r) => r.map_err(err),
            Err(e) => Err(Error::new(
                "unavailable",
                format!("keyleash task failed: {e}"),
            )),
        })
    };
    env.spawn_future_with_callback(task, |env, r| r.map_err(|e| rejection(env, e)))
        .map_err(|e| Error::new("unavailable", e.reason))
}

/// `e` as a promise's rejection, made on the JavaScript thread: napi rejects with
/// an error it makes from its own status (`GenericFailure`, losing the code)
/// unless the rejection is already a JavaScript value.
fn rejection(env: &Env, e: Error) -> napi::Error {
    napi::Error::from(JsError::from(e).into_unknown(*env))
}

/// An `invalid_argument` error with the core's wording.
fn arg(msg: &str) -> Error {
    err(keyleash::Error::InvalidArgument(msg.into()))
}

/// A result as JSON text, for the JavaScript half to `JSON.parse`: on the hot
/// calls (validate, charge) text plus `JSON.parse` measured 6.5 µs a call against
/// 14.9 µs for napi's conversion of a `serde_json::Value` into an object (a cached
/// valid answer, 14 fields), so those calls return text.
fn to_text<T: serde::Serialize>(v: &T) -> keyleash::Result<String> {
    serde_json::to_string(v).map_err(|e| keyleash::Error::Unavailable(Box::new(e)))
}

/// A result as a `serde_json::Value`, which napi converts into an object.
fn to_json<T: serde::Serialize>(v: &T) -> keyleash::Result<Value> {
    serde_json::to_value(v).map_err(|e| keyleash::Error::Unavailable(Box::new(e)))
}

/// `{status, body}`, with `retryAfter` (seconds, for a `Retry-After` header) and
/// `cause` (a store failure to log, never sent) when the core set them.
fn reply(r: Reply) -> Value {
    let mut v = json!({ "status": r.status, "body": r.body });
    if let Some(secs) = r.retry_after {
        v["retryAfter"] = json!(secs);
    }
    if let Some(cause) = r.cause {
        v["cause"] = json!(cause);
    }
    v
}

/// An admin page answer with its headers as a flat list.
fn admin_reply(r: keyleash::AdminResponse) -> AdminReply {
    AdminReply {
        status: u32::from(r.status),
        headers: r.headers.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        body: r.body.into(),
    }
}

impl CreateOptions {
    /// The core's options, converted by the core.
    fn into_core(self) -> Result<keyleash::KeyOptions> {
        CreateInput {
            account_id: self.account_id,
            user_id: self.user_id,
            scopes: self.scopes,
            budget_cents: self.budget_cents,
            budget_period: self.budget_period,
            expires_in: self.expires_in,
            expires_at: self.expires_at,
            delegated_by: self.delegated_by,
            name: self.name,
            metadata: self.metadata.map(Metadata::Value),
            parent_id: self.parent_id,
            limits: self
                .limits
                .unwrap_or_default()
                .into_iter()
                .map(LimitInput::from)
                .collect(),
        }
        .into_options(Spelling::Camel)
        .map_err(err)
    }
}

impl From<LimitOptions> for LimitInput {
    fn from(l: LimitOptions) -> Self {
        LimitInput {
            name: l.name,
            unit: l.unit,
            limit: l.limit,
            period: l.period,
            burst: l.burst,
        }
    }
}

impl From<ChargeOptions> for keyleash::Charge {
    fn from(c: ChargeOptions) -> Self {
        keyleash::Charge {
            cost_cents: c.cost_cents,
            idempotency_key: c.idempotency_key,
        }
    }
}

#[napi]
impl NativeKeyLeash {
    /// Connects to `postgres://…` or `sqlite:…` (`sqlite::memory:` included).
    #[napi]
    pub fn connect<'env>(
        env: &'env Env,
        url: String,
        options: Option<ConnectOptions>,
    ) -> Result<PromiseRaw<'env, NativeKeyLeash>> {
        // The values as JavaScript gave them: the core converts and checks them, so
        // every language has the same limits and messages.
        let o = options
            .map(|c| ConnectInput {
                table_name: c.table_name,
                key_prefix: c.key_prefix,
                valid_scopes: c.valid_scopes,
                pool_size: c.pool_size,
                acquire_timeout_ms: c.acquire_timeout_ms,
                statement_timeout_ms: c.statement_timeout_ms,
                manual_clock: c.manual_clock,
                cache: c.cache.map(|cache| CacheInput {
                    ttl_ms: cache.ttl_ms,
                    max_entries: cache.max_entries,
                }),
            })
            .unwrap_or_default()
            .into_options(Spelling::Camel)
            .map_err(err)?;
        spawn(env, async move {
            let inner = keyleash::KeyLeash::connect(&url, o).await?;
            Ok(Self { inner })
        })
    }

    /// Creates or adopts the schema.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn migrate<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        let kl = self.inner.clone();
        spawn(env, async move { kl.migrate().await })
    }

    /// Mints a key.
    #[napi]
    pub fn create<'env>(
        &self,
        env: &'env Env,
        options: CreateOptions,
    ) -> Result<PromiseRaw<'env, Value>> {
        let (kl, o) = (self.inner.clone(), options.into_core()?);
        spawn(env, async move { to_json(&kl.create(o).await?) })
    }

    /// Validates a raw key.
    #[napi]
    pub fn validate<'env>(
        &self,
        env: &'env Env,
        raw_key: String,
    ) -> Result<PromiseRaw<'env, String>> {
        let kl = self.inner.clone();
        spawn(env, async move { to_text(&kl.validate(&raw_key).await?) })
    }

    /// `validate`'s answer as JSON text when it needs no store access (a malformed
    /// key, a validation-cache hit), else a `MissedKey`: the key hashed once and
    /// the cache looked at once, for `validateRefs`. Synchronous, so the
    /// JavaScript half answers hits without a task or a promise chain.
    #[napi(ts_return_type = "string | MissedKey")]
    pub fn validate_now_or_ref(&self, raw_key: String) -> Either<String, MissedKey> {
        match self.inner.validate_now_or_ref(&raw_key) {
            Ok(text) => Either::A(text.to_string()),
            Err(key) => Either::B(MissedKey { key }),
        }
    }

    /// The store's `validate` of each key the cache missed, in order, crossing
    /// into the core once (no second hash, no second cache look): each answer is
    /// the validation's JSON text, or, for a key whose validate failed, an `Error`
    /// as a failed call throws it (`code` and message). `lib/client.js` gathers
    /// the misses of one turn of the event loop into one such call.
    #[napi(ts_return_type = "Promise<Array<string | Error>>")]
    pub fn validate_refs<'env>(
        &self,
        env: &'env Env,
        keys: Vec<ClassInstance<'env, MissedKey>>,
    ) -> Result<PromiseRaw<'env, Answers>> {
        let keys: Vec<keyleash::KeyRef> = keys.iter().map(|k| k.key.clone()).collect();
        let kl = self.inner.clone();
        spawn(env, async move {
            let answers: Vec<keyleash::Result<String>> = kl
                .validate_refs(keys)
                .await
                .into_iter()
                .map(|answer| answer.and_then(|v| to_text(&v)))
                .collect();
            // The usual batch, without a failure, crosses as texts alone: napi
            // converts that list a little faster than one of `Either`s.
            if answers.iter().all(Result::is_ok) {
                return Ok(Either::A(answers.into_iter().flatten().collect()));
            }
            Ok(Either::B(
                answers
                    .into_iter()
                    .map(|answer| match answer {
                        Ok(text) => Either::A(text),
                        Err(e) => Either::B(err(e)),
                    })
                    .collect(),
            ))
        })
    }

    /// The validation cache's counters (`{entries, hits, misses, listening,
    /// disconnects, channel}`), or null when the cache is off.
    #[napi]
    pub fn cache_stats(&self) -> Result<Option<Value>> {
        let stats = self.inner.cache_stats();
        stats.as_ref().map(to_json).transpose().map_err(err)
    }

    /// Charges a raw key.
    #[napi]
    pub fn track_usage<'env>(
        &self,
        env: &'env Env,
        raw_key: String,
        charge: ChargeOptions,
    ) -> Result<PromiseRaw<'env, String>> {
        let kl = self.inner.clone();
        spawn(env, async move {
            to_text(&kl.track_usage(&raw_key, charge.into()).await?)
        })
    }

    /// `trackUsage`'s answer when it needs no store access (a bad idempotency key,
    /// an invalid or zero cost, a malformed key), else null. Synchronous.
    #[napi]
    pub fn track_usage_now(
        &self,
        raw_key: String,
        charge: ChargeOptions,
    ) -> Result<Option<String>> {
        match self.inner.track_usage_now(&raw_key, &charge.into()) {
            Some(r) => r.and_then(|r| to_text(&r)).map(Some).map_err(err),
            None => Ok(None),
        }
    }

    /// Holds an estimate of a key's budget; the result as JSON text.
    #[napi]
    pub fn reserve<'env>(
        &self,
        env: &'env Env,
        raw_key: String,
        reserve: ReserveOptions,
    ) -> Result<PromiseRaw<'env, String>> {
        let kl = self.inner.clone();
        spawn(env, async move {
            to_text(&kl.reserve(&raw_key, reserve.into()).await?)
        })
    }

    /// Charges a hold's actual cost and frees it; the result as JSON text.
    #[napi]
    pub fn settle<'env>(
        &self,
        env: &'env Env,
        hold_id: i64,
        cost_cents: f64,
    ) -> Result<PromiseRaw<'env, String>> {
        let kl = self.inner.clone();
        spawn(env, async move {
            to_text(&kl.settle(hold_id, cost_cents).await?)
        })
    }

    /// Frees a hold; whether it freed anything.
    #[napi]
    pub fn release<'env>(&self, env: &'env Env, hold_id: i64) -> Result<PromiseRaw<'env, bool>> {
        let kl = self.inner.clone();
        spawn(env, async move { kl.release(hold_id).await })
    }

    /// Sets an account's ceiling (`budgetCents` per `budgetPeriod`); no
    /// amount removes it.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn set_account_budget<'env>(
        &self,
        env: &'env Env,
        account_id: String,
        budget_cents: Option<f64>,
        budget_period: Option<String>,
    ) -> Result<PromiseRaw<'env, ()>> {
        let kl = self.inner.clone();
        spawn(env, async move {
            kl.set_account_budget(&account_id, budget_cents, budget_period.as_deref())
                .await
        })
    }

    /// Revokes a key (of `accountId` only, when given).
    #[napi]
    pub fn revoke<'env>(
        &self,
        env: &'env Env,
        key_id: i64,
        account_id: Option<String>,
    ) -> Result<PromiseRaw<'env, bool>> {
        let kl = self.inner.clone();
        spawn(env, async move {
            kl.revoke(key_id, account_id.as_deref()).await
        })
    }

    /// Replaces a key's rate limits (of `accountId` only, when given); resolves
    /// to whether a key was found.
    #[napi]
    pub fn set_limits<'env>(
        &self,
        env: &'env Env,
        key_id: i64,
        limits: Vec<LimitOptions>,
        account_id: Option<String>,
    ) -> Result<PromiseRaw<'env, bool>> {
        let limits = keyleash::options::limits(limits.into_iter().map(LimitInput::from).collect())
            .map_err(err)?;
        let kl = self.inner.clone();
        spawn(env, async move {
            kl.set_limits(key_id, &limits, account_id.as_deref()).await
        })
    }

    /// Creates a subject row once.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn ensure_subject<'env>(
        &self,
        env: &'env Env,
        subject: String,
        options: CreateOptions,
    ) -> Result<PromiseRaw<'env, ()>> {
        let (kl, o) = (self.inner.clone(), options.into_core()?);
        spawn(env, async move { kl.ensure_subject(&subject, o).await })
    }

    /// Validates a subject row.
    #[napi]
    pub fn validate_by_subject<'env>(
        &self,
        env: &'env Env,
        subject: String,
    ) -> Result<PromiseRaw<'env, String>> {
        let kl = self.inner.clone();
        spawn(env, async move {
            to_text(&kl.validate_by_subject(&subject).await?)
        })
    }

    /// Charges a subject row.
    #[napi]
    pub fn track_usage_by_subject<'env>(
        &self,
        env: &'env Env,
        subject: String,
        charge: ChargeOptions,
    ) -> Result<PromiseRaw<'env, String>> {
        let kl = self.inner.clone();
        spawn(env, async move {
            to_text(&kl.track_usage_by_subject(&subject, charge.into()).await?)
        })
    }

    /// One request to the admin page (`adminRouter` calls it): the core's answer
    /// as is (never an error: a failed task is a 500 page).
    #[napi]
    pub async fn admin(&self, req: AdminRequest) -> napi::Result<AdminReply> {
        let kl = self.inner.clone();
        let req = keyleash::AdminRequest {
            method: req.method,
            path: req.path,
            query: req.query,
            base: req.base,
            headers: req
                .headers
                .chunks_exact(2)
                .map(|kv| (kv[0].clone(), kv[1].clone()))
                .collect(),
            body: req.body.map(|b| b.to_vec()).unwrap_or_default(),
        };
        let r = match tokio::spawn(async move { kl.admin(req).await }).await {
            Ok(r) => r,
            Err(e) => keyleash::AdminResponse::error(500, "unavailable", &e.to_string()),
        };
        Ok(admin_reply(r))
    }

    /// The keys of an account.
    #[napi]
    pub fn list<'env>(
        &self,
        env: &'env Env,
        account_id: String,
    ) -> Result<PromiseRaw<'env, Value>> {
        let kl = self.inner.clone();
        spawn(env, async move { to_json(&kl.list(&account_id).await?) })
    }

    /// A key's ledger rows between two ISO instants (`from` inclusive, `to` exclusive).
    #[napi]
    pub fn usage<'env>(
        &self,
        env: &'env Env,
        key_id: i64,
        from: Option<String>,
        to: Option<String>,
    ) -> Result<PromiseRaw<'env, Value>> {
        let time = |f: &str, v: Option<String>| {
            v.map(|v| keyleash::parse_time(f, &v))
                .transpose()
                .map_err(err)
        };
        let range = UsageRange {
            from: time("from", from)?,
            to: time("to", to)?,
        };
        let kl = self.inner.clone();
        spawn(env, async move { to_json(&kl.usage(key_id, range).await?) })
    }

    /// The middleware's decision: `{status, body, cause?}`; status 200 means
    /// granted and `body` is the validation result.
    #[napi]
    pub fn authenticate<'env>(
        &self,
        env: &'env Env,
        authorization: Option<String>,
        scope: Option<String>,
    ) -> Result<PromiseRaw<'env, Value>> {
        let kl = self.inner.clone();
        spawn(env, async move {
            let access = kl
                .authenticate(authorization.as_deref(), scope.as_deref())
                .await;
            Ok(match access {
                Access::Granted(info) => reply(Reply::new(
                    200,
                    to_json(&keyleash::Validation::Valid(info))?,
                )),
                Access::Denied(r) => reply(r),
            })
        })
    }

    /// `authenticate`, also handing back the granted key as a handle that charges
    /// it without the raw key (it holds the key's hash): `{status, body, cause?,
    /// key?}`, `key` set when status is 200.
    #[napi]
    pub fn authenticate_key<'env>(
        &self,
        env: &'env Env,
        authorization: Option<String>,
        scope: Option<String>,
    ) -> Result<PromiseRaw<'env, Authenticated>> {
        let kl = self.inner.clone();
        spawn(env, async move {
            let granted = kl
                .authenticate_key(authorization.as_deref(), scope.as_deref())
                .await;
            Ok(match granted {
                Ok((info, key)) => Authenticated {
                    status: 200,
                    body: to_text(&keyleash::Validation::Valid(info))?,
                    cause: None,
                    key: Some(NativeKeyRef { inner: kl, key }),
                },
                Err(r) => Authenticated {
                    status: u32::from(r.status),
                    body: to_text(&r.body)?,
                    cause: r.cause,
                    key: None,
                },
            })
        })
    }

    /// One self-serve request: `route` is `signup`, `me`, `mint` or `revoke` (with
    /// `id`), its raw `body` bytes and `Content-Type` header (the core decodes the
    /// body: UTF-8 only), from the client at `clientAddress` (what the signup rate
    /// limit counts; null: the shared bucket of unknown addresses); returns
    /// `{status, body, retryAfter?, cause?}`.
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub fn self_serve<'env>(
        &self,
        env: &'env Env,
        route: String,
        id: Option<String>,
        authorization: Option<String>,
        body: napi::bindgen_prelude::Buffer,
        client_address: Option<String>,
        options: RouteOptions,
        content_type: Option<String>,
    ) -> Result<PromiseRaw<'env, Value>> {
        if !matches!(route.as_str(), "signup" | "me" | "mint" | "revoke") {
            return Err(arg("route must be signup, me, mint or revoke"));
        }
        let o = options.into_core()?;
        let kl = self.inner.clone();
        let body = body.to_vec();
        spawn(env, async move {
            let id = id.unwrap_or_default();
            let route = match route.as_str() {
                "signup" => Route::Signup,
                "me" => Route::Me,
                "mint" => Route::Mint,
                _ => Route::Revoke(&id),
            };
            let client = client_address.as_deref();
            let r = kl
                .self_serve_bytes(
                    route,
                    authorization.as_deref(),
                    &body,
                    content_type.as_deref(),
                    client,
                    &o,
                )
                .await;
            Ok(reply(r))
        })
    }

    /// The clock's reading, ISO 8601.
    #[napi]
    pub fn now(&self) -> String {
        keyleash::iso(&self.inner.clock().now())
    }

    /// Sets a manual clock to an ISO 8601 instant.
    #[napi]
    pub fn set_now(&self, at: String) -> Result<()> {
        let at = keyleash::parse_time("at", &at).map_err(err)?;
        self.manual()?.set(at);
        Ok(())
    }

    /// Moves a manual clock.
    #[napi]
    pub fn advance(&self, by: AdvanceBy) -> Result<()> {
        let by = keyleash::clock::span(
            by.seconds.unwrap_or(0.0),
            by.minutes.unwrap_or(0.0),
            by.hours.unwrap_or(0.0),
            by.days.unwrap_or(0.0),
        )
        .map_err(err)?;
        self.manual()?.advance(by);
        Ok(())
    }

    /// Closes the pool; later calls fail with `unavailable`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        let kl = self.inner.clone();
        spawn(env, async move {
            kl.close().await;
            Ok(())
        })
    }

    /// The manual clock, or `invalid_argument` for the system clock.
    fn manual(&self) -> Result<&keyleash::ManualClock> {
        self.inner
            .clock()
            .as_manual()
            .ok_or_else(|| arg("the clock is the system clock: connect with manualClock"))
    }
}

// The hold handle: the core's `Hold` (its state, what was consumed, its one
// ending), which `lib/spend.js` wraps in a `Spend`.

/// A hold `NativeKeyRef.reserve` placed: the core's handle of it. Use the
/// `Spend` of `req.agentKey.reserve` instead.
#[napi]
pub struct NativeHold {
    hold: keyleash::Hold,
}

#[napi]
impl NativeHold {
    /// The hold's id.
    #[napi(getter)]
    pub fn hold_id(&self) -> i64 {
        self.hold.hold_id()
    }

    /// When the hold stops counting by itself, ISO 8601.
    #[napi(getter)]
    pub fn expires_at(&self) -> String {
        keyleash::iso(&self.hold.expires_at())
    }

    /// What could still be spent after the hold; null when uncapped.
    #[napi(getter)]
    pub fn budget_remaining_cents(&self) -> Option<f64> {
        self.hold.budget_remaining_cents()
    }

    /// The estimate held, in cents.
    #[napi(getter)]
    pub fn estimate_cents(&self) -> f64 {
        self.hold.estimate_cents()
    }

    /// The cost added so far, in cents.
    #[napi(getter)]
    pub fn consumed_cents(&self) -> f64 {
        self.hold.consumed_cents()
    }

    /// `held` until the first settle or release, then `settled` or `released`.
    #[napi(getter, ts_return_type = "\"held\" | \"settled\" | \"released\"")]
    pub fn state(&self) -> &'static str {
        self.hold.state().as_str()
    }

    /// Counts `cents` as consumed: the total, or the refusal's message (an
    /// `invalid_argument` for `lib/spend.js` to throw), so no error crosses.
    #[napi(ts_return_type = "number | string")]
    pub fn add(&self, cents: f64) -> Either<f64, String> {
        match self.hold.add(cents) {
            Ok(total) => Either::A(total),
            Err(refused) => Either::B(refused.to_string()),
        }
    }

    /// Settles the hold (`costCents` absent: what was added), decided now: the
    /// result as JSON text, or null for a repeat of the first settle, whose
    /// promise the caller already has.
    #[napi(ts_return_type = "Promise<string> | null")]
    pub fn settle<'env>(
        &self,
        env: &'env Env,
        cost_cents: Option<f64>,
    ) -> Result<Option<PromiseRaw<'env, String>>> {
        ending(env, self.hold.settle(cost_cents), |r| to_text(&r))
    }

    /// Releases the hold, decided now: whether it freed anything, or null for a
    /// repeat of the first release.
    #[napi(ts_return_type = "Promise<boolean> | null")]
    pub fn release<'env>(&self, env: &'env Env) -> Result<Option<PromiseRaw<'env, bool>>> {
        ending(env, self.hold.release(), Ok)
    }

    /// Settles what was consumed, or releases when nothing was, decided now: the
    /// settle's JSON text or the release's boolean, or null for a repeat of the
    /// first ending.
    #[napi(ts_return_type = "Promise<string | boolean> | null")]
    pub fn cut_short<'env>(
        &self,
        env: &'env Env,
    ) -> Result<Option<PromiseRaw<'env, Either<String, bool>>>> {
        ending(env, self.hold.cut_short(), |r| match r {
            keyleash::CutShort::Settled(s) => to_text(&s).map(Either::A),
            keyleash::CutShort::Released(freed) => Ok(Either::B(freed)),
        })
    }
}

/// The promise of a hold's ending, converted by `convert`, or None for a repeat
/// of the first ending: the JavaScript half hands that one's promise out again,
/// so every repeat gets the very same result object.
fn ending<'env, T, U>(
    env: &'env Env,
    ending: keyleash::Ending<T>,
    convert: fn(T) -> keyleash::Result<U>,
) -> Result<Option<PromiseRaw<'env, U>>>
where
    T: Send + 'static,
    U: ToNapiValue + Send + 'static,
{
    if ending.repeats_first() {
        return Ok(None);
    }
    spawn(env, async move { convert(ending.await?) }).map(Some)
}
