//! The `keyleash` binary against real databases: every test runs the built binary
//! on a fresh SQLite file and on Postgres (`DATABASE_URL`, which `make test`
//! provides), each on its own table, and checks what it prints against the
//! database, read with plain SQL or the library.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{Duration, Utc};
use keyleash::{Charge, CreateOptions, KeyLeash, Options, Reserve};
use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{PgPool, SqlitePool};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per store, as `<name>::sqlite` and `<name>::postgres`.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Kind::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Kind::Postgres).await
            }
        }
    };
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn unique(tag: &str) -> String {
    format!(
        "{tag}_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// One test's database and table, a library instance on it (system clock, as the
/// binary has) and a raw pool to check what the binary did.
struct Db {
    url: String,
    table: String,
    kl: KeyLeash,
    raw: Raw,
}

enum Raw {
    Pg(PgPool),
    Lite(SqlitePool),
}

impl Db {
    /// A fresh table, migrated by the binary unless `migrate` is false.
    async fn open(kind: Kind, migrate: bool) -> Db {
        let table = unique("cli");
        let url = match kind {
            Kind::Sqlite => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                let path = std::env::temp_dir().join(format!("{}_{nanos}.db", unique("kl_cli")));
                format!("sqlite://{}", path.display())
            }
            Kind::Postgres => std::env::var("DATABASE_URL")
                .expect("DATABASE_URL is not set: run `make test` or scripts/with-postgres.sh"),
        };
        if migrate {
            let out = cli_at(&url, &table, &["migrate"]);
            assert_eq!(code(&out), 0, "migrate: {}", stderr(&out));
        }
        let raw = match kind {
            Kind::Postgres => Raw::Pg(PgPool::connect(&url).await.expect("pg pool")),
            Kind::Sqlite => {
                let o: SqliteConnectOptions = url.parse().expect("sqlite url");
                Raw::Lite(
                    SqlitePool::connect_with(o.create_if_missing(true))
                        .await
                        .expect("sqlite pool"),
                )
            }
        };
        let options = Options {
            table_name: table.clone(),
            ..Options::default()
        };
        let kl = KeyLeash::connect(&url, options).await.expect("connect");
        Db {
            url,
            table,
            kl,
            raw,
        }
    }

    /// Runs the binary on this test's database and table.
    fn cli(&self, args: &[&str]) -> Output {
        cli_at(&self.url, &self.table, args)
    }

    /// Runs the binary, expects success and parses its JSON output.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.cli(&all);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("one JSON document")
    }

    fn sql(&self, sql: &str) -> String {
        sql.replace("{keys}", &format!("\"{}\"", self.table))
            .replace("{ledger}", &format!("\"{}_ledger\"", self.table))
            .replace("{accounts}", &format!("\"{}_accounts\"", self.table))
    }

    async fn exec(&self, sql: &str) {
        let sql = self.sql(sql);
        match &self.raw {
            Raw::Pg(p) => sqlx::raw_sql(&sql).execute(p).await.map(drop),
            Raw::Lite(p) => sqlx::raw_sql(&sql).execute(p).await.map(drop),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A scalar BIGINT query on this test's tables.
    async fn scalar(&self, sql: &str) -> Option<i64> {
        let sql = self.sql(sql);
        match &self.raw {
            Raw::Pg(p) => sqlx::query_scalar(&sql).fetch_one(p).await,
            Raw::Lite(p) => sqlx::query_scalar(&sql).fetch_one(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Rows of (BIGINT, BIGINT) on this test's tables.
    async fn pairs(&self, sql: &str) -> Vec<(i64, i64)> {
        let sql = self.sql(sql);
        match &self.raw {
            Raw::Pg(p) => sqlx::query_as(&sql).fetch_all(p).await,
            Raw::Lite(p) => sqlx::query_as(&sql).fetch_all(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// A key made through the library.
    async fn key(&self, account: &str, cents: Option<f64>) -> (String, i64) {
        let k = self
            .kl
            .create(CreateOptions {
                account_id: account.into(),
                budget_cents: cents,
                ..CreateOptions::default()
            })
            .await
            .expect("create");
        (k.key.clone(), k.id)
    }

    async fn charge(&self, raw: &str, cents: f64) {
        let r = self
            .kl
            .track_usage(raw, Charge::cents(cents))
            .await
            .expect("charge");
        assert!(r.success(), "{r:?}");
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(path) = self.url.strip_prefix("sqlite://") {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
        }
    }
}

/// Runs the binary on `url` and `table` (DATABASE_URL unset, so `--url` is what
/// it uses).
fn cli_at(url: &str, table: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyleash"))
        .args(["--url", url, "--table", table])
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run keyleash")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exit code")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The value of a `label  value` line of a two-column table.
fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(label)
                .filter(|rest| rest.starts_with(' '))
                .map(str::trim)
        })
        .unwrap_or_else(|| panic!("no {label} line in:\n{text}"))
}

// create prints the raw key once (table and JSON), and the key it names is the row
// the database holds, with the options given; show reports the numbers of the
// row, never its hash; list lists the account's rows; revoke sets revoked_at.
async fn keys_lifecycle(kind: Kind) {
    let db = Db::open(kind, true).await;
    let made = db.json(&[
        "create",
        "--account",
        "acme",
        "--scopes",
        "chat,embed",
        "--budget-cents",
        "500",
        "--budget-period",
        "month",
        "--expires-in",
        "30d",
        "--name",
        "ci",
    ]);
    let raw = made["key"].as_str().expect("key").to_string();
    let id = made["id"].as_i64().expect("id");
    let info = db.kl.validate(&raw).await.expect("validate");
    let info = info.info().expect("the printed key is valid");
    assert_eq!(info.id, id);
    assert_eq!(info.scopes, Some(vec!["chat".into(), "embed".into()]));
    assert_eq!(
        db.scalar(&format!(
            "SELECT budget_micros FROM {{keys}} WHERE id = {id}"
        ))
        .await,
        Some(500_000_000)
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT COUNT(*) FROM {{keys}} WHERE id = {id} AND account_id = 'acme' \
             AND name = 'ci' AND budget_period = 'month' AND expires_at IS NOT NULL"
        ))
        .await,
        Some(1)
    );

    // The table form: the key and the id on their own lines.
    let out = db.cli(&["create", "--account", "acme"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let raw2 = field(&text, "key").to_string();
    let id2: i64 = field(&text, "id").parse().expect("id");
    assert_eq!(db.kl.validate(&raw2).await.unwrap().info().unwrap().id, id2);
    assert!(stderr(&out).contains("never shown again"));

    // Spend 1.25, hold 0.5: show reports the row's numbers.
    db.charge(&raw, 1.25).await;
    let held = db.kl.reserve(&raw, Reserve::cents(0.5)).await.unwrap();
    assert!(held.success());
    let shown = db.json(&["show", &id.to_string()]);
    assert_eq!(shown["id"], id);
    assert_eq!(shown["accountId"], "acme");
    assert_eq!(shown["budgetCents"], 500.0);
    assert_eq!(shown["budgetUsedCents"], 1.25);
    assert_eq!(shown["budgetHeldCents"], 0.5);
    assert_eq!(shown["budgetRemainingCents"], 498.25);
    assert_eq!(shown["budgetPeriod"], "month");
    assert_eq!(shown["status"], "active");
    assert!(shown["budgetResetAt"].is_string() && shown["expiresAt"].is_string());
    let used = db
        .scalar(&format!(
            "SELECT budget_used_micros FROM {{keys}} WHERE id = {id}"
        ))
        .await;
    assert_eq!(used, Some(1_250_000));
    let out = db.cli(&["show", &id.to_string()]);
    let text = stdout(&out);
    assert_eq!(field(&text, "remaining"), "498.25");
    assert_eq!(field(&text, "used"), "1.25");
    assert_eq!(field(&text, "status"), "active");
    // No secret in show or list: neither the raw key nor its hash.
    let hash = match &db.raw {
        Raw::Pg(p) => sqlx::query_scalar::<_, String>(
            &db.sql(&format!("SELECT key_hash FROM {{keys}} WHERE id = {id}")),
        )
        .fetch_one(p)
        .await
        .unwrap(),
        Raw::Lite(p) => sqlx::query_scalar::<_, String>(
            &db.sql(&format!("SELECT key_hash FROM {{keys}} WHERE id = {id}")),
        )
        .fetch_one(p)
        .await
        .unwrap(),
    };
    let listed = db.cli(&["list", "--account", "acme", "--json"]);
    for text in [stdout(&out), stdout(&listed), shown.to_string()] {
        assert!(!text.contains(&hash) && !text.contains(&raw), "{text}");
    }

    // list: the account's rows, in id order, as the database has them.
    let ids: Vec<i64> = serde_json::from_slice::<Value>(&listed.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = db
        .pairs("SELECT CAST(id AS BIGINT), CAST(0 AS BIGINT) FROM {keys} WHERE account_id = 'acme' ORDER BY id")
        .await
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(ids, vec![id, id2]);
    let table = stdout(&db.cli(&["list", "--account", "acme"]));
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.starts_with("ID  NAME"), "{table}");

    // revoke: of another account, nothing; then the key; then not again.
    let out = db.cli(&["revoke", &id.to_string(), "--account", "other"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).starts_with("keyleash: not_found: "),
        "{}",
        stderr(&out)
    );
    let live = format!("SELECT COUNT(*) FROM {{keys}} WHERE id = {id} AND revoked_at IS NULL");
    assert_eq!(db.scalar(&live).await, Some(1));
    let out = db.cli(&["revoke", &id.to_string(), "--account", "acme"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("revoked: key {id}\n"));
    assert_eq!(db.scalar(&live).await, Some(0));
    assert_eq!(code(&db.cli(&["revoke", &id.to_string()])), 1);
    assert_eq!(db.json(&["show", &id.to_string()])["status"], "revoked");
    assert_eq!(db.json(&["show", &id2.to_string()])["status"], "active");
    let out = db.cli(&["show", "999999"]);
    assert_eq!(code(&out), 1);
    assert_eq!(stderr(&out), "keyleash: not_found: no key has id 999999\n");
}
both!(keys_lifecycle);

// set-budget writes the account's ceiling row and --remove deletes it; show then
// reports the ceiling as the binding remaining amount.
async fn account_ceiling(kind: Kind) {
    let db = Db::open(kind, true).await;
    let (raw, id) = db.key("acme", Some(500.0)).await;
    db.charge(&raw, 2.0).await;
    let set = db.json(&[
        "set-budget",
        "--account",
        "acme",
        "--cents",
        "10",
        "--period",
        "day",
    ]);
    assert_eq!(set["budgetCents"], 10.0);
    let row =
        "SELECT budget_micros FROM {accounts} WHERE account_id = 'acme' AND budget_period = 'day'";
    assert_eq!(db.scalar(row).await, Some(10_000_000));
    db.charge(&raw, 3.0).await;
    // The ceiling started empty: 10 - 3 left, less than the key's 495.
    assert_eq!(
        db.json(&["show", &id.to_string()])["budgetRemainingCents"],
        7.0
    );
    let out = db.cli(&["set-budget", "--account", "acme", "--remove"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "account acme: ceiling removed\n");
    let count = "SELECT COUNT(*) FROM {accounts} WHERE account_id = 'acme'";
    assert_eq!(db.scalar(count).await, Some(0));
    assert_eq!(
        db.json(&["show", &id.to_string()])["budgetRemainingCents"],
        495.0
    );
    // Exactly one of --cents and --remove.
    for args in [
        &["set-budget", "--account", "acme"][..],
        &[
            "set-budget",
            "--account",
            "acme",
            "--cents",
            "5",
            "--remove",
        ],
        &[
            "set-budget",
            "--account",
            "acme",
            "--remove",
            "--period",
            "day",
        ],
    ] {
        let out = db.cli(args);
        assert_eq!(code(&out), 2, "{args:?}");
        assert!(stderr(&out).starts_with("keyleash: invalid_argument: "));
    }
    let out = db.cli(&["set-budget", "--account", "acme", "--cents", "-1"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).starts_with("keyleash: invalid_argument: budgetCents"),
        "{}",
        stderr(&out)
    );
}
both!(account_ceiling);

/// Three keys with today's charges, and an old ledger row (40 days ago, marked
/// with the idempotency key `old`) big enough to top any window that includes it.
async fn spend(db: &Db) -> [i64; 3] {
    let (a1, k1) = db.key("acme", None).await;
    let (a2, k2) = db.key("acme", None).await;
    let (b1, k3) = db.key("bolt", None).await;
    for _ in 0..3 {
        db.charge(&a1, 1.0).await;
    }
    db.charge(&a2, 5.0).await;
    db.charge(&b1, 0.5).await;
    db.charge(&b1, 0.25).await;
    let old = (Utc::now() - Duration::days(40)).format("%Y-%m-%dT%H:%M:%S%.6fZ");
    db.exec(&format!(
        "INSERT INTO {{ledger}} (key_id, account_id, amount_micros, created_at, idempotency_key, \
         used_after_micros) VALUES ({k3}, 'bolt', 100000000, '{old}', 'old', 0)"
    ))
    .await;
    [k1, k2, k3]
}

// top orders keys and accounts as the SQL sums of their ledger rows do, in the
// window asked for; usage lists a key's rows.
async fn top_and_usage(kind: Kind) {
    let db = Db::open(kind, true).await;
    let [k1, k2, k3] = spend(&db).await;
    let order = |v: &Value, field: &str| -> Value {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s[field].clone())
            .collect()
    };
    let recent = db
        .pairs(
            "SELECT CAST(key_id AS BIGINT), CAST(SUM(amount_micros) AS BIGINT) FROM {ledger} \
             WHERE idempotency_key IS NULL GROUP BY key_id ORDER BY 2 DESC, key_id",
        )
        .await;
    let day = db.json(&["top", "--period", "day"]);
    assert_eq!(
        order(&day, "keyId"),
        recent.iter().map(|p| Value::from(p.0)).collect::<Value>()
    );
    assert_eq!(order(&day, "keyId"), json!([k2, k1, k3]));
    assert_eq!(order(&day, "spentCents"), json!([5.0, 3.0, 0.75]));
    assert_eq!(order(&day, "charges"), json!([1, 3, 2]));
    assert_eq!(day[0]["accountId"], "acme");
    // All time, the old row puts k3 first.
    let all = db
        .pairs(
            "SELECT CAST(key_id AS BIGINT), CAST(SUM(amount_micros) AS BIGINT) FROM {ledger} \
             GROUP BY key_id ORDER BY 2 DESC, key_id",
        )
        .await;
    let top = db.json(&["top", "--period", "all", "--limit", "2"]);
    assert_eq!(
        order(&top, "keyId"),
        all.iter()
            .take(2)
            .map(|p| Value::from(p.0))
            .collect::<Value>()
    );
    assert_eq!(top[0]["keyId"], k3);
    let accounts = db.json(&["top", "--by", "account", "--period", "week"]);
    assert_eq!(order(&accounts, "accountId"), json!(["acme", "bolt"]));
    assert_eq!(order(&accounts, "spentCents"), json!([8.0, 0.75]));
    assert!(accounts[0]["keyId"].is_null());
    let table = stdout(&db.cli(&["top", "--period", "month"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("#  KEY") && lines[0].contains("SPENT"),
        "{table}"
    );
    assert!(
        lines[1].contains("5.00") && lines[1].contains("acme"),
        "{table}"
    );
    assert_eq!(lines.len(), 4, "{table}");
    // A limit out of range is the core's invalid_argument.
    let out = db.cli(&["top", "--limit", "0"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).starts_with("keyleash: invalid_argument: limit"));

    // usage: the key's ledger rows, oldest first.
    let rows = db.json(&["usage", &k3.to_string()]);
    let n = db
        .scalar(&format!(
            "SELECT COUNT(*) FROM {{ledger}} WHERE key_id = {k3}"
        ))
        .await;
    assert_eq!(i64::try_from(rows.as_array().unwrap().len()).ok(), n);
    assert_eq!(rows[2]["amountCents"], 100.0, "in id order: {rows}");
    assert_eq!(rows[2]["idempotencyKey"], "old");
    let from = (Utc::now() - Duration::days(1)).to_rfc3339();
    let rows = db.json(&["usage", &k3.to_string(), "--from", &from]);
    assert_eq!(order(&rows, "amountCents"), json!([0.5, 0.25]));
    let table = stdout(&db.cli(&["usage", &k1.to_string()]));
    assert_eq!(table.lines().count(), 4, "{table}");
}
both!(top_and_usage);

// export writes one record per ledger row of the window, with ids that are the
// same on every run; JSON lines and CSV carry the same rows.
async fn export_window(kind: Kind) {
    let db = Db::open(kind, true).await;
    spend(&db).await;
    let from = (Utc::now() - Duration::hours(1)).to_rfc3339();
    let to = (Utc::now() + Duration::hours(1)).to_rfc3339();
    let run = |extra: &[&str]| {
        let mut args = vec!["export", "--from", &from, "--to", &to];
        args.extend_from_slice(extra);
        let out = db.cli(&args);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        // Not a terminal: no progress line.
        assert_eq!(stderr(&out), "");
        stdout(&out)
    };
    let first = run(&[]);
    let second = run(&["--format", "jsonl"]);
    let records: Vec<Value> = first
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let in_window = db
        .scalar("SELECT COUNT(*) FROM {ledger} WHERE idempotency_key IS NULL")
        .await;
    assert_eq!(i64::try_from(records.len()).ok(), in_window);
    assert_eq!(first, second, "the same window exports the same records");
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let prefix = &ids[0][..20];
    for (r, id) in records.iter().zip(&ids) {
        assert_eq!(*id, format!("{prefix}{}", r["ledgerId"]));
        assert!(prefix.starts_with("kl_") && prefix.ends_with('_'));
        assert!(prefix[3..19].chars().all(|c| c.is_ascii_hexdigit()));
    }
    let ledger_ids = db
        .pairs("SELECT CAST(id AS BIGINT), CAST(key_id AS BIGINT) FROM {ledger} WHERE idempotency_key IS NULL ORDER BY id")
        .await;
    let exported: Vec<(i64, i64)> = records
        .iter()
        .map(|r| {
            (
                r["ledgerId"].as_i64().unwrap(),
                r["keyId"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(exported, ledger_ids);
    assert_eq!(records[0]["amountMicros"], 1_000_000);

    // CSV: a header, then the same rows and ids.
    let csv = run(&["--format", "csv"]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "id,ledgerId,keyId,accountId,amountCents,amountMicros,createdAt,idempotencyKey,holdId"
        )
    );
    let csv_ids: Vec<&str> = lines.map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(csv_ids, ids);

    // Stripe meter events and OpenMeter CloudEvents: one per row, the same ids.
    let stripe: Vec<Value> = run(&["--format", "stripe", "--event-name", "api_spend"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(stripe.len(), records.len());
    for (event, r) in stripe.iter().zip(&records) {
        assert_eq!(event["identifier"], r["id"]);
        assert_eq!(event["event_name"], "api_spend");
        assert_eq!(event["payload"]["value"], r["amountMicros"].to_string());
        assert_eq!(event["payload"]["stripe_customer_id"], r["accountId"]);
        assert!(event["timestamp"].as_i64().unwrap() > 1_700_000_000);
    }
    let cloud: Vec<Value> = run(&["--format", "openmeter"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(cloud.len(), records.len());
    for (event, r) in cloud.iter().zip(&records) {
        assert_eq!(event["id"], r["id"]);
        assert_eq!(
            (&event["specversion"], &event["type"]),
            (&json!("1.0"), &json!("keyleash_spend"))
        );
        assert_eq!(event["subject"], r["accountId"]);
        assert_eq!(event["time"], r["createdAt"]);
        assert_eq!(event["data"]["amountMicros"], r["amountMicros"]);
    }
    let out = db.cli(&[
        "export",
        "--from",
        &from,
        "--to",
        &to,
        "--format",
        "stripe",
        "--event-name",
        "",
    ]);
    assert_eq!(code(&out), 2);

    // --out writes the file; another namespace, other ids.
    let path = std::env::temp_dir().join(format!("{}.jsonl", unique("export")));
    let path_text = path.display().to_string();
    assert_eq!(run(&["--out", &path_text]), "");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    let _ = std::fs::remove_file(&path);
    let other = run(&["--namespace", "eu-1"]);
    assert_ne!(other.lines().next(), first.lines().next());
    assert_eq!(other.lines().count(), first.lines().count());

    // The progress bar, forced on (stderr is not a terminal here): it counts to
    // the number of rows in the window, and the records on stdout are unchanged.
    let out = db.cli(&[
        "export",
        "--from",
        &from,
        "--to",
        &to,
        "--progress",
        "always",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), first);
    let n = in_window.expect("a count");
    let bar = stderr(&out);
    assert!(
        bar.starts_with("\r[------------------------------]   0%  0 of "),
        "{bar:?}"
    );
    let last = bar
        .trim_end()
        .rsplit('\r')
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        last,
        format!("[##############################] 100%  {n} of {n} records"),
        "{bar:?}"
    );

    // An empty or backwards window.
    let out = db.cli(&["export", "--from", &to, "--to", &from]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).starts_with("keyleash: invalid_argument: "));
    let out = db.cli(&["export", "--from", "yesterday", "--to", &to]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).starts_with("keyleash: invalid_argument: --from must be an ISO 8601"));
}
both!(export_window);

// watch renders the spend table (one refresh with the hidden --count).
async fn watch_once(kind: Kind) {
    let db = Db::open(kind, true).await;
    let [_, k2, _] = spend(&db).await;
    let out = db.cli(&["watch", "--count", "1", "--interval", "1s"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("keyleash watch: spend in the last day"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("1  "))
        .expect("a first row");
    assert!(
        row.contains(&k2.to_string()) && row.contains("5.00"),
        "{text}"
    );
    let out = db.cli(&["watch", "--count", "2", "--interval", "1s", "--json"]);
    assert_eq!(stdout(&out).lines().count(), 2);

    // Ctrl-C (SIGINT) ends an endless watch with status 0, after what it drew.
    let child = Command::new(env!("CARGO_BIN_EXE_keyleash"))
        .args([
            "--url",
            &db.url,
            "--table",
            &db.table,
            "watch",
            "--interval",
            "1s",
        ])
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run keyleash watch");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(killed.success());
    let out = child.wait_with_output().expect("watch ends");
    assert_eq!(out.status.code(), Some(0), "{:?}", out.status);
    assert!(stdout(&out).contains("keyleash watch: spend in the last day"));

    let out = db.cli(&["watch", "--interval", "0s", "--count", "1"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).starts_with("keyleash: invalid_duration: "));
}
both!(watch_once);

// Errors: one line, the core's code, status 2 for arguments and 1 otherwise.
async fn errors(kind: Kind) {
    let db = Db::open(kind, false).await;
    let out = db.cli(&["list", "--account", "acme"]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(err.starts_with("keyleash: not_migrated: "), "{err}");
    assert_eq!(err.lines().count(), 1);
    assert_eq!(code(&db.cli(&["migrate"])), 0);
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "create",
                "--account",
                "a",
                "--budget-cents",
                "5",
                "--budget-period",
                "weekly",
            ],
            "invalid_argument",
        ),
        (
            &["create", "--account", "a", "--expires-in", "7days"],
            "invalid_duration",
        ),
        (
            &["create", "--account", "a", "--scopes", "bad scope"],
            "invalid_scope",
        ),
        (&["create"], "invalid_argument"),
        (&["frobnicate"], "invalid_argument"),
    ];
    for (args, code_name) in cases {
        let out = db.cli(args);
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{args:?}: {err}");
        assert!(
            err.starts_with(&format!("keyleash: {code_name}: ")),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(stdout(&out), "");
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM {keys}").await, Some(0));
}
both!(errors);

// The database URL's password is never printed: not by --help (which names
// DATABASE_URL and the default), not when the server cannot be reached.
#[test]
fn no_password_in_output() {
    let url = "postgres://admin:s3cr3t-pw@127.0.0.1:9/db";
    let help = Command::new(env!("CARGO_BIN_EXE_keyleash"))
        .arg("--help")
        .env("DATABASE_URL", url)
        .output()
        .unwrap();
    assert_eq!(code(&help), 0);
    let text = stdout(&help);
    assert!(
        text.contains("DATABASE_URL") && text.contains("sqlite://keyleash.db"),
        "{text}"
    );
    assert!(!text.contains("s3cr3t"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_keyleash"))
        .args(["list", "--account", "a"])
        .env("DATABASE_URL", url)
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(err.starts_with("keyleash: unavailable: "), "{err}");
    assert!(
        err.contains("127.0.0.1:9") && !err.contains("s3cr3t"),
        "{err}"
    );
    assert!(!stdout(&out).contains("s3cr3t"));
}

/// A minimal RFC 4180 reader: the rows of `text`, fields unquoted.
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

// CSV export neutralises formula cells (OWASP): a text cell starting with = + - @
// tab or CR gets a leading ' (quoted as CSV requires); numbers stay numbers, and
// JSON lines keep the exact text.
async fn csv_formulas(kind: Kind) {
    let db = Db::open(kind, true).await;
    let cases = [
        ("=1+1", "=HYPERLINK(\"http://x\",\"y\")"),
        ("+cmd|' /C calc'!A0", "+1"),
        ("-2+3", "-5"),
        ("@SUM(A1:A2)", "@x"),
        ("\tTAB", "\ttab"),
        ("\rCR", "\rcr"),
        ("plain", "ok,fine"),
    ];
    let mut keys = Vec::new();
    for (account, idem) in cases {
        let (raw, id) = db.key(account, None).await;
        let r = db
            .kl
            .track_usage(&raw, Charge::cents(1.5).idempotent(idem))
            .await
            .expect("charge");
        assert!(r.success(), "{r:?}");
        keys.push(id);
    }
    // A negative ledger amount (as a settle below its hold writes) stays a number.
    let now = Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
    db.exec(&format!(
        "INSERT INTO {{ledger}} (key_id, account_id, amount_micros, created_at, idempotency_key, \
         used_after_micros) VALUES ({}, '-neg', -500000, '{now}', NULL, 0)",
        keys[0]
    ))
    .await;
    let from = (Utc::now() - Duration::hours(1)).to_rfc3339();
    let to = (Utc::now() + Duration::hours(1)).to_rfc3339();
    let out = db.cli(&["export", "--from", &from, "--to", &to, "--format", "csv"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let rows = csv_rows(&text);
    assert_eq!(rows.len(), cases.len() + 2, "{text:?}");
    assert_eq!(rows[0][3], "accountId");
    for (row, (account, idem)) in rows[1..].iter().zip(cases) {
        assert_eq!(row.len(), 9, "{row:?}");
        let safe = |s: &str| {
            if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                format!("'{s}")
            } else {
                s.to_string()
            }
        };
        assert_eq!(row[3], safe(account), "{text:?}");
        assert_eq!(row[7], safe(idem), "{text:?}");
        assert_eq!(row[4], "1.5");
    }
    let last = &rows[cases.len() + 1];
    assert_eq!((last[3].as_str(), last[4].as_str()), ("'-neg", "-0.5"));
    assert_eq!(last[5], "-500000");
    // No cell a spreadsheet would run: every field starts with a safe character.
    for row in &rows {
        for cell in row {
            assert!(
                !cell.starts_with(['=', '+', '@', '\t', '\r'])
                    && (!cell.starts_with('-') || cell.parse::<f64>().is_ok()),
                "{cell:?} in {text:?}"
            );
        }
    }
    // JSON lines carry the exact values.
    let out = db.cli(&["export", "--from", &from, "--to", &to]);
    let records: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    for (r, (account, idem)) in records.iter().zip(cases) {
        assert_eq!(
            (r["accountId"].as_str(), r["idempotencyKey"].as_str()),
            (Some(account), Some(idem))
        );
    }
}
both!(csv_formulas);

/// No character a terminal would act on: only the table's own line breaks.
fn assert_inert(text: &str) {
    for c in text.chars() {
        let bidi = matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        assert!(
            c == '\n' || !(c.is_control() || bidi),
            "{:?} in {text:?}",
            c
        );
    }
}

// Tables escape the control characters (and bidi overrides) of stored names and
// idempotency keys: no escape sequence reaches the terminal and no row is forged;
// --json keeps the exact text.
async fn control_chars(kind: Kind) {
    let db = Db::open(kind, true).await;
    let evil = "\x1b]0;PWNED\x07\x1b[2J";
    let forged = "bot\n999  forged  ak_forged";
    let mut raws = Vec::new();
    for name in [evil, forged] {
        let k = db
            .kl
            .create(CreateOptions {
                account_id: "ops".into(),
                name: Some(name.into()),
                ..CreateOptions::default()
            })
            .await
            .expect("create");
        raws.push((k.key.clone(), k.id));
    }
    let idem = "req\n1  2026-01-01T00:00:00.000Z  0.01  forged\x1b[2J\u{202e}cba";
    let r = db
        .kl
        .track_usage(&raws[0].0, Charge::cents(2.0).idempotent(idem))
        .await
        .expect("charge");
    assert!(r.success(), "{r:?}");
    db.charge(&raws[1].0, 1.0).await;

    let run = |args: &[&str]| {
        let out = db.cli(args);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        let text = stdout(&out);
        assert_inert(&text);
        text
    };
    let list = run(&["list", "--account", "ops"]);
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(list.contains("\\x1b]0;PWNED\\x07\\x1b[2J"), "{list}");
    assert!(list.contains("bot\\n999  forged  ak_forged"), "{list}");
    let show = run(&["show", &raws[0].1.to_string()]);
    assert_eq!(show.lines().count(), 16, "{show}");
    assert_eq!(field(&show, "name"), "\\x1b]0;PWNED\\x07\\x1b[2J");
    let top = run(&["top"]);
    assert_eq!(top.lines().count(), 3, "{top}");
    let watch = run(&["watch", "--count", "1", "--interval", "1s"]);
    assert_eq!(watch.lines().count(), 5, "{watch}");
    let usage = run(&["usage", &raws[0].1.to_string()]);
    assert_eq!(usage.lines().count(), 2, "{usage}");
    assert!(
        usage.contains("req\\n1  2026-01-01T00:00:00.000Z  0.01  forged\\x1b[2J\\u{202e}cba"),
        "{usage}"
    );
    // JSON stays exact.
    let listed = db.json(&["list", "--account", "ops"]);
    assert_eq!(listed[0]["name"], evil);
    assert_eq!(listed[1]["name"], forged);
    let rows = db.json(&["usage", &raws[0].1.to_string()]);
    assert_eq!(rows[0]["idempotencyKey"], idem);
}
both!(control_chars);

// A database URL given in the wrong place is not echoed with its password in the
// argument error: status 2, one line, the password nowhere in stdout or stderr.
#[test]
fn no_password_in_argument_errors() {
    let dir = std::env::temp_dir().join(unique("kl_cli_args"));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = format!("sqlite://{}", dir.join("k.db").display());
    for url in [
        "postgres://u:SECRET@host/db",
        "postgresql://operator:SECRET-with-a-long-tail-past-forty-chars@db.internal:5432/app",
        "postgres://u:SE%2FCR@ET@host/db?sslmode=require",
        "postgres://host/db?user=u&password=SECRET",
    ] {
        let cases: Vec<Vec<&str>> = vec![
            vec![url, "list", "--account", "a"],
            vec!["show", url],
            vec!["create", "--account", "a", "--budget-cents", url],
            vec!["--table", url, "list", "--account", "a"],
            vec!["usage", "1", "--from", url],
            vec!["export", "--from", url, "--to", "2026-01-01T00:00:00Z"],
            vec!["list", "--account", "a", url],
        ];
        for args in cases {
            let out = Command::new(env!("CARGO_BIN_EXE_keyleash"))
                .args(["--url", &sqlite])
                .args(&args)
                .env_remove("DATABASE_URL")
                .current_dir(&dir)
                .output()
                .unwrap();
            let (o, e) = (stdout(&out), stderr(&out));
            assert_eq!(code(&out), 2, "{args:?}: {e}");
            assert!(
                e.starts_with("keyleash: invalid_argument: "),
                "{args:?}: {e}"
            );
            assert_eq!(e.lines().count(), 1, "{e}");
            for part in ["SECRET", "CR@ET"] {
                assert!(!e.contains(part) && !o.contains(part), "{args:?}: {e}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// Under a pseudo-terminal (stdout and stderr both the terminal), export's progress
// bar never shares a line with the records: the screen shows the header, the
// records, then the finished bar on its own line.
async fn export_on_a_terminal(kind: Kind) {
    let db = Db::open(kind, true).await;
    db.key("acme", None).await;
    let (raw, _) = db.key("acme", None).await;
    db.charge(&raw, 1.0).await;
    db.charge(&raw, 2.0).await;
    let from = (Utc::now() - Duration::hours(1)).to_rfc3339();
    let to = (Utc::now() + Duration::hours(1)).to_rfc3339();
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let command = [
        env!("CARGO_BIN_EXE_keyleash"),
        "--url",
        &db.url,
        "--table",
        &db.table,
        "export",
        "--from",
        &from,
        "--to",
        &to,
        "--format",
        "csv",
    ]
    .map(quote)
    .join(" ");
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    // What the terminal shows: a carriage return starts the line over, ESC [ K
    // erases it.
    let screen: Vec<String> = text
        .split('\n')
        .map(|l| {
            let l = l.strip_suffix('\r').unwrap_or(l);
            let l = l.rsplit('\r').next().unwrap_or_default();
            l.rsplit("\x1b[K").next().unwrap_or_default().to_string()
        })
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(screen.len(), 4, "{text:?}");
    assert_eq!(
        screen[0],
        "id,ledgerId,keyId,accountId,amountCents,amountMicros,createdAt,idempotencyKey,holdId",
        "{text:?}"
    );
    assert!(
        screen[1].starts_with("kl_") && screen[1].contains(",1,"),
        "{text:?}"
    );
    assert!(
        screen[2].starts_with("kl_") && screen[2].contains(",2,"),
        "{text:?}"
    );
    assert_eq!(
        screen[3], "[##############################] 100%  2 of 2 records",
        "{text:?}"
    );
    assert!(text.ends_with("records\r\n"), "{text:?}");
}
both!(export_on_a_terminal);
