//! SQL identifiers for the configurable table name.
//!
//! The table name is the only caller-supplied text that is ever spliced into SQL,
//! so it is checked here and nowhere else: `name` or `schema.name`, each part
//! `[A-Za-z_][A-Za-z0-9_]*`, the table part at most 40 bytes (the derived index and
//! table names must fit Postgres' 63-byte limit). Names are folded to lower case,
//! which is what an unquoted identifier means in Postgres, so a table agentkey
//! created as `MyKeys` is found, and then quoted, so reserved words are safe.

use crate::error::{shown, Error, Result};

const MAX_TABLE_LEN: usize = 40;

/// The SQL names keyleash uses for one configured keys table.
#[derive(Clone, Debug)]
pub struct TableNames {
    /// The keys table, quoted and qualified as configured (`"sdk_api_keys"`).
    pub keys: String,
    /// The ledger table beside it (`"sdk_api_keys_ledger"`).
    pub ledger: String,
    /// The signup rate-limit table beside it (`"sdk_api_keys_rate"`).
    pub rate: String,
    /// The holds table beside it (`"sdk_api_keys_holds"`).
    pub holds: String,
    /// What each hold counts against, one row per key (`"sdk_api_keys_hold_keys"`).
    pub hold_keys: String,
    /// The account ceilings beside it (`"sdk_api_keys_accounts"`).
    pub accounts: String,
    /// The unquoted table part, used to derive index names (`sdk_api_keys`).
    pub base: String,
    /// The unquoted schema, if one was given.
    pub schema: Option<String>,
}

impl TableNames {
    /// The Postgres `NOTIFY` channel of this keys table, the same in every process
    /// and language: `keyleash_` and 16 hex digits of the SHA-256 of the
    /// qualified table name (a channel name must stay under 64 bytes).
    pub fn channel(&self) -> String {
        format!("keyleash_{}", &crate::key::hash(&self.keys)[..16])
    }

    /// Checks `configured` and derives every name from it.
    pub fn new(configured: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::arg(format!(
                "tableName {} is not a valid SQL identifier: {why}",
                shown(configured)
            ))
        };
        let (schema, table) = match configured.split_once('.') {
            Some((s, t)) => (Some(s), t),
            None => (None, configured),
        };
        for part in schema.iter().chain([&table]) {
            let mut bytes = part.bytes();
            let first_ok = bytes
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
            if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(bad(
                    "use letters, digits and _ (not first), optionally as schema.table",
                ));
            }
        }
        if table.len() > MAX_TABLE_LEN || schema.is_some_and(|s| s.len() > 63) {
            return Err(bad("the table name may have at most 40 characters"));
        }
        let base = table.to_ascii_lowercase();
        let schema = schema.map(str::to_ascii_lowercase);
        let qualify = |t: &str| match &schema {
            Some(s) => format!("\"{s}\".\"{t}\""),
            None => format!("\"{t}\""),
        };
        Ok(Self {
            keys: qualify(&base),
            ledger: qualify(&format!("{base}_ledger")),
            rate: qualify(&format!("{base}_rate")),
            holds: qualify(&format!("{base}_holds")),
            hold_keys: qualify(&format!("{base}_hold_keys")),
            accounts: qualify(&format!("{base}_accounts")),
            base,
            schema,
        })
    }

    /// Replaces the `{{keys}}`, `{{ledger}}`, `{{rate}}`, `{{holds}}`, `{{hold_keys}}`,
    /// `{{accounts}}` and `{{base}}` placeholders of a migration.
    pub fn render(&self, sql: &str) -> String {
        sql.replace("{{keys}}", &self.keys)
            .replace("{{ledger}}", &self.ledger)
            .replace("{{rate}}", &self.rate)
            .replace("{{holds}}", &self.holds)
            .replace("{{hold_keys}}", &self.hold_keys)
            .replace("{{accounts}}", &self.accounts)
            .replace("{{base}}", &self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Pins the accepted identifier shapes and the lower-case folding.
    #[test]
    fn accepts_identifiers() {
        let t = TableNames::new("sdk_api_keys").unwrap();
        assert_eq!(t.keys, "\"sdk_api_keys\"");
        assert_eq!(t.ledger, "\"sdk_api_keys_ledger\"");
        let t = TableNames::new("Billing.MyKeys").unwrap();
        assert_eq!(t.keys, "\"billing\".\"mykeys\"");
        assert_eq!(t.base, "mykeys");
        assert!(TableNames::new("_x1").is_ok());
        assert!(TableNames::new("select").is_ok());
    }

    // Pins that nothing but an identifier reaches SQL.
    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "1keys",
            "keys;drop table x",
            "keys--",
            "a.b.c",
            "\"keys\"",
            "ke ys",
            "kéys",
            ".keys",
            "keys.",
            &"k".repeat(41),
        ] {
            assert_eq!(
                TableNames::new(bad).unwrap_err().code(),
                "invalid_argument",
                "{bad:?}"
            );
        }
    }
}
