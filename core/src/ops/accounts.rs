//! Accounts: ceilings over every key of an account, and the operator views of
//! spend (top spenders, the accounts page, spend per day).

use crate::client::KeyLeash;
use crate::error::{Error, Result};
use crate::limits::{check_text, MAX_ACCOUNT_LEN};
use crate::model::{AccountView, AccountsPage, DaySpend, SpendBy, SpendOf, Spender, UsageRange};
use crate::period::Period;
use crate::{amount, store};

impl KeyLeash {
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
    /// to the `i64` range by the store), for totals that must not go through `f64`
    /// (the admin page's). Errors as for [`KeyLeash::spend_per_day`].
    pub async fn micros_per_day(&self, of: SpendOf<'_>, days: u32) -> Result<Vec<(String, i64)>> {
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
}

/// The most rows `top_spenders` returns.
const MAX_TOP: u32 = 10_000;

/// The most accounts one [`KeyLeash::accounts`] page holds.
const MAX_ACCOUNTS: u32 = 200;

/// The longest [`KeyLeash::spend_per_day`] window, in days.
const MAX_DAYS: u32 = 366;
