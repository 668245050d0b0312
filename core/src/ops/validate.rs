//! Validating keys: the cached fast path (`*_now`), the store path (grouped
//! into one read per batch, `group.rs`) and [`KeyRef`], a key looked up once and
//! named again by later calls without its secret.

use std::sync::Arc;

use crate::client::KeyLeash;
use crate::engine::Lookup;
use crate::error::{Error, Result};
use crate::key;
use crate::limits::{check_text, MAX_SUBJECT_LEN};
use crate::model::{CacheStats, InvalidReason, Validation};

impl KeyLeash {
    /// Checks a raw key: `Valid` with the key's details, or `Invalid` with
    /// `invalid` (unknown, malformed, bad checksum: no database round trip for a
    /// malformed one), `revoked`, `expired` or `budget_exceeded`, in that order.
    /// Rolls an elapsed budget period first. Errors only with `unavailable`.
    /// With the validation cache on ([`Options::cache`](crate::Options::cache)), a valid answer may come
    /// from the cache (see [`CacheOptions`](crate::CacheOptions)).
    pub async fn validate(&self, raw_key: &str) -> Result<Validation> {
        match self.key_ref(raw_key) {
            Err(reason) => {
                answered_at_once().await;
                Ok(Validation::Invalid(reason))
            }
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

    /// [`KeyLeash::validate_now_json`] that keeps its work on a miss: the answer's
    /// JSON text when no store is needed, else `Err` with the key hashed once
    /// (the cache looked at once, one miss counted), to pass to
    /// [`KeyLeash::validate_refs`] without hashing or looking again. For bindings
    /// that answer hits synchronously and gather the misses of one turn of their
    /// event loop into one call.
    pub fn validate_now_or_ref(&self, raw_key: &str) -> std::result::Result<Arc<str>, KeyRef> {
        match self.key_ref(raw_key) {
            Err(reason) => Ok(json_of(&Validation::Invalid(reason))),
            Ok(key) => self.cached_json(&key.0).ok_or(key),
        }
    }

    /// The store's [`KeyLeash::validate`] of each of `keys`, in order, for keys
    /// the cache has already missed ([`KeyLeash::validate_now_or_ref`]): no second
    /// cache look (and no second miss counted); the keys join the batch queue
    /// together, and each answer is the one a separate validate would get.
    pub async fn validate_refs(&self, keys: Vec<KeyRef>) -> Vec<Result<Validation>> {
        self.inner
            .validates
            .call_many(keys.into_iter().map(|k| k.0).collect())
            .await
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
    pub(crate) fn cached(&self, lookup: &Lookup) -> Option<Validation> {
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
            Some(answer) => {
                answered_at_once().await;
                Ok(answer)
            }
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
            Some(answer) => {
                answered_at_once().await;
                Ok(answer)
            }
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
}

/// A refusal's JSON text (it cannot fail: the type serializes to plain JSON).
fn json_of(v: &Validation) -> Arc<str> {
    serde_json::to_string(v).unwrap_or_default().into()
}

/// Whether `subject` could be in the store (non-empty, not oversized, no NUL).
pub(crate) fn subject_shaped(subject: &str) -> bool {
    check_text("subject", subject, MAX_SUBJECT_LEN, true).is_ok()
}

/// A raw key parsed and hashed once ([`KeyLeash::key_ref`]), to validate and charge
/// it again without the raw key: it holds the key's SHA-256, never the key.
#[derive(Clone)]
pub struct KeyRef(pub(crate) Lookup);

impl std::fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRef(<redacted>)")
    }
}

/// Spends a unit of the task's cooperative budget (tokio's), yielding once it is
/// used up: an answer found with no I/O (malformed, cached) would otherwise let a
/// loop of validates hold its worker thread for good, and starve the tasks that
/// open the pool's connections and run the store's batches (`make bench`'s
/// cached case saw "pool timed out" for the few misses among millions of hits).
async fn answered_at_once() {
    tokio::task::consume_budget().await;
}
