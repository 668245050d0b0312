//! Scopes: what a key may do.
//!
//! A key with no scopes (`None`) may do everything. Otherwise a required scope is
//! granted by an exact match, by `admin`, or by a granted scope whose last segment
//! is `*`, which matches every scope below it (`proxy.*` grants `proxy.chat` and
//! `proxy.chat.stream`, not `proxy`; a lone `*` grants everything).

use crate::error::{bare, shown, Error, Result};

/// The longest scope accepted, in bytes.
pub const MAX_SCOPE_LEN: usize = 128;
/// The most scopes one key may hold.
pub const MAX_SCOPES: usize = 64;

/// Whether `granted` (a key's scopes; `None` = all) allows `required`.
pub fn has_scope(granted: Option<&[String]>, required: &str) -> bool {
    let Some(granted) = granted else { return true };
    granted
        .iter()
        .any(|g| g == required || g == "admin" || wildcard_covers(g, required))
}

fn wildcard_covers(granted: &str, required: &str) -> bool {
    if granted == "*" {
        return true;
    }
    granted.strip_suffix(".*").is_some_and(|base| {
        required.len() > base.len() + 1
            && required.starts_with(base)
            && required.as_bytes()[base.len()] == b'.'
    })
}

/// Checks a list of scopes for a new key: each non-empty, at most
/// [`MAX_SCOPE_LEN`] bytes, free of whitespace and control characters, and in
/// `allowed` when an allow-list is configured; at most [`MAX_SCOPES`] of them.
/// The error names every offending scope, as agentkey does (`Invalid scopes: a, b`).
pub fn check_scopes(scopes: &[String], allowed: Option<&[String]>) -> Result<()> {
    if scopes.len() > MAX_SCOPES {
        return Err(Error::InvalidScope(format!(
            "{} scopes given, at most {MAX_SCOPES} allowed",
            scopes.len()
        )));
    }
    let malformed: Vec<String> = scopes
        .iter()
        .filter(|s| {
            s.is_empty()
                || s.len() > MAX_SCOPE_LEN
                || s.chars().any(|c| c.is_whitespace() || c.is_control())
        })
        .map(|s| shown(s))
        .collect();
    if !malformed.is_empty() {
        return Err(Error::InvalidScope(format!(
            "{} (a scope is 1 to {MAX_SCOPE_LEN} bytes without whitespace or control characters)",
            malformed.join(", ")
        )));
    }
    if let Some(allowed) = allowed {
        let unknown: Vec<String> = scopes
            .iter()
            .filter(|s| !allowed.contains(s))
            .map(|s| bare(s))
            .collect();
        if !unknown.is_empty() {
            return Err(Error::InvalidScope(format!(
                "{} (not in validScopes)",
                unknown.join(", ")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_string()).collect()
    }

    // Pins agentkey's wording, which its users' code matches on: every bad scope named.
    #[test]
    fn agentkey_words() {
        let allowed = v(&["read"]);
        let e = check_scopes(&v(&["a", "read", "b"]), Some(&allowed)).unwrap_err();
        assert_eq!(e.to_string(), "Invalid scopes: a, b (not in validScopes)");
        let e = crate::period::Period::parse("weekly").unwrap_err();
        assert!(
            e.to_string().starts_with("Invalid budget period: weekly"),
            "{e}"
        );
    }

    // Pins null = all, exact match, admin, and trailing-* segment semantics.
    #[test]
    fn matching() {
        assert!(has_scope(None, "anything"));
        assert!(!has_scope(Some(&[]), "read"));
        assert!(has_scope(Some(&v(&["read"])), "read"));
        assert!(!has_scope(Some(&v(&["read"])), "reader"));
        assert!(has_scope(Some(&v(&["admin"])), "write"));
        assert!(has_scope(Some(&v(&["proxy.*"])), "proxy.chat"));
        assert!(has_scope(Some(&v(&["proxy.*"])), "proxy.chat.stream"));
        assert!(!has_scope(Some(&v(&["proxy.*"])), "proxy"));
        assert!(!has_scope(Some(&v(&["proxy.*"])), "proxyx.chat"));
        assert!(!has_scope(Some(&v(&["proxy.*"])), "proxy."));
        assert!(has_scope(Some(&v(&["*"])), "x.y"));
        assert!(!has_scope(Some(&v(&["proxy*"])), "proxy.chat"));
    }

    // Pins the allow-list and the shape rules of scopes.
    #[test]
    fn checking() {
        let allowed = v(&["read", "write"]);
        assert!(check_scopes(&v(&["read"]), Some(&allowed)).is_ok());
        assert_eq!(
            check_scopes(&v(&["delete"]), Some(&allowed))
                .unwrap_err()
                .code(),
            "invalid_scope"
        );
        assert_eq!(
            check_scopes(&v(&[""]), None).unwrap_err().code(),
            "invalid_scope"
        );
        assert_eq!(
            check_scopes(&v(&["a b"]), None).unwrap_err().code(),
            "invalid_scope"
        );
        assert_eq!(
            check_scopes(&v(&["a\0"]), None).unwrap_err().code(),
            "invalid_scope"
        );
        assert_eq!(
            check_scopes(&["x".repeat(129)], None).unwrap_err().code(),
            "invalid_scope"
        );
        assert!(check_scopes(&v(&["proxy.*", "read:users"]), None).is_ok());
    }
}
