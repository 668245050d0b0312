//! How a batch of spends (charges, reserves, settles, releases) is decided and
//! written: one pipeline for both stores.
//!
//! Inside one transaction: lock the holds the batch names (settles, releases),
//! then the keys it names and their ancestors, read what the batch's idempotency
//! keys already stored (ledger rows of charges and holds of reserves, both for
//! every key: a key used for a charge conflicts with a reserve), let
//! [`crate::spend::plan`] decide every request in arrival order, write, commit.
//! Each store provides only its SQL for the steps that differ ([`ChargeSql`]:
//! `postgres.rs` locks with `FOR UPDATE` in id order and writes with `UNNEST`;
//! `sqlite.rs` runs under `BEGIN IMMEDIATE`, which takes the database's write lock
//! up front) and its dialect of the statements run here
//! ([`crate::store::Queries`]), so the order of the steps, and what is skipped
//! when, lives here and nowhere else.
//!
//! Once the last lock is taken the batch tells its lane ([`Locked`]), whose next
//! batch may then start while this one writes and commits: on Postgres a later
//! batch needing one of these rows waits for its lock until this one commits.
//!
//! Why the locks come first: the row locks are what serialize spends of one key
//! (or one family) across processes, and the idempotency reads must come after
//! them, so that a repeat sees the rows a concurrent first request committed.
//! Holds are locked before keys, and keys before account ceilings, in every
//! transaction, so two batches cannot wait on each other's locks.

use chrono::{DateTime, Utc};

use crate::engine::{hinted, missing_ceilings, KeyRow, Lookup};
use crate::error::Result;
use crate::group::Locked;
use crate::spend::{plan, HoldRow, Plan, SpendOutcome, SpendReq};
use crate::store::arg::Arg;
use crate::store::codec::fill_shares;
use crate::store::row::{self, ceiling, decode_all, pair};
use crate::store::{Backend, Tx};

/// One store's SQL for the steps of a spend batch that differ per store, inside
/// its open transaction.
pub(crate) trait ChargeSql {
    /// Locks and reads the holds `ids` names, with their shares.
    async fn lock_holds(&mut self, ids: &[i64]) -> Result<Vec<HoldRow>>;
    /// Locks and reads the keys `lookups` and `ids` name and all their ancestors
    /// (their hold shares left out: [`run`] reads them after every lock).
    async fn lock(&mut self, lookups: &[&Lookup], ids: &[i64]) -> Result<Vec<KeyRow>>;
    /// Writes the plan: key updates, ledger rows, new holds (returning their ids,
    /// in `plan.new_holds` order), closed holds, stale shares; and, where the store
    /// has notifications, announces `plan.exhausted` to other processes'
    /// validation caches when the transaction commits.
    async fn write(&mut self, plan: &Plan, now: DateTime<Utc>) -> Result<Vec<i64>>;
}

/// The outcome of a spend batch.
pub(crate) struct Charged {
    /// One per request, in order.
    pub outcomes: Vec<SpendOutcome>,
    /// The keys the batch left without budget: cached valid answers naming them
    /// are stale.
    pub exhausted: Vec<i64>,
    /// The rows the batch locked (keys, their ancestors, ceilings), as read: the
    /// lanes learn each key's account from them (`lanes.rs`).
    pub rows: Vec<KeyRow>,
}

/// Runs a batch of checked spends through `tx`, in order, atomically: every
/// outcome is what the request would have had alone, after the ones before it.
pub(crate) async fn run<'a, S: Backend>(
    mut tx: Tx<'a, S>,
    reqs: &[SpendReq],
    now: DateTime<Utc>,
    mut locked: Locked,
) -> Result<Charged>
where
    Tx<'a, S>: ChargeSql,
{
    let q = tx.store.queries();
    let hold_ids: Vec<i64> = reqs.iter().filter_map(SpendReq::hold_id).collect();
    let holds = if hold_ids.is_empty() {
        Vec::new()
    } else {
        tx.lock_holds(&hold_ids).await?
    };
    let lookups: Vec<&Lookup> = reqs.iter().filter_map(SpendReq::lookup).collect();
    let key_ids: Vec<i64> = holds
        .iter()
        .map(|h| h.key_id)
        .chain(reqs.iter().filter_map(SpendReq::key_id))
        .collect();
    let mut rows = if lookups.is_empty() && key_ids.is_empty() {
        Vec::new()
    } else {
        tx.lock(&lookups, &key_ids).await?
    };
    // The ceilings the keys' hints name, only when there are any, after every key.
    let ceilings = missing_ceilings(&rows);
    if !ceilings.is_empty() {
        for r in &tx.all(&q.lock_ceilings, &[Arg::Ids(&ceilings)]).await? {
            rows.push(ceiling(r)?);
        }
    }
    // Every lock is taken: the lane's next batch may start (`group.rs`).
    locked.fire();
    // Shares are read after the lock, in their own statement, so that they include
    // what the transaction this one waited for committed; only for rows whose
    // shares may still count.
    let hinted = hinted(&rows, now);
    if !hinted.is_empty() {
        let shares = tx.all(&q.shares, &[Arg::Ids(&hinted)]).await?;
        fill_shares(&mut rows, &decode_all(&shares, pair)?)?;
    }
    // What the batch's keys stored under its idempotency keys, in one statement:
    // charges (ledger rows) and reserves (holds), since a key names one operation
    // of either kind.
    let keys: Vec<&str> = reqs.iter().filter_map(SpendReq::idempotency_key).collect();
    let (priors, prior_holds) = if keys.is_empty() || rows.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        row::priors(
            &tx.all(&q.priors, &[Arg::Ids(&ids), Arg::Texts(&keys)])
                .await?,
        )?
    };
    let mut plan = plan(&rows, &holds, &priors, &prior_holds, reqs, now);
    if plan.writes() {
        let ids = tx.write(&plan, now).await?;
        plan.fill_hold_ids(&ids);
    }
    tx.commit().await?;
    Ok(Charged {
        outcomes: plan.outcomes,
        exhausted: plan.exhausted,
        rows,
    })
}
