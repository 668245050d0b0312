//! keyleash: scoped, budgeted, time-bounded API keys on Postgres or SQLite.
//!
//! A key can only do what its scopes allow, only until it expires, and only spend
//! up to its budget, and the budget holds under any number of concurrent charges,
//! because every charge is decided under a row lock in the database.
//!
//! Module map: [`key`] (key format, checksum, hashing), [`period`] (budget periods
//! and duration strings), [`amount`] (exact micro-cent amounts), [`clock`] (system
//! or manual time), [`scope`] (scope matching), `engine` (the budget rules as pure
//! functions), `store` (one module per backend: `store/postgres.rs`,
//! `store/sqlite.rs`), [`error`] (the error type and its codes).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use keyleash::{Charge, CreateOptions, KeyLeash, Options};
//!
//! let kl = KeyLeash::connect("sqlite::memory:", Options::default()).await?;
//! kl.migrate().await?;
//! let key = kl
//!     .create(CreateOptions {
//!         account_id: "acct_1".into(),
//!         scopes: Some(vec!["proxy.chat".into()]),
//!         budget_cents: Some(50.0),
//!         budget_period: Some("month".into()),
//!         ..Default::default()
//!     })
//!     .await?;
//! let v = kl.validate(&key.key).await?;
//! assert!(v.has_scope("proxy.chat"));
//! let charged = kl.track_usage(&key.key, Charge::cents(0.25)).await?;
//! assert!(charged.success());
//! # Ok::<_, keyleash::Error>(())
//! # }).unwrap();
//! ```

#![deny(missing_docs)]

pub mod admin;
pub mod amount;
#[cfg(test)]
mod batch_tests;
mod cache;
pub mod clock;
mod engine;
pub mod error;
mod group;
pub mod http;
mod ident;
pub mod key;
mod model;
pub mod options;
pub mod period;
pub mod scope;
mod spend;
mod store;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use crate::admin::{AdminRequest, AdminResponse};
pub use crate::clock::{Clock, ManualClock};
pub use crate::error::{Error, Result};
pub use crate::http::{Access, Reply, Route, SelfServeOptions};
pub use crate::model::{
    iso, parse_time, AccountView, AccountsPage, CacheOptions, CacheStats, CeilingView, Charge,
    ChargeRefusal, ChargeResult, CreateOptions, CreatedKey, DaySpend, HoldStatus, InvalidReason,
    KeyDetails, KeyInfo, KeyStatus, KeySummary, LedgerEntry, LedgerRecord, Options, Reserve,
    ReserveResult, SettleRefusal, SettleResult, SpendBy, SpendOf, Spender, UsageRange, Validation,
};
pub use crate::scope::has_scope;

use crate::cache::Cache;
use crate::engine::{ChargeReq, Lookup};
use crate::error::shown;
use crate::group::Group;
use crate::ident::TableNames;
use crate::period::{parse_duration, Period};
use crate::spend::{ReserveReq, SpendOutcome, SpendReq};
use crate::store::{NewKey, Store};

/// Longest user id, name, delegatedBy and idempotency key, in bytes.
pub const MAX_TEXT_LEN: usize = 256;
/// Longest external subject, in bytes.
pub const MAX_SUBJECT_LEN: usize = 512;
/// Longest account id, in bytes: as long as a subject, because a subject row's
/// account defaults to its subject.
pub const MAX_ACCOUNT_LEN: usize = MAX_SUBJECT_LEN;
/// Longest raw key looked up, in bytes; anything longer is `invalid` at once.
pub const MAX_RAW_KEY_LEN: usize = 128;
/// Largest metadata, serialized, in bytes.
pub const MAX_METADATA_LEN: usize = 16 * 1024;

/// A connection to one keys table. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct KeyLeash {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    /// Concurrent validates, one store round trip per batch (`group.rs`).
    validates: Arc<Group<Lookup, Validation>>,
    /// Concurrent charges, reserves, settles and releases, one transaction per
    /// batch, decided in arrival order.
    charges: Arc<Group<SpendReq, SpendOutcome>>,
    prefix: String,
    valid_scopes: Option<Vec<String>>,
    clock: Clock,
    /// The opt-in validation cache (`cache.rs`).
    cache: Option<Arc<Cache>>,
    /// The cache's `LISTEN` task (Postgres), stopped with the last clone or `close`.
    listener: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(l) = &self.listener {
            l.abort();
        }
    }
}

impl KeyLeash {
    /// Connects to `url`: `postgres://…` / `postgresql://…`, or `sqlite://path.db`,
    /// `sqlite:path.db`, `sqlite::memory:` (the file is created if missing).
    /// Fails with `invalid_argument` for a bad URL, table name, key prefix, pool
    /// size or timeout (the URL is never echoed: it may hold a password) and
    /// `unavailable` when the database cannot be reached: at once, naming
    /// `host:port`, when the server refuses the connection; naming the path when a
    /// SQLite file's directory does not exist. Call [`KeyLeash::migrate`] before
    /// first use.
    pub async fn connect(url: &str, options: Options) -> Result<Self> {
        crate::options::check(&options)?;
        let names = TableNames::new(&options.table_name)?;
        check_prefix(&options.key_prefix)?;
        if let Some(valid) = &options.valid_scopes {
            scope::check_scopes(valid, None)?;
        }
        let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Store::Postgres(store::postgres::PgStore::connect(url, &options, names).await?)
        } else if url.starts_with("sqlite:") {
            Store::Sqlite(store::sqlite::SqliteStore::connect(url, &options, names).await?)
        } else {
            return Err(Error::arg(
                "the database URL must start with postgres://, postgresql:// or sqlite:",
            ));
        };
        let (cache, listener) = match (&options.cache, &store) {
            (None, _) => (None, None),
            (Some(o), Store::Postgres(pg)) => {
                // Serves nothing until its LISTEN connection is up.
                let (connect, channel) = pg.listen_target();
                let cache = Arc::new(Cache::new(o, Some(channel.clone())));
                let listening = cache::listen(
                    connect,
                    channel,
                    Arc::downgrade(&cache),
                    options.acquire_timeout,
                );
                (Some(cache), Some(tokio::spawn(listening)))
            }
            (Some(o), Store::Sqlite(_)) => (Some(Arc::new(Cache::new(o, None))), None),
        };
        let store = Arc::new(store);
        let limits = store.group_limits(options.pool_size);
        let clock = options.clock.clone();
        Ok(Self {
            inner: Arc::new(Inner {
                validates: Group::new(
                    limits.validates,
                    validate_batches(&store, &clock, cache.clone()),
                ),
                charges: Group::new(
                    limits.charges,
                    charge_batches(&store, &clock, cache.clone()),
                ),
                store,
                prefix: options.key_prefix,
                valid_scopes: options.valid_scopes,
                clock: options.clock,
                cache,
                listener,
            }),
        })
    }

    /// The clock this instance reads; a manual one can be set and advanced.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Creates the schema, or adopts an existing keys table (one made by agentkey
    /// included) by adding what is missing. Drops nothing; safe to run on every
    /// start and from several processes at once.
    pub async fn migrate(&self) -> Result<()> {
        self.inner.store.migrate().await
    }

    /// Mints a key. The raw key is in the result and nowhere else, ever.
    /// Errors: `invalid_scope`, `invalid_period`, `invalid_duration`,
    /// `invalid_argument` (missing/oversized strings, bad budget, past expiry).
    pub async fn create(&self, mut opts: CreateOptions) -> Result<CreatedKey> {
        let now = self.inner.clock.now();
        if let Some(parent) = opts.parent_id {
            self.check_parent(parent, &mut opts.account_id, now).await?;
        }
        check_text("accountId", &opts.account_id, MAX_ACCOUNT_LEN, true)?;
        let minted = key::mint(&self.inner.prefix)?;
        let new = self.new_row(&opts, now, minted.hash, minted.display_prefix, None)?;
        let id = self.inner.store.insert_key(&new).await?;
        Ok(CreatedKey {
            key: minted.raw,
            id,
            scopes: new.scopes,
            budget_cents: new.budget_micros.map(amount::micros_to_cents),
            budget_period: new.budget_period,
            expires_at: new.expires_at,
        })
    }

    /// Creates, once, a budget row bound to an external identity (an IdP machine
    /// token, say) instead of a minted key. Idempotent: later calls for the same
    /// subject change nothing, even concurrently. An empty `account_id` defaults to
    /// the subject. Errors as [`KeyLeash::create`].
    pub async fn ensure_subject(&self, subject: &str, mut opts: CreateOptions) -> Result<()> {
        check_text("subject", subject, MAX_SUBJECT_LEN, true)?;
        if opts.account_id.is_empty() {
            opts.account_id = subject.to_string();
        }
        check_text("accountId", &opts.account_id, MAX_ACCOUNT_LEN, true)?;
        let hash = key::internal_hash()?;
        let prefix = format!("{}ext", self.inner.prefix);
        let new = self.new_row(
            &opts,
            self.inner.clock.now(),
            hash,
            prefix,
            Some(subject.to_string()),
        )?;
        self.inner.store.insert_subject(&new).await
    }

    /// Checks that `parent_id` names a live key of `account_id` (filled in from the
    /// parent when empty) whose chain has room for one more generation.
    async fn check_parent(
        &self,
        parent_id: i64,
        account_id: &mut String,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let rows = self.inner.store.get(parent_id, now).await?;
        let Some(parent) = rows.iter().find(|r| r.id == parent_id) else {
            return Err(Error::arg(format!("parentId {parent_id} is not a key")));
        };
        let parent_account = parent.account_id.clone().unwrap_or_default();
        if account_id.is_empty() {
            *account_id = parent_account;
        } else if *account_id != parent_account {
            return Err(Error::arg(format!(
                "parentId {parent_id} belongs to another account"
            )));
        }
        if engine::ancestry(&rows, parent).len() >= engine::MAX_DEPTH {
            return Err(Error::arg(format!(
                "parentId {parent_id} is already {} generations deep",
                engine::MAX_DEPTH - 1
            )));
        }
        match parent.validate(&rows, now).0.reason() {
            Some(r @ (InvalidReason::Revoked | InvalidReason::Expired)) => Err(Error::arg(
                format!("parentId {parent_id} is {}", r.as_str()),
            )),
            _ => Ok(()),
        }
    }

    fn new_row(
        &self,
        o: &CreateOptions,
        now: DateTime<Utc>,
        key_hash: String,
        key_prefix: String,
        subject: Option<String>,
    ) -> Result<NewKey> {
        if let Some(scopes) = &o.scopes {
            scope::check_scopes(scopes, self.inner.valid_scopes.as_deref())?;
        }
        let period = o.budget_period.as_deref().map(Period::parse).transpose()?;
        let budget_micros = o
            .budget_cents
            .map(|c| {
                amount::cents_to_micros(c).ok_or_else(|| {
                    Error::arg(format!(
                        "budgetCents must be a finite number from 0 to 1e12, got {c}"
                    ))
                })
            })
            .transpose()?;
        let expires_at = match (&o.expires_in, o.expires_at) {
            (Some(_), Some(_)) => return Err(Error::arg("give expiresIn or expiresAt, not both")),
            (Some(d), None) => Some(now + parse_duration(d)?),
            (None, Some(at)) if at <= now => {
                return Err(Error::arg("expiresAt must be in the future"))
            }
            (None, at) => at,
        };
        for (field, value) in [
            ("userId", &o.user_id),
            ("delegatedBy", &o.delegated_by),
            ("name", &o.name),
        ] {
            if let Some(v) = value {
                check_text(field, v, MAX_TEXT_LEN, field == "name")?;
            }
        }
        let metadata = o.metadata.as_ref().map(serde_json::Value::to_string);
        if metadata
            .as_ref()
            .is_some_and(|m| m.len() > MAX_METADATA_LEN || m.contains("\\u0000"))
        {
            return Err(Error::arg(
                "metadata must serialize to at most 16 KiB of JSON without NUL characters",
            ));
        }
        Ok(NewKey {
            account_id: o.account_id.clone(),
            user_id: o.user_id.clone(),
            key_hash,
            key_prefix,
            name: o.name.clone().unwrap_or_else(|| "default".into()),
            scopes: o.scopes.clone(),
            budget_micros,
            budget_cents: budget_micros.map(amount::cap_mirror),
            budget_period: period.map(|p| p.as_str().to_string()),
            budget_reset_at: period.map(|p| p.boundary(now, 1)),
            expires_at,
            delegated_by: o.delegated_by.clone(),
            external_subject: subject,
            metadata,
            created_at: now,
            parent_id: o.parent_id,
        })
    }

    /// Checks a raw key: `Valid` with the key's details, or `Invalid` with
    /// `invalid` (unknown, malformed, bad checksum: no database round trip for a
    /// malformed one), `revoked`, `expired` or `budget_exceeded`, in that order.
    /// Rolls an elapsed budget period first. Errors only with `unavailable`.
    /// With the validation cache on ([`Options::cache`]), a valid answer may come
    /// from the cache (see [`CacheOptions`]).
    pub async fn validate(&self, raw_key: &str) -> Result<Validation> {
        match self.key_ref(raw_key) {
            Err(reason) => Ok(Validation::Invalid(reason)),
            Ok(key) => self.validate_ref(&key).await,
        }
    }

    /// The answer of [`KeyLeash::validate`] when it needs no store: a malformed key
    /// is `invalid`, and a key in the validation cache gets its cached answer.
    /// `None` when only the store can answer. Synchronous and cheap (no I/O; one
    /// hash and one short lock with the cache on): bindings call it first and skip
    /// the trip through their async machinery when it answers. `validate` makes
    /// the same checks first, so both give the same answer by construction.
    pub fn validate_now(&self, raw_key: &str) -> Option<Validation> {
        match self.key_ref(raw_key) {
            Err(reason) => Some(Validation::Invalid(reason)),
            Ok(key) => self.cached(&key.0),
        }
    }

    /// [`KeyLeash::validate_now`] as the JSON of docs/api.md, for bindings that hand
    /// results over as text: a cache hit returns the text stored with the entry
    /// (serialized once, when it was cached) instead of serializing per call.
    pub fn validate_now_json(&self, raw_key: &str) -> Option<Arc<str>> {
        match self.key_ref(raw_key) {
            Err(reason) => Some(json_of(&Validation::Invalid(reason))),
            Ok(key) => self.cached_json(&key.0),
        }
    }

    /// [`KeyLeash::validate_by_subject_now`] as JSON text, like
    /// [`KeyLeash::validate_now_json`].
    pub fn validate_by_subject_now_json(&self, subject: &str) -> Option<Arc<str>> {
        if !subject_shaped(subject) {
            return Some(json_of(&Validation::Invalid(InvalidReason::Invalid)));
        }
        self.cached_json(&Lookup::Subject(subject.into()))
    }

    fn cached_json(&self, lookup: &Lookup) -> Option<Arc<str>> {
        let cache = self.inner.cache.as_ref()?;
        cache.get_json(lookup, self.inner.clock.now())
    }

    /// [`KeyLeash::validate`] of each of `raw_keys`, in order: the answers are
    /// exactly those of separate calls made in this order, but the keys join the
    /// batch queue together. For bindings that gather the validates of one turn
    /// of their event loop and cross into the core once for all of them.
    pub async fn validate_many(&self, raw_keys: &[String]) -> Vec<Result<Validation>> {
        let mut out: Vec<Option<Result<Validation>>> = Vec::with_capacity(raw_keys.len());
        let mut lookups = Vec::new();
        for raw in raw_keys {
            match self.key_ref(raw) {
                Err(reason) => out.push(Some(Ok(Validation::Invalid(reason)))),
                Ok(key) => match self.cached(&key.0) {
                    Some(hit) => out.push(Some(Ok(hit))),
                    None => {
                        lookups.push(key.0);
                        out.push(None);
                    }
                },
            }
        }
        let mut looked_up = self.inner.validates.call_many(lookups).await.into_iter();
        out.into_iter()
            .map(|answer| {
                answer.unwrap_or_else(|| {
                    looked_up
                        .next()
                        .unwrap_or_else(|| Err(Error::Unavailable("a validate was lost".into())))
                })
            })
            .collect()
    }

    /// The live cached answer for `lookup`, if the cache is on and has one.
    fn cached(&self, lookup: &Lookup) -> Option<Validation> {
        let cache = self.inner.cache.as_ref()?;
        cache.get(lookup, self.inner.clock.now())
    }

    /// The validation cache's counters, or `None` when the cache is off.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.inner.cache.as_ref().map(|c| c.stats())
    }

    /// [`KeyLeash::validate`] for a key already parsed and hashed by
    /// [`KeyLeash::key_ref`].
    pub async fn validate_ref(&self, key: &KeyRef) -> Result<Validation> {
        match self.cached(&key.0) {
            Some(answer) => Ok(answer),
            None => self.inner.validates.call(key.0.clone()).await,
        }
    }

    /// `raw_key` hashed once, to validate and charge it without hashing it again
    /// (the HTTP path charges the key it authenticated); `Err(invalid)` when it is
    /// malformed, so no store could hold it.
    pub fn key_ref(&self, raw_key: &str) -> std::result::Result<KeyRef, InvalidReason> {
        if self.key_shaped(raw_key) {
            Ok(KeyRef(Lookup::Hash(key::hash(raw_key))))
        } else {
            Err(InvalidReason::Invalid)
        }
    }

    /// [`KeyLeash::validate`] for a subject row made by [`KeyLeash::ensure_subject`].
    pub async fn validate_by_subject(&self, subject: &str) -> Result<Validation> {
        match self.validate_by_subject_now(subject) {
            Some(answer) => Ok(answer),
            None => {
                self.validate_ref(&KeyRef(Lookup::Subject(subject.into())))
                    .await
            }
        }
    }

    /// [`KeyLeash::validate_now`] for [`KeyLeash::validate_by_subject`]: `invalid`
    /// for a subject no row can have (empty, oversized, with a NUL), or the cached
    /// answer.
    pub fn validate_by_subject_now(&self, subject: &str) -> Option<Validation> {
        if !subject_shaped(subject) {
            return Some(Validation::Invalid(InvalidReason::Invalid));
        }
        self.cached(&Lookup::Subject(subject.into()))
    }

    /// Charges `charge.cost_cents` to a key after the fact, atomically: it succeeds
    /// only if used + held + cost ≤ cap, under a row lock, and appends a ledger row.
    /// A zero cost succeeds without numbers and without touching the database.
    /// Refusals (`budget_exceeded`, `invalid_key`, `invalid_cost`, `expired`,
    /// `revoked`) are results; errors are `invalid_argument` (a bad idempotency key)
    /// and `unavailable`.
    pub async fn track_usage(&self, raw_key: &str, charge: Charge) -> Result<ChargeResult> {
        match charge_step(self.key_shaped(raw_key), &charge) {
            Err(answer) => answer,
            Ok(micros) => {
                let lookup = Lookup::Hash(key::hash(raw_key));
                self.charge(lookup, micros, charge).await
            }
        }
    }

    /// The outcome of [`KeyLeash::track_usage`] when it needs no store (a bad
    /// idempotency key, an invalid or zero cost, a malformed key), or `None` when
    /// only the store can answer. Synchronous and cheap, like
    /// [`KeyLeash::validate_now`]; `track_usage` starts with the same check.
    pub fn track_usage_now(&self, raw_key: &str, charge: &Charge) -> Option<Result<ChargeResult>> {
        charge_step(self.key_shaped(raw_key), charge).err()
    }

    /// [`KeyLeash::track_usage`] for a key already parsed and hashed by
    /// [`KeyLeash::key_ref`] (what [`KeyLeash::authenticate_key`] granted).
    pub async fn track_usage_ref(&self, key: &KeyRef, charge: Charge) -> Result<ChargeResult> {
        match charge_step(true, &charge) {
            Err(answer) => answer,
            Ok(micros) => self.charge(key.0.clone(), micros, charge).await,
        }
    }

    /// [`KeyLeash::track_usage`] for a subject row made by [`KeyLeash::ensure_subject`].
    pub async fn track_usage_by_subject(
        &self,
        subject: &str,
        charge: Charge,
    ) -> Result<ChargeResult> {
        match charge_step(subject_shaped(subject), &charge) {
            Err(answer) => answer,
            Ok(micros) => {
                let lookup = Lookup::Subject(subject.into());
                self.charge(lookup, micros, charge).await
            }
        }
    }

    /// [`KeyLeash::track_usage_now`] for [`KeyLeash::track_usage_by_subject`].
    pub fn track_usage_by_subject_now(
        &self,
        subject: &str,
        charge: &Charge,
    ) -> Option<Result<ChargeResult>> {
        charge_step(subject_shaped(subject), charge).err()
    }

    async fn charge(&self, lookup: Lookup, micros: i64, charge: Charge) -> Result<ChargeResult> {
        let req = SpendReq::Charge(ChargeReq {
            lookup,
            micros,
            idempotency_key: charge.idempotency_key,
        });
        match self.inner.charges.call(req).await? {
            SpendOutcome::Charge(result) => Ok(result),
            other => Err(mismatch(&other)),
        }
    }

    /// Holds `reserve.cost_cents` of a key's budget before a spend whose cost is
    /// not known yet (an LLM call): it succeeds only if used + held + estimate ≤
    /// cap for the key and every ancestor, atomically, and then counts as held
    /// until `settle`, `release` or its ttl (default 5 minutes), whichever comes
    /// first. A hold also stops counting when the key's budget period ends.
    /// Refusals (`budget_exceeded`, `invalid_key`, `invalid_cost`, `expired`,
    /// `revoked`) are results; a zero estimate is `invalid_cost`. Errors:
    /// `invalid_duration` (ttl not a duration from 1 second to 1 day),
    /// `invalid_argument` (a bad idempotency key), `unavailable`.
    pub async fn reserve(&self, raw_key: &str, reserve: Reserve) -> Result<ReserveResult> {
        let shaped = self.key_shaped(raw_key);
        self.reserve_lookup(shaped.then(|| Lookup::Hash(key::hash(raw_key))), reserve)
            .await
    }

    /// [`KeyLeash::reserve`] for a key already parsed and hashed by
    /// [`KeyLeash::key_ref`] (what [`KeyLeash::authenticate_key`] granted): the web
    /// integrations' streaming helpers hold on the granted key without its raw key.
    pub async fn reserve_ref(&self, key: &KeyRef, reserve: Reserve) -> Result<ReserveResult> {
        self.reserve_lookup(Some(key.0.clone()), reserve).await
    }

    /// A reserve of `lookup` (`None`: not a key, refused as `invalid_key` once the
    /// arguments are checked).
    async fn reserve_lookup(
        &self,
        lookup: Option<Lookup>,
        reserve: Reserve,
    ) -> Result<ReserveResult> {
        let ttl = hold_ttl(reserve.ttl.as_deref())?;
        if let Some(k) = &reserve.idempotency_key {
            check_text("idempotencyKey", k, MAX_TEXT_LEN, true)?;
        }
        let micros = match amount::cents_to_micros(reserve.cost_cents) {
            Some(m) if m > 0 => m,
            _ => return Ok(ReserveResult::Refused(ChargeRefusal::InvalidCost)),
        };
        let Some(lookup) = lookup else {
            return Ok(ReserveResult::Refused(ChargeRefusal::InvalidKey));
        };
        let req = SpendReq::Reserve(ReserveReq {
            lookup,
            micros,
            ttl,
            idempotency_key: reserve.idempotency_key,
        });
        match self.inner.charges.call(req).await? {
            SpendOutcome::Reserve(result) => Ok(result),
            other => Err(mismatch(&other)),
        }
    }

    /// Charges the actual cost of hold `hold_id` and frees the hold, in one
    /// transaction with a ledger row naming the hold. The cost is recorded in
    /// full even above the hold (the money was spent; the key then reads
    /// `budget_exceeded` until its reset), and even after the hold expired.
    /// Repeating a settle returns the first result and charges nothing more.
    /// Refusals: `unknown_hold`, `hold_released`, `invalid_cost`.
    pub async fn settle(&self, hold_id: i64, cost_cents: f64) -> Result<SettleResult> {
        let Some(micros) = amount::cents_to_micros(cost_cents) else {
            return Ok(SettleResult::Refused(SettleRefusal::InvalidCost));
        };
        if hold_id <= 0 {
            return Ok(SettleResult::Refused(SettleRefusal::UnknownHold));
        }
        match self
            .inner
            .charges
            .call(SpendReq::Settle { hold_id, micros })
            .await?
        {
            SpendOutcome::Settle(result) => Ok(result),
            other => Err(mismatch(&other)),
        }
    }

    /// Frees hold `hold_id` without charging it (the spend did not happen).
    /// Returns whether it freed anything: false for an unknown, settled, released
    /// or already expired hold. A released hold can no longer be settled.
    pub async fn release(&self, hold_id: i64) -> Result<bool> {
        if hold_id <= 0 {
            return Ok(false);
        }
        match self
            .inner
            .charges
            .call(SpendReq::Release { hold_id })
            .await?
        {
            SpendOutcome::Release(freed) => Ok(freed),
            other => Err(mismatch(&other)),
        }
    }

    /// Sets the ceiling of account `account_id`: the sum of what all its keys
    /// spend and hold may not pass `budget_cents` per `budget_period` (`day`,
    /// `week`, `month`; `None` for a lifetime ceiling). From then on a charge or
    /// a reserve of any of its keys fits only if it also fits the ceiling,
    /// atomically with the key and its ancestors, and `validate` reports the
    /// smallest remaining amount of the key, its ancestors and the ceiling.
    ///
    /// A new ceiling starts with nothing used, its period from now; holds made
    /// before it count against it only once settled. Setting it again with the
    /// same period changes only the amount (what was used stays); with another
    /// period it starts over. `budget_cents: None` removes it. Cached
    /// validations are dropped (in every process on Postgres). Errors:
    /// `invalid_argument` (a bad account id or amount, or a period without an
    /// amount), `invalid_period`, `unavailable`.
    pub async fn set_account_budget(
        &self,
        account_id: &str,
        budget_cents: Option<f64>,
        budget_period: Option<&str>,
    ) -> Result<()> {
        check_text("accountId", account_id, MAX_ACCOUNT_LEN, true)?;
        let now = self.inner.clock.now();
        let ceiling = match budget_cents {
            None if budget_period.is_some() => {
                return Err(Error::arg(
                    "budgetPeriod needs budgetCents (a null budgetCents removes the ceiling)",
                ))
            }
            None => None,
            Some(c) => {
                let period = budget_period.map(Period::parse).transpose()?;
                let budget_micros = amount::cents_to_micros(c).ok_or_else(|| {
                    Error::arg(format!(
                        "budgetCents must be a finite number from 0 to 1e12, got {c}"
                    ))
                })?;
                Some(store::NewCeiling {
                    budget_micros,
                    period: period.map(|p| p.as_str().to_string()),
                    reset_at: period.map(|p| p.boundary(now, 1)),
                    now,
                })
            }
        };
        self.inner
            .store
            .set_ceiling(account_id, ceiling.as_ref())
            .await?;
        if let Some(cache) = &self.inner.cache {
            cache.clear();
        }
        Ok(())
    }

    /// Revokes a key (soft: `revoked_at` is set, the row stays). With `account_id`,
    /// only a key of that account is revoked. Returns whether a live key was revoked.
    /// Other processes' validation caches drop the key (and its descendants) when
    /// the revoke commits (Postgres `NOTIFY`); this process's at once.
    pub async fn revoke(&self, key_id: i64, account_id: Option<&str>) -> Result<bool> {
        if let Some(a) = account_id {
            check_text("accountId", a, MAX_ACCOUNT_LEN, true)?;
        }
        let revoked = self
            .inner
            .store
            .revoke(key_id, account_id, self.inner.clock.now())
            .await?;
        if let (true, Some(cache)) = (revoked, &self.inner.cache) {
            cache.invalidate(&[key_id]);
        }
        Ok(revoked)
    }

    /// The keys of an account (revoked ones included), oldest first, without secrets.
    pub async fn list(&self, account_id: &str) -> Result<Vec<KeySummary>> {
        check_text("accountId", account_id, MAX_ACCOUNT_LEN, true)?;
        let now = self.inner.clock.now();
        let rows = self.inner.store.list(account_id, now).await?;
        Ok(rows
            .iter()
            .filter(|r| !r.is_ceiling())
            .map(|r| r.summary(now))
            .collect())
    }

    /// A key's ledger rows within `range` (`from` inclusive, `to` exclusive), oldest first.
    pub async fn usage(&self, key_id: i64, range: UsageRange) -> Result<Vec<LedgerEntry>> {
        self.inner.store.usage(key_id, range).await
    }

    /// One key by id, at this instant: its summary, what it can still spend (the
    /// smallest remaining amount of the key, its ancestors and its account's
    /// ceiling) and its status, decided as `validate` decides. `None` when no key
    /// has this id. Never the raw key nor its hash. Read-only: an elapsed budget
    /// period shows as rolled over without being written back. One read of the
    /// key's family (plus its ceiling and holds when it has any). Errors:
    /// `unavailable`, `not_migrated`.
    pub async fn get(&self, key_id: i64) -> Result<Option<KeyDetails>> {
        if key_id <= 0 {
            return Ok(None);
        }
        let now = self.inner.clock.now();
        let rows = self.inner.store.get(key_id, now).await?;
        Ok(rows
            .iter()
            .find(|r| r.id == key_id)
            .map(|row| row.details(&rows, now)))
    }

    /// The `limit` (1 to 10,000) biggest spenders of `range` by the sum of their
    /// ledger amounts (charges and settles), grouped by key or by account,
    /// biggest first; ties by key id or account id. One aggregate over the
    /// ledger rows of the window (no index on time alone: it reads the whole
    /// ledger, which is fine for an operator, not for a request path). Sums are
    /// exact, and saturate at `i64::MAX` micro-cents as the stored counters do
    /// (ranked by the saturated sum). [`UsageRange::trailing`] gives the usual
    /// windows. Errors:
    /// `invalid_argument` (limit), `unavailable`, `not_migrated`.
    pub async fn top_spenders(
        &self,
        by: SpendBy,
        range: UsageRange,
        limit: u32,
    ) -> Result<Vec<Spender>> {
        if !(1..=MAX_TOP).contains(&limit) {
            return Err(Error::arg(format!(
                "limit must be from 1 to {MAX_TOP}, got {limit}"
            )));
        }
        self.inner.store.top(by, range, i64::from(limit)).await
    }

    /// Accounts with their ceilings and keys, for the admin page: up to `limit`
    /// (1 to 200) accounts, by id, whose id starts with `search` or that own a key
    /// whose display prefix starts with it (case-sensitive; every account when
    /// `search` is empty), each with all its keys as [`KeyLeash::get`] reports
    /// them. One statement for the ids, then one read per account. Errors:
    /// `invalid_argument` (limit, a search over 256 bytes), `unavailable`,
    /// `not_migrated`.
    pub async fn accounts(&self, search: &str, limit: u32) -> Result<AccountsPage> {
        if !(1..=MAX_ACCOUNTS).contains(&limit) {
            return Err(Error::arg(format!(
                "limit must be from 1 to {MAX_ACCOUNTS}, got {limit}"
            )));
        }
        check_text("search", search, MAX_ACCOUNT_LEN, false)?;
        let mut ids = self
            .inner
            .store
            .accounts(search, i64::from(limit) + 1)
            .await?;
        let truncated = ids.len() > limit as usize;
        ids.truncate(limit as usize);
        let now = self.inner.clock.now();
        let mut accounts = Vec::with_capacity(ids.len());
        for account_id in ids {
            let rows = self.inner.store.list(&account_id, now).await?;
            accounts.push(AccountView {
                ceiling: rows
                    .iter()
                    .find(|r| r.is_ceiling())
                    .map(|c| c.ceiling_view(now)),
                keys: rows
                    .iter()
                    .filter(|r| !r.is_ceiling())
                    .map(|r| r.details(&rows, now))
                    .collect(),
                account_id,
            });
        }
        Ok(AccountsPage {
            accounts,
            truncated,
        })
    }

    /// What a key or an account spent on each of the last `days` UTC days (1 to
    /// 366), oldest first, today last, days without spend as 0: the sums of its
    /// ledger amounts (charges and settles). An account's spend is the ledger rows
    /// recorded under it. Each day's sum is exact, and saturates at `i64::MAX`
    /// micro-cents as the stored counters do. One aggregate statement. Errors:
    /// `invalid_argument` (days), `unavailable`, `not_migrated`.
    pub async fn spend_per_day(&self, of: SpendOf<'_>, days: u32) -> Result<Vec<DaySpend>> {
        Ok(self
            .micros_per_day(of, days)
            .await?
            .into_iter()
            .map(|(day, micros)| DaySpend {
                day,
                cents: amount::micros_to_cents(micros),
            })
            .collect())
    }

    /// [`KeyLeash::spend_per_day`] in exact micro-cents (each day's sum saturated
    /// to the `i64` range by the store), for totals that must not go through `f64`.
    pub(crate) async fn micros_per_day(
        &self,
        of: SpendOf<'_>,
        days: u32,
    ) -> Result<Vec<(String, i64)>> {
        if !(1..=MAX_DAYS).contains(&days) {
            return Err(Error::arg(format!(
                "days must be from 1 to {MAX_DAYS}, got {days}"
            )));
        }
        if let SpendOf::Account(a) = of {
            check_text("accountId", a, MAX_ACCOUNT_LEN, true)?;
        }
        let today = self.inner.clock.now().date_naive();
        let first = today - chrono::Days::new(u64::from(days - 1));
        let from = first.and_time(chrono::NaiveTime::MIN).and_utc();
        let sums = self.inner.store.spend_days(of, from).await?;
        Ok(first
            .iter_days()
            .take(days as usize)
            .map(|d| {
                let day = d.format("%Y-%m-%d").to_string();
                let micros = sums.iter().find(|(k, _)| *k == day).map_or(0, |(_, m)| *m);
                (day, micros)
            })
            .collect())
    }

    /// How many ledger rows `range` holds (`from` inclusive, `to` exclusive): what
    /// [`KeyLeash::export_ledger`] would send if nothing were charged meanwhile,
    /// for a progress bar. One `COUNT(*)` over the window. Errors: `unavailable`,
    /// `not_migrated`.
    pub async fn count_ledger(&self, range: UsageRange) -> Result<u64> {
        let n = self.inner.store.count(range).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The ledger rows of `range` (`from` inclusive, `to` exclusive), oldest id
    /// first, as a stream of [`LedgerRecord`]s, each with a stable `id`: the same
    /// row exported twice gets the same id, so a downstream system can drop
    /// repeats. `namespace` (at most 256 bytes) goes into the ids' hash: give
    /// each database its own when several export into one place under the same
    /// table name.
    ///
    /// Streams in constant memory: one statement whose rows come through a
    /// channel of 256 records as the stream is read, on a connection of the pool
    /// held until the stream ends or is dropped; on Postgres without the
    /// statement timeout (a slow reader must not cut an export short). Must be
    /// called inside a Tokio runtime (it spawns the reading task). Errors, as the
    /// stream's items: `invalid_argument` (`from` not before `to`, a bad
    /// namespace), `unavailable`, `not_migrated`.
    pub fn export_ledger(
        &self,
        range: UsageRange,
        namespace: Option<&str>,
    ) -> futures::stream::BoxStream<'static, Result<LedgerRecord>> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let checked = export_id_prefix(self.inner.store.names(), range, namespace);
        let store = Arc::clone(&self.inner.store);
        tokio::spawn(async move {
            let done = match checked {
                Ok(prefix) => store.export(range, &prefix, &tx).await,
                Err(e) => Err(e),
            };
            if let Err(e) = done {
                let _ = tx.send(Err(e)).await;
            }
        });
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }

    /// Closes the connection pool (and the cache's listener); later calls fail
    /// with `unavailable`.
    pub async fn close(&self) {
        if let Some(l) = &self.inner.listener {
            l.abort();
        }
        if let Some(c) = &self.inner.cache {
            c.set_listening(false);
        }
        self.inner.store.close().await;
    }

    /// Whether `raw_key` could be in the store (length, prefix, checksum).
    fn key_shaped(&self, raw_key: &str) -> bool {
        raw_key.len() <= MAX_RAW_KEY_LEN && key::well_formed(&self.inner.prefix, raw_key)
    }
}

/// The executor of validate batches: one read of every named row and its
/// ancestors, then each caller's answer from the rows as read at one instant.
/// Valid answers go into the cache, if any, unless it was invalidated meanwhile.
fn validate_batches(
    store: &Arc<Store>,
    clock: &Clock,
    cache: Option<Arc<Cache>>,
) -> group::Executor<Lookup, Validation> {
    let (store, clock) = (Arc::clone(store), clock.clone());
    Box::new(move |lookups: Vec<Lookup>| {
        let (store, clock, cache) = (Arc::clone(&store), clock.clone(), cache.clone());
        Box::pin(async move {
            let epoch = cache.as_ref().map(|c| c.epoch());
            let now = clock.now();
            let rows = store.fetch(&lookups, now).await?;
            let mut out = Vec::with_capacity(lookups.len());
            for lookup in &lookups {
                let Some(row) = rows.iter().find(|r| lookup.matches(r)) else {
                    out.push(Validation::Invalid(InvalidReason::Invalid));
                    continue;
                };
                let (validation, rolls) = row.validate(&rows, now);
                for (seen_reset, update) in rolls {
                    // Persist the rollover unless a concurrent call already changed
                    // the row; either way the answer is what the row said at `now`.
                    store.persist_roll(seen_reset, &update).await?;
                }
                if let (Some(cache), Some(epoch), true) = (&cache, epoch, validation.is_valid()) {
                    let (ids, bound) = row.cache_bounds(&rows, now);
                    cache.put(lookup.clone(), validation.clone(), ids, now, bound, epoch);
                }
                out.push(validation);
            }
            Ok(out)
        })
    })
}

/// The executor of charge batches: one transaction, decided in arrival order.
/// Keys the batch left without budget leave this process's cache at once (other
/// processes' when the transaction's notification arrives).
fn charge_batches(
    store: &Arc<Store>,
    clock: &Clock,
    cache: Option<Arc<Cache>>,
) -> group::Executor<SpendReq, SpendOutcome> {
    let (store, clock) = (Arc::clone(store), clock.clone());
    Box::new(move |reqs: Vec<SpendReq>| {
        let (store, clock, cache) = (Arc::clone(&store), clock.clone(), cache.clone());
        Box::pin(async move {
            let charged = store.charge(&reqs, clock.now()).await?;
            if let Some(cache) = &cache {
                cache.invalidate(&charged.exhausted);
            }
            Ok(charged.outcomes)
        })
    })
}

/// The error of a batch outcome of the wrong kind (a bug, never a caller's doing).
fn mismatch(outcome: &SpendOutcome) -> Error {
    Error::Unavailable(format!("internal error: a spend batch answered {outcome:?}").into())
}

/// The most rows `top_spenders` returns.
const MAX_TOP: u32 = 10_000;
/// The most accounts one [`KeyLeash::accounts`] page holds.
const MAX_ACCOUNTS: u32 = 200;
/// The longest [`KeyLeash::spend_per_day`] window, in days.
const MAX_DAYS: u32 = 366;

/// The start of every export id of this table (`kl_<16 hex>_`), after checking
/// the window and the namespace.
fn export_id_prefix(
    names: &TableNames,
    range: UsageRange,
    namespace: Option<&str>,
) -> Result<String> {
    if let (Some(from), Some(to)) = (range.from, range.to) {
        if from >= to {
            return Err(Error::arg("the window's from must be before its to"));
        }
    }
    let source = match namespace {
        Some(ns) => {
            check_text("namespace", ns, MAX_TEXT_LEN, true)?;
            format!("{ns}/{}", names.ledger)
        }
        None => names.ledger.clone(),
    };
    Ok(format!("kl_{}_", &key::hash(&source)[..16]))
}

/// The shortest and longest a hold may count.
const MIN_HOLD_TTL_SECS: i64 = 1;
const MAX_HOLD_TTL_SECS: i64 = 86_400;

/// A hold's ttl: a duration from 1 second to 1 day; 5 minutes when absent.
fn hold_ttl(ttl: Option<&str>) -> Result<chrono::Duration> {
    let Some(ttl) = ttl else {
        return Ok(chrono::Duration::minutes(5));
    };
    let d = period::parse_duration(ttl)?;
    if (MIN_HOLD_TTL_SECS..=MAX_HOLD_TTL_SECS).contains(&d.num_seconds()) {
        Ok(d)
    } else {
        Err(Error::InvalidDuration(format!(
            "{} (a hold's ttl must be 1s to 1d)",
            error::shown(ttl)
        )))
    }
}

/// A refusal's JSON text (it cannot fail: the type serializes to plain JSON).
fn json_of(v: &Validation) -> Arc<str> {
    serde_json::to_string(v).unwrap_or_default().into()
}

/// Whether `subject` could be in the store (non-empty, not oversized, no NUL).
fn subject_shaped(subject: &str) -> bool {
    check_text("subject", subject, MAX_SUBJECT_LEN, true).is_ok()
}

/// The part of a charge decided without the store, in this order: a bad
/// idempotency key is an error, an invalid cost `invalid_cost`, a zero cost
/// `Free`, a key (or subject) that cannot exist `invalid_key`. `Err` holds that
/// outcome; `Ok` the cost in micro-cents, for the store to decide.
fn charge_step(known: bool, charge: &Charge) -> std::result::Result<i64, Result<ChargeResult>> {
    if let Some(k) = &charge.idempotency_key {
        check_text("idempotencyKey", k, MAX_TEXT_LEN, true).map_err(Err)?;
    }
    let Some(micros) = amount::cents_to_micros(charge.cost_cents) else {
        return Err(Ok(ChargeResult::Refused(ChargeRefusal::InvalidCost)));
    };
    if micros == 0 {
        return Err(Ok(ChargeResult::Free));
    }
    if !known {
        return Err(Ok(ChargeResult::Refused(ChargeRefusal::InvalidKey)));
    }
    Ok(micros)
}

/// A raw key parsed and hashed once ([`KeyLeash::key_ref`]), to validate and charge
/// it again without the raw key: it holds the key's SHA-256, never the key.
#[derive(Clone)]
pub struct KeyRef(Lookup);

impl std::fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRef(<redacted>)")
    }
}

/// Checks a caller's string: at most `max` bytes, no NUL, non-empty when `required`.
fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<()> {
    if required && value.is_empty() {
        return Err(Error::arg(format!("{field} must not be empty")));
    }
    if value.len() > max {
        return Err(Error::arg(format!(
            "{field} is {} bytes long, at most {max} allowed",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(Error::arg(format!(
            "{field} {} contains a NUL character",
            shown(value)
        )));
    }
    Ok(())
}

fn check_prefix(prefix: &str) -> Result<()> {
    let ok = (1..=16).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::arg(format!(
            "keyPrefix {} must be 1 to 16 of A-Z a-z 0-9 _ -",
            shown(prefix)
        )))
    }
}

/// The crate README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
