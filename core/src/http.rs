//! The HTTP rules of docs/http.md, shared by the Express and FastAPI integrations.
//!
//! An integration hands this module the `Authorization` header, the raw request
//! body and the route, and writes the returned [`Reply`] (a status and a JSON body)
//! back as it is. Every decision (which status, which body, what a self-serve key
//! may grant) is made here, so the Node and Python packages answer every request
//! identically by construction and a binding holds no rule of its own.
//!
//! Security model of the self-serve routes (agentkey's, made stricter):
//! - `POST /signup` is unauthenticated. It grants only the configured signup scopes
//!   (none when unset: never the caller's wish, never "all"), and every signup is
//!   its own fresh account, so an unverified email cannot join someone's account.
//! - `POST /sdk-keys` mints a child of the calling key: only scopes the caller
//!   holds, a budget no larger than the caller's, an expiry no later than the
//!   caller's; the child's charges also count against the caller's budget.
//! - `DELETE /sdk-keys/:id` revokes only the caller itself or one of its
//!   descendants: a child key can never revoke the key that minted it.
//!
//! - `POST /signup` is rate-limited per client address (and optionally per email
//!   domain) in the store, so the limit holds across processes and servers; a
//!   request whose address the server does not know counts against one shared
//!   bucket, never against none. `POST /sdk-keys` is rate-limited per key tree
//!   (counted on the root key) in the same table.
//! - Bodies arrive as raw bytes with the `Content-Type` header, and are decoded
//!   here once ([`decode_body`]): JSON is UTF-8 (RFC 8259 section 8.1), a leading
//!   UTF-8 byte order mark is skipped, any other declared charset is refused with
//!   415 `unsupported_charset`, and bytes that are not UTF-8 with 400.
//!
//! A store failure anywhere is `500 {"error": "auth_unavailable"}`: fail closed,
//! and bounded in time by the pool's acquire and statement timeouts. The reply
//! carries the failure's description in [`Reply::cause`] for the integration to
//! log; it never reaches the client. Request bodies are at most
//! [`MAX_BODY_BYTES`]; unknown body fields are refused, never dropped.
//!
//! The contract is written out in `docs/http.md`.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::KeyLeash;
use crate::error::{Error, Result};
use crate::key;
use crate::model::{ChargeRefusal, CreateOptions, InvalidReason, KeyInfo, Validation};
use crate::ops::validate::KeyRef;
use crate::options::{RateLimit, SelfServeInput};
use crate::period::{parse_duration, Period};

/// The largest request body the self-serve routes read, in bytes (64 KiB). An
/// integration stops reading there and answers [`Reply::payload_too_large`].
pub const MAX_BODY_BYTES: usize = 65_536;

/// The window of the signup rate limits: so many signups per hour.
const RATE_WINDOW_MS: i64 = 3_600_000;

/// The largest signup (or mint) rate limit accepted, per hour.
pub const MAX_SIGNUP_RATE_LIMIT: u32 = 1_000_000;

/// The default of [`SelfServeOptions::signup_rate_limit`]: signups per client
/// address per hour.
pub const DEFAULT_SIGNUP_RATE_LIMIT: u32 = 20;

/// The default of [`SelfServeOptions::mint_rate_limit`]: child keys per key tree
/// (a root key and its descendants together) per hour. Generous for an agent
/// that hands a narrower key to each of its sub-tasks (almost one a minute),
/// small enough that a leaked key cannot fill the keys table (1,200 rows a day
/// for its whole tree instead of one per request).
pub const DEFAULT_MINT_RATE_LIMIT: u32 = 50;

/// The bucket of the signups whose client address the server does not know (a
/// Unix socket, a test client): they share one limit. No address spells this.
const UNKNOWN_ADDRESS_BUCKET: &str = "signup:addr-unknown";

/// An HTTP answer: the status code and the JSON body to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
    /// Seconds for a `Retry-After` header (set on 429 `rate_limited`).
    pub retry_after: Option<u64>,
    /// On 500 `auth_unavailable`: what failed, for the server's log (never sent to
    /// the client; never holds a key or a password).
    pub cause: Option<String>,
}

impl Reply {
    /// A reply without headers or cause.
    pub fn new(status: u16, body: Value) -> Self {
        Self {
            status,
            body,
            retry_after: None,
            cause: None,
        }
    }

    /// 413 `{"error": "payload_too_large", "message"}`: a body longer than
    /// [`MAX_BODY_BYTES`].
    pub fn payload_too_large() -> Self {
        Self::error(
            413,
            "payload_too_large",
            format!("request body is larger than {MAX_BODY_BYTES} bytes"),
        )
    }

    /// 500 `{"error": "auth_unavailable"}`, with `e` as the cause to log.
    pub fn unavailable(e: &Error) -> Self {
        Self::store_failed(e.to_string())
    }

    /// 500 `{"error": "auth_unavailable"}`, with `cause` (an error's message, as a
    /// binding holds it) as the cause to log: the answer to a store failure the
    /// binding caught itself (see [`is_store_failure`]).
    pub fn store_failed(cause: impl Into<String>) -> Self {
        Self {
            cause: Some(cause.into()),
            ..Self::new(500, json!({ "error": "auth_unavailable" }))
        }
    }

    /// The answer to a reserve (or charge) refused where work was to be served
    /// (`streamWithHold` / `stream_with_hold`, docs/http.md#streaming), from the
    /// refused result's wire fields `reason` and `replayed`:
    ///
    /// - `replayed` set (a repeated idempotency key; where its first hold stands):
    ///   409 `{"error": "idempotency_replayed", "replayed": <replayed>}`;
    /// - `budget_exceeded`: 429 `{"error": "budget_exceeded"}`;
    /// - `rate_limited` (a rate limit of the key or an ancestor): 429
    ///   `{"error": "rate_limited"}`;
    /// - `idempotency_conflict` (the idempotency key was first used for another
    ///   operation): 422 `{"error": "idempotency_conflict"}`;
    /// - any other reason (the key was revoked, expired or unknown since it was
    ///   authenticated): 401 `{"error": <reason>}`.
    ///
    /// It takes the two strings the bindings already hold, so a refusal crosses
    /// back into the core as two short strings rather than a result to convert.
    pub fn spend_refused(reason: &str, replayed: Option<&str>) -> Self {
        if let Some(state) = replayed {
            let body =
                json!({ "error": ChargeRefusal::IdempotencyReplayed.as_str(), "replayed": state });
            return Self::new(409, body);
        }
        let status = if reason == ChargeRefusal::BudgetExceeded.as_str()
            || reason == ChargeRefusal::RateLimited.as_str()
        {
            429
        } else if reason == ChargeRefusal::IdempotencyConflict.as_str() {
            422
        } else {
            401
        };
        Self::new(status, json!({ "error": reason }))
    }

    /// The answer to a charge or reserve a key's rate limit refused (the result's
    /// `limit` and `retryAfter` seconds): 429 `{"error": "rate_limited", "limit",
    /// "message", "retryAfter"}` with `retryAfter` the whole seconds to wait
    /// (rounded up, at least 1) and a `Retry-After` header of the same, or null and
    /// no header when waiting alone will not do (a `concurrent` limit, a cost above
    /// the burst). Express and FastAPI send it alike.
    pub fn limited(limit: &str, retry_after: Option<f64>) -> Self {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped first
        let secs = retry_after
            .filter(|s| s.is_finite())
            .map(|s| s.ceil().clamp(1.0, 86_400.0 * 366.0) as u64);
        let message = match secs {
            Some(s) => format!("rate limit {limit} reached; retry in {s} s"),
            None => format!("rate limit {limit} reached"),
        };
        Self {
            retry_after: secs,
            ..Self::new(
                429,
                json!({
                    "error": ChargeRefusal::RateLimited.as_str(),
                    "limit": limit,
                    "message": message,
                    "retryAfter": secs,
                }),
            )
        }
    }

    fn error(status: u16, error: &str, message: impl Into<String>) -> Self {
        Self::new(status, json!({ "error": error, "message": message.into() }))
    }
}

/// Whether an error of this code ([`Error::code`]) is the store failing
/// (`unavailable`, `not_migrated`) rather than the caller's mistake: where a request
/// was to be served, it is answered [`Reply::unavailable`].
pub fn is_store_failure(code: &str) -> bool {
    matches!(code, "unavailable" | "not_migrated")
}

/// The outcome of [`KeyLeash::authenticate`].
#[derive(Clone, Debug, PartialEq)]
pub enum Access {
    /// The key is valid and holds the required scope; attach this to the request.
    Granted(Box<KeyInfo>),
    /// Answer the request with this reply and go no further.
    Denied(Reply),
}

/// Options of the self-serve routes (`createAgentKeyRoutes` / `agentkey_router`).
#[derive(Clone, Debug)]
pub struct SelfServeOptions {
    /// The scopes `POST /signup` may grant; a signup asking for others is refused.
    /// `None` issues scopeless keys (an empty list, which grants nothing).
    pub signup_scopes: Option<Vec<String>>,
    /// Whether `POST /signup` needs an `email` (with an `@`, at most 255 bytes).
    /// Default true.
    pub require_email: bool,
    /// The expiry of a signup key, and the longest a signup may ask for. Default `24h`.
    pub signup_expires_in: String,
    /// When set, the budget of a signup key and the largest a signup may ask for.
    pub signup_budget_cents: Option<f64>,
    /// The period of the signup budget (`day`, `week`, `month` or none). The
    /// operator's choice: a signup asking for another period is refused.
    pub signup_budget_period: Option<String>,
    /// At most this many signups per client address per hour (GCRA, enforced in
    /// the store, shared by every process on the database). Default
    /// [`DEFAULT_SIGNUP_RATE_LIMIT`] (20); `None` turns the limit off.
    pub signup_rate_limit: Option<u32>,
    /// At most this many signups per email domain per hour. Default `None` (off).
    pub signup_rate_limit_per_domain: Option<u32>,
    /// At most this many `POST /sdk-keys` children per key tree per hour: the mints
    /// of a key and of all its descendants count together, on the tree's root key
    /// (GCRA, in the same store table as the signup limit). Default
    /// [`DEFAULT_MINT_RATE_LIMIT`] (50); `None` turns the limit off.
    pub mint_rate_limit: Option<u32>,
}

impl SelfServeOptions {
    /// Checks every option, so a bad one fails when the routes are mounted rather
    /// than on the first signup: the duration, the period, the budget (0 to 1e12
    /// cents) and the rate limits (1 to [`MAX_SIGNUP_RATE_LIMIT`]).
    pub fn check(&self) -> Result<()> {
        parse_duration(&self.signup_expires_in)?;
        if let Some(p) = &self.signup_budget_period {
            Period::parse(p)?;
        }
        if let Some(s) = &self.signup_scopes {
            crate::scope::check_scopes(s, None)?;
        }
        if let Some(c) = self.signup_budget_cents {
            if crate::amount::cents_to_micros(c).is_none() {
                return Err(Error::arg(format!(
                    "the signup budget must be a finite number of cents from 0 to 1e12, got {c}"
                )));
            }
        }
        // Named in words, not in one language's spelling: Node and Python both show this.
        for (what, limit, unit) in [
            ("the signup rate limit", self.signup_rate_limit, "signups"),
            (
                "the per-domain signup rate limit",
                self.signup_rate_limit_per_domain,
                "signups",
            ),
            (
                "the mint rate limit",
                self.mint_rate_limit,
                "keys minted by one key tree",
            ),
        ] {
            if limit.is_some_and(|n| n == 0 || n > MAX_SIGNUP_RATE_LIMIT) {
                return Err(Error::arg(format!(
                    "{what} must be a whole number from 1 to {MAX_SIGNUP_RATE_LIMIT} {unit} per hour"
                )));
            }
        }
        Ok(())
    }
}

impl Default for SelfServeOptions {
    fn default() -> Self {
        Self {
            signup_scopes: None,
            require_email: true,
            signup_expires_in: "24h".into(),
            signup_budget_cents: None,
            signup_budget_period: None,
            signup_rate_limit: Some(DEFAULT_SIGNUP_RATE_LIMIT),
            signup_rate_limit_per_domain: None,
            mint_rate_limit: Some(DEFAULT_MINT_RATE_LIMIT),
        }
    }
}

/// The self-serve options a binding received, converted here, beside the options
/// they become (`options.rs` holds the other inputs and does not depend on this
/// adapter).
impl SelfServeInput {
    /// The options of the self-serve routes, checked ([`SelfServeOptions::check`]):
    /// a rate limit that is no whole number from 1 to
    /// [`crate::http::MAX_SIGNUP_RATE_LIMIT`] (a fraction, a negative, NaN) is
    /// refused with the check's message, which names it in words.
    pub fn into_options(self) -> Result<SelfServeOptions> {
        let d = SelfServeOptions::default();
        let limit = |given: RateLimit, default: Option<u32>| match given {
            RateLimit::Default => default,
            RateLimit::Off => None,
            RateLimit::PerHour(n) => Some(per_hour(n)),
        };
        let o = SelfServeOptions {
            signup_scopes: self.signup_scopes,
            require_email: self.require_email.unwrap_or(d.require_email),
            signup_expires_in: self.signup_expires_in.unwrap_or(d.signup_expires_in),
            signup_budget_cents: self.signup_budget_cents,
            signup_budget_period: self.signup_budget_period,
            signup_rate_limit: limit(self.signup_rate_limit, d.signup_rate_limit),
            signup_rate_limit_per_domain: self.signup_rate_limit_per_domain.map(per_hour),
            mint_rate_limit: limit(self.mint_rate_limit, d.mint_rate_limit),
        };
        o.check()?;
        Ok(o)
    }
}

/// A rate limit given as a number: a whole `u32` as it is, any other number as 0,
/// which [`SelfServeOptions::check`] refuses (as it does a `u32` over the limit),
/// naming the limit, after checking the options it checks first.
fn per_hour(n: f64) -> u32 {
    if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked above
        return n as u32;
    }
    0
}

/// The self-serve routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// `POST /signup`: an unauthenticated caller gets a key of a new account.
    Signup,
    /// `GET /sdk-keys/me`: the calling key's validation result.
    Me,
    /// `POST /sdk-keys`: the calling key mints a narrower child key.
    Mint,
    /// `DELETE /sdk-keys/:id`, with the `:id` path segment as sent.
    Revoke(&'a str),
}

/// A request body of `POST /signup` (agentkey's snake_case fields). An unknown
/// field is refused: `{"budgetCents": 20}` silently minting an uncapped key is
/// exactly the mistake this library exists to prevent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignupRequest {
    email: Option<String>,
    scopes: Option<Vec<String>>,
    budget_cents: Option<f64>,
    budget_period: Option<String>,
    expires_in: Option<String>,
    name: Option<String>,
}

/// A request body of `POST /sdk-keys`; unknown fields are refused likewise.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    scopes: Option<Vec<String>>,
    budget_cents: Option<f64>,
    budget_period: Option<String>,
    expires_in: Option<String>,
    name: Option<String>,
}

/// The longest email a signup may give, in bytes (agentkey's limit).
const MAX_EMAIL_LEN: usize = 255;

impl KeyLeash {
    /// The middleware's decision for one request: the key from `authorization`
    /// (`Bearer <key>`), validated, and holding `scope` when one is required.
    ///
    /// Denials, as docs/http.md says: 401 `{"error": "Missing API key"}`; 401
    /// `{"error": reason}` for `invalid`, `expired`, `revoked`; 429
    /// `{"error": "budget_exceeded"}`; 403 `{"error": "insufficient_scope",
    /// "required", "available"}`; 500 `{"error": "auth_unavailable"}` when the store
    /// fails. Never returns an error: every outcome is a reply.
    pub async fn authenticate(&self, authorization: Option<&str>, scope: Option<&str>) -> Access {
        match self.authenticate_key(authorization, scope).await {
            Ok((info, _)) => Access::Granted(info),
            Err(reply) => Access::Denied(reply),
        }
    }

    /// [`KeyLeash::authenticate`], also handing back the granted key hashed, so the
    /// request's handler can charge it ([`KeyLeash::track_usage_ref`]) without
    /// parsing the header and hashing the key again. `Err` is the denial reply.
    pub async fn authenticate_key(
        &self,
        authorization: Option<&str>,
        scope: Option<&str>,
    ) -> std::result::Result<(Box<KeyInfo>, KeyRef), Reply> {
        let Some(raw) = authorization.and_then(bearer) else {
            return Err(Reply::new(401, json!({ "error": "Missing API key" })));
        };
        let key = self.key_ref(raw).map_err(denied)?;
        let info = match self.validate_ref(&key).await {
            Ok(Validation::Valid(info)) => info,
            Ok(Validation::Invalid(reason)) => return Err(denied(reason)),
            Err(e) => return Err(Reply::unavailable(&e)),
        };
        match scope {
            Some(scope) if !info.has_scope(scope) => Err(Reply::new(
                403,
                json!({ "error": "insufficient_scope", "required": scope, "available": info.scopes }),
            )),
            _ => Ok((info, key)),
        }
    }

    /// Answers one self-serve request: `route`, the `Authorization` header, the
    /// body as text (empty means `{}`) and the client's address (what the signup
    /// rate limit counts; `None` or empty counts against one bucket shared by every
    /// client of unknown address). [`KeyLeash::self_serve_bytes`] with the text's
    /// bytes and no `Content-Type`; see there for the replies.
    pub async fn self_serve(
        &self,
        route: Route<'_>,
        authorization: Option<&str>,
        body: &str,
        client_address: Option<&str>,
        options: &SelfServeOptions,
    ) -> Reply {
        self.self_serve_bytes(
            route,
            authorization,
            body.as_bytes(),
            None,
            client_address,
            options,
        )
        .await
    }

    /// Answers one self-serve request from what an integration read off the wire:
    /// `route`, the `Authorization` header, the raw body bytes (empty means `{}`),
    /// the `Content-Type` header (only its `charset` is read; see [`decode_body`])
    /// and the client's address (`None` or empty: the shared unknown-address
    /// bucket). Success is 201 with the create result for the two minting routes,
    /// 200 with the validation result for `Me` and 200 `{"revoked": true}` for
    /// `Revoke`. Refusals: 400 for a malformed body or id, a body that is not
    /// UTF-8, and a bad scope, period, duration or amount (`{"error": code,
    /// "message"}`); 400 when a signup asks for scopes outside the signup list;
    /// 403 when a child would exceed its parent; 404 when the id is not the caller
    /// or one of its live descendants; 413 for a body over [`MAX_BODY_BYTES`]; 415
    /// `unsupported_charset` for a charset other than UTF-8; 429 `rate_limited`
    /// with [`Reply::retry_after`] for a signup or a mint over its limit; the
    /// authentication replies of [`KeyLeash::authenticate`]. Never returns an error.
    pub async fn self_serve_bytes(
        &self,
        route: Route<'_>,
        authorization: Option<&str>,
        body: &[u8],
        content_type: Option<&str>,
        client_address: Option<&str>,
        options: &SelfServeOptions,
    ) -> Reply {
        if body.len() > MAX_BODY_BYTES {
            return Reply::payload_too_large();
        }
        let body = match decode_body(body, content_type) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let outcome = if route == Route::Signup {
            self.signup(body, client_address, options).await
        } else {
            let caller = match self.authenticate(authorization, None).await {
                Access::Granted(caller) => caller,
                Access::Denied(reply) => return reply,
            };
            match route {
                Route::Revoke(id) => self.revoke_own(&caller, id).await,
                Route::Mint => self.mint_child(&caller, body, options).await,
                Route::Me | Route::Signup => Ok(Reply::new(200, valid_json(caller))),
            }
        };
        outcome.unwrap_or_else(|e| {
            if is_store_failure(e.code()) {
                Reply::unavailable(&e)
            } else {
                Reply::error(400, e.code(), e.to_string())
            }
        })
    }

    async fn signup(
        &self,
        body: &str,
        client_address: Option<&str>,
        o: &SelfServeOptions,
    ) -> Result<Reply> {
        let req: SignupRequest = match parse_body(body) {
            Ok(req) => req,
            Err(reply) => return Ok(reply),
        };
        let email_ok = req
            .email
            .as_deref()
            .is_some_and(|e| e.contains('@') && e.len() <= MAX_EMAIL_LEN);
        if o.require_email && !email_ok {
            return Ok(Reply::new(
                400,
                json!({ "error": "Valid email is required" }),
            ));
        }
        let allowed = o.signup_scopes.clone().unwrap_or_default();
        if let Some(asked) = &req.scopes {
            let refused: Vec<&str> = asked
                .iter()
                .filter(|s| !allowed.contains(s))
                .map(String::as_str)
                .collect();
            if !refused.is_empty() {
                return Ok(Reply::new(
                    400,
                    json!({
                        "error": format!("Scopes not allowed on signup: {}", refused.join(", ")),
                        "allowed": allowed,
                    }),
                ));
            }
        }
        let now = self.clock().now();
        let longest = now + parse_duration(&o.signup_expires_in)?;
        let expires_at = match &req.expires_in {
            Some(d) => now + parse_duration(d)?,
            None => longest,
        };
        if expires_at > longest {
            return Ok(Reply::error(
                400,
                "invalid_argument",
                format!(
                    "expires_in may be at most {} on signup",
                    o.signup_expires_in
                ),
            ));
        }
        if let (Some(max), Some(asked)) = (o.signup_budget_cents, req.budget_cents) {
            if asked > max {
                return Ok(Reply::error(
                    400,
                    "invalid_argument",
                    format!("budget_cents may be at most {max} on signup"),
                ));
            }
        }
        // The period is the operator's: a caller choosing "day" under a 30-day
        // expiry would turn a 50-cent allowance into 1,500 cents.
        if req.budget_period.is_some() && req.budget_period != o.signup_budget_period {
            let period = o.signup_budget_period.as_deref().unwrap_or("none");
            return Ok(Reply::error(
                400,
                "invalid_argument",
                format!("budget_period is set by the server on signup ({period})"),
            ));
        }
        let domain = req
            .email
            .as_deref()
            .filter(|_| email_ok)
            .and_then(|e| e.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase());
        // An unknown address is one shared bucket: skipping the limit would let
        // every client behind a Unix socket sign up without bound.
        let address = match client_address.filter(|a| !a.is_empty()) {
            Some(a) => format!("signup:addr:{a}"),
            None => UNKNOWN_ADDRESS_BUCKET.to_owned(),
        };
        let buckets = [
            (o.signup_rate_limit, Some(address)),
            (
                o.signup_rate_limit_per_domain,
                domain.map(|d| format!("signup:domain:{d}")),
            ),
        ];
        for (limit, bucket) in buckets {
            if let (Some(limit), Some(bucket)) = (limit, bucket) {
                if let Some(reply) = self.rate_limited(&bucket, limit, "signups").await? {
                    return Ok(reply);
                }
            }
        }
        let key = self
            .create(CreateOptions {
                account_id: format!("acct_{}", &key::internal_hash()?[..24]),
                user_id: req.email.filter(|_| email_ok),
                scopes: Some(req.scopes.unwrap_or(allowed)),
                budget_cents: req.budget_cents.or(o.signup_budget_cents),
                budget_period: o.signup_budget_period.clone(),
                expires_at: Some(expires_at),
                name: req.name,
                ..CreateOptions::default()
            })
            .await?;
        Ok(Reply::new(201, json!(key)))
    }

    /// One event against `bucket`'s limit of `per_hour` (`what` names the events
    /// in the message): `None` when it may go on (and is counted), else the 429
    /// reply.
    async fn rate_limited(&self, bucket: &str, per_hour: u32, what: &str) -> Result<Option<Reply>> {
        let interval_ms = (RATE_WINDOW_MS / i64::from(per_hour.max(1))).max(1);
        let wait_ms = self.rate_check(bucket, interval_ms, RATE_WINDOW_MS).await?;
        Ok(wait_ms.map(|ms| {
            let secs = u64::try_from((ms + 999) / 1000).unwrap_or(1).max(1);
            Reply {
                retry_after: Some(secs),
                ..Reply::new(
                    429,
                    json!({
                        "error": "rate_limited",
                        "message": format!("too many {what}: at most {per_hour} an hour; retry in {secs} s"),
                        "retryAfter": secs,
                    }),
                )
            }
        }))
    }

    async fn mint_child(
        &self,
        caller: &KeyInfo,
        body: &str,
        o: &SelfServeOptions,
    ) -> Result<Reply> {
        let req: MintRequest = match parse_body(body) {
            Ok(req) => req,
            Err(reply) => return Ok(reply),
        };
        if let Some(asked) = &req.scopes {
            if let Some(missing) = asked.iter().find(|s| !caller.has_scope(s)) {
                return Ok(Reply::new(
                    403,
                    json!({ "error": "insufficient_scope", "required": missing, "available": caller.scopes }),
                ));
            }
        }
        if let (Some(own), Some(asked)) = (caller.budget_cents, req.budget_cents) {
            if asked > own {
                return Ok(Reply::error(
                    403,
                    "budget_exceeds_parent",
                    format!("budget_cents may be at most the calling key's budget, {own}"),
                ));
            }
        }
        let asked = req
            .budget_period
            .as_deref()
            .map(Period::parse)
            .transpose()?;
        if let (Some(own), Some(_)) = (&caller.budget_period, caller.budget_cents) {
            let own = Period::parse(own)?;
            // A shorter period resets more often, so it spends more over a lifetime;
            // none (a lifetime cap) is the longest.
            if asked.is_some_and(|a| a.nominal_days() < own.nominal_days()) {
                return Ok(Reply::error(
                    403,
                    "period_shorter_than_parent",
                    format!("budget_period may not be shorter than the calling key's, {own}"),
                ));
            }
        } else if caller.budget_cents.is_some() && asked.is_some() {
            return Ok(Reply::error(
                403,
                "period_shorter_than_parent",
                "budget_period may not be shorter than the calling key's lifetime cap",
            ));
        }
        let now = self.clock().now();
        let expires_at: Option<DateTime<Utc>> = match &req.expires_in {
            Some(d) => Some(now + parse_duration(d)?),
            None => caller.expires_at,
        };
        if let (Some(own), Some(asked)) = (caller.expires_at, expires_at) {
            if asked > own {
                return Ok(Reply::error(
                    403,
                    "expiry_exceeds_parent",
                    "expires_in may not outlive the calling key",
                ));
            }
        }
        // Counted once the child is known to be allowed, as signups are: a refused
        // request does not use up the allowance. The allowance is the whole tree's,
        // counted on its root key: were it each caller's own, every child could
        // mint as many again, and a leaked key's tree would grow by that factor per
        // generation (50 to the 16th over the depth limit).
        if let Some(limit) = o.mint_rate_limit {
            let root = self
                .lineage(caller.id)
                .await?
                .last()
                .copied()
                .unwrap_or(caller.id);
            let bucket = format!("mint:tree:{root}");
            if let Some(reply) = self
                .rate_limited(&bucket, limit, "keys minted by this key tree")
                .await?
            {
                return Ok(reply);
            }
        }
        let key = self
            .create(CreateOptions {
                account_id: caller.account_id.clone(),
                user_id: caller.user_id.clone(),
                scopes: req.scopes.or_else(|| caller.scopes.clone()),
                budget_cents: req.budget_cents,
                budget_period: req.budget_period,
                expires_at,
                delegated_by: Some(
                    caller
                        .delegated_by
                        .clone()
                        .or_else(|| caller.user_id.clone())
                        .unwrap_or_else(|| caller.account_id.clone()),
                ),
                name: req.name,
                parent_id: Some(caller.id),
                ..CreateOptions::default()
            })
            .await?;
        Ok(Reply::new(201, json!(key)))
    }

    async fn revoke_own(&self, caller: &KeyInfo, id: &str) -> Result<Reply> {
        let id = match id.parse::<i64>() {
            Ok(n) if n > 0 && id.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Ok(Reply::new(400, json!({ "error": "Invalid key ID" }))),
        };
        // The caller itself or a key below it, nothing else: a child must not be
        // able to revoke the key that minted it. Any other id answers as an
        // unknown one, so the route tells nothing about keys it may not touch.
        let below_caller = self.lineage(id).await?.contains(&caller.id);
        if below_caller && self.revoke(id, Some(&caller.account_id)).await? {
            Ok(Reply::new(200, json!({ "revoked": true })))
        } else {
            Ok(Reply::new(404, json!({ "error": "not_found" })))
        }
    }
}

/// The denial of a key that is not valid: 429 for `budget_exceeded`, else 401.
fn denied(reason: InvalidReason) -> Reply {
    let status = if reason == InvalidReason::BudgetExceeded {
        429
    } else {
        401
    };
    Reply::new(status, json!({ "error": reason.as_str() }))
}

/// The key of an `Authorization: Bearer <key>` header (scheme case-insensitive).
fn bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.split_at_checked(7)?;
    let key = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer ") && !key.is_empty()).then_some(key)
}

fn valid_json(info: Box<KeyInfo>) -> Value {
    json!(Validation::Valid(info))
}

/// The longest charset name quoted back in an `unsupported_charset` message.
const MAX_CHARSET_ECHO: usize = 40;

/// The request body as text, decided once for both integrations from the raw
/// bytes and the `Content-Type` header: JSON is UTF-8 (RFC 8259 section 8.1), so
/// a `charset` parameter other than `utf-8` (case-insensitive, quoted or not) is
/// 415 `unsupported_charset`; one leading UTF-8 byte order mark is skipped (RFC
/// 8259 lets a parser ignore it); bytes that are not UTF-8 are 400
/// `invalid_argument`. The media type itself is not checked, and an empty body
/// is `{}` whatever the header declares.
pub fn decode_body<'a>(
    body: &'a [u8],
    content_type: Option<&str>,
) -> std::result::Result<&'a str, Reply> {
    if body.is_empty() {
        return Ok(""); // `{}`, whatever the header says
    }
    let charset = content_type
        .into_iter()
        .flat_map(|h| h.split(';').skip(1))
        .filter_map(|p| p.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, value)| value.trim().trim_matches('"'));
    if let Some(c) = charset.filter(|c| !c.eq_ignore_ascii_case("utf-8")) {
        let shown: String = c.chars().take(MAX_CHARSET_ECHO).collect();
        return Err(Reply::error(
            415,
            "unsupported_charset",
            format!("request body: charset {shown:?} is not supported; send JSON as UTF-8"),
        ));
    }
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    std::str::from_utf8(body).map_err(|e| {
        Reply::error(
            400,
            "invalid_argument",
            format!(
                "request body: not UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

/// Parses a request body: empty is `{}`; anything but a JSON object with known
/// fields of the right types is a 400 reply (its message quotes at most 200
/// characters and names an unknown field).
fn parse_body<T: serde::de::DeserializeOwned + Default>(
    body: &str,
) -> std::result::Result<T, Reply> {
    if body.trim().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str::<T>(body).map_err(|e| {
        let msg: String = e.to_string().chars().take(200).collect();
        Reply::error(400, "invalid_argument", format!("request body: {msg}"))
    })
}

#[cfg(test)]
mod tests {
    use super::{bearer, per_hour, Reply, SelfServeOptions};
    use crate::options::{RateLimit, SelfServeInput};
    use serde_json::json;

    // Pins the conversion of the self-serve rate limits as the bindings give them:
    // whole numbers from 1 up, anything else refused with the check's words;
    // `Off` turns a limit off, `Default` keeps the default.
    #[test]
    fn self_serve_inputs() {
        for (n, ok) in [
            (1.0, true),
            (1e6, true),
            (0.0, false),
            (1.5, false),
            (-1.0, false),
        ] {
            let input = SelfServeInput {
                mint_rate_limit: RateLimit::PerHour(n),
                ..SelfServeInput::default()
            };
            match input.into_options() {
                Ok(o) => assert!(ok && o.mint_rate_limit == Some(per_hour(n)), "{n}"),
                Err(e) => assert!(
                    !ok && e.to_string().contains("the mint rate limit must be"),
                    "{n}: {e}"
                ),
            }
        }
        let defaults = SelfServeInput {
            signup_rate_limit: RateLimit::Off,
            ..SelfServeInput::default()
        }
        .into_options()
        .unwrap();
        assert_eq!(defaults.signup_rate_limit, None);
        assert_eq!(
            defaults.mint_rate_limit,
            SelfServeOptions::default().mint_rate_limit
        );
    }

    // Pins what a refused spend answers over HTTP, for each reason and for a replay.
    #[test]
    fn spend_refused_replies() {
        let cases = [
            (
                "budget_exceeded",
                None,
                429,
                json!({"error": "budget_exceeded"}),
            ),
            (
                "idempotency_conflict",
                None,
                422,
                json!({"error": "idempotency_conflict"}),
            ),
            ("revoked", None, 401, json!({"error": "revoked"})),
            ("expired", None, 401, json!({"error": "expired"})),
            ("invalid_key", None, 401, json!({"error": "invalid_key"})),
            (
                "idempotency_replayed",
                Some("held"),
                409,
                json!({"error": "idempotency_replayed", "replayed": "held"}),
            ),
            (
                "idempotency_replayed",
                Some("settled"),
                409,
                json!({"error": "idempotency_replayed", "replayed": "settled"}),
            ),
            (
                "idempotency_replayed",
                Some("released"),
                409,
                json!({"error": "idempotency_replayed", "replayed": "released"}),
            ),
        ];
        for (reason, replayed, status, body) in cases {
            assert_eq!(
                Reply::spend_refused(reason, replayed),
                Reply::new(status, body),
                "{reason} {replayed:?}"
            );
        }
        // The bytes the bindings send: compact, `error` first.
        let replay = Reply::spend_refused("idempotency_replayed", Some("held"));
        assert_eq!(
            serde_json::to_string(&replay.body).unwrap(),
            r#"{"error":"idempotency_replayed","replayed":"held"}"#
        );
    }

    // Pins the 429 of a key's rate limit: whole seconds rounded up, at least 1,
    // in the body and the Retry-After header; none when waiting will not help.
    #[test]
    fn a_rate_limited_spend() {
        let r = Reply::limited("requests", Some(0.6));
        assert_eq!((r.status, r.retry_after), (429, Some(1)));
        assert_eq!(
            serde_json::to_string(&r.body).unwrap(),
            r#"{"error":"rate_limited","limit":"requests","message":"rate limit requests reached; retry in 1 s","retryAfter":1}"#
        );
        assert_eq!(Reply::limited("spend", Some(18.001)).retry_after, Some(19));
        let never = Reply::limited("streams", None);
        assert_eq!((never.status, never.retry_after), (429, None));
        assert_eq!(never.body["retryAfter"], serde_json::Value::Null);
    }

    // Pins the header parsing: the scheme is case-insensitive and the key trimmed.
    #[test]
    fn bearer_header() {
        assert_eq!(bearer("Bearer ak_x"), Some("ak_x"));
        assert_eq!(bearer("bearer  ak_x "), Some("ak_x"));
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bear"), None);
    }
}
