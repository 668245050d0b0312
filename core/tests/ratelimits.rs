//! Rate limits per key on both stores, checked against the database: a refused
//! request counts nowhere, limits are inherited down a family, and under real
//! parallel callers on two pools (as two processes would have) a limit admits
//! exactly what it allows, on the manual clock.

mod common;

use chrono::Duration;
use common::{budget, opts, Db, Kind};
use futures::future::join_all;
use keyleash::{
    Charge, ChargeResult, CreateOptions, CreatedKey, KeyLeash, Limit, LimitUnit, LimitView,
    RateLimited, Reserve, ReserveResult,
};

fn limited(o: &ChargeResult) -> Option<&RateLimited> {
    match o {
        ChargeResult::Limited(l) => Some(l),
        _ => None,
    }
}

/// A fresh store, a second pool on it (as a second process would have), and a
/// key of account `a` with `limits`.
async fn two_pools(kind: Kind, limits: Vec<Limit>) -> (Db, KeyLeash, CreatedKey) {
    let db = Db::open(kind).await;
    let other = db.another().await;
    let k = key_with(&db, limits).await;
    (db, other, k)
}

/// A key of account `a` with `limits`.
async fn key_with(db: &Db, limits: Vec<Limit>) -> CreatedKey {
    let options = CreateOptions {
        limits,
        ..opts("a")
    };
    db.kl.create(options).await.unwrap()
}

async fn ledger_rows(db: &Db, key: i64) -> i64 {
    db.scalar(&format!(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM {{ledger}} WHERE key_id = {key}"
    ))
    .await
    .unwrap_or(0)
}

// Pins a requests limit and a cents limit on one key: the burst, the refusal's
// name and wait, the refill on the clock, and that a refused charge moved
// neither the budget nor the other limit.
async fn a_key_at_its_limits(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db
        .kl
        .create(CreateOptions {
            limits: vec![
                Limit::per(LimitUnit::Requests, 5, "1m"),
                Limit::per(LimitUnit::Cents, 20, "1m").named("spend"),
            ],
            ..budget("a", 1000.0, None)
        })
        .await
        .unwrap();
    let stored = db
        .text(&format!(
            "SELECT rate_limits FROM {{keys}} WHERE id = {}",
            k.id
        ))
        .await
        .unwrap();
    assert!(stored.contains("\"spend\"") && stored.contains("\"requests\""));
    for _ in 0..5 {
        assert!(db.charge(&k.key, 1.0).await.success());
    }
    let sixth = db.charge(&k.key, 1.0).await;
    let l = limited(&sixth).expect("limited");
    assert_eq!((l.limit.as_str(), l.retry_after), ("requests", Some(12.0)));
    assert_eq!(ledger_rows(&db, k.id).await, 5);
    assert_eq!(db.info(&k.key).await.budget_used_cents, 5.0);

    // 12 s later one more request is due, and 19 cents (20 at once, 5 spent,
    // 4 earned back): 20 are refused, and the refusal does not use the request up.
    db.clock().advance(Duration::seconds(12));
    let big = db.charge(&k.key, 20.0).await;
    assert_eq!(limited(&big).map(|l| l.limit.as_str()), Some("spend"));
    assert!(db.charge(&k.key, 19.0).await.success());
    assert_eq!(db.info(&k.key).await.budget_used_cents, 24.0);
    let r = db.kl.reserve(&k.key, Reserve::cents(1.0)).await.unwrap();
    assert!(matches!(r, ReserveResult::Limited(_)), "{r:?}");
    assert_eq!(ledger_rows(&db, k.id).await, 6);
}
both!(a_key_at_its_limits);

// Pins inheritance: a parent's limit counts its children's requests, and the
// child's own limit counts nothing the parent refused.
async fn a_parent_limits_its_children(kind: Kind) {
    let db = Db::open(kind).await;
    let parent = db
        .kl
        .create(CreateOptions {
            limits: vec![Limit::per(LimitUnit::Requests, 3, "1h")],
            ..opts("a")
        })
        .await
        .unwrap();
    let child = |n: u64| CreateOptions {
        parent_id: Some(parent.id),
        limits: vec![Limit::per(LimitUnit::Requests, n, "1h").named("own")],
        ..opts("a")
    };
    let a = db.kl.create(child(10)).await.unwrap();
    let b = db.kl.create(child(1)).await.unwrap();
    assert!(db.charge(&a.key, 1.0).await.success());
    assert!(db.charge(&a.key, 1.0).await.success());
    assert!(db.charge(&b.key, 1.0).await.success());
    let by_parent = db.charge(&a.key, 1.0).await;
    assert_eq!(
        limited(&by_parent).map(|l| l.limit.as_str()),
        Some("requests")
    );
    let by_own = db.charge(&b.key, 1.0).await;
    assert_eq!(limited(&by_own).map(|l| l.limit.as_str()), Some("own"));
    assert!(db.charge(&parent.key, 1.0).await.reason().is_some());
    assert_eq!(
        ledger_rows(&db, a.id).await + ledger_rows(&db, b.id).await,
        3
    );
    assert_eq!(ledger_rows(&db, parent.id).await, 0);
}
both!(a_parent_limits_its_children);

// Pins exactness under real parallel callers on two pools: 100 requests of a
// burst of 100 pass out of 240, whatever the interleaving, and the ledger says so.
async fn parallel_charges_admit_exactly_the_burst(kind: Kind) {
    let limits = vec![Limit::per(LimitUnit::Requests, 100, "1m")];
    let (db, other, k) = two_pools(kind, limits).await;
    let calls = (0..240).map(|i| {
        let kl = if i % 2 == 0 { &db.kl } else { &other };
        let key = k.key.clone();
        async move { kl.track_usage(&key, Charge::cents(1.0)).await.unwrap() }
    });
    let results = join_all(calls).await;
    let passed = results.iter().filter(|r| r.success()).count();
    assert_eq!(passed, 100);
    assert!(results.iter().all(|r| r.success() || limited(r).is_some()));
    assert_eq!(ledger_rows(&db, k.id).await, 100);
    assert_eq!(db.info(&k.key).await.budget_used_cents, 100.0);
}
both!(parallel_charges_admit_exactly_the_burst);

// Pins a concurrent limit under 50 parallel reserves on two pools: 3 holds open,
// in the database too; a release frees a slot, and an expired hold frees its own.
async fn concurrent_holds(kind: Kind) {
    let (db, other, k) = two_pools(kind, vec![Limit::concurrent(3).named("streams")]).await;
    let calls = (0..50).map(|i| {
        let kl = if i % 2 == 0 { &db.kl } else { &other };
        let key = k.key.clone();
        async move {
            kl.reserve(&key, Reserve::cents(1.0).ttl("1m"))
                .await
                .unwrap()
        }
    });
    let results = join_all(calls).await;
    let held: Vec<i64> = results.iter().filter_map(ReserveResult::hold_id).collect();
    assert_eq!(held.len(), 3);
    let open = format!(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM {{holds}} WHERE key_id = {} AND state = 'held'",
        k.id
    );
    assert_eq!(db.scalar(&open).await, Some(3));
    let refused = results.iter().find_map(|r| match r {
        ReserveResult::Limited(l) => Some(l.clone()),
        _ => None,
    });
    assert_eq!(
        refused,
        Some(RateLimited {
            limit: "streams".into(),
            retry_after: None
        })
    );
    assert!(db.kl.release(held[0]).await.unwrap());
    let one_more = || async {
        db.kl
            .reserve(&k.key, Reserve::cents(1.0))
            .await
            .unwrap()
            .success()
    };
    assert!(one_more().await);
    assert!(!one_more().await);
    // The two left from the burst expire after their minute: their slots free.
    db.clock().advance(Duration::seconds(61));
    assert!(one_more().await);
    assert!(one_more().await);
}
both!(concurrent_holds);

// Pins that a malformed limit is refused with invalid_argument and mints nothing.
async fn bad_limits_mint_nothing(kind: Kind) {
    let db = Db::open(kind).await;
    for limits in [
        vec![Limit::per(LimitUnit::Requests, 5, "1m").with_burst(0)],
        vec![Limit::per(LimitUnit::Cents, 5, "forever")],
        vec![Limit::concurrent(0)],
    ] {
        let e = db
            .kl
            .create(CreateOptions {
                limits,
                ..opts("a")
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), "invalid_argument", "{e}");
    }
    let keys = db
        .scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM {keys}")
        .await;
    assert_eq!(keys, Some(0));
}
both!(bad_limits_mint_nothing);

// Pins set_limits: a kept limit keeps what it counted at its new rate, a removed
// one stops counting, another account's key or an unknown id is not changed.
async fn limits_change_without_a_fresh_burst(kind: Kind) {
    let db = Db::open(kind).await;
    let k = key_with(&db, vec![Limit::per(LimitUnit::Requests, 4, "1m")]).await;
    for _ in 0..3 {
        assert!(db.charge(&k.key, 1.0).await.success());
    }
    // Raised to 6 a minute: 3 more pass at once, not 6.
    let raised = [Limit::per(LimitUnit::Requests, 6, "1m")];
    assert!(db.kl.set_limits(k.id, &raised, Some("a")).await.unwrap());
    let passed = join_all((0..6).map(|_| db.charge(&k.key, 1.0))).await;
    assert_eq!(passed.iter().filter(|r| r.success()).count(), 3);
    // Not another account's key, not an unknown one, not a bad limit.
    assert!(!db.kl.set_limits(k.id, &[], Some("b")).await.unwrap());
    assert!(!db.kl.set_limits(k.id + 100, &[], None).await.unwrap());
    let bad = [Limit::per(LimitUnit::Requests, 0, "1m")];
    let e = db.kl.set_limits(k.id, &bad, None).await.unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
    assert!(
        db.charge(&k.key, 1.0).await.reason().is_some(),
        "still limited"
    );
    // Removed: every charge passes, and the column says none.
    assert!(db.kl.set_limits(k.id, &[], None).await.unwrap());
    for _ in 0..10 {
        assert!(db.charge(&k.key, 1.0).await.success());
    }
    let stored = db
        .text(&format!(
            "SELECT rate_limits FROM {{keys}} WHERE id = {}",
            k.id
        ))
        .await;
    assert_eq!(stored.as_deref(), Some(""));
    assert_eq!(ledger_rows(&db, k.id).await, 16);
}
both!(limits_change_without_a_fresh_burst);

// Pins that a change of limits loses no count under parallel charges on two pools:
// the limit set again and again meanwhile still admits exactly its burst.
async fn changes_amid_parallel_charges_lose_no_count(kind: Kind) {
    let limits = vec![Limit::per(LimitUnit::Requests, 60, "1h")];
    let (db, other, k) = two_pools(kind, limits.clone()).await;
    let charges = (0..150).map(|i| {
        let kl = if i % 2 == 0 { &db.kl } else { &other };
        let key = k.key.clone();
        async move {
            kl.track_usage(&key, Charge::cents(1.0))
                .await
                .unwrap()
                .success()
        }
    });
    let changes = (0..10).map(|i| {
        let kl = if i % 2 == 0 { &db.kl } else { &other };
        let limits = limits.clone();
        async move { kl.set_limits(k.id, &limits, None).await.unwrap() }
    });
    let (charged, changed) = futures::join!(join_all(charges), join_all(changes));
    assert!(changed.iter().all(|found| *found));
    assert_eq!(charged.iter().filter(|ok| **ok).count(), 60);
    assert_eq!(ledger_rows(&db, k.id).await, 60);
}
both!(changes_amid_parallel_charges_lose_no_count);

// Pins the views: validate and list show a key's limits (and nothing for a key
// without), and a cached validate shows a change of limits at once.
async fn views_show_the_limits(kind: Kind) {
    let options = keyleash::Options {
        cache: Some(keyleash::CacheOptions::default()),
        ..keyleash::Options::default()
    };
    let db = Db::with(kind, options).await;
    let limits = vec![
        Limit::per(LimitUnit::Cents, 50, "1h").with_burst(10),
        Limit::concurrent(2).named("streams"),
    ];
    let k = key_with(&db, limits).await;
    let plain = db.kl.create(opts("a")).await.unwrap();
    let shown = |v: &[LimitView]| {
        v.iter()
            .map(|l| (l.name.clone(), l.unit, l.limit, l.period_seconds, l.burst))
            .collect::<Vec<_>>()
    };
    let expected = vec![
        (
            "cents".to_string(),
            LimitUnit::Cents,
            50,
            Some(3600),
            Some(10),
        ),
        ("streams".to_string(), LimitUnit::Concurrent, 2, None, None),
    ];
    assert_eq!(shown(&db.info(&k.key).await.limits), expected);
    let listed = db.kl.list("a").await.unwrap();
    assert_eq!(shown(&listed[0].limits), expected);
    assert!(listed[1].limits.is_empty());
    let json = serde_json::to_value(db.info(&plain.key).await).unwrap();
    assert!(json.get("limits").is_none(), "no limits, no field: {json}");
    // Cached now; the change reaches the cached answer at once.
    assert_eq!(db.info(&k.key).await.limits.len(), 2);
    let one = [Limit::per(LimitUnit::Requests, 9, "1m")];
    assert!(db.kl.set_limits(k.id, &one, None).await.unwrap());
    let after = db.info(&k.key).await.limits;
    assert_eq!((after.len(), after[0].limit), (1, 9));
}
both!(views_show_the_limits);
