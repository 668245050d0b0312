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
    #[error("invalid scope: {0}")]
    InvalidScope(String),
    /// A duration string is not `<n>s|m|h|d|w|mo` with a positive `n`, or is too long.
    #[error("invalid duration: {0}")]
    InvalidDuration(String),
    /// A budget period is not `day`, `week`, `month` or absent.
    #[error("invalid budget period: {0}")]
    InvalidPeriod(String),
    /// Any other argument the caller got wrong: an identifier, an amount, a string
    /// that is empty, too long or contains NUL, conflicting options.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The store could not be reached or failed (or the OS had no randomness to
    /// mint a key); nothing was applied. The cause is kept as the source.
    #[error("key store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// The stable, language-independent code of this error (CONFORMANCE.md):
    /// `invalid_scope`, `invalid_duration`, `invalid_period`, `invalid_argument`
    /// or `unavailable`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidScope(_) => "invalid_scope",
            Error::InvalidDuration(_) => "invalid_duration",
            Error::InvalidPeriod(_) => "invalid_period",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Unavailable(_) => "unavailable",
        }
    }

    pub(crate) fn arg(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Unavailable(Box::new(e))
    }
}

impl From<getrandom::Error> for Error {
    fn from(e: getrandom::Error) -> Self {
        Error::Unavailable(Box::new(e))
    }
}

/// Quote a caller's value for an error message: at most 40 characters, control
/// characters escaped, so a 1 MB argument cannot flood a log.
pub(crate) fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(40)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().nth(40).is_some() {
        out.push('…');
    }
    format!("\"{out}\"")
}
