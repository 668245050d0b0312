//! Adopting a keys table made by agentkey: existing keys keep validating with their
//! budget and usage, agentkey's columns keep their meaning, SQL edits are honoured,
//! and migrate() drops nothing.

mod common;

use common::{budget, info_of, opts, t, Db, Kind, Raw};
use keyleash::{Charge, ChargeRefusal, Clock, InvalidReason, KeyLeash, Options};

/// agentkey's table, exactly as its README creates it plus its migrationSQL().
const AGENTKEY_PG: &str = "
CREATE TABLE {t} (id SERIAL PRIMARY KEY, account_id TEXT, key_hash TEXT NOT NULL UNIQUE,
  key_prefix TEXT NOT NULL, name TEXT NOT NULL DEFAULT 'default', created_at TIMESTAMPTZ DEFAULT NOW(),
  last_used_at TIMESTAMPTZ, revoked_at TIMESTAMPTZ);
ALTER TABLE {t} ADD COLUMN IF NOT EXISTS user_id TEXT;
ALTER TABLE {t} ADD COLUMN IF NOT EXISTS scopes TEXT[];
ALTER TABLE {t} ADD COLUMN IF NOT EXISTS budget_cents INTEGER;
ALTER TABLE {t} ADD COLUMN IF NOT EXISTS budget_used_cents INTEGER DEFAULT 0;
ALTER TABLE {t} ADD COLUMN IF NOT EXISTS budget_period TEXT;
ALTER TABLE {t} ADD COLUMN IF NOT EXISTS budget_reset_at TIMESTAMPTZ;
ALTER TABLE {t} ADD COLUMN IF NOT EXISTS expires_at TIMESTAMPTZ;
ALTER TABLE {t} ADD COLUMN IF NOT EXISTS delegated_by TEXT;
ALTER TABLE {t} ADD COLUMN IF NOT EXISTS external_subject TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS {t}_external_subject_key ON {t} (external_subject) WHERE external_subject IS NOT NULL;
ALTER TABLE {t} ADD COLUMN app_column TEXT DEFAULT 'mine';
";

/// The same shape in SQLite types (agentkey itself is Postgres-only).
const AGENTKEY_SQLITE: &str = "
CREATE TABLE {t} (id INTEGER PRIMARY KEY AUTOINCREMENT, account_id TEXT, key_hash TEXT NOT NULL UNIQUE,
  key_prefix TEXT NOT NULL, name TEXT NOT NULL DEFAULT 'default', created_at TEXT,
  last_used_at TEXT, revoked_at TEXT, user_id TEXT, scopes TEXT, budget_cents INTEGER,
  budget_used_cents INTEGER DEFAULT 0, budget_period TEXT, budget_reset_at TEXT, expires_at TEXT,
  delegated_by TEXT, external_subject TEXT, app_column TEXT DEFAULT 'mine');
";

// Pins adoption of an agentkey table with a live key, then the agentkey columns' meaning and SQL edits.
async fn adopts_agentkey_table(kind: Kind) {
    let url = common::url(kind);
    let table = format!(
        "ak_{}_{}",
        std::process::id(),
        if kind == Kind::Sqlite { "l" } else { "p" }
    );
    let db = Raw::connect(kind, &url).await;
    let ddl = if kind == Kind::Postgres {
        AGENTKEY_PG
    } else {
        AGENTKEY_SQLITE
    };
    db.exec(&format!("DROP TABLE IF EXISTS {table}")).await;
    db.exec(&ddl.replace("{t}", &table)).await;
    // A key minted by agentkey: ak_ + 48 hex, SHA-256 hex in key_hash, 120 of 500 cents used this month.
    let raw = format!("ak_{}", "0123456789abcdef0123456789abcdef0123456789abcdef");
    let (reset, now) = if kind == Kind::Postgres {
        ("'2026-02-01T00:00:00Z'", "'2026-01-01T00:00:00Z'")
    } else {
        (
            "'2026-02-01T00:00:00.000000Z'",
            "'2026-01-01T00:00:00.000000Z'",
        )
    };
    let scopes = if kind == Kind::Postgres {
        "ARRAY['proxy.chat']"
    } else {
        "'[\"proxy.chat\"]'"
    };
    db.exec(&format!(
        "INSERT INTO {table} (account_id, key_hash, key_prefix, name, created_at, scopes, budget_cents, \
         budget_used_cents, budget_period, budget_reset_at, delegated_by) VALUES ('acct_1', '{}', 'ak_01234567', \
         'legacy', {now}, {scopes}, 500, 120, 'month', {reset}, 'user_1')",
        keyleash::key::hash(&raw)
    ))
    .await;

    let options = Options {
        table_name: table.clone(),
        clock: Clock::manual(t("2026-01-20T00:00:00Z")),
        ..Options::default()
    };
    let kl = KeyLeash::connect(&url, options).await.unwrap();
    kl.migrate().await.unwrap();
    kl.migrate().await.unwrap();

    let v = kl.validate(&raw).await.unwrap();
    let info = v.info().expect("the agentkey key still validates");
    assert_eq!(
        (
            info.budget_cents,
            info.budget_used_cents,
            info.budget_remaining_cents
        ),
        (Some(500.0), 120.0, Some(380.0))
    );
    assert_eq!(info.budget_reset_at, Some(t("2026-02-01T00:00:00Z")));
    assert_eq!(
        (info.account_id.as_str(), info.name.as_str()),
        ("acct_1", "legacy")
    );
    assert!(v.has_scope("proxy.chat") && !v.has_scope("admin"));

    // A sub-cent charge: agentkey's columns show whole cents (usage rounded up).
    assert!(kl
        .track_usage(&raw, Charge::cents(0.5))
        .await
        .unwrap()
        .success());
    let cols = format!("SELECT CAST(budget_used_cents AS BIGINT) FROM {table}");
    assert_eq!(db.scalar(&cols).await, Some(121));
    assert_eq!(info_of(&kl, &raw).await.budget_used_cents, 120.5);

    // SQL edits of agentkey's columns are honoured by the next call.
    db.exec(&format!("UPDATE {table} SET budget_used_cents = 0"))
        .await;
    assert_eq!(info_of(&kl, &raw).await.budget_used_cents, 0.0);
    db.exec(&format!("UPDATE {table} SET budget_cents = 10"))
        .await;
    assert_eq!(
        kl.track_usage(&raw, Charge::cents(11.0))
            .await
            .unwrap()
            .reason(),
        Some(ChargeRefusal::BudgetExceeded)
    );
    assert!(kl
        .track_usage(&raw, Charge::cents(10.0))
        .await
        .unwrap()
        .success());
    assert_eq!(db.scalar(&cols).await, Some(10));
    assert_eq!(
        kl.validate(&raw).await.unwrap().reason(),
        Some(InvalidReason::BudgetExceeded)
    );
    db.exec(&format!("UPDATE {table} SET budget_cents = NULL"))
        .await;
    assert!(info_of(&kl, &raw).await.budget_cents.is_none());
    db.exec(&format!("UPDATE {table} SET revoked_at = {now}"))
        .await;
    assert_eq!(
        kl.validate(&raw).await.unwrap().reason(),
        Some(InvalidReason::Revoked)
    );
    db.exec(&format!(
        "UPDATE {table} SET revoked_at = NULL, expires_at = {now}"
    ))
    .await;
    assert_eq!(
        kl.validate(&raw).await.unwrap().reason(),
        Some(InvalidReason::Expired)
    );
    db.exec(&format!("UPDATE {table} SET expires_at = NULL"))
        .await;

    // The month rolls on agentkey's reset time (Feb 1), keeping that day.
    kl.clock()
        .as_manual()
        .unwrap()
        .set(t("2026-02-01T00:00:00Z"));
    let info = info_of(&kl, &raw).await;
    assert_eq!(
        (info.budget_used_cents, info.budget_reset_at),
        (0.0, Some(t("2026-03-01T00:00:00Z")))
    );
    assert_eq!(db.scalar(&cols).await, Some(0));

    // Nothing of the user's was dropped, and new keys work beside the old one.
    let kept = db
        .scalar(&format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM {table} WHERE app_column = 'mine'"
        ))
        .await;
    assert_eq!(kept, Some(1));
    let fresh = kl.create(opts("acct_1")).await.unwrap();
    assert!(kl.validate(&fresh.key).await.unwrap().is_valid());
    assert_eq!(kl.list("acct_1").await.unwrap().len(), 2);
}
both!(adopts_agentkey_table);

// Pins that a reset time edited by hand off the anchor's schedule re-anchors the
// month on the edited day (agentkey's test sets it to the 31st), and that a reset
// time on the schedule keeps the creation day.
async fn hand_edited_reset_re_anchors(kind: Kind) {
    let db = Db::open(kind).await; // created 2026-01-15T12:00:00Z
    let moved = db
        .kl
        .create(budget("a", 100.0, Some("month")))
        .await
        .unwrap();
    let kept = db
        .kl
        .create(budget("a", 100.0, Some("month")))
        .await
        .unwrap();
    db.exec(&format!(
        "UPDATE {{keys}} SET budget_reset_at = '2026-01-31T12:00:00.000000Z' WHERE id = {}",
        moved.id
    ))
    .await;
    db.exec(&format!(
        "UPDATE {{keys}} SET budget_reset_at = '2026-02-15T12:00:00.000000Z', \
         budget_used_cents = 7, budget_used_micros = 7000000 WHERE id = {}",
        kept.id
    ))
    .await;
    db.clock().set(t("2026-02-20T00:00:00Z"));
    let info = db.info(&moved.key).await;
    assert_eq!(info.budget_reset_at, Some(t("2026-02-28T12:00:00Z")));
    db.clock().set(t("2026-03-01T00:00:00Z"));
    assert_eq!(
        db.info(&moved.key).await.budget_reset_at,
        Some(t("2026-03-31T12:00:00Z"))
    );
    let info = db.info(&kept.key).await;
    assert_eq!(
        (info.budget_used_cents, info.budget_reset_at),
        (0.0, Some(t("2026-03-15T12:00:00Z")))
    );
}
both!(hand_edited_reset_re_anchors);

// Pins that migrate() is idempotent and safe when several instances run it at once.
async fn concurrent_migrations(kind: Kind) {
    let url = common::url(kind);
    let table = format!(
        "mig_{}_{}",
        std::process::id(),
        if kind == Kind::Sqlite { "l" } else { "p" }
    );
    let mut all = Vec::new();
    for _ in 0..4 {
        let options = Options {
            table_name: table.clone(),
            ..Options::default()
        };
        all.push(KeyLeash::connect(&url, options).await.unwrap());
    }
    let runs = all.iter().map(KeyLeash::migrate);
    for r in futures::future::join_all(runs).await {
        r.unwrap();
    }
    let k = all[0].create(opts("a")).await.unwrap();
    all[1].migrate().await.unwrap();
    assert!(all[3].validate(&k.key).await.unwrap().is_valid());
}
both!(concurrent_migrations);
