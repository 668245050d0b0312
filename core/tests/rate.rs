//! `rate_check`, the store-kept token bucket the self-serve routes' signup and mint
//! limits run on, on both stores: its burst and refill, a refused event left
//! uncounted, the same bucket seen from two connections at once, and its
//! argument checks.

mod common;

use chrono::Duration;
use common::{Db, Kind};
use futures::future::join_all;

/// One event per second, three seconds' worth at once: a burst of three.
const INTERVAL_MS: i64 = 1_000;
const WINDOW_MS: i64 = 3_000;

async fn burst_then_refill(kind: Kind) {
    let db = Db::open(kind).await;
    let check = || {
        db.kl
            .rate_check("signup:203.0.113.7", INTERVAL_MS, WINDOW_MS)
    };
    for _ in 0..3 {
        assert_eq!(check().await.unwrap(), None);
    }
    let wait = check()
        .await
        .unwrap()
        .expect("the fourth event of the burst is refused");
    assert!((1..=INTERVAL_MS).contains(&wait), "wait {wait} ms");
    // A refused event is not counted: asking again at once waits just as long.
    assert_eq!(check().await.unwrap(), Some(wait));
    // Other buckets are untouched.
    assert_eq!(
        db.kl
            .rate_check("signup:198.51.100.1", INTERVAL_MS, WINDOW_MS)
            .await
            .unwrap(),
        None
    );
    db.clock().advance(Duration::milliseconds(wait));
    assert_eq!(check().await.unwrap(), None);
    assert!(check().await.unwrap().is_some());
}
both!(burst_then_refill);

async fn one_bucket_across_connections(kind: Kind) {
    let db = Db::open(kind).await;
    let other = db.another().await;
    let calls = (0..40).map(|i| {
        let kl = if i % 2 == 0 {
            db.kl.clone()
        } else {
            other.clone()
        };
        async move {
            kl.rate_check("mint:tree:7", INTERVAL_MS, WINDOW_MS)
                .await
                .unwrap()
        }
    });
    let allowed = join_all(calls).await.iter().filter(|w| w.is_none()).count();
    assert_eq!(
        allowed, 3,
        "exactly the burst is allowed, whichever connection asks"
    );
    other.close().await;
}
both!(one_bucket_across_connections);

async fn arguments_checked(kind: Kind) {
    let db = Db::open(kind).await;
    for (bucket, interval, window) in [
        ("", INTERVAL_MS, WINDOW_MS),
        ("b\0", INTERVAL_MS, WINDOW_MS),
        (&"b".repeat(513) as &str, INTERVAL_MS, WINDOW_MS),
        ("b", 0, WINDOW_MS),
        ("b", INTERVAL_MS, INTERVAL_MS - 1),
    ] {
        let e = db
            .kl
            .rate_check(bucket, interval, window)
            .await
            .unwrap_err();
        assert_eq!(
            e.code(),
            "invalid_argument",
            "{bucket:?} {interval} {window}: {e}"
        );
    }
    // The longest bucket name is accepted.
    assert_eq!(
        db.kl
            .rate_check(&"b".repeat(512), INTERVAL_MS, WINDOW_MS)
            .await
            .unwrap(),
        None
    );
}
both!(arguments_checked);
