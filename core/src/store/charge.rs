//! How a batch of charges is decided and written: one pipeline for both stores.
//!
//! Inside one transaction: lock the named keys and their ancestors, read the
//! ledger rows already stored under the batch's idempotency keys, let
//! [`crate::engine::plan_charges`] decide every charge in arrival order, write the
//! changed key rows and the new ledger rows, commit. Each store provides only its
//! SQL for these steps ([`ChargeSql`]: `postgres.rs` locks with `FOR UPDATE` in id
//! order and writes with `UNNEST`; `sqlite.rs` runs under `BEGIN IMMEDIATE`, which
//! takes the database's write lock up front), so the order of the steps, and what
//! is skipped when, lives here and nowhere else.
//!
//! Why the lock comes first: the row lock is what serializes charges of one key
//! (or one family) across processes, and the idempotency read must come after it,
//! so that a repeat sees the ledger row a concurrent first charge committed.

use chrono::{DateTime, Utc};

use crate::engine::{plan_charges, ChargeReq, KeyRow, Plan, PriorCharge};
use crate::error::Result;
use crate::model::ChargeResult;

/// One store's SQL for the steps of a charge, inside one open transaction.
pub(crate) trait ChargeSql {
    /// Locks and reads the rows `reqs` name and all their ancestors.
    async fn lock(&mut self, reqs: &[ChargeReq]) -> Result<Vec<KeyRow>>;
    /// The ledger rows of `rows` stored under the idempotency keys of `reqs`.
    async fn priors(&mut self, rows: &[KeyRow], reqs: &[ChargeReq]) -> Result<Vec<PriorCharge>>;
    /// Writes the plan's key updates and ledger rows (either may be empty) and,
    /// where the store has notifications, announces `exhausted` (the keys this
    /// batch left without budget) to other processes' validation caches when the
    /// transaction commits.
    async fn write(&mut self, plan: &Plan, exhausted: &[i64]) -> Result<()>;
    /// Commits the transaction, which releases the locks.
    async fn commit(self) -> Result<()>;
}

/// The outcome of a charge batch.
pub(crate) struct Charged {
    /// One per request, in order.
    pub outcomes: Vec<ChargeResult>,
    /// The keys the batch left without budget: cached valid answers naming them
    /// are stale.
    pub exhausted: Vec<i64>,
}

/// Runs a batch of positive charges through `tx`, in order, atomically: every
/// outcome is what the charge would have had alone, after the ones before it.
pub(crate) async fn run<T: ChargeSql>(
    mut tx: T,
    reqs: &[ChargeReq],
    now: DateTime<Utc>,
) -> Result<Charged> {
    let rows = tx.lock(reqs).await?;
    let wants_priors = reqs.iter().any(|r| r.idempotency_key.is_some());
    let priors = if wants_priors && !rows.is_empty() {
        tx.priors(&rows, reqs).await?
    } else {
        Vec::new()
    };
    let plan = plan_charges(&rows, &priors, reqs, now);
    let exhausted: Vec<i64> = plan
        .updates
        .iter()
        .filter(|u| u.exhausted())
        .map(|u| u.id)
        .collect();
    if !plan.updates.is_empty() || !plan.ledger.is_empty() {
        tx.write(&plan, &exhausted).await?;
    }
    tx.commit().await?;
    Ok(Charged {
        outcomes: plan.outcomes,
        exhausted,
    })
}
