//! The raw key format, its checksum, and the stored hash.
//!
//! A keyleash key is `<prefix><body><check>`: `body` is 32 base62 characters of
//! OS randomness (190.5 bits), `check` is 6 base62 characters of the first 32 bits
//! of SHA-256(prefix + body). A string with the prefix whose checksum is wrong is
//! rejected here, before any database round trip.
//!
//! Keys minted by agentkey (`<prefix>` + 48 lowercase hex characters) carry no
//! checksum and are still accepted for lookup. The store only ever sees
//! SHA-256 hex of the whole raw key (agentkey's `key_hash`) and a short display
//! prefix; the raw key itself is returned once by `create` and never stored.

use sha2::{Digest, Sha256};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BODY_LEN: usize = 32;
const CHECK_LEN: usize = 6;
const LEGACY_HEX_LEN: usize = 48;
/// Characters of the body kept in the display prefix.
const DISPLAY_CHARS: usize = 8;

/// A freshly minted key: the raw secret, its hash and its display prefix.
pub(crate) struct Minted {
    pub raw: String,
    pub hash: String,
    pub display_prefix: String,
}

/// Mints a new key with `prefix`. Fails only if the OS has no randomness.
pub(crate) fn mint(prefix: &str) -> Result<Minted, getrandom::Error> {
    let mut body = String::with_capacity(BODY_LEN);
    let mut buf = [0u8; 64];
    while body.len() < BODY_LEN {
        getrandom::getrandom(&mut buf)?;
        // Rejection sampling keeps every character uniform: 248 = 4 * 62.
        body.extend(
            buf.iter()
                .filter(|&&b| b < 248)
                .map(|&b| char::from(BASE62[usize::from(b % 62)])),
        );
        body.truncate(BODY_LEN);
    }
    let raw = format!("{prefix}{body}{}", checksum(prefix, &body));
    Ok(Minted {
        hash: hash(&raw),
        display_prefix: raw[..prefix.len() + DISPLAY_CHARS].to_string(),
        raw,
    })
}

/// A random 64-hex-character value for rows that have no raw key (subjects): it
/// fills the `key_hash NOT NULL UNIQUE` column and is never returned to anyone.
pub(crate) fn internal_hash() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)?;
    Ok(hex(&bytes))
}

/// SHA-256 hex of a raw key, as agentkey stores it in `key_hash`.
pub fn hash(raw: &str) -> String {
    hex(&Sha256::digest(raw.as_bytes()))
}

/// Whether `raw` is shaped like a key this store could hold: the prefix followed by
/// either a keyleash body with a correct checksum or an agentkey 48-hex body.
/// Anything else cannot exist in the store, so callers answer `invalid` at once.
pub fn well_formed(prefix: &str, raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix(prefix) else {
        return false;
    };
    if rest.len() == LEGACY_HEX_LEN {
        return rest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    }
    if rest.len() != BODY_LEN + CHECK_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (body, check) = rest.split_at(BODY_LEN);
    checksum(prefix, body) == check
}

fn checksum(prefix: &str, body: &str) -> String {
    let digest = Sha256::new()
        .chain_update(prefix)
        .chain_update(body)
        .finalize();
    let mut n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[usize::try_from(n % 62).unwrap_or(0)];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lower-case hex, by table: on the validate path of a cache hit, `write!` per
/// byte cost more than the SHA-256 itself.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Pins the minted shape: prefix, 38 base62 characters, a valid checksum, hash of the raw key.
    #[test]
    fn minted_keys_are_well_formed() {
        let m = mint("ak_").unwrap();
        assert_eq!(m.raw.len(), 3 + 38);
        assert!(m.raw[3..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(well_formed("ak_", &m.raw));
        assert_eq!(m.hash, hash(&m.raw));
        assert_eq!(m.display_prefix, m.raw[..11]);
        assert_ne!(mint("ak_").unwrap().raw, m.raw);
    }

    // Pins that any single-character change of the body or checksum is caught.
    #[test]
    fn checksum_catches_typos() {
        let m = mint("ak_").unwrap();
        for i in 3..m.raw.len() {
            let mut bytes = m.raw.clone().into_bytes();
            bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
            let typo = String::from_utf8(bytes).unwrap();
            assert!(!well_formed("ak_", &typo), "typo at {i} accepted");
        }
        assert!(!well_formed("sk_", &m.raw));
        assert!(!well_formed("ak_", ""));
        assert!(!well_formed("ak_", &"a".repeat(1 << 20)));
    }

    // Pins acceptance of agentkey's `ak_` + 48 hex keys and SHA-256 hex hashing.
    #[test]
    fn legacy_keys_and_hash() {
        let legacy = format!("ak_{}", "0123456789abcdef".repeat(3));
        assert!(well_formed("ak_", &legacy));
        assert!(!well_formed("ak_", &legacy.to_uppercase()));
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
