//! The opt-in validation cache (docs/semantics.md, "Validation cache"): what it
//! serves, what removes an entry (revoke, an exhausted budget, expiry, a reset,
//! the time to live), across instances through `NOTIFY` on Postgres, and what a
//! lost `LISTEN` connection does.

mod common;

use std::time::{Duration, Instant};

use chrono::Duration as Span;
use common::{budget, opts, Db, Kind};
use keyleash::{CacheOptions, Charge, CreateOptions, InvalidReason, KeyLeash, Options};

fn cached(ttl: Duration) -> Options {
    Options {
        cache: Some(CacheOptions {
            ttl,
            max_entries: 100,
        }),
        ..Options::default()
    }
}

/// Waits until the cache serves (on Postgres, once its LISTEN connection is up).
async fn serving(kl: &KeyLeash) {
    let start = Instant::now();
    while !kl.cache_stats().expect("cache on").listening {
        assert!(start.elapsed() < Duration::from_secs(10), "never listening");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `validate` until `raw` reads `want`; returns how long that took.
async fn until_reason(kl: &KeyLeash, raw: &str, want: InvalidReason) -> Duration {
    let start = Instant::now();
    loop {
        if kl.validate(raw).await.unwrap().reason() == Some(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Validates `raw` (valid every time) until the answer is cached.
async fn valid_and_cached(kl: &KeyLeash, raw: &str) {
    for _ in 0..50 {
        assert!(kl.validate(raw).await.unwrap().is_valid());
        if kl.validate_now(raw).is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("a valid answer is never cached");
}

// Pins what is served and what this instance's own changes remove at once.
async fn serves_and_invalidates_locally(kind: Kind) {
    let db = Db::with(kind, cached(Duration::from_secs(60))).await;
    let kl = &db.kl;
    serving(kl).await;
    let k = kl.create(budget("a", 3.0, None)).await.unwrap();
    assert!(kl.validate_now(&k.key).is_none(), "nothing cached yet");
    assert!(kl.validate(&k.key).await.unwrap().is_valid());
    let hit = kl
        .validate_now(&k.key)
        .expect("cached after a valid answer");
    assert_eq!(hit.info().unwrap().id, k.id);
    // A change by hand is not seen until the time to live has passed.
    db.exec(&format!(
        "UPDATE {{keys}} SET name = 'renamed' WHERE id = {}",
        k.id
    ))
    .await;
    assert_eq!(db.info(&k.key).await.name, "default");
    db.clock().advance(Span::seconds(61));
    assert_eq!(db.info(&k.key).await.name, "renamed");
    // A charge that leaves budget keeps the entry; one that exhausts it drops it.
    assert!(db.charge(&k.key, 1.0).await.success());
    assert!(kl.validate_now(&k.key).is_some());
    assert!(db.charge(&k.key, 2.0).await.success());
    assert!(kl.validate_now(&k.key).is_none());
    assert_eq!(db.reason(&k.key).await, Some(InvalidReason::BudgetExceeded));
    // Refusals are never cached.
    assert!(kl.validate_now(&k.key).is_none());
    // Revoking a parent drops its child's entry.
    let parent = kl.create(opts("a")).await.unwrap();
    let child = kl
        .create(CreateOptions {
            parent_id: Some(parent.id),
            ..opts("a")
        })
        .await
        .unwrap();
    // On Postgres the exhausting charge's notification comes back to this
    // process's listener at some point, and an answer read while it lands is
    // (rightly) not cached: ask again until one is.
    valid_and_cached(kl, &child.key).await;
    assert!(kl.revoke(parent.id, None).await.unwrap());
    assert!(kl.validate_now(&child.key).is_none());
    assert_eq!(db.reason(&child.key).await, Some(InvalidReason::Revoked));
    // Subjects are cached like keys. On Postgres the revoke's notification comes
    // back to this process's listener at some point, and an answer read while an
    // invalidation lands is (rightly) not cached: ask again until one is.
    kl.ensure_subject("machine-1", opts("a")).await.unwrap();
    let mut cached = false;
    for _ in 0..50 {
        assert!(kl
            .validate_by_subject("machine-1")
            .await
            .unwrap()
            .is_valid());
        if kl.validate_by_subject_now("machine-1").is_some() {
            cached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cached, "a valid subject answer is cached");
    let s = kl.cache_stats().unwrap();
    assert!(s.hits >= 3 && s.misses >= 3, "{s:?}");
    assert_eq!(s.channel.is_some(), kind == Kind::Postgres);
}
both!(serves_and_invalidates_locally);

// Pins one look per validate: a miss through `validate_now_or_ref` hashes and
// looks once (one miss counted), `validate_refs` goes to the store without a
// second look, and the next validate is one hit.
async fn a_miss_looks_once(kind: Kind) {
    let db = Db::with(kind, cached(Duration::from_secs(60))).await;
    let kl = &db.kl;
    serving(kl).await;
    let k = kl.create(opts("a")).await.unwrap();
    let malformed = kl
        .validate_now_or_ref("not a key")
        .expect("answered at once");
    let malformed: serde_json::Value = serde_json::from_str(&malformed).unwrap();
    assert_eq!(malformed["reason"], "invalid");
    let key = kl.validate_now_or_ref(&k.key).expect_err("not cached yet");
    let s = kl.cache_stats().unwrap();
    assert_eq!((s.hits, s.misses), (0, 1));
    let answers = kl.validate_refs(vec![key.clone(), key]).await;
    assert_eq!(answers.len(), 2);
    for a in answers {
        assert_eq!(a.unwrap().info().unwrap().id, k.id);
    }
    let s = kl.cache_stats().unwrap();
    assert_eq!((s.hits, s.misses), (0, 1), "validate_refs looks no cache");
    let hit = kl
        .validate_now_or_ref(&k.key)
        .expect("cached after the store's answer");
    let hit: serde_json::Value = serde_json::from_str(&hit).unwrap();
    assert_eq!(hit["id"], k.id);
    let s = kl.cache_stats().unwrap();
    assert_eq!((s.hits, s.misses), (1, 1));
}
both!(a_miss_looks_once);

// Pins that a cached answer never outlives the key's expiry or its budget reset.
async fn bounded_by_expiry_and_reset(kind: Kind) {
    let db = Db::with(kind, cached(Duration::from_secs(3600))).await;
    serving(&db.kl).await;
    let expiring = db
        .kl
        .create(CreateOptions {
            expires_in: Some("10m".into()),
            ..opts("a")
        })
        .await
        .unwrap();
    let daily = db.kl.create(budget("a", 5.0, Some("day"))).await.unwrap();
    assert!(db.charge(&daily.key, 2.0).await.success());
    for k in [&expiring.key, &daily.key] {
        assert!(db.kl.validate(k).await.unwrap().is_valid());
        assert!(db.kl.validate_now(k).is_some());
    }
    db.clock().advance(Span::minutes(11));
    assert_eq!(db.reason(&expiring.key).await, Some(InvalidReason::Expired));
    assert_eq!(db.info(&daily.key).await.budget_used_cents, 2.0);
    db.clock().advance(Span::days(1));
    assert_eq!(db.info(&daily.key).await.budget_used_cents, 0.0);
}
both!(bounded_by_expiry_and_reset);

// Pins cross-instance invalidation through NOTIFY: another instance's revoke and
// exhausting charge reach this instance's cache, and a '*' flushes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_instances_invalidate_through_notify() {
    let db = Db::with(Kind::Postgres, cached(Duration::from_secs(3600))).await;
    let other = KeyLeash::connect(
        &db.url,
        Options {
            table_name: db.table.clone(),
            clock: db.kl.clock().clone(),
            ..cached(Duration::from_secs(3600))
        },
    )
    .await
    .unwrap();
    serving(&db.kl).await;
    let revoked = db.kl.create(opts("a")).await.unwrap();
    let spent = db.kl.create(budget("a", 2.0, None)).await.unwrap();
    let renamed = db.kl.create(opts("a")).await.unwrap();
    for k in [&revoked.key, &spent.key, &renamed.key] {
        assert!(db.kl.validate(k).await.unwrap().is_valid());
        assert!(db.kl.validate_now(k).is_some());
    }
    assert!(other.revoke(revoked.id, None).await.unwrap());
    let delay = until_reason(&db.kl, &revoked.key, InvalidReason::Revoked).await;
    println!("revocation reached the other instance's cache in {delay:?}");
    assert!(other
        .track_usage(&spent.key, Charge::cents(2.0))
        .await
        .unwrap()
        .success());
    until_reason(&db.kl, &spent.key, InvalidReason::BudgetExceeded).await;
    // A change by hand, then the operator's flush.
    db.exec(&format!(
        "UPDATE {{keys}} SET name = 'renamed' WHERE id = {}",
        renamed.id
    ))
    .await;
    assert_eq!(db.info(&renamed.key).await.name, "default");
    let channel = db.kl.cache_stats().unwrap().channel.unwrap();
    db.exec(&format!("SELECT pg_notify('{channel}', '*')"))
        .await;
    let start = Instant::now();
    while db.info(&renamed.key).await.name != "renamed" {
        assert!(start.elapsed() < Duration::from_secs(10), "never flushed");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

// Pins that a lost LISTEN connection empties the cache: a change the cache could
// not hear about (made by hand, no NOTIFY) is seen once the listener is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_listener_empties_the_cache() {
    let db = Db::with(Kind::Postgres, cached(Duration::from_secs(3600))).await;
    serving(&db.kl).await;
    let k = db.kl.create(opts("a")).await.unwrap();
    assert!(db.kl.validate(&k.key).await.unwrap().is_valid());
    db.exec(&format!(
        "UPDATE {{keys}} SET revoked_at = now() WHERE id = {}",
        k.id
    ))
    .await;
    assert!(db.kl.validate(&k.key).await.unwrap().is_valid(), "cached");
    let channel = db.kl.cache_stats().unwrap().channel.unwrap();
    let killed = db
        .scalar(&format!(
            "SELECT count(pg_terminate_backend(pid))::int8 FROM pg_stat_activity \
             WHERE application_name = 'keyleash-listen' AND query LIKE '%{channel}%'"
        ))
        .await;
    assert_eq!(killed, Some(1));
    let start = Instant::now();
    while db.kl.cache_stats().unwrap().disconnects == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "loss not seen");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(db.reason(&k.key).await, Some(InvalidReason::Revoked));
    serving(&db.kl).await;
    assert_eq!(db.kl.cache_stats().unwrap().entries, 0);
}

// Pins that answers found with no I/O yield now and then: on a one-thread
// runtime, a loop of cached (or malformed) validates lets another task run, as
// it must for the pool's and the batches' tasks to run beside such a loop.
#[tokio::test(flavor = "current_thread")]
async fn answers_without_io_let_other_tasks_run() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let db = Db::with(Kind::Sqlite, cached(Duration::from_secs(60))).await;
    let k = db.kl.create(opts("a")).await.unwrap();
    assert!(db.kl.validate(&k.key).await.unwrap().is_valid());
    for raw in [k.key.as_str(), "ak_x"] {
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
        let mut calls = 0;
        while !ran.load(Ordering::SeqCst) {
            db.kl.validate(raw).await.unwrap();
            calls += 1;
            assert!(calls < 100_000, "{raw}: no other task ran in {calls} calls");
        }
    }
}
