//! [`KeyLeash`], a connection to one keys table, and its wiring: the store, the
//! validate and charge groups (`group.rs`) with their batch executors, the
//! optional validation cache and its listener, the clock. The operations are in
//! `ops/`, one file per concern, each an `impl KeyLeash`.

use std::sync::Arc;

use crate::cache::{self, Cache};
use crate::clock::Clock;
use crate::engine::Lookup;
use crate::error::{Error, Result};
use crate::group::Group;
use crate::ident::TableNames;
use crate::lanes::{Lanes, Routes};
use crate::limits::check_prefix;
use crate::limits::MAX_RAW_KEY_LEN;
use crate::model::{InvalidReason, Options, Validation};
use crate::spend::{SpendOutcome, SpendReq};
use crate::store::Store;
use crate::{group, key, scope, store};

/// A connection to one keys table. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct KeyLeash {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<Store>,
    /// Concurrent validates, one store round trip per batch (`group.rs`).
    pub(crate) validates: Arc<Group<Lookup, Validation>>,
    /// Concurrent charges, reserves, settles and releases, one transaction per
    /// batch per lane, decided in arrival order per account (`lanes.rs`).
    pub(crate) charges: Lanes,
    /// Which lane each key and hold goes to.
    pub(crate) routes: Arc<Routes>,
    pub(crate) prefix: String,
    pub(crate) valid_scopes: Option<Vec<String>>,
    pub(crate) clock: Clock,
    /// The opt-in validation cache (`cache.rs`).
    pub(crate) cache: Option<Arc<Cache>>,
    /// The cache's `LISTEN` task (Postgres), stopped with the last clone or `close`.
    pub(crate) listener: Option<tokio::task::JoinHandle<()>>,
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
        let limits = store.group_limits(options.pool_size, options.pipeline_depth);
        let clock = options.clock.clone();
        let routes = Routes::new(limits.lanes);
        Ok(Self {
            inner: Arc::new(Inner {
                validates: Group::new(
                    limits.validates,
                    validate_batches(&store, &clock, cache.clone(), &routes),
                ),
                charges: Lanes::new(limits.charges, &routes, || {
                    charge_batches(&store, &clock, cache.clone(), &routes)
                }),
                routes,
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

    /// How many spend batches of one lane may be in flight: what
    /// `Options::pipeline_depth` set, else 1 (always 1 on SQLite).
    #[doc(hidden)]
    pub fn pipeline_depth(&self) -> usize {
        self.inner.charges.depth()
    }

    /// Creates the schema, or adopts an existing keys table (one made by agentkey
    /// included) by adding what is missing. Drops nothing; safe to run on every
    /// start and from several processes at once.
    pub async fn migrate(&self) -> Result<()> {
        self.inner.store.migrate().await
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
    pub(crate) fn key_shaped(&self, raw_key: &str) -> bool {
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
    routes: &Arc<Routes>,
) -> group::Executor<Lookup, Validation> {
    let (store, clock, routes) = (Arc::clone(store), clock.clone(), Arc::clone(routes));
    Box::new(move |lookups: Vec<Lookup>, _locked| {
        let (store, clock, cache) = (Arc::clone(&store), clock.clone(), cache.clone());
        let routes = Arc::clone(&routes);
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
                routes.learn_key(lookup, row.account_id.as_deref().unwrap_or(""));
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

/// The executor of one lane's charge batches: one transaction, decided in arrival
/// order. Keys the batch left without budget leave this process's cache at once
/// (other processes' when the transaction's notification arrives); the lanes
/// learn the accounts of the rows it read.
fn charge_batches(
    store: &Arc<Store>,
    clock: &Clock,
    cache: Option<Arc<Cache>>,
    routes: &Arc<Routes>,
) -> group::Executor<SpendReq, SpendOutcome> {
    let (store, clock, routes) = (Arc::clone(store), clock.clone(), Arc::clone(routes));
    Box::new(move |reqs: Vec<SpendReq>, locked| {
        let (store, clock, cache) = (Arc::clone(&store), clock.clone(), cache.clone());
        let routes = Arc::clone(&routes);
        Box::pin(async move {
            let charged = store.charge(&reqs, clock.now(), locked).await?;
            if let Some(cache) = &cache {
                cache.invalidate(&charged.exhausted);
            }
            routes.learn_batch(&charged.rows, &reqs, &charged.outcomes);
            Ok(charged.outcomes)
        })
    })
}
