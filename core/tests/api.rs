//! The operations of docs/api.md and the ledger, idempotency and key format of docs/semantics.md,
//! on both stores.

mod common;

use chrono::Duration;
use common::{budget, opts, t, Db, Kind};
use keyleash::{
    Charge, ChargeRefusal, ChargeResult, CreateOptions, InvalidReason, Options, UsageRange,
    Validation,
};

fn charged(used: f64, remaining: Option<f64>) -> ChargeResult {
    ChargeResult::Charged {
        budget_used_cents: used,
        budget_remaining_cents: remaining,
    }
}

// Pins create's result, validate's full shape, and that the raw key is not stored.
async fn create_and_validate(kind: Kind) {
    let db = Db::open(kind).await;
    let created = db
        .kl
        .create(CreateOptions {
            account_id: "acct_1".into(),
            user_id: Some("user_9".into()),
            scopes: Some(vec!["proxy.chat".into()]),
            budget_cents: Some(5000.0),
            budget_period: Some("month".into()),
            expires_in: Some("7d".into()),
            delegated_by: Some("user_456".into()),
            name: Some("agent".into()),
            metadata: Some(serde_json::json!({"team": "ml"})),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(created.key.starts_with("ak_"));
    assert_eq!(created.budget_cents, Some(5000.0));
    assert_eq!(created.expires_at, Some(t("2026-01-22T12:00:00Z")));
    assert!(
        !format!("{created:?}").contains(&created.key),
        "Debug must redact the raw key"
    );
    let json = serde_json::to_value(&created).unwrap();
    assert_eq!(json["expiresAt"], "2026-01-22T12:00:00.000Z");
    assert_eq!(json["budgetPeriod"], "month");

    let v = db.kl.validate(&created.key).await.unwrap();
    let info = v.info().expect("valid").clone();
    assert_eq!(info.id, created.id);
    assert_eq!(info.account_id, "acct_1");
    assert_eq!(info.user_id.as_deref(), Some("user_9"));
    assert_eq!(info.scopes, Some(vec!["proxy.chat".to_string()]));
    assert_eq!(info.budget_cents, Some(5000.0));
    assert_eq!(info.budget_used_cents, 0.0);
    assert_eq!(info.budget_held_cents, 0.0);
    assert_eq!(info.budget_remaining_cents, Some(5000.0));
    assert_eq!(info.budget_reset_at, Some(t("2026-02-15T12:00:00Z")));
    assert_eq!(info.delegated_by.as_deref(), Some("user_456"));
    assert_eq!(info.name, "agent");
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["budgetResetAt"], "2026-02-15T12:00:00.000Z");
    assert_eq!(json["budgetRemainingCents"], 5000.0);

    let stored = db
        .text(&format!(
            "SELECT key_hash FROM {{keys}} WHERE id = {}",
            created.id
        ))
        .await
        .unwrap();
    assert_eq!(stored, keyleash::key::hash(&created.key));
    let prefix = db
        .text(&format!(
            "SELECT key_prefix FROM {{keys}} WHERE id = {}",
            created.id
        ))
        .await
        .unwrap();
    assert_eq!(prefix, created.key[..11]);
    let leaks = db.scalar(&format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {{keys}} WHERE key_hash = '{}' OR key_prefix = '{}'", created.key, created.key)).await;
    assert_eq!(leaks, Some(0));
}
both!(create_and_validate);

// Pins unknown, bad-checksum and other-prefix keys as `invalid`, and defaults of a bare key.
async fn unknown_keys_and_defaults(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(opts("a")).await.unwrap();
    let info = db
        .kl
        .validate(&k.key)
        .await
        .unwrap()
        .info()
        .unwrap()
        .clone();
    assert_eq!(
        (info.scopes, info.budget_cents, info.budget_remaining_cents),
        (None, None, None)
    );
    assert_eq!(
        (info.budget_period, info.budget_reset_at, info.expires_at),
        (None, None, None)
    );
    assert_eq!(info.name, "default");
    let mut typo = k.key.clone().into_bytes();
    typo[5] = if typo[5] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    let fresh = keyleash::key::hash("x");
    for bad in [
        typo.as_str(),
        "ak_",
        "",
        "sk_whatever",
        &k.key[..k.key.len() - 1],
        &fresh,
    ] {
        assert_eq!(
            db.kl.validate(bad).await.unwrap(),
            Validation::Invalid(InvalidReason::Invalid),
            "{bad:?}"
        );
    }
    let other = db.kl.create(opts("a")).await.unwrap();
    assert_ne!(other.key, k.key);
    assert_eq!(db.info(&other.key).await.id, other.id);
}
both!(unknown_keys_and_defaults);

// Pins the charge results, the ledger rows they append, and the counter == ledger invariant.
async fn track_usage_and_ledger(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 100.0, None)).await.unwrap();
    assert_eq!(db.charge(&k.key, 15.0).await, charged(15.0, Some(85.0)));
    db.clock().advance(Duration::minutes(1));
    assert_eq!(db.charge(&k.key, 85.0).await, charged(100.0, Some(0.0)));
    assert_eq!(
        db.charge(&k.key, 0.000001).await,
        ChargeResult::Refused(ChargeRefusal::BudgetExceeded)
    );
    assert_eq!(
        db.kl.validate(&k.key).await.unwrap(),
        Validation::Invalid(InvalidReason::BudgetExceeded)
    );
    assert_eq!(db.used_micros(k.id).await, 100_000_000);
    assert_eq!(db.ledger(k.id).await, (100_000_000, 2));
    assert_eq!(db.column(k.id, "budget_used_cents").await, Some(100));

    let all = db.kl.usage(k.id, UsageRange::default()).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.amount_cents).collect::<Vec<_>>(),
        [15.0, 85.0]
    );
    assert_eq!(all[0].created_at, t("2026-01-15T12:00:00Z"));
    assert_eq!(all[1].created_at, t("2026-01-15T12:01:00Z"));
    assert!(all.iter().all(|e| e.key_id == k.id && e.hold_id.is_none()));
    let from = UsageRange {
        from: Some(t("2026-01-15T12:00:30Z")),
        to: None,
    };
    assert_eq!(db.kl.usage(k.id, from).await.unwrap().len(), 1);
    let to = UsageRange {
        from: None,
        to: Some(t("2026-01-15T12:01:00Z")),
    };
    assert_eq!(
        db.kl.usage(k.id, to).await.unwrap().len(),
        1,
        "`to` is exclusive"
    );
    let json = serde_json::to_value(&all[1]).unwrap();
    assert_eq!(json["createdAt"], "2026-01-15T12:01:00.000Z");

    // An uncapped key reports null remaining.
    let free = db.kl.create(opts("a")).await.unwrap();
    assert_eq!(db.charge(&free.key, 7.5).await, charged(7.5, None));
    let json = serde_json::to_value(db.charge(&free.key, 1.0).await).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"success": true, "budgetUsedCents": 8.5, "budgetRemainingCents": null})
    );
}
both!(track_usage_and_ledger);

// Pins costs: zero succeeds with no numbers and no write; NaN/±inf/negative/huge are invalid_cost.
async fn costs(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 10.0, None)).await.unwrap();
    let zero = db.charge(&k.key, 0.0).await;
    assert_eq!(zero, ChargeResult::Free);
    assert_eq!(
        serde_json::to_value(&zero).unwrap(),
        serde_json::json!({"success": true})
    );
    for bad in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -1.0,
        -0.0001,
        1e13,
        f64::MAX,
    ] {
        let r = db.charge(&k.key, bad).await;
        assert_eq!(
            r,
            ChargeResult::Refused(ChargeRefusal::InvalidCost),
            "{bad}"
        );
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"success": false, "reason": "invalid_cost"})
        );
    }
    assert_eq!(db.ledger(k.id).await, (0, 0));
    assert_eq!(db.used_micros(k.id).await, 0);
    assert_eq!(
        db.charge("ak_nope", 1.0).await,
        ChargeResult::Refused(ChargeRefusal::InvalidKey)
    );
}
both!(costs);

// Pins sub-cent exactness: 1,000 charges of 0.001 cents use exactly 1 cent.
async fn sub_cent_exact(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 1.0, None)).await.unwrap();
    for _ in 0..1000 {
        assert!(db
            .kl
            .track_usage(&k.key, Charge::cents(0.001))
            .await
            .unwrap()
            .success());
    }
    assert_eq!(db.used_micros(k.id).await, 1_000_000);
    assert_eq!(db.ledger(k.id).await, (1_000_000, 1000));
    assert_eq!(
        db.kl.validate(&k.key).await.unwrap(),
        Validation::Invalid(InvalidReason::BudgetExceeded)
    );
    // A positive cost below a micro-cent still costs one micro-cent.
    let k2 = db.kl.create(budget("a", 1.0, None)).await.unwrap();
    assert_eq!(
        db.charge(&k2.key, 1e-9).await,
        charged(0.000001, Some(0.999999))
    );
}
both!(sub_cent_exact);

// Pins expiry at the exact instant, and that expired keys cannot be charged.
async fn expiry(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db
        .kl
        .create(CreateOptions {
            expires_in: Some("1h".into()),
            ..budget("a", 10.0, None)
        })
        .await
        .unwrap();
    db.clock()
        .advance(Duration::hours(1) - Duration::microseconds(1));
    assert!(db.kl.validate(&k.key).await.unwrap().is_valid());
    assert!(db
        .kl
        .track_usage(&k.key, Charge::cents(1.0))
        .await
        .unwrap()
        .success());
    db.clock().advance(Duration::microseconds(1));
    assert_eq!(
        db.kl.validate(&k.key).await.unwrap(),
        Validation::Invalid(InvalidReason::Expired)
    );
    assert_eq!(
        db.charge(&k.key, 1.0).await,
        ChargeResult::Refused(ChargeRefusal::Expired)
    );
    let at = db
        .kl
        .create(CreateOptions {
            expires_at: Some(t("2026-03-01T00:00:00Z")),
            ..opts("a")
        })
        .await
        .unwrap();
    assert_eq!(at.expires_at, Some(t("2026-03-01T00:00:00Z")));
    assert!(db.kl.validate(&at.key).await.unwrap().is_valid());
}
both!(expiry);

// Pins the validate order: revoked beats expired beats budget_exceeded.
async fn validate_order(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db
        .kl
        .create(CreateOptions {
            expires_in: Some("1d".into()),
            ..budget("a", 5.0, None)
        })
        .await
        .unwrap();
    assert!(db
        .kl
        .track_usage(&k.key, Charge::cents(5.0))
        .await
        .unwrap()
        .success());
    assert_eq!(db.reason(&k.key).await, Some(InvalidReason::BudgetExceeded));
    db.clock().advance(Duration::days(2));
    assert_eq!(db.reason(&k.key).await, Some(InvalidReason::Expired));
    assert!(db.kl.revoke(k.id, None).await.unwrap());
    assert_eq!(db.reason(&k.key).await, Some(InvalidReason::Revoked));
    assert_eq!(
        serde_json::to_value(db.kl.validate(&k.key).await.unwrap()).unwrap(),
        serde_json::json!({"valid": false, "reason": "revoked"})
    );
}
both!(validate_order);

// Pins revoke: soft, once, and scoped to an account when one is given.
async fn revoke(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(opts("acct_a")).await.unwrap();
    assert!(
        !db.kl.revoke(k.id, Some("acct_b")).await.unwrap(),
        "another account cannot revoke it"
    );
    assert!(db.kl.validate(&k.key).await.unwrap().is_valid());
    assert!(db.kl.revoke(k.id, Some("acct_a")).await.unwrap());
    assert!(
        !db.kl.revoke(k.id, Some("acct_a")).await.unwrap(),
        "already revoked"
    );
    assert!(!db.kl.revoke(k.id, None).await.unwrap());
    assert!(!db.kl.revoke(999_999, None).await.unwrap());
    assert_eq!(
        db.charge(&k.key, 1.0).await,
        ChargeResult::Refused(ChargeRefusal::Revoked)
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM {{keys}} WHERE id = {}",
            k.id
        ))
        .await,
        Some(1)
    );
}
both!(revoke);

// Pins daily and weekly periods: reset at the instant, multi-period catch-up, next reset after now.
async fn day_and_week_rollover(kind: Kind) {
    let db = Db::open(kind).await;
    let day = db.kl.create(budget("a", 10.0, Some("day"))).await.unwrap();
    let week = db.kl.create(budget("a", 10.0, Some("week"))).await.unwrap();
    for k in [&day, &week] {
        assert!(db
            .kl
            .track_usage(&k.key, Charge::cents(10.0))
            .await
            .unwrap()
            .success());
    }
    db.clock()
        .advance(Duration::days(1) - Duration::microseconds(1));
    assert_eq!(
        db.reason(&day.key).await,
        Some(InvalidReason::BudgetExceeded)
    );
    db.clock().advance(Duration::microseconds(1));
    let v = db.kl.validate(&day.key).await.unwrap();
    assert_eq!(v.info().unwrap().budget_used_cents, 0.0);
    assert_eq!(
        v.info().unwrap().budget_reset_at,
        Some(t("2026-01-17T12:00:00Z"))
    );
    assert_eq!(
        db.used_micros(day.id).await,
        0,
        "validate persists the rollover"
    );
    assert_eq!(
        db.reason(&week.key).await,
        Some(InvalidReason::BudgetExceeded)
    );
    // Ten days later: several missed periods, one reset.
    db.clock().set(t("2026-01-26T13:00:00Z"));
    assert_eq!(db.charge(&day.key, 3.0).await, charged(3.0, Some(7.0)));
    assert_eq!(
        db.info(&day.key).await.budget_reset_at,
        Some(t("2026-01-27T12:00:00Z"))
    );
    assert_eq!(db.charge(&week.key, 4.0).await, charged(4.0, Some(6.0)));
    assert_eq!(
        db.info(&week.key).await.budget_reset_at,
        Some(t("2026-01-29T12:00:00Z"))
    );
    assert_eq!(db.used_micros(week.id).await, 4_000_000);
    // The ledger keeps every period's rows; the counter holds only this period's.
    assert_eq!(db.ledger(week.id).await, (14_000_000, 2));
}
both!(day_and_week_rollover);

// Pins calendar months from an anchor on the 31st through a leap February, and the agentkey columns.
async fn month_rollover(kind: Kind) {
    let db = Db::open(kind).await;
    db.clock().set(t("2024-01-31T12:00:00Z"));
    let k = db
        .kl
        .create(budget("a", 100.0, Some("month")))
        .await
        .unwrap();
    assert!(db
        .kl
        .track_usage(&k.key, Charge::cents(100.0))
        .await
        .unwrap()
        .success());
    let expect = [
        ("2024-02-29T11:59:59Z", None),
        ("2024-02-29T12:00:00Z", Some("2024-03-31T12:00:00Z")),
        ("2024-04-30T12:00:00Z", Some("2024-05-31T12:00:00Z")),
        ("2025-02-28T12:00:00Z", Some("2025-03-31T12:00:00Z")),
    ];
    for (now, next) in expect {
        db.clock().set(t(now));
        let v = db.kl.validate(&k.key).await.unwrap();
        match next {
            None => assert_eq!(v.reason(), Some(InvalidReason::BudgetExceeded), "{now}"),
            Some(next) => {
                assert_eq!(v.info().unwrap().budget_reset_at, Some(t(next)), "{now}");
                assert_eq!(v.info().unwrap().budget_used_cents, 0.0);
                assert!(db
                    .kl
                    .track_usage(&k.key, Charge::cents(100.0))
                    .await
                    .unwrap()
                    .success());
            }
        }
    }
    // agentkey's budget_reset_at column holds the next reset too.
    let stored = db
        .text(&format!(
            "SELECT CAST(budget_reset_at AS TEXT) FROM {{keys}} WHERE id = {}",
            k.id
        ))
        .await
        .unwrap();
    assert!(stored.starts_with("2025-03-31"), "{stored}");
}
both!(month_rollover);

// Pins has_scope: null scopes = all, exact, admin, trailing wildcard; invalid keys hold none.
async fn scopes(kind: Kind) {
    let valid = Some(vec![
        "read".into(),
        "write".into(),
        "admin".into(),
        "proxy.*".into(),
    ]);
    let db = Db::with(
        kind,
        Options {
            valid_scopes: valid,
            ..Options::default()
        },
    )
    .await;
    let mk = |s: &[&str]| CreateOptions {
        scopes: Some(s.iter().map(|s| (*s).into()).collect()),
        ..opts("a")
    };
    let read = db.kl.create(mk(&["read"])).await.unwrap();
    let admin = db.kl.create(mk(&["admin"])).await.unwrap();
    let proxy = db.kl.create(mk(&["proxy.*"])).await.unwrap();
    let all = db.kl.create(opts("a")).await.unwrap();
    let mut found = Vec::new();
    for k in [&read, &admin, &proxy, &all] {
        found.push(db.kl.validate(&k.key).await.unwrap());
    }
    let [read, admin, proxy, all] = <[Validation; 4]>::try_from(found).unwrap();
    assert!(read.has_scope("read") && !read.has_scope("write"));
    assert!(admin.has_scope("write") && admin.has_scope("anything"));
    assert!(proxy.has_scope("proxy.chat") && !proxy.has_scope("proxy") && !proxy.has_scope("read"));
    assert!(all.has_scope("whatever"));
    assert!(keyleash::has_scope(
        read.info().unwrap().scopes.as_deref(),
        "read"
    ));
    assert!(!Validation::Invalid(InvalidReason::Invalid).has_scope("read"));
    let err = db.kl.create(mk(&["delete"])).await.unwrap_err();
    assert_eq!(err.code(), "invalid_scope");
    assert!(err.to_string().contains("delete"), "{err}");
}
both!(scopes);

// Pins idempotent charges: a repeat applies once and replays the first result, marked as a
// replay, even after later charges; another cost under the same key is a conflict.
async fn idempotency(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 100.0, None)).await.unwrap();
    let first = db
        .kl
        .track_usage(&k.key, Charge::cents(30.0).idempotent("req-1"))
        .await
        .unwrap();
    assert_eq!(first, charged(30.0, Some(70.0)));
    assert_eq!(db.charge(&k.key, 10.0).await, charged(40.0, Some(60.0)));
    let again = db
        .kl
        .track_usage(&k.key, Charge::cents(30.0).idempotent("req-1"))
        .await
        .unwrap();
    let replayed = ChargeResult::Replayed {
        budget_used_cents: 30.0,
        budget_remaining_cents: Some(70.0),
    };
    assert_eq!(again, replayed);
    let other_cost = db
        .kl
        .track_usage(&k.key, Charge::cents(31.0).idempotent("req-1"))
        .await
        .unwrap();
    assert_eq!(
        other_cost.reason(),
        Some(ChargeRefusal::IdempotencyConflict)
    );
    assert_eq!(db.ledger(k.id).await, (40_000_000, 2));
    // Idempotency keys are per key: the same string on another key is a new charge.
    let k2 = db.kl.create(budget("a", 100.0, None)).await.unwrap();
    assert_eq!(
        db.kl
            .track_usage(&k2.key, Charge::cents(5.0).idempotent("req-1"))
            .await
            .unwrap(),
        charged(5.0, Some(95.0))
    );
    let entries = db.kl.usage(k.id, UsageRange::default()).await.unwrap();
    assert_eq!(entries[0].idempotency_key.as_deref(), Some("req-1"));
    // A refused charge is not remembered: retrying it after the budget allows succeeds.
    let k3 = db.kl.create(budget("a", 10.0, None)).await.unwrap();
    let refused = db
        .kl
        .track_usage(&k3.key, Charge::cents(20.0).idempotent("big"))
        .await
        .unwrap();
    assert_eq!(refused.reason(), Some(ChargeRefusal::BudgetExceeded));
    assert_eq!(db.ledger(k3.id).await, (0, 0));
}
both!(idempotency);

// Pins subjects: ensure is idempotent, validate/track by subject, account defaults to the subject.
async fn subjects(kind: Kind) {
    let db = Db::open(kind).await;
    let o = CreateOptions {
        scopes: Some(vec!["proxy.chat".into()]),
        ..budget("", 10.0, Some("day"))
    };
    db.kl.ensure_subject("machine_1", o.clone()).await.unwrap();
    db.kl
        .ensure_subject(
            "machine_1",
            CreateOptions {
                budget_cents: Some(999.0),
                ..o.clone()
            },
        )
        .await
        .unwrap();
    let v = db.kl.validate_by_subject("machine_1").await.unwrap();
    let info = v.info().unwrap();
    assert_eq!(info.account_id, "machine_1");
    assert_eq!(
        info.budget_cents,
        Some(10.0),
        "the second ensure changed nothing"
    );
    assert!(v.has_scope("proxy.chat"));
    assert_eq!(
        db.kl
            .track_usage_by_subject("machine_1", Charge::cents(6.0))
            .await
            .unwrap(),
        charged(6.0, Some(4.0))
    );
    assert_eq!(
        db.kl
            .track_usage_by_subject("machine_1", Charge::cents(6.0))
            .await
            .unwrap()
            .reason(),
        Some(ChargeRefusal::BudgetExceeded)
    );
    assert_eq!(
        db.kl.validate_by_subject("nobody").await.unwrap().reason(),
        Some(InvalidReason::Invalid)
    );
    assert_eq!(
        db.kl.validate_by_subject("").await.unwrap().reason(),
        Some(InvalidReason::Invalid)
    );
    assert_eq!(
        db.kl
            .track_usage_by_subject("nobody", Charge::cents(1.0))
            .await
            .unwrap()
            .reason(),
        Some(ChargeRefusal::InvalidKey)
    );
    db.kl
        .ensure_subject(
            "machine_2",
            CreateOptions {
                account_id: "acct_x".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        db.kl
            .validate_by_subject("machine_2")
            .await
            .unwrap()
            .info()
            .unwrap()
            .account_id,
        "acct_x"
    );
    // Concurrent first sightings create one row.
    let calls = (0..20).map(|_| db.kl.ensure_subject("machine_3", CreateOptions::default()));
    for r in futures::future::join_all(calls).await {
        r.unwrap();
    }
    assert_eq!(
        db.scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM {keys} WHERE external_subject = 'machine_3'"
        )
        .await,
        Some(1)
    );
    // A subject row has no raw key: its hash is random and never matches a validate.
    let listed = db.kl.list("machine_1").await.unwrap();
    assert_eq!(listed[0].key_prefix, "ak_ext");
    assert_eq!(listed[0].external_subject.as_deref(), Some("machine_1"));
}
both!(subjects);

// Pins list: one account's keys, oldest first, with metadata and revocation, never a secret.
async fn list(kind: Kind) {
    let db = Db::open(kind).await;
    let a1 = db
        .kl
        .create(CreateOptions {
            metadata: Some(serde_json::json!({"n": 1})),
            ..budget("a", 10.0, None)
        })
        .await
        .unwrap();
    let a2 = db.kl.create(opts("a")).await.unwrap();
    db.kl.create(opts("b")).await.unwrap();
    db.charge(&a1.key, 2.5).await;
    db.kl.revoke(a2.id, None).await.unwrap();
    let keys = db.kl.list("a").await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.id).collect::<Vec<_>>(),
        [a1.id, a2.id]
    );
    assert_eq!(keys[0].budget_used_cents, 2.5);
    assert_eq!(keys[0].metadata, Some(serde_json::json!({"n": 1})));
    assert_eq!(keys[0].last_used_at, Some(t(common::START)));
    assert!(keys[1].revoked_at.is_some());
    let json = serde_json::to_string(&keys).unwrap();
    assert!(!json.contains(&a1.key) && !json.contains(&a2.key));
    assert!(db.kl.list("nobody").await.unwrap().is_empty());
}
both!(list);

// Pins metadata given as JSON text (the Python package's json.dumps): checked once,
// stored as written, read back as the value a `serde_json::Value` would give, and
// held to the same 16 KiB of text.
async fn metadata_as_json_text(kind: Kind) {
    use keyleash::options::{CreateInput, Metadata, Spelling};
    let db = Db::open(kind).await;
    let input = |json: &str| CreateInput {
        account_id: Some("a".into()),
        metadata: Some(Metadata::Json(json.into())),
        ..CreateInput::default()
    };
    let text = r#"{"z":[1,2.5,null],"a":"日本 \n","n":{"b":true}}"#;
    let options = input(text).into_options(Spelling::Snake).unwrap();
    db.kl.create(options).await.unwrap();
    let keys = db.kl.list("a").await.unwrap();
    assert_eq!(
        keys[0].metadata,
        Some(serde_json::json!({"z": [1, 2.5, null], "a": "日本 \n", "n": {"b": true}}))
    );
    let over = format!(r#"{{"m":"{}"}}"#, "m".repeat(16 * 1024));
    let options = input(&over).into_options(Spelling::Snake).unwrap();
    let e = db.kl.create(options).await.unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
    let nul = input(r#"{"k":"a\u0000b"}"#)
        .into_options(Spelling::Snake)
        .unwrap();
    assert_eq!(
        db.kl.create(nul).await.unwrap_err().code(),
        "invalid_argument"
    );
}
both!(metadata_as_json_text);

// Pins the key prefix option: minted keys carry it, and keys of another prefix are invalid.
async fn key_prefix(kind: Kind) {
    let db = Db::with(
        kind,
        Options {
            key_prefix: "sk_live_".into(),
            ..Options::default()
        },
    )
    .await;
    let k = db.kl.create(opts("a")).await.unwrap();
    assert!(k.key.starts_with("sk_live_"));
    assert!(db.kl.validate(&k.key).await.unwrap().is_valid());
    let swapped = format!("ak_{}", &k.key[8..]);
    assert_eq!(db.reason(&swapped).await, Some(InvalidReason::Invalid));
}
both!(key_prefix);

// Pins absurdly large (but valid) amounts: exact in the core, saturated in agentkey's INTEGER columns.
async fn huge_budgets(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 1e12, None)).await.unwrap();
    assert_eq!(db.charge(&k.key, 5e9).await, charged(5e9, Some(1e12 - 5e9)));
    let max = Some(i64::from(i32::MAX));
    assert_eq!(db.column(k.id, "budget_cents").await, max);
    assert_eq!(db.column(k.id, "budget_used_cents").await, max);
    let info = db.info(&k.key).await;
    assert_eq!(
        (info.budget_cents, info.budget_used_cents),
        (Some(1e12), 5e9)
    );
    assert_eq!(
        db.charge(&k.key, 1e12).await.reason(),
        Some(ChargeRefusal::BudgetExceeded)
    );
    let uncapped = db.kl.create(opts("a")).await.unwrap();
    for _ in 0..3 {
        assert!(db
            .kl
            .track_usage(&uncapped.key, Charge::cents(1e12))
            .await
            .unwrap()
            .success());
    }
    assert_eq!(db.used_micros(uncapped.id).await, 3_000_000_000_000_000_000);
}
both!(huge_budgets);
