//! Minting and managing keys: create, subjects (a budget row bound to an
//! external identity), parent checks, revoke, list and show.

use chrono::{DateTime, Utc};

use crate::client::KeyLeash;
use crate::engine::Lookup;
use crate::error::{Error, Result};
use crate::limits::{check_metadata, check_text, MAX_ACCOUNT_LEN, MAX_SUBJECT_LEN, MAX_TEXT_LEN};
use crate::model::{CreatedKey, InvalidReason, KeyDetails, KeyOptions, KeySummary};
use crate::period::{parse_duration, Period};
use crate::spend::{SpendOutcome, SpendReq};
use crate::store::NewKey;
use crate::{amount, engine, key, ratelimit, scope};

impl KeyLeash {
    /// Mints a key. The raw key is in the result and nowhere else, ever.
    /// Errors: `invalid_scope`, `invalid_period`, `invalid_duration`,
    /// `invalid_argument` (missing/oversized strings, bad budget, past expiry).
    /// Takes a [`crate::CreateOptions`] (or a [`KeyOptions`]).
    pub async fn create(&self, opts: impl Into<KeyOptions>) -> Result<CreatedKey> {
        let mut opts = opts.into();
        let now = self.inner.clock.now();
        if let Some(parent) = opts.options.parent_id {
            self.check_parent(parent, &mut opts.options.account_id, now)
                .await?;
        }
        check_text("accountId", &opts.options.account_id, MAX_ACCOUNT_LEN, true)?;
        let minted = key::mint(&self.inner.prefix)?;
        let new = self.new_row(&opts, now, minted.hash, minted.display_prefix, None)?;
        let id = self.inner.store.insert_key(&new).await?;
        let lookup = Lookup::Hash(new.key_hash.clone());
        self.inner
            .routes
            .learn_key(&lookup, &opts.options.account_id);
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
    pub async fn ensure_subject(&self, subject: &str, opts: impl Into<KeyOptions>) -> Result<()> {
        let mut opts = opts.into();
        check_text("subject", subject, MAX_SUBJECT_LEN, true)?;
        if opts.options.account_id.is_empty() {
            opts.options.account_id = subject.to_string();
        }
        check_text("accountId", &opts.options.account_id, MAX_ACCOUNT_LEN, true)?;
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
        key: &KeyOptions,
        now: DateTime<Utc>,
        key_hash: String,
        key_prefix: String,
        subject: Option<String>,
    ) -> Result<NewKey> {
        let o = &key.options;
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
        if let Some(m) = &key.metadata {
            check_metadata(m)?;
        }
        let rate_limits = ratelimit::checked(&o.limits)?
            .as_deref()
            .and_then(ratelimit::encode);
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
            metadata: key.metadata.clone(),
            created_at: now,
            parent_id: o.parent_id,
            rate_limits,
        })
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

    /// Replaces the rate limits of key `key_id` with `limits` (empty: none), as
    /// `create` checks them. A limit kept under the same name and unit keeps what
    /// it has counted and not yet paid off, restated at its new rate, so raising
    /// or lowering a limit opens no fresh burst; any other starts idle. Decided in
    /// the key's spend lane under its row lock, so no charge's count is lost. With
    /// `account_id`, only a key of that account is changed. Returns whether a key
    /// was found. Errors: `invalid_argument`, `unavailable`.
    pub async fn set_limits(
        &self,
        key_id: i64,
        limits: &[ratelimit::Limit],
        account_id: Option<&str>,
    ) -> Result<bool> {
        if let Some(a) = account_id {
            check_text("accountId", a, MAX_ACCOUNT_LEN, true)?;
        }
        let limits = ratelimit::checked(limits)?.unwrap_or_default();
        if key_id <= 0 {
            return Ok(false);
        }
        let req = SpendReq::SetLimits {
            key_id,
            account_id: account_id.map(str::to_owned),
            limits,
        };
        match self.inner.charges.call(req).await? {
            SpendOutcome::SetLimits(found) => Ok(found),
            other => Err(super::spend::mismatch(&other)),
        }
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

    /// The ids of `key_id` and of its ancestors, nearest first (the root last);
    /// empty for an unknown key. What the self-serve routes' tree rules ask.
    /// Errors: `unavailable`.
    pub async fn lineage(&self, key_id: i64) -> Result<Vec<i64>> {
        let rows = self.inner.store.get(key_id, self.inner.clock.now()).await?;
        Ok(rows
            .iter()
            .find(|r| r.id == key_id)
            .map(|me| {
                crate::engine::ancestry(&rows, me)
                    .iter()
                    .map(|r| r.id)
                    .collect()
            })
            .unwrap_or_default())
    }
}
