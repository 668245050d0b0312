//! `keyleash._native`: the PyO3 half of the Python package.
//!
//! Every function converts its arguments, calls the core and maps the error; no rule
//! of keyleash lives here. Results cross as the Python package's result objects,
//! built here from the core's own serde shape (`results.rs`: exactly the camelCase
//! dict of docs/api.md in `to_dict()`, the very fields Node sees); the HTTP replies
//! cross as their JSON text, which goes to the client as it is.
//!
//! Async methods return asyncio awaitables (`bridge.rs`, on a process-wide tokio
//! runtime): the core runs on tokio threads without the GIL, so any number of
//! Python threads and tasks can call at once. A connection cannot cross `fork()`
//! (its sockets belong to the parent's runtime): a child gets a clear
//! `InvalidArgumentError` and connects again.

mod bridge;
mod results;

use chrono::{DateTime, Utc};
use keyleash::options::{
    CacheInput, ConnectInput, CreateInput, LimitInput, Metadata, RateLimit, SelfServeInput,
    Spelling,
};
use keyleash::{Charge, KeyLeash, KeyOptions, Route, UsageRange};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use serde::Serialize;

use crate::bridge::{future_into_py, ready_into_py};
use crate::results::{Granted, Native, Templates, ToResult};

pyo3::import_exception!(keyleash.exceptions, InvalidScopeError);
pyo3::import_exception!(keyleash.exceptions, InvalidDurationError);
pyo3::import_exception!(keyleash.exceptions, InvalidPeriodError);
pyo3::import_exception!(keyleash.exceptions, InvalidArgumentError);
pyo3::import_exception!(keyleash.exceptions, UnavailableError);
pyo3::import_exception!(keyleash.exceptions, NotMigratedError);

/// The one mapping from a core error to a Python exception: the class follows
/// `code()`, the message is the core's (never a secret), and the cause's text
/// becomes `__cause__` (built lazily: this runs on tokio threads, without the GIL).
/// A function, not `From<Error> for PyErr`: both types are foreign to this crate.
fn py_err(e: keyleash::Error) -> PyErr {
    let msg = e.to_string();
    let cause = std::error::Error::source(&e).map(ToString::to_string);
    let args = (msg, None::<String>, cause);
    match &e {
        keyleash::Error::InvalidScope(_) => InvalidScopeError::new_err(args),
        keyleash::Error::InvalidDuration(_) => InvalidDurationError::new_err(args),
        keyleash::Error::InvalidPeriod(_) => InvalidPeriodError::new_err(args),
        keyleash::Error::InvalidArgument(_) => InvalidArgumentError::new_err(args),
        keyleash::Error::Unavailable(_) => UnavailableError::new_err(args),
        keyleash::Error::NotMigrated(_) => NotMigratedError::new_err(args),
    }
}

/// One answer of `validate_refs`: the validation object, or the error `py_err` makes.
fn validation<'py>(
    py: Python<'py>,
    answer: keyleash::Result<keyleash::Validation>,
) -> PyResult<Bound<'py, PyAny>> {
    answer.map_err(py_err)?.to_result(py)
}

fn bad_arg(msg: impl Into<String>) -> PyErr {
    InvalidArgumentError::new_err(msg.into())
}

fn to_json(value: &impl Serialize) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// Parses an ISO 8601 / RFC 3339 timestamp with an offset (`Z` or `+00:00`).
fn parse_time(field: &str, s: &str) -> PyResult<DateTime<Utc>> {
    keyleash::parse_time(field, s).map_err(py_err)
}

fn opt_time(field: &str, s: Option<String>) -> PyResult<Option<DateTime<Utc>>> {
    s.map(|s| parse_time(field, &s)).transpose()
}

/// How many result objects of cached answers a connection keeps (`Templates`): as
/// many as its cache keeps answers (`max_entries`, default 10,000), at most 16,384
/// (about 2 KB each).
fn templates_cap(max_entries: Option<f64>) -> usize {
    const MOST: usize = 16_384;
    match max_entries {
        // A whole number (the Python layer checked it), in range: no truncation.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(n) if (1.0..=16_384.0).contains(&n) => n as usize,
        Some(_) => MOST,
        None => keyleash::CacheOptions::default().max_entries.min(MOST),
    }
}

/// A signup or mint rate limit as the Python layer hands it: the int it checked
/// (clamped to 64 bits), as a number the core ranges, or `None` for off.
fn rate_limit(n: Option<f64>) -> RateLimit {
    n.map_or(RateLimit::Off, RateLimit::PerHour)
}

/// A rate limit as `keyleash.client` hands it over, its names and types checked:
/// `(name, unit, limit, period, burst)`.
type LimitTuple = (Option<String>, String, f64, Option<String>, Option<f64>);

/// A [`LimitTuple`] as the core takes it.
fn limit_input((name, unit, limit, period, burst): LimitTuple) -> LimitInput {
    LimitInput {
        name,
        unit,
        limit,
        period,
        burst,
    }
}

/// Options of `create` and `ensure_subject`, built once from keyword arguments.
#[pyclass(frozen, name = "CreateOptions", module = "keyleash._native")]
struct PyCreateOptions(KeyOptions);

#[pymethods]
impl PyCreateOptions {
    /// `metadata` is the JSON text `json.dumps` wrote, which the core checks and
    /// stores as it is.
    #[new]
    #[pyo3(signature = (*, account_id=String::new(), user_id=None, scopes=None, budget_cents=None,
        budget_period=None, expires_in=None, expires_at=None, delegated_by=None, name=None,
        metadata=None, parent_id=None, limits=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        account_id: String,
        user_id: Option<String>,
        scopes: Option<Vec<String>>,
        budget_cents: Option<f64>,
        budget_period: Option<String>,
        expires_in: Option<String>,
        expires_at: Option<String>,
        delegated_by: Option<String>,
        name: Option<String>,
        metadata: Option<String>,
        parent_id: Option<i64>,
        limits: Option<Vec<LimitTuple>>,
    ) -> PyResult<Self> {
        let limits = limits.unwrap_or_default().into_iter();
        let options = CreateInput {
            account_id: Some(account_id),
            user_id,
            scopes,
            budget_cents,
            budget_period,
            expires_in,
            expires_at,
            delegated_by,
            name,
            metadata: metadata.map(Metadata::Json),
            parent_id,
            limits: limits.map(limit_input).collect(),
        };
        Ok(Self(options.into_options(Spelling::Snake).map_err(py_err)?))
    }
}

/// Options of the self-serve routes, checked once when the router is made.
#[pyclass(frozen, name = "SelfServeOptions", module = "keyleash._native")]
struct PySelfServeOptions(keyleash::SelfServeOptions);

#[pymethods]
impl PySelfServeOptions {
    #[new]
    #[pyo3(signature = (*, signup_scopes=None, require_email=true,
        signup_expires_in=String::from("24h"), signup_budget_cents=None, signup_budget_period=None,
        signup_rate_limit=Some(f64::from(keyleash::http::DEFAULT_SIGNUP_RATE_LIMIT)),
        signup_rate_limit_per_domain=None,
        mint_rate_limit=Some(f64::from(keyleash::http::DEFAULT_MINT_RATE_LIMIT))))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        signup_scopes: Option<Vec<String>>,
        require_email: bool,
        signup_expires_in: String,
        signup_budget_cents: Option<f64>,
        signup_budget_period: Option<String>,
        signup_rate_limit: Option<f64>,
        signup_rate_limit_per_domain: Option<f64>,
        mint_rate_limit: Option<f64>,
    ) -> PyResult<Self> {
        let options = SelfServeInput {
            signup_scopes,
            require_email: Some(require_email),
            signup_expires_in: Some(signup_expires_in),
            signup_budget_cents,
            signup_budget_period,
            signup_rate_limit: rate_limit(signup_rate_limit),
            signup_rate_limit_per_domain,
            mint_rate_limit: rate_limit(mint_rate_limit),
        };
        Ok(Self(options.into_options().map_err(py_err)?))
    }
}

/// A connection to one keys table; the Python `KeyLeash` wraps it.
#[pyclass(frozen, name = "NativeKeyLeash", module = "keyleash._native")]
struct NativeKeyLeash {
    inner: KeyLeash,
    /// The process that connected.
    pid: u32,
    /// The result objects of the validation cache's answers (`validate_now_or_ref`).
    templates: Templates,
}

#[pymethods]
impl NativeKeyLeash {
    #[staticmethod]
    #[pyo3(signature = (url, *, table_name=None, key_prefix=None, valid_scopes=None,
        pool_size=None, acquire_timeout_ms=None, statement_timeout_ms=None, manual_clock=None,
        cache=None))]
    #[allow(clippy::too_many_arguments)]
    fn connect(
        py: Python<'_>,
        url: String,
        table_name: Option<String>,
        key_prefix: Option<String>,
        valid_scopes: Option<Vec<String>>,
        pool_size: Option<f64>,
        acquire_timeout_ms: Option<f64>,
        statement_timeout_ms: Option<f64>,
        manual_clock: Option<String>,
        cache: Option<(Option<f64>, Option<f64>)>,
    ) -> PyResult<Bound<'_, PyAny>> {
        // The values as Python gave them: the core converts and checks them, so
        // every language has the same limits and messages.
        let templates = templates_cap(cache.and_then(|(_, max_entries)| max_entries));
        let options = ConnectInput {
            table_name,
            key_prefix,
            valid_scopes,
            pool_size,
            acquire_timeout_ms,
            statement_timeout_ms,
            manual_clock,
            cache: cache.map(|(ttl_ms, max_entries)| CacheInput {
                ttl_ms,
                max_entries,
            }),
        }
        .into_options(Spelling::Snake)
        .map_err(py_err)?;
        future_into_py(py, async move {
            let inner = KeyLeash::connect(&url, options).await.map_err(py_err)?;
            let pid = std::process::id();
            Ok(NativeKeyLeash {
                inner,
                pid,
                templates: Templates::new(templates),
            })
        })
    }

    /// The validation cache's counters (a `CacheStats`), or None when the cache is off.
    fn cache_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.kl()?
            .cache_stats()
            .map(|stats| stats.to_result(py))
            .transpose()
    }

    fn migrate<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let kl = self.kl()?;
        future_into_py(py, async move { kl.migrate().await.map_err(py_err) })
    }

    fn create<'py>(&self, py: Python<'py>, opts: &PyCreateOptions) -> PyResult<Bound<'py, PyAny>> {
        let (kl, opts) = (self.kl()?, opts.0.clone());
        future_into_py(py, async move {
            Ok(Native(kl.create(opts).await.map_err(py_err)?))
        })
    }

    fn ensure_subject<'py>(
        &self,
        py: Python<'py>,
        subject: String,
        opts: &PyCreateOptions,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (kl, opts) = (self.kl()?, opts.0.clone());
        future_into_py(py, async move {
            kl.ensure_subject(&subject, opts).await.map_err(py_err)
        })
    }

    /// `validate`'s answer when no store access is needed (a malformed key, a
    /// validation-cache hit) as its validation object, else a `MissedKey`: the key
    /// hashed once, the cache looked at once, for `validate_refs`. Synchronous, no
    /// future; a hit copies the object kept for that cached answer.
    fn validate_now_or_ref<'py>(
        &self,
        py: Python<'py>,
        raw_key: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.kl()?.validate_now_or_ref(raw_key) {
            Ok(text) => self.templates.validation(py, text),
            Err(key) => Ok(Bound::new(py, MissedKey { key })?.into_any()),
        }
    }

    /// The store's `validate` of each key the cache missed, in order, crossing
    /// into the core once (no second hash, no second cache look): settles each
    /// of `futures` (of the running loop, one per key) with its key's validation
    /// object or the exception its validate raised. The Python client gathers
    /// the misses of one turn of the event loop into one such call.
    fn validate_refs<'py>(
        &self,
        py: Python<'py>,
        keys: Vec<PyRef<'py, MissedKey>>,
        futures: Vec<Py<PyAny>>,
    ) -> PyResult<()> {
        let kl = self.kl()?;
        let keys: Vec<keyleash::KeyRef> = keys.iter().map(|k| k.key.clone()).collect();
        bridge::settle_each(
            py,
            futures,
            async move { kl.validate_refs(keys).await },
            validation,
        )
    }

    fn validate_by_subject<'py>(
        &self,
        py: Python<'py>,
        subject: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kl = self.kl()?;
        if let Some(answer) = kl.validate_by_subject_now_json(&subject) {
            return ready_into_py(py, self.templates.validation(py, answer));
        }
        future_into_py(py, async move {
            Ok(Native(
                kl.validate_by_subject(&subject).await.map_err(py_err)?,
            ))
        })
    }

    #[pyo3(signature = (raw_key, cost_cents, idempotency_key=None))]
    fn track_usage<'py>(
        &self,
        py: Python<'py>,
        raw_key: String,
        cost_cents: f64,
        idempotency_key: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kl = self.kl()?;
        let charge = Charge {
            cost_cents,
            idempotency_key,
        };
        if let Some(outcome) = kl.track_usage_now(&raw_key, &charge) {
            return ready_into_py(py, outcome.map(Native).map_err(py_err));
        }
        future_into_py(py, async move {
            Ok(Native(
                kl.track_usage(&raw_key, charge).await.map_err(py_err)?,
            ))
        })
    }

    #[pyo3(signature = (subject, cost_cents, idempotency_key=None))]
    fn track_usage_by_subject<'py>(
        &self,
        py: Python<'py>,
        subject: String,
        cost_cents: f64,
        idempotency_key: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kl = self.kl()?;
        let charge = Charge {
            cost_cents,
            idempotency_key,
        };
        if let Some(outcome) = kl.track_usage_by_subject_now(&subject, &charge) {
            return ready_into_py(py, outcome.map(Native).map_err(py_err));
        }
        future_into_py(py, async move {
            Ok(Native(
                kl.track_usage_by_subject(&subject, charge)
                    .await
                    .map_err(py_err)?,
            ))
        })
    }

    #[pyo3(signature = (raw_key, cost_cents, ttl=None, idempotency_key=None))]
    fn reserve<'py>(
        &self,
        py: Python<'py>,
        raw_key: String,
        cost_cents: f64,
        ttl: Option<String>,
        idempotency_key: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kl = self.kl()?;
        let reserve = keyleash::Reserve {
            cost_cents,
            ttl,
            idempotency_key,
        };
        future_into_py(py, async move {
            Ok(Native(kl.reserve(&raw_key, reserve).await.map_err(py_err)?))
        })
    }

    fn settle<'py>(
        &self,
        py: Python<'py>,
        hold_id: i64,
        cost_cents: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kl = self.kl()?;
        future_into_py(py, async move {
            Ok(Native(
                kl.settle(hold_id, cost_cents).await.map_err(py_err)?,
            ))
        })
    }

    fn release<'py>(&self, py: Python<'py>, hold_id: i64) -> PyResult<Bound<'py, PyAny>> {
        let kl = self.kl()?;
        future_into_py(py, async move { kl.release(hold_id).await.map_err(py_err) })
    }

    #[pyo3(signature = (account_id, budget_cents, budget_period=None))]
    fn set_account_budget<'py>(
        &self,
        py: Python<'py>,
        account_id: String,
        budget_cents: Option<f64>,
        budget_period: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kl = self.kl()?;
        future_into_py(py, async move {
            kl.set_account_budget(&account_id, budget_cents, budget_period.as_deref())
                .await
                .map_err(py_err)
        })
    }

    #[pyo3(signature = (key_id, account_id=None))]
    fn revoke<'py>(
        &self,
        py: Python<'py>,
        key_id: i64,
        account_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kl = self.kl()?;
        future_into_py(py, async move {
            kl.revoke(key_id, account_id.as_deref())
                .await
                .map_err(py_err)
        })
    }

    /// Replaces a key's rate limits; resolves to whether a key was found.
    #[pyo3(signature = (key_id, limits, account_id=None))]
    fn set_limits<'py>(
        &self,
        py: Python<'py>,
        key_id: i64,
        limits: Vec<LimitTuple>,
        account_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let limits = keyleash::options::limits(limits.into_iter().map(limit_input).collect())
            .map_err(py_err)?;
        let kl = self.kl()?;
        future_into_py(py, async move {
            kl.set_limits(key_id, &limits, account_id.as_deref())
                .await
                .map_err(py_err)
        })
    }

    /// One request to the admin page (`keyleash.admin_router` calls it): resolves
    /// to `(status, [(header, value)], body bytes)`, the core's answer as is.
    #[pyo3(signature = (method, path, query, base, headers, body))]
    #[allow(clippy::too_many_arguments)]
    fn admin<'py>(
        &self,
        py: Python<'py>,
        method: String,
        path: String,
        query: String,
        base: String,
        headers: Vec<(String, String)>,
        body: &[u8],
    ) -> PyResult<Bound<'py, PyAny>> {
        let kl = self.kl()?;
        let req = keyleash::AdminRequest {
            method,
            path,
            query,
            base,
            headers,
            body: body.to_vec(),
        };
        future_into_py(py, async move { Ok(admin_answer(kl.admin(req).await)) })
    }

    fn list<'py>(&self, py: Python<'py>, account_id: String) -> PyResult<Bound<'py, PyAny>> {
        let kl = self.kl()?;
        future_into_py(py, async move {
            Ok(Native(kl.list(&account_id).await.map_err(py_err)?))
        })
    }

    #[pyo3(signature = (key_id, from_=None, to=None))]
    fn usage<'py>(
        &self,
        py: Python<'py>,
        key_id: i64,
        from_: Option<String>,
        to: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kl = self.kl()?;
        let range = UsageRange {
            from: opt_time("from_", from_)?,
            to: opt_time("to", to)?,
        };
        future_into_py(py, async move {
            Ok(Native(kl.usage(key_id, range).await.map_err(py_err)?))
        })
    }

    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let kl = self.kl()?;
        future_into_py(py, async move {
            kl.close().await;
            Ok(())
        })
    }

    /// The HTTP decision for one request (`KeyLeash::authenticate_key`):
    /// `(200, GrantedKey, None, NativeKeyRef)` when granted (the `GrantedKey`
    /// without its handles, which the Python layer sets), else `(status, body
    /// JSON, cause, None)`, where `cause` (on a 500) describes the store
    /// failure for the server's log. The `NativeKeyRef` charges the key by its hash, so
    /// the request's handler need not parse the header and hash the key again.
    #[pyo3(signature = (authorization, scope=None))]
    fn authenticate_key<'py>(
        &self,
        py: Python<'py>,
        authorization: Option<String>,
        scope: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (kl, pid) = (self.kl()?, self.pid);
        future_into_py(py, async move {
            match kl
                .authenticate_key(authorization.as_deref(), scope.as_deref())
                .await
            {
                Ok((info, key)) => {
                    let granted = Native(Granted(keyleash::Validation::Valid(info)));
                    let key = NativeKeyRef {
                        inner: kl,
                        pid,
                        key,
                    };
                    Ok((200u16, OneOf::A(granted), None, Some(key)))
                }
                Err(reply) => Ok((
                    reply.status,
                    OneOf::B(to_json(&reply.body)?),
                    reply.cause,
                    None,
                )),
            }
        })
    }

    /// One self-serve request: `route` is `signup`, `me`, `mint` or `revoke` (with
    /// `key_id`, the path segment as sent), `body` the raw bytes and
    /// `content_type` the header (the core decodes the body: UTF-8 only), `client`
    /// the client's address (what the signup rate limit counts; None: the shared
    /// bucket of unknown addresses); returns the core's `(status, body JSON,
    /// Retry-After seconds or None, cause or None)`.
    #[pyo3(signature = (route, authorization, body, options, key_id=None, client=None,
        content_type=None))]
    #[allow(clippy::too_many_arguments)]
    fn self_serve<'py>(
        &self,
        py: Python<'py>,
        route: String,
        authorization: Option<String>,
        body: &[u8],
        options: &PySelfServeOptions,
        key_id: Option<String>,
        client: Option<String>,
        content_type: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (kl, options, body) = (self.kl()?, options.0.clone(), body.to_vec());
        future_into_py(py, async move {
            let id = key_id.unwrap_or_default();
            let route = match route.as_str() {
                "signup" => Route::Signup,
                "me" => Route::Me,
                "mint" => Route::Mint,
                "revoke" => Route::Revoke(&id),
                other => return Err(bad_arg(format!("unknown self-serve route {other:?}"))),
            };
            let reply = kl
                .self_serve_bytes(
                    route,
                    authorization.as_deref(),
                    &body,
                    content_type.as_deref(),
                    client.as_deref(),
                    &options,
                )
                .await;
            let body = to_json(&reply.body)?;
            Ok((reply.status, body, reply.retry_after, reply.cause))
        })
    }

    /// The manual clock's reading, ISO 8601 with milliseconds and `Z`.
    fn now(&self) -> PyResult<String> {
        Ok(keyleash::iso(&self.manual()?.now()))
    }

    /// Sets the manual clock to `at` (ISO 8601 with a time zone).
    fn set_now(&self, at: &str) -> PyResult<()> {
        self.manual()?.set(parse_time("at", at)?);
        Ok(())
    }

    /// Moves the manual clock by the sum of the amounts given (negative goes back).
    fn advance(&self, seconds: f64, minutes: f64, hours: f64, days: f64) -> PyResult<()> {
        let by = keyleash::clock::span(seconds, minutes, hours, days).map_err(py_err)?;
        self.manual()?.advance(by);
        Ok(())
    }
}

impl NativeKeyLeash {
    /// The connection, unless this is a forked child of the process that made it.
    fn kl(&self) -> PyResult<KeyLeash> {
        same_process(&self.inner, self.pid)
    }

    fn manual(&self) -> PyResult<&keyleash::ManualClock> {
        self.inner.clock().as_manual().ok_or_else(|| {
            bad_arg("this KeyLeash reads the system clock; connect with manual_clock=... to set it")
        })
    }
}

/// `inner`, unless this is a forked child of process `pid`, which connected it: the
/// pool's sockets belong to the parent's runtime.
fn same_process(inner: &KeyLeash, pid: u32) -> PyResult<KeyLeash> {
    in_process(pid).map(|()| inner.clone())
}

/// Refuses a forked child of process `pid`, which connected (`same_process`).
fn in_process(pid: u32) -> PyResult<()> {
    if pid == std::process::id() {
        Ok(())
    } else {
        Err(bad_arg(
            "this KeyLeash was connected in the parent process before fork(); connect again in this process",
        ))
    }
}

/// A key the validation cache missed (`validate_now_or_ref`), hashed once: an
/// opaque handle holding the key's SHA-256 (never the key), for `validate_refs`.
#[pyclass(frozen, name = "MissedKey", module = "keyleash._native")]
struct MissedKey {
    key: keyleash::KeyRef,
}

/// A key `authenticate_key` granted, to charge it without its raw key: it holds the
/// key's hash (never the key) and the connection that validated it. The FastAPI
/// dependency's `GrantedKey.charge` wraps it.
#[pyclass(frozen, name = "NativeKeyRef", module = "keyleash._native")]
struct NativeKeyRef {
    inner: KeyLeash,
    /// The process that connected `inner`.
    pid: u32,
    /// The key's SHA-256, as the core looks it up.
    key: keyleash::KeyRef,
}

#[pymethods]
impl NativeKeyRef {
    /// Charges the key as `track_usage` with its raw key would: the charge result
    /// (refusals such as `budget_exceeded`, `revoked` or `invalid_cost` are
    /// results); raises for a bad idempotency key or a store failure.
    #[pyo3(signature = (cost_cents, idempotency_key=None))]
    fn charge<'py>(
        &self,
        py: Python<'py>,
        cost_cents: f64,
        idempotency_key: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (kl, key) = (same_process(&self.inner, self.pid)?, self.key.clone());
        let charge = Charge {
            cost_cents,
            idempotency_key,
        };
        future_into_py(py, async move {
            Ok(Native(
                kl.track_usage_ref(&key, charge).await.map_err(py_err)?,
            ))
        })
    }

    /// Holds an estimate of the key's budget as `reserve` with its raw key would:
    /// the hold's handle (`NativeHold`) when it holds, else the reserve result
    /// (refusals and replays are results), in one call; raises for a bad ttl
    /// or idempotency key, or a store failure.
    #[pyo3(signature = (cost_cents, ttl=None, idempotency_key=None))]
    fn reserve<'py>(
        &self,
        py: Python<'py>,
        cost_cents: f64,
        ttl: Option<String>,
        idempotency_key: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (kl, pid, key) = (
            same_process(&self.inner, self.pid)?,
            self.pid,
            self.key.clone(),
        );
        let reserve = keyleash::Reserve {
            cost_cents,
            ttl,
            idempotency_key,
        };
        future_into_py(py, async move {
            match kl.reserve_ref_hold(&key, reserve).await.map_err(py_err)? {
                Ok(hold) => Ok(OneOf::B(NativeHold { hold, pid })),
                Err(result) => Ok(OneOf::A(Native(result))),
            }
        })
    }
}

/// Whether `scopes` (`None` = all) grant `scope` (docs/semantics.md, "Scopes").
#[pyfunction]
#[pyo3(signature = (scopes, scope))]
fn has_scope(scopes: Option<Vec<String>>, scope: &str) -> bool {
    keyleash::has_scope(scopes.as_deref(), scope)
}

/// The core's 413 reply for a body over `MAX_BODY_BYTES`: `(413, body JSON)`.
#[pyfunction]
fn payload_too_large() -> PyResult<(u16, String)> {
    let reply = keyleash::Reply::payload_too_large();
    Ok((reply.status, to_json(&reply.body)?))
}

/// The core's reply to a reserve refused where work was to be served
/// (`stream_with_hold`), from the result's `reason` and `replayed`: `(status, body
/// JSON)`: 409 for a replay, 429 `budget_exceeded`, 422 `idempotency_conflict`,
/// else 401.
#[pyfunction]
#[pyo3(signature = (reason, replayed=None))]
fn spend_refused(reason: &str, replayed: Option<&str>) -> PyResult<(u16, String)> {
    let reply = keyleash::Reply::spend_refused(reason, replayed);
    Ok((reply.status, to_json(&reply.body)?))
}

/// The core's reply to a charge or reserve a key's rate limit refused, from the
/// result's `limit` and `retry_after`: `(429, body JSON, Retry-After seconds or
/// None)`.
#[pyfunction]
#[pyo3(signature = (limit, retry_after=None))]
fn rate_limited(limit: &str, retry_after: Option<f64>) -> PyResult<(u16, String, Option<u64>)> {
    let reply = keyleash::Reply::limited(limit, retry_after);
    Ok((reply.status, to_json(&reply.body)?, reply.retry_after))
}

/// The core's reply to a key store failure (an `UnavailableError`, `NotMigratedError`
/// included) where a request was to be served: `(500, body JSON)`; `cause`, the
/// error's message, is for the log, never sent.
#[pyfunction]
fn store_failed(cause: String) -> PyResult<(u16, String)> {
    let reply = keyleash::Reply::store_failed(cause);
    Ok((reply.status, to_json(&reply.body)?))
}

/// An admin page answer as `(status, [(header, value)], body bytes)`.
type AdminAnswer = (u16, Vec<(String, String)>, std::borrow::Cow<'static, [u8]>);

fn admin_answer(r: keyleash::AdminResponse) -> AdminAnswer {
    (r.status, r.headers, std::borrow::Cow::Owned(r.body))
}

/// The core's answer when `admin_router`'s `authorize` refuses: 401 with a
/// `WWW-Authenticate: Basic` challenge.
#[pyfunction]
fn admin_unauthorized() -> AdminAnswer {
    admin_answer(keyleash::AdminResponse::unauthorized())
}

/// The core's answer to an admin page body over `ADMIN_MAX_BODY_BYTES`: 413.
#[pyfunction]
fn admin_payload_too_large() -> AdminAnswer {
    admin_answer(keyleash::AdminResponse::payload_too_large())
}

/// Runs the `keyleash` command line on `args` (without the program's name) in
/// this process, without the GIL, and returns its exit status (`keyleash.cli`).
#[pyfunction]
fn run_cli(py: Python<'_>, args: Vec<String>) -> u8 {
    py.detach(|| keyleash_cli::run(std::iter::once("keyleash".to_string()).chain(args)))
}

// The hold handle: the core's `Hold` (its state, what was consumed, its one
// ending), which `keyleash.spend.Spend` wraps.

/// A hold `NativeKeyRef.reserve` placed: the core's handle of it. Settle, release
/// and cut_short decide when called and return an awaitable of the answer; the
/// call runs on tokio to its end even if the awaiting task is cancelled, and a
/// repeat awaits the first ending's result.
#[pyclass(frozen, name = "NativeHold", module = "keyleash._native")]
struct NativeHold {
    hold: keyleash::Hold,
    /// The process that connected the hold's connection.
    pid: u32,
}

#[pymethods]
impl NativeHold {
    /// The hold's id.
    #[getter]
    fn hold_id(&self) -> i64 {
        self.hold.hold_id()
    }

    /// When the hold stops counting by itself, ISO 8601.
    #[getter]
    fn expires_at(&self) -> String {
        keyleash::iso(&self.hold.expires_at())
    }

    /// What could still be spent after the hold; `None` when uncapped.
    #[getter]
    fn budget_remaining_cents(&self) -> Option<f64> {
        self.hold.budget_remaining_cents()
    }

    /// The estimate held, in cents.
    #[getter]
    fn estimate_cents(&self) -> f64 {
        self.hold.estimate_cents()
    }

    /// The cost added so far, in cents.
    #[getter]
    fn consumed_cents(&self) -> f64 {
        self.hold.consumed_cents()
    }

    /// `held` until the first settle or release, then `settled` or `released`.
    #[getter]
    fn state(&self) -> &'static str {
        self.hold.state().as_str()
    }

    /// Counts `cents` as consumed and returns the total; `InvalidArgumentError`
    /// with the core's message for a non-amount or an ended hold.
    fn add(&self, cents: f64) -> PyResult<f64> {
        self.hold.add(cents).map_err(|e| bad_arg(e.to_string()))
    }

    /// Settles the hold (`None`: what was added): the settle result.
    #[pyo3(signature = (cost_cents=None))]
    fn settle<'py>(&self, py: Python<'py>, cost_cents: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        in_process(self.pid)?;
        let ending = self.hold.settle(cost_cents);
        future_into_py(py, async move { Ok(Native(ending.await.map_err(py_err)?)) })
    }

    /// Releases the hold: whether it freed anything.
    fn release<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        in_process(self.pid)?;
        let ending = self.hold.release();
        future_into_py(py, async move { ending.await.map_err(py_err) })
    }

    /// Settles what was consumed, or releases when nothing was: the settle
    /// result or the release's boolean.
    fn cut_short<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        in_process(self.pid)?;
        let ending = self.hold.cut_short();
        future_into_py(py, async move {
            match ending.await.map_err(py_err)? {
                keyleash::CutShort::Settled(s) => Ok(OneOf::A(Native(s))),
                keyleash::CutShort::Released(freed) => Ok(OneOf::B(freed)),
            }
        })
    }
}

/// A result that crosses as one of two Python types (`ReserveRefused |
/// NativeHold`, `SettleResult | bool`, `GrantedKey | str`).
enum OneOf<A, B> {
    A(A),
    B(B),
}

impl<'py, A, B> IntoPyObject<'py> for OneOf<A, B>
where
    A: IntoPyObject<'py>,
    B: IntoPyObject<'py>,
    PyErr: From<A::Error> + From<B::Error>,
{
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        use pyo3::IntoPyObjectExt;
        match self {
            OneOf::A(a) => a.into_bound_py_any(py),
            OneOf::B(b) => b.into_bound_py_any(py),
        }
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeKeyLeash>()?;
    m.add_class::<NativeKeyRef>()?;
    m.add_class::<MissedKey>()?;
    m.add_class::<NativeHold>()?;
    m.add_class::<PyCreateOptions>()?;
    m.add_class::<PySelfServeOptions>()?;
    m.add_function(wrap_pyfunction!(has_scope, m)?)?;
    m.add_function(wrap_pyfunction!(payload_too_large, m)?)?;
    m.add_function(wrap_pyfunction!(spend_refused, m)?)?;
    m.add_function(wrap_pyfunction!(rate_limited, m)?)?;
    m.add_function(wrap_pyfunction!(store_failed, m)?)?;
    m.add_function(wrap_pyfunction!(admin_unauthorized, m)?)?;
    m.add_function(wrap_pyfunction!(admin_payload_too_large, m)?)?;
    m.add_function(wrap_pyfunction!(run_cli, m)?)?;
    m.add_function(wrap_pyfunction!(results::result_class, m)?)?;
    m.add("MAX_BODY_BYTES", keyleash::http::MAX_BODY_BYTES)?;
    m.add(
        "ADMIN_MAX_BODY_BYTES",
        keyleash::admin::ADMIN_MAX_BODY_BYTES,
    )?;
    // The package's version: the workspace's, the one source every manifest reads.
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(bridge::shutdown, m)?)?;
    Ok(())
}
