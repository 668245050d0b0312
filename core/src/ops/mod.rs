//! The operations of [`crate::KeyLeash`], one file per concern, each an
//! `impl KeyLeash`: [`keys`] (create, subjects, revoke, list, show), [`validate`],
//! [`spend`] (charges and holds), [`hold`] (a hold as a handle that ends it
//! once), [`accounts`] (ceilings and operator views of
//! spend), [`ledger`] (usage and export), [`rate`] (rate limits in the store).

pub(crate) mod accounts;
pub(crate) mod hold;
pub(crate) mod keys;
pub(crate) mod ledger;
pub(crate) mod rate;
pub(crate) mod spend;
pub(crate) mod validate;
