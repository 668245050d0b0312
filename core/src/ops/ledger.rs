//! The ledger: a key's usage rows, and the export of a window of them with
//! stable record ids.

use std::sync::Arc;

use crate::client::KeyLeash;
use crate::error::{Error, Result};
use crate::ident::TableNames;
use crate::key;
use crate::limits::{check_text, MAX_TEXT_LEN};
use crate::model::{LedgerEntry, LedgerRecord, UsageRange};

impl KeyLeash {
    /// A key's ledger rows within `range` (`from` inclusive, `to` exclusive), oldest first.
    pub async fn usage(&self, key_id: i64, range: UsageRange) -> Result<Vec<LedgerEntry>> {
        self.inner.store.usage(key_id, range).await
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
}

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
