//! The opt-in validation cache: valid answers kept per process, bounded, and
//! invalidated across processes by Postgres `LISTEN`/`NOTIFY`.
//!
//! What is cached: only `Valid` answers, each until the earliest of its time to
//! live, the key's (or an ancestor's) expiry and the next budget reset, so a
//! cached answer never outlives an expiry or a period. Refusals are never cached.
//! Charges never read the cache: they are decided under the row lock as always.
//!
//! What removes an entry before then:
//! - a revoke, and a charge that leaves a key (or an ancestor) without budget, made
//!   by any process through keyleash: the statement that commits the change also
//!   sends `NOTIFY` on this table's channel with the ids, and every listening
//!   process drops the entries whose key chain holds one of them. The process that
//!   made the change drops them at once, without waiting for the notification.
//! - a lost `LISTEN` connection: the cache is emptied and stays off (every
//!   validate goes to the store) until the listener is connected again. So
//!   correctness never depends on a notification arriving; staleness is bounded by
//!   the time to live for changes made outside keyleash (SQL by hand).
//!
//! The race this guards against: a validate that read a row just before a revoke
//! committed must not put its old answer in the cache after the revoke's
//! notification was handled. Every invalidation bumps an epoch under the cache's
//! lock, a validate batch notes the epoch before it reads, and an answer is cached
//! only if the epoch has not moved since.
//!
//! On SQLite there is no notification: the cache is invalidated by this process's
//! own revokes and charges, and another process's changes to the same file are
//! seen when entries expire (at most the time to live).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use crate::engine::Lookup;
use crate::model::{CacheOptions, CacheStats, Validation};

/// The notification payload that drops every entry (also what an operator can
/// send after changing keys by hand: `SELECT pg_notify('<channel>', '*')`).
pub(crate) const FLUSH_ALL: &str = "*";

/// One process's cache of valid answers for one keys table.
pub(crate) struct Cache {
    state: Mutex<State>,
    ttl: chrono::Duration,
    max_entries: usize,
    /// Bumped (under the lock) by every invalidation and every change of `listening`.
    epoch: AtomicU64,
    /// Whether answers may be served and stored: always on SQLite; on Postgres
    /// only while the `LISTEN` connection is up.
    listening: AtomicBool,
    hits: AtomicU64,
    misses: AtomicU64,
    reconnects: AtomicU64,
    /// The channel listened on (Postgres).
    channel: Option<String>,
}

#[derive(Default)]
struct State {
    map: HashMap<Lookup, Entry>,
    /// Insertion order, for eviction when full; may hold stale lookups (removed or
    /// replaced entries), recognised by their sequence number.
    order: VecDeque<(Lookup, u64)>,
    seq: u64,
}

struct Entry {
    validation: Validation,
    /// The answer's JSON (docs/api.md), serialized once when cached: bindings that
    /// hand results over as text take it as is ([`Cache::get_json`]).
    json: Arc<str>,
    until: DateTime<Utc>,
    /// The key and its ancestors: a change to any of them drops the entry.
    ids: Vec<i64>,
    seq: u64,
}

impl Cache {
    /// An empty cache. With a `channel` (Postgres) it serves nothing until the
    /// listener is connected; without one (SQLite) it serves at once.
    pub fn new(options: &CacheOptions, channel: Option<String>) -> Self {
        let ttl = chrono::Duration::from_std(options.ttl).unwrap_or(chrono::Duration::MAX);
        Self {
            state: Mutex::new(State::default()),
            ttl,
            max_entries: options.max_entries.max(1),
            epoch: AtomicU64::new(0),
            listening: AtomicBool::new(channel.is_none()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            channel,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached answer for `lookup`, if one is live at `now`.
    pub fn get(&self, lookup: &Lookup, now: DateTime<Utc>) -> Option<Validation> {
        self.find(lookup, now, |e| e.validation.clone())
    }

    /// [`Cache::get`] as the answer's JSON text, without serializing it again.
    pub fn get_json(&self, lookup: &Lookup, now: DateTime<Utc>) -> Option<Arc<str>> {
        self.find(lookup, now, |e| Arc::clone(&e.json))
    }

    fn find<T>(
        &self,
        lookup: &Lookup,
        now: DateTime<Utc>,
        take: impl Fn(&Entry) -> T,
    ) -> Option<T> {
        if self.listening.load(Ordering::Acquire) {
            let mut state = self.lock();
            match state.map.get(lookup) {
                Some(e) if now < e.until => {
                    let v = take(e);
                    drop(state);
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Some(v);
                }
                Some(_) => {
                    state.map.remove(lookup);
                }
                None => {}
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// The epoch to pass to [`Cache::put`]: read it before reading the store.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Stores a valid answer read from the store at `now`, unless something was
    /// invalidated since `epoch` was read (the answer may predate that change) or
    /// the listener is down. `ids` are the key and its ancestors; `bound` the
    /// earliest expiry or reset among them.
    pub fn put(
        &self,
        lookup: Lookup,
        validation: Validation,
        ids: Vec<i64>,
        now: DateTime<Utc>,
        bound: Option<DateTime<Utc>>,
        epoch: u64,
    ) {
        let mut until = now
            .checked_add_signed(self.ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if let Some(b) = bound {
            until = until.min(b);
        }
        if until <= now {
            return;
        }
        let Ok(json) = serde_json::to_string(&validation) else {
            return;
        };
        let json: Arc<str> = json.into();
        let mut state = self.lock();
        if self.epoch.load(Ordering::Acquire) != epoch || !self.listening.load(Ordering::Acquire) {
            return;
        }
        while state.map.len() >= self.max_entries && !state.map.contains_key(&lookup) {
            let Some((old, seq)) = state.order.pop_front() else {
                break;
            };
            if state.map.get(&old).is_some_and(|e| e.seq == seq) {
                state.map.remove(&old);
            }
        }
        state.seq += 1;
        let seq = state.seq;
        state.order.push_back((lookup.clone(), seq));
        state.map.insert(
            lookup,
            Entry {
                validation,
                json,
                until,
                ids,
                seq,
            },
        );
        // Entries replaced or invalidated leave their lookup behind in `order`;
        // rebuild it before it grows past twice the bound.
        if state.order.len() > 2 * self.max_entries + 16 {
            let mut live: Vec<(Lookup, u64)> =
                state.map.iter().map(|(l, e)| (l.clone(), e.seq)).collect();
            live.sort_by_key(|(_, seq)| *seq);
            state.order = live.into();
        }
    }

    /// Drops every entry whose key chain holds one of `ids`.
    pub fn invalidate(&self, ids: &[i64]) {
        if ids.is_empty() {
            return;
        }
        let mut state = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        state
            .map
            .retain(|_, e| !e.ids.iter().any(|id| ids.contains(id)));
    }

    /// Drops every entry.
    pub fn clear(&self) {
        let mut state = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        state.map.clear();
        state.order.clear();
    }

    /// Handles a notification payload: comma-separated key ids, or anything else
    /// (`*` included) to drop everything.
    pub fn notified(&self, payload: &str) {
        let ids: Option<Vec<i64>> = payload.split(',').map(|s| s.trim().parse().ok()).collect();
        match ids {
            Some(ids) if payload != FLUSH_ALL => self.invalidate(&ids),
            _ => self.clear(),
        }
    }

    /// Turns serving on (the listener is connected) or off (it is not); either
    /// way, what was cached before is dropped.
    pub fn set_listening(&self, on: bool) {
        let mut state = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.listening.store(on, Ordering::Release);
        state.map.clear();
        state.order.clear();
        if !on {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counters for operators and tests.
    pub fn stats(&self) -> CacheStats {
        let entries = self.lock().map.len();
        CacheStats {
            entries,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            listening: self.listening.load(Ordering::Acquire),
            disconnects: self.reconnects.load(Ordering::Relaxed),
            channel: self.channel.clone(),
        }
    }
}

/// The longest payload sent: Postgres refuses one of 8,000 bytes or more, and a
/// refused `pg_notify` would fail the charge batch carrying it.
const MAX_PAYLOAD: usize = 7_900;

/// The payload that names `ids` (what [`Cache::notified`] reads), or [`FLUSH_ALL`]
/// when they would not fit (a batch that exhausted hundreds of keys at once).
pub(crate) fn payload(ids: &[i64]) -> String {
    let text = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    if text.len() > MAX_PAYLOAD {
        FLUSH_ALL.to_string()
    } else {
        text
    }
}

/// Keeps one `LISTEN` connection on `channel` for as long as `cache` lives:
/// serving is on only while it is connected; a lost connection empties the cache
/// and is retried with a growing pause (50 ms to 2 s).
pub(crate) async fn listen(
    connect: PgConnectOptions,
    channel: String,
    cache: Weak<Cache>,
    acquire_timeout: Duration,
) {
    let connect = connect.application_name("keyleash-listen");
    let mut pause = Duration::from_millis(50);
    loop {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(connect.clone());
        if let Ok(mut listener) = PgListener::connect_with(&pool).await {
            listener.eager_reconnect(false);
            if listener.listen(&channel).await.is_ok() {
                let Some(c) = cache.upgrade() else { return };
                c.set_listening(true);
                drop(c);
                pause = Duration::from_millis(50);
                while let Ok(Some(n)) = listener.try_recv().await {
                    let Some(c) = cache.upgrade() else { return };
                    c.notified(n.payload());
                }
                let Some(c) = cache.upgrade() else { return };
                c.set_listening(false);
            }
        }
        pool.close().await;
        if cache.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KeyInfo;

    fn valid(id: i64) -> Validation {
        Validation::Valid(Box::new(KeyInfo {
            id,
            account_id: "a".into(),
            user_id: None,
            scopes: None,
            budget_cents: None,
            budget_used_cents: 0.0,
            budget_held_cents: 0.0,
            budget_remaining_cents: None,
            budget_period: None,
            budget_reset_at: None,
            expires_at: None,
            delegated_by: None,
            name: "k".into(),
            limits: Vec::new(),
        }))
    }

    fn cache(max_entries: usize) -> Cache {
        let o = CacheOptions {
            ttl: Duration::from_secs(10),
            max_entries,
        };
        Cache::new(&o, None)
    }

    fn l(i: i64) -> Lookup {
        Lookup::Hash(format!("h{i}"))
    }

    // Pins the time bounds: the ttl, and an earlier expiry or reset.
    #[test]
    fn entries_expire() {
        let c = cache(10);
        let now = Utc::now();
        c.put(l(1), valid(1), vec![1], now, None, c.epoch());
        let soon = now + chrono::Duration::seconds(1);
        c.put(l(2), valid(2), vec![2], now, Some(soon), c.epoch());
        let text = c.get_json(&l(1), now).expect("live");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["valid"], true);
        assert_eq!(v["id"], 1);
        assert!(c.get(&l(1), now + chrono::Duration::seconds(9)).is_some());
        assert!(c.get(&l(1), now + chrono::Duration::seconds(10)).is_none());
        assert!(c.get(&l(2), now).is_some());
        assert!(c.get(&l(2), soon).is_none());

        let s = c.stats();
        assert_eq!((s.hits, s.misses), (3, 2));
    }

    // Pins invalidation by any id of the chain, the epoch guard and the flush.
    #[test]
    fn invalidation() {
        let c = cache(10);
        let now = Utc::now();
        c.put(l(1), valid(1), vec![1, 7], now, None, c.epoch());
        c.put(l(2), valid(2), vec![2], now, None, c.epoch());
        c.notified("7");
        assert!(c.get(&l(1), now).is_none(), "a parent's id drops the child");
        assert!(c.get(&l(2), now).is_some());
        let before = c.epoch();
        c.invalidate(&[99]);
        c.put(l(3), valid(3), vec![3], now, None, before);
        assert!(c.get(&l(3), now).is_none(), "read before an invalidation");
        c.notified("*");
        assert_eq!(c.stats().entries, 0);
        c.put(l(4), valid(4), vec![4], now, None, c.epoch());
        c.notified("garbage");
        assert_eq!(c.stats().entries, 0, "an unreadable payload flushes");
        c.set_listening(false);
        c.put(l(5), valid(5), vec![5], now, None, c.epoch());
        assert!(c.get(&l(5), now).is_none(), "nothing is served while down");
        assert_eq!(c.stats().disconnects, 1);
    }

    // Pins the payload: ids as text, and a flush instead of one Postgres would refuse.
    #[test]
    fn payloads() {
        assert_eq!(payload(&[]), "");
        assert_eq!(payload(&[3, 14, 15]), "3,14,15");
        let many: Vec<i64> = (1_000_000_000..1_000_002_000).collect();
        assert_eq!(payload(&many), FLUSH_ALL);
        let c = cache(10);
        c.put(l(1), valid(1), vec![1], Utc::now(), None, c.epoch());
        c.notified(&payload(&many));
        assert_eq!(c.stats().entries, 0);
    }

    // Pins the bound: never more than max_entries, oldest out first, and the order
    // queue stays bounded under churn.
    #[test]
    fn bounded() {
        let c = cache(100);
        let now = Utc::now();
        for i in 0..10_000 {
            c.put(l(i % 300), valid(i), vec![i], now, None, c.epoch());
            if i % 7 == 0 {
                c.invalidate(&[i - 3]);
            }
            let state = c.lock();
            assert!(state.map.len() <= 100);
            assert!(state.order.len() <= 2 * 100 + 17);
        }
        assert!(c.get(&l(9_999 % 300), now).is_some(), "the newest stays");
    }
}
