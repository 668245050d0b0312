//! Keeps database passwords out of error messages.
//!
//! clap quotes the value it rejects (`unrecognized subcommand 'postgres://u:pw@…'`),
//! and the core quotes a bad `--from` or `--table`, so a URL typed in the wrong
//! place would be echoed with its password. Every error message goes through
//! [`Secrets::redact`] before it is printed: the passwords found in the arguments
//! (and in `DATABASE_URL`) are replaced by `***` wherever they occur, and any
//! `scheme://user:password@` left in the text (a value the core cut at 40
//! characters, say) loses its password too.

use std::ffi::OsString;

/// What replaces a password.
const MASK: &str = "***";

/// The passwords of one command line, longest first.
pub struct Secrets(Vec<String>);

impl Secrets {
    /// The passwords in `args` and in the `DATABASE_URL` environment variable: the
    /// password of every `scheme://user:password@` (up to the last `@`, so an
    /// unencoded `@` or `/` in the password is covered) and every `password=` value.
    pub fn of(args: &[OsString]) -> Self {
        let env = std::env::var("DATABASE_URL").ok();
        let mut found: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .chain(env)
            .flat_map(|text| passwords(&text))
            .filter(|p| !p.is_empty())
            .collect();
        // Also as the core shows a value (control characters and quotes escaped).
        let escaped: Vec<String> = found
            .iter()
            .map(|p| p.chars().flat_map(char::escape_debug).collect())
            .collect();
        found.extend(escaped);
        // Longest first, so a password that holds a shorter one is masked whole.
        found.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        found.dedup();
        Self(found)
    }

    /// `text` without any password: the known ones replaced by `***`, then the
    /// password of any URL still in it.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.0 {
            out = out.replace(secret.as_str(), MASK);
        }
        mask_urls(&out)
    }
}

/// The passwords written in `text`: URL userinfo passwords and `password=` values.
fn passwords(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        rest = &rest[at + 3..];
        let userinfo = rest.rfind('@').map_or("", |end| &rest[..end]);
        if let Some((_, password)) = userinfo.split_once(':') {
            found.push(password.to_string());
        }
    }
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find("password=") {
        let start = from + at + "password=".len();
        let end = text[start..]
            .find(|c: char| c == '&' || c.is_whitespace())
            .map_or(text.len(), |e| start + e);
        found.push(text[start..end].to_string());
        from = start;
    }
    found
}

/// `text` with the password of every `scheme://user:password@host` masked, and a
/// cut URL (`scheme://user:passw…`, no `@` left) masked from its `:` on unless what
/// follows is a port.
fn mask_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let token_end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '`' | '…'))
            .unwrap_or(tail.len());
        let token = &tail[..token_end];
        let userinfo_end = token.rfind('@');
        let colon = token
            .find(':')
            .filter(|&c| userinfo_end.is_none_or(|e| c < e));
        match (colon, userinfo_end) {
            (Some(c), Some(e)) => {
                out.push_str(&token[..=c]);
                out.push_str(MASK);
                out.push_str(&token[e..]);
            }
            (Some(c), None) if !is_port(&token[c + 1..]) => {
                out.push_str(&token[..=c]);
                out.push_str(MASK);
            }
            _ => out.push_str(token),
        }
        rest = &tail[token_end..];
    }
    out.push_str(rest);
    out
}

/// Whether `s` reads as a port and what follows it: digits, then the end or `/`.
fn is_port(s: &str) -> bool {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && (digits == s.len() || s[digits..].starts_with(['/', '?']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(args: &[&str]) -> Secrets {
        Secrets::of(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    // Known passwords go wherever they appear; a cut URL loses what may be one.
    #[test]
    fn masks_passwords() {
        let s = of(&["keyleash", "postgres://u:pw@x@h/db", "a password=Top&b"]);
        assert_eq!(
            s.redact("bad 'postgres://u:pw@x@h/db'"),
            "bad 'postgres://u:***@h/db'"
        );
        assert_eq!(s.redact("got Top"), "got ***");
        let none = of(&["keyleash"]);
        assert_eq!(none.redact("'mysql://a:b@c'"), "'mysql://a:***@c'");
        assert_eq!(
            none.redact("\"postgres://a:longpassw…"),
            "\"postgres://a:***…"
        );
        assert_eq!(
            none.redact("postgres://h:5432/db x"),
            "postgres://h:5432/db x"
        );
        assert_eq!(none.redact("sqlite://k.db"), "sqlite://k.db");
    }
}
