//! The one error type of keyleash.
//!
//! Errors are for mistakes a caller can fix (a bad scope, duration, period or
//! argument) and for a store that cannot be reached. Outcomes that are part of the
//! normal life of a key (unknown, expired, revoked, over budget, a bad cost) are
//! *results*, not errors: see [`crate::Validation`] and [`crate::ChargeResult`].
//!
//! Invariant: no message ever contains a raw key or a database password. Messages
//! name the offending field and, where it is short and not secret, its value.

/// The result type of every fallible keyleash operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, each with a stable [`Error::code`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A scope is malformed or not in the configured `valid_scopes` allow-list.
    /// The message starts with agentkey's words, `Invalid scopes: a, b`.
    #[error("Invalid scopes: {0}")]
    InvalidScope(String),
    /// A duration string is not `<n>s|m|h|d|w|mo` with a whole `n ≥ 0`, or is too
    /// long. The message starts with agentkey's words, `Invalid duration: 7days`.
    #[error("Invalid duration: {0}")]
    InvalidDuration(String),
    /// A budget period is not `day`, `week`, `month` or absent. The message starts
    /// with agentkey's words, `Invalid budget period: weekly`.
    #[error("Invalid budget period: {0}")]
    InvalidPeriod(String),
    /// Any other argument the caller got wrong: an identifier, an amount, a string
    /// that is empty, too long or contains NUL, conflicting options.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The store could not be reached or failed (or the OS had no randomness to
    /// mint a key); nothing was applied. The cause is kept as the source.
    #[error("key store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A table keyleash needs does not exist: `migrate()` has not run on this
    /// database (or ran for another table name). Nothing was applied.
    #[error("{0}: call migrate() to create it")]
    NotMigrated(String),
}

impl Error {
    /// Every code [`Error::code`] returns, for a binding to tell the core's errors
    /// from its own (napi's argument conversions, say).
    pub const CODES: [&'static str; 6] = [
        "invalid_scope",
        "invalid_duration",
        "invalid_period",
        "invalid_argument",
        "unavailable",
        "not_migrated",
    ];

    /// The stable, language-independent code of this error:
    /// `invalid_scope`, `invalid_duration`, `invalid_period`, `invalid_argument`,
    /// `unavailable` or `not_migrated` (see `docs/errors.md`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidScope(_) => "invalid_scope",
            Error::InvalidDuration(_) => "invalid_duration",
            Error::InvalidPeriod(_) => "invalid_period",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Unavailable(_) => "unavailable",
            Error::NotMigrated(_) => "not_migrated",
        }
    }

    /// This error again, for each caller of a failed batch (an `Error` owns its
    /// source, so each caller gets the same code and message, source as text).
    pub(crate) fn for_each_caller(&self) -> Self {
        match self {
            Error::InvalidScope(m) => Error::InvalidScope(m.clone()),
            Error::InvalidDuration(m) => Error::InvalidDuration(m.clone()),
            Error::InvalidPeriod(m) => Error::InvalidPeriod(m.clone()),
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::NotMigrated(m) => Error::NotMigrated(m.clone()),
            Error::Unavailable(source) => Error::Unavailable(source.to_string().into()),
        }
    }

    pub(crate) fn arg(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if let Some(table) = missing_table(&e) {
            return Error::NotMigrated(format!("the table {table} does not exist"));
        }
        Error::Unavailable(Box::new(e))
    }
}

/// The table a statement failed on because it does not exist: Postgres'
/// `undefined_table` (42P01, `relation "x" does not exist`) or SQLite's
/// `no such table: x`.
fn missing_table(e: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    let msg = db.message();
    if db.code().as_deref() == Some("42P01") {
        let name = msg.split('"').nth(1).unwrap_or("keyleash needs");
        return Some(shown(name));
    }
    msg.strip_prefix("no such table: ").map(|t| shown(t.trim()))
}

impl From<getrandom::Error> for Error {
    fn from(e: getrandom::Error) -> Self {
        Error::Unavailable(Box::new(e))
    }
}

/// A caller's value for an error message without quotes (agentkey's style, as in
/// `Invalid duration: 7days`): at most 40 characters, control characters escaped.
pub(crate) fn bare(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(40)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().nth(40).is_some() {
        out.push('…');
    }
    out
}

/// Quote a caller's value for an error message: at most 40 characters, control
/// characters escaped, so a 1 MB argument cannot flood a log.
pub(crate) fn shown(value: &str) -> String {
    format!("\"{}\"", bare(value))
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn codes_lists_the_code_of_each_variant_once() {
        let each = [
            Error::InvalidScope(String::new()),
            Error::InvalidDuration(String::new()),
            Error::InvalidPeriod(String::new()),
            Error::arg(""),
            Error::Unavailable("".into()),
            Error::NotMigrated(String::new()),
        ];
        assert_eq!(each.map(|e| e.code()), Error::CODES);
    }
}
