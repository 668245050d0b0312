//! Input limits: the longest texts, keys and metadata accepted, and the checks
//! every operation applies to caller-given text.

use crate::error::{shown, Error, Result};

/// Longest user id, name, delegatedBy and idempotency key, in bytes.
pub const MAX_TEXT_LEN: usize = 256;
/// Longest external subject, in bytes.
pub const MAX_SUBJECT_LEN: usize = 512;
/// Longest account id, in bytes: as long as a subject, because a subject row's
/// account defaults to its subject.
pub const MAX_ACCOUNT_LEN: usize = MAX_SUBJECT_LEN;
/// Longest raw key looked up, in bytes; anything longer is `invalid` at once.
pub const MAX_RAW_KEY_LEN: usize = 128;
/// Largest metadata, as JSON text, in bytes.
pub const MAX_METADATA_LEN: usize = 16 * 1024;

/// Checks a caller's string: at most `max` bytes, no NUL, non-empty when `required`.
pub(crate) fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<()> {
    if required && value.is_empty() {
        return Err(Error::arg(format!("{field} must not be empty")));
    }
    if value.len() > max {
        return Err(Error::arg(format!(
            "{field} is {} bytes long, at most {max} allowed",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(Error::arg(format!(
            "{field} {} contains a NUL character",
            shown(value)
        )));
    }
    Ok(())
}

/// Checks a key's metadata as the JSON text the store keeps: at most
/// [`MAX_METADATA_LEN`] bytes, and no NUL character (which Postgres' JSONB refuses).
pub(crate) fn check_metadata(json: &str) -> Result<()> {
    if json.len() > MAX_METADATA_LEN || json.contains("\\u0000") {
        return Err(Error::arg(
            "metadata must serialize to at most 16 KiB of JSON without NUL characters",
        ));
    }
    Ok(())
}

pub(crate) fn check_prefix(prefix: &str) -> Result<()> {
    let ok = (1..=16).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::arg(format!(
            "keyPrefix {} must be 1 to 16 of A-Z a-z 0-9 _ -",
            shown(prefix)
        )))
    }
}
