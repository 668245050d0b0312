//! Bad input gets a clear, typed error (or an `invalid` result) and changes nothing.

mod common;

use common::{opts, Db, Kind};
use keyleash::{Charge, ChargeRefusal, CreateOptions, InvalidReason, KeyLeash, Options};

async fn key_count(db: &Db) -> Option<i64> {
    db.scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM {keys}")
        .await
}

// Pins that a table name that is not a plain identifier is refused before any SQL runs.
async fn table_names(kind: Kind) {
    let url = common::url(kind);
    for bad in [
        "keys; DROP TABLE x",
        "k'eys",
        "\"keys\"",
        "1keys",
        "",
        "a.b.c",
        "keys--",
        "ké",
    ] {
        let options = Options {
            table_name: bad.into(),
            ..Options::default()
        };
        let err = KeyLeash::connect(&url, options).await.err().expect(bad);
        assert_eq!(err.code(), "invalid_argument", "{bad:?}");
        assert!(err.to_string().contains("tableName"), "{err}");
    }
    // A reserved word and mixed case are fine: the name is folded and quoted.
    for good in ["select", "MyKeys_x1"] {
        let options = Options {
            table_name: format!("{good}_{}", std::process::id()),
            ..Options::default()
        };
        let kl = KeyLeash::connect(&url, options).await.unwrap();
        kl.migrate().await.unwrap();
        let k = kl.create(opts("a")).await.unwrap();
        assert!(kl.validate(&k.key).await.unwrap().is_valid());
    }
}
both!(table_names);

// Pins typed errors for durations, periods, budgets, scopes and expiry, with nothing inserted.
async fn create_errors(kind: Kind) {
    let db = Db::with(
        kind,
        Options {
            valid_scopes: Some(vec!["read".into()]),
            ..Options::default()
        },
    )
    .await;
    let cases: Vec<(CreateOptions, &str)> = vec![
        (
            CreateOptions {
                expires_in: Some("7x".into()),
                ..opts("a")
            },
            "invalid_duration",
        ),
        (
            CreateOptions {
                expires_in: Some("-5m".into()),
                ..opts("a")
            },
            "invalid_duration",
        ),
        (
            CreateOptions {
                expires_in: Some("7 d".into()),
                ..opts("a")
            },
            "invalid_duration",
        ),
        (
            CreateOptions {
                expires_in: Some("99999999999d".into()),
                ..opts("a")
            },
            "invalid_duration",
        ),
        (
            CreateOptions {
                budget_period: Some("monthly".into()),
                ..opts("a")
            },
            "invalid_period",
        ),
        (
            CreateOptions {
                budget_period: Some("".into()),
                ..opts("a")
            },
            "invalid_period",
        ),
        (
            CreateOptions {
                budget_period: Some("Month".into()),
                ..opts("a")
            },
            "invalid_period",
        ),
        (
            CreateOptions {
                scopes: Some(vec!["write".into()]),
                ..opts("a")
            },
            "invalid_scope",
        ),
        (
            CreateOptions {
                scopes: Some(vec!["read".into(), "".into()]),
                ..opts("a")
            },
            "invalid_scope",
        ),
        (
            CreateOptions {
                budget_cents: Some(f64::NAN),
                ..opts("a")
            },
            "invalid_argument",
        ),
        (
            CreateOptions {
                budget_cents: Some(-1.0),
                ..opts("a")
            },
            "invalid_argument",
        ),
        (
            CreateOptions {
                budget_cents: Some(f64::INFINITY),
                ..opts("a")
            },
            "invalid_argument",
        ),
        (
            CreateOptions {
                budget_cents: Some(1e15),
                ..opts("a")
            },
            "invalid_argument",
        ),
        (
            CreateOptions {
                expires_at: Some(common::t("2020-01-01T00:00:00Z")),
                ..opts("a")
            },
            "invalid_argument",
        ),
        (
            CreateOptions {
                expires_in: Some("1d".into()),
                expires_at: Some(common::t("2030-01-01T00:00:00Z")),
                ..opts("a")
            },
            "invalid_argument",
        ),
        (opts(""), "invalid_argument"),
        (opts(&"a".repeat(513)), "invalid_argument"),
        (opts("a\0b"), "invalid_argument"),
        (
            CreateOptions {
                name: Some("n".repeat(10_000)),
                ..opts("a")
            },
            "invalid_argument",
        ),
        (
            CreateOptions {
                user_id: Some("u\0".into()),
                ..opts("a")
            },
            "invalid_argument",
        ),
        (
            CreateOptions {
                delegated_by: Some("d".repeat(300)),
                ..opts("a")
            },
            "invalid_argument",
        ),
        (
            CreateOptions {
                metadata: Some(serde_json::json!("x".repeat(20_000))),
                ..opts("a")
            },
            "invalid_argument",
        ),
        (
            CreateOptions {
                metadata: Some(serde_json::json!({"k": "a\u{0}b"})),
                ..opts("a")
            },
            "invalid_argument",
        ),
    ];
    for (o, code) in cases {
        let shown = format!("{o:?}");
        let err = db.kl.create(o).await.expect_err(&shown);
        assert_eq!(err.code(), code, "{shown}: {err}");
        assert!(err.to_string().len() < 300, "message stays short: {err}");
    }
    // A zero duration is not a mistake: agentkey's users make expired keys with it.
    let expired = db
        .kl
        .create(CreateOptions {
            expires_in: Some("0h".into()),
            ..opts("a")
        })
        .await
        .unwrap();
    assert_eq!(
        db.kl.validate(&expired.key).await.unwrap().reason(),
        Some(keyleash::InvalidReason::Expired)
    );
    let err = db
        .kl
        .ensure_subject(&"s".repeat(513), CreateOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_argument");
    let err = db
        .kl
        .ensure_subject(
            "s",
            CreateOptions {
                budget_period: Some("year".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_period");
    assert_eq!(
        key_count(&db).await,
        Some(1),
        "no bad create inserted a row (the one row is the expired key)"
    );
}
both!(create_errors);

// Pins that empty, huge, non-ASCII and control-character raw keys are `invalid`, never an error.
async fn bad_raw_keys(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db
        .kl
        .create(CreateOptions {
            budget_cents: Some(10.0),
            ..opts("a")
        })
        .await
        .unwrap();
    let huge = format!("ak_{}", "x".repeat(1 << 20));
    let mut bad: Vec<String> = vec![
        String::new(),
        huge,
        "ak_\u{0}".into(),
        format!("{}\u{0}", k.key),
        format!("{}\u{FFFD}", &k.key[..k.key.len() - 1]),
        "ak_😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀".into(),
        format!(" {}", k.key),
        format!("{}\n", k.key),
        k.key.to_uppercase(),
        "ak_' OR '1'='1".into(),
        format!("ak_{}", "ffffffffffffffffffffffffffffffffffffffffffffffff"),
    ];
    bad.push(k.key[..k.key.len() - 1].to_string() + "\u{301}");
    for raw in &bad {
        let v = db.kl.validate(raw).await.unwrap();
        assert_eq!(
            v.reason(),
            Some(InvalidReason::Invalid),
            "{:?}",
            raw.chars().take(50).collect::<String>()
        );
        let c = db.charge(raw, 1.0).await;
        assert_eq!(c.reason(), Some(ChargeRefusal::InvalidKey));
    }
    assert_eq!(db.used_micros(k.id).await, 0);
    assert!(db.kl.validate(&k.key).await.unwrap().is_valid());
}
both!(bad_raw_keys);

// Pins that a bad checksum is answered without the database: it stays `invalid` with the pool closed.
async fn checksum_needs_no_database(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(opts("a")).await.unwrap();
    let last = k.key.chars().last().unwrap();
    let typo = format!(
        "{}{}",
        &k.key[..k.key.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    db.kl.close().await;
    assert_eq!(db.reason(&typo).await, Some(InvalidReason::Invalid));
    assert_eq!(
        db.charge(&typo, 1.0).await.reason(),
        Some(ChargeRefusal::InvalidKey)
    );
    // A well-formed key does need the database, which is now closed: `unavailable`.
    assert_eq!(
        db.kl.validate(&k.key).await.unwrap_err().code(),
        "unavailable"
    );
}
both!(checksum_needs_no_database);

// Pins that SQL metacharacters in every string field are stored and returned verbatim.
async fn sql_metacharacters(kind: Kind) {
    let db = Db::open(kind).await;
    let nasty = "x'); DROP TABLE {keys}; -- \"\\ %_ $1 ?1 ::text 😀";
    let nasty = nasty.replace("{keys}", &db.table);
    let k = db
        .kl
        .create(CreateOptions {
            account_id: nasty.clone(),
            user_id: Some(nasty.clone()),
            name: Some(nasty.clone()),
            delegated_by: Some(nasty.clone()),
            scopes: Some(vec!["a'b".into(), "c\"d;--".into()]),
            metadata: Some(serde_json::json!({ "q": nasty.clone() })),
            ..Default::default()
        })
        .await
        .unwrap();
    let info = db.info(&k.key).await;
    assert_eq!(
        (info.account_id.as_str(), info.name.as_str()),
        (nasty.as_str(), nasty.as_str())
    );
    assert_eq!(info.user_id.as_deref(), Some(nasty.as_str()));
    assert_eq!(info.delegated_by.as_deref(), Some(nasty.as_str()));
    assert!(info.has_scope("c\"d;--"));
    let listed = db.kl.list(&nasty).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].metadata,
        Some(serde_json::json!({ "q": nasty.clone() }))
    );
    db.kl
        .ensure_subject(&nasty, CreateOptions::default())
        .await
        .unwrap();
    assert!(db.kl.validate_by_subject(&nasty).await.unwrap().is_valid());
    let idem = "'; DELETE FROM x; --";
    assert!(db
        .kl
        .track_usage(&k.key, Charge::cents(1.0).idempotent(idem))
        .await
        .unwrap()
        .success());
    assert!(db.kl.revoke(k.id, Some(&nasty)).await.unwrap());
    assert_eq!(key_count(&db).await, Some(2));
}
both!(sql_metacharacters);

// Pins idempotency-key and revoke/list argument checks.
async fn other_argument_errors(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db
        .kl
        .create(CreateOptions {
            budget_cents: Some(10.0),
            ..opts("a")
        })
        .await
        .unwrap();
    for bad in [String::new(), "i".repeat(257), "a\0".into()] {
        let err = db
            .kl
            .track_usage(&k.key, Charge::cents(1.0).idempotent(bad))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_argument");
    }
    assert_eq!(
        db.kl.revoke(k.id, Some("")).await.unwrap_err().code(),
        "invalid_argument"
    );
    assert_eq!(
        db.kl.list(&"a".repeat(1000)).await.unwrap_err().code(),
        "invalid_argument"
    );
    assert_eq!(db.used_micros(k.id).await, 0);
}
both!(other_argument_errors);

// Pins connect's argument errors, which never echo the URL (it may hold a password).
#[tokio::test]
async fn connect_errors() {
    for url in ["mysql://u:hunter2@h/db", "", "hunter2"] {
        let err = KeyLeash::connect(url, Options::default())
            .await
            .err()
            .unwrap();
        assert_eq!(err.code(), "invalid_argument");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
    let err = KeyLeash::connect("postgres://u:hunter2@[bad", Options::default())
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), "invalid_argument");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    for prefix in ["", "a b", "x".repeat(17).as_str(), "ak'"] {
        let options = Options {
            key_prefix: prefix.into(),
            ..Options::default()
        };
        let err = KeyLeash::connect("sqlite::memory:", options)
            .await
            .err()
            .unwrap();
        assert_eq!(err.code(), "invalid_argument", "{prefix:?}");
    }
    let options = Options {
        table_name: "s.t".into(),
        ..Options::default()
    };
    assert_eq!(
        KeyLeash::connect("sqlite::memory:", options)
            .await
            .err()
            .unwrap()
            .code(),
        "invalid_argument"
    );
}

// Pins that an unreachable Postgres is `unavailable`, fails within the acquire timeout, and leaks no password.
#[tokio::test]
async fn unreachable_postgres() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = Options {
        acquire_timeout: std::time::Duration::from_secs(2),
        ..Options::default()
    };
    let started = std::time::Instant::now();
    let err = KeyLeash::connect(
        &format!("postgres://u:hunter2@127.0.0.1:{port}/db"),
        options,
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.code(), "unavailable");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    // A refused connection is known at once: it does not wait out the 5 s acquire
    // timeout, and it says where it tried.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "refused is reported at once, not after the acquire timeout"
    );
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
}

// Pins the connect limits (they used to wrap around or abort the process) and
// that a SQLite file in a missing directory is named.
#[tokio::test]
async fn connect_limits_and_paths() {
    use std::time::Duration;
    for options in [
        Options {
            pool_size: Some(0),
            ..Options::default()
        },
        Options {
            pool_size: Some(1001),
            ..Options::default()
        },
        Options {
            acquire_timeout: Duration::ZERO,
            ..Options::default()
        },
        Options {
            statement_timeout: Duration::ZERO,
            ..Options::default()
        },
        Options {
            statement_timeout: Duration::from_secs(86_401),
            ..Options::default()
        },
    ] {
        let err = KeyLeash::connect("sqlite::memory:", options)
            .await
            .err()
            .unwrap();
        assert_eq!(err.code(), "invalid_argument", "{err}");
    }
    let dir = std::env::temp_dir().join(format!("keyleash-missing-{}", std::process::id()));
    let path = dir.join("keys.db");
    let err = KeyLeash::connect(&format!("sqlite://{}", path.display()), Options::default())
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), "unavailable");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("does not exist"), "{err}");
}

// Pins that a database without migrate() says so (not_migrated), on both stores.
async fn not_migrated(kind: Kind) {
    let options = Options {
        table_name: format!("never_migrated_{}", std::process::id()),
        ..Options::default()
    };
    let kl = KeyLeash::connect(&common::url(kind), options)
        .await
        .unwrap();
    let err = kl.create(opts("a")).await.unwrap_err();
    assert_eq!(err.code(), "not_migrated", "{err}");
    assert!(err.to_string().contains("never_migrated_"), "{err}");
    assert!(err.to_string().contains("migrate()"), "{err}");
    let err = kl.validate("ak_x").await.map(|_| ()).err();
    assert!(err.is_none(), "a malformed key never reaches the store");
    kl.migrate().await.unwrap();
    assert!(kl.create(opts("a")).await.is_ok());
}
both!(not_migrated);
