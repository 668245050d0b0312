//! keyleash: scoped, budgeted, time-bounded API keys on Postgres or SQLite.
//!
//! A key can only do what its scopes allow, only until it expires, and only spend
//! up to its budget, and the budget holds under any number of concurrent charges,
//! because every charge is decided under a row lock in the database.
//!
//! This file is the crate's public face: the example below, the module list and
//! the re-exports. Module map:
//!
//! - the connection: `client` ([`KeyLeash`] and its wiring: store, groups, cache,
//!   clock), [`options`] (options as a binding received them, converted and
//!   checked once: connect, create, self-serve), `limits` (input limits,
//!   [`MAX_TEXT_LEN`] and the others);
//! - the operations, one file per concern, each an `impl KeyLeash`: `ops/keys.rs`
//!   (create, subjects, revoke, list, show), `ops/validate.rs` (and [`KeyRef`]),
//!   `ops/spend.rs` (charges, reserve, settle, release), `ops/hold.rs` ([`Hold`],
//!   a hold as a handle: what was consumed under it, and its one ending, which
//!   every repeat shares), `ops/accounts.rs` (ceilings, top spenders, spend per
//!   day), `ops/ledger.rs` (usage, export), `ops/rate.rs` (the store-kept rate
//!   buckets the self-serve limits run on);
//! - the rules without I/O: [`key`] (key format, checksum, hashing), [`period`]
//!   (budget periods and duration strings), [`amount`] (exact micro-cent amounts),
//!   [`scope`] (scope matching), [`clock`] (system or manual time), `engine` (the
//!   budget rules over loaded rows), `spend` (a batch of spends decided in arrival
//!   order), `model` (the public option and result types);
//! - running calls: `group` (concurrent calls grouped into one round trip per
//!   batch), `lanes` (several spend transactions in flight, one account's spends
//!   always in one lane), `cache` (the opt-in validation cache);
//! - storage: `store` (one `Store` whose every operation is written once over a
//!   small per-backend surface; `store/postgres.rs` and `store/sqlite.rs` hold
//!   each dialect's SQL, locks and transactions, `store/row.rs` the row decoders,
//!   `store/arg.rs` the bind values, `store/codec.rs` the stored text formats,
//!   `store/charge.rs` the spend pipeline both run), `ident` (table names);
//! - adapters, which use only the operations above: [`http`] (the HTTP rules the
//!   Express and FastAPI integrations share), [`admin`] (the admin page's handler);
//! - [`error`]: the error type and its codes.
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
mod client;
pub mod clock;
mod engine;
pub mod error;
mod group;
pub mod http;
mod ident;
pub mod key;
mod lanes;
mod limits;
mod model;
mod ops;
pub mod options;
pub mod period;
pub mod ratelimit;
pub mod scope;
mod spend;
mod store;

pub use crate::admin::{AdminRequest, AdminResponse};
pub use crate::client::KeyLeash;
pub use crate::clock::{Clock, ManualClock};
pub use crate::error::{Error, Result};
pub use crate::http::{Access, Reply, Route, SelfServeOptions};
pub use crate::limits::{
    MAX_ACCOUNT_LEN, MAX_METADATA_LEN, MAX_RAW_KEY_LEN, MAX_SUBJECT_LEN, MAX_TEXT_LEN,
};
pub use crate::model::{
    iso, parse_time, AccountView, AccountsPage, CacheOptions, CacheStats, CeilingView, Charge,
    ChargeRefusal, ChargeResult, CreateOptions, CreatedKey, DaySpend, HoldStatus, InvalidReason,
    KeyDetails, KeyInfo, KeyOptions, KeyStatus, KeySummary, LedgerEntry, LedgerRecord, Options,
    RateLimited, Reserve, ReserveResult, SettleRefusal, SettleResult, SpendBy, SpendOf, Spender,
    UsageRange, Validation,
};
pub use crate::ops::hold::{AddRefused, CutShort, Ending, Hold};
pub use crate::ops::validate::KeyRef;
pub use crate::ratelimit::{Limit, LimitUnit, LimitView};
pub use crate::scope::has_scope;

/// The crate README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
