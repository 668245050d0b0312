//! The cap holds under real parallel callers, checked against the database after.

mod common;

use common::{budget, Db, Kind};
use futures::future::join_all;
use keyleash::{Charge, ChargeRefusal, ChargeResult, CreateOptions, KeyLeash};

/// Fires `n` charges of `cost` at `key` at once, spread over `clients`
/// (separate pools, as separate processes would have), each on its own task.
async fn fire(clients: &[KeyLeash], key: &str, n: usize, cost: f64) -> (usize, usize) {
    let tasks = (0..n).map(|i| {
        let kl = clients[i % clients.len()].clone();
        let key = key.to_string();
        tokio::spawn(async move { kl.track_usage(&key, Charge::cents(cost)).await })
    });
    let mut ok = 0;
    let mut refused = 0;
    for r in join_all(tasks).await {
        match r.unwrap().unwrap() {
            r if r.success() => ok += 1,
            r => {
                assert_eq!(r.reason(), Some(ChargeRefusal::BudgetExceeded));
                refused += 1;
            }
        }
    }
    (ok, refused)
}

async fn clients(db: &Db, n: usize) -> Vec<KeyLeash> {
    let mut v = vec![db.kl.clone()];
    for _ in 1..n {
        v.push(db.another().await);
    }
    v
}

// Pins: 200 parallel 1-cent charges on a 100-cent budget → exactly 100 succeed; counter and ledger agree.
async fn two_hundred_one_cent(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 100.0, None)).await.unwrap();
    let cl = clients(&db, 4).await;
    assert_eq!(fire(&cl, &k.key, 200, 1.0).await, (100, 100));
    assert_eq!(db.used_micros(k.id).await, 100_000_000);
    assert_eq!(db.ledger(k.id).await, (100_000_000, 100));
    assert_eq!(db.column(k.id, "budget_used_cents").await, Some(100));
}
both!(two_hundred_one_cent);

// Pins: twenty parallel 20-cent charges on a 100-cent budget → exactly 5 succeed.
async fn twenty_twenty_cent(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 100.0, None)).await.unwrap();
    let cl = clients(&db, 3).await;
    assert_eq!(fire(&cl, &k.key, 20, 20.0).await, (5, 15));
    assert_eq!(db.used_micros(k.id).await, 100_000_000);
    assert_eq!(db.ledger(k.id).await, (100_000_000, 5));
}
both!(twenty_twenty_cent);

// Pins that many keys charged at once each hold their own cap exactly (no cross-key interference).
async fn many_keys_at_once(kind: Kind) {
    let db = Db::open(kind).await;
    let cl = clients(&db, 3).await;
    let mut keys = Vec::new();
    for _ in 0..10 {
        keys.push(db.kl.create(budget("a", 10.0, None)).await.unwrap());
    }
    let tasks = keys
        .iter()
        .flat_map(|k| (0..15).map(move |i| (k.key.clone(), i)))
        .map(|(key, i)| {
            let kl = cl[i % cl.len()].clone();
            tokio::spawn(async move {
                kl.track_usage(&key, Charge::cents(1.0))
                    .await
                    .unwrap()
                    .success()
            })
        });
    let ok = join_all(tasks)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(ok, 100);
    for k in &keys {
        assert_eq!(db.used_micros(k.id).await, 10_000_000);
        assert_eq!(db.ledger(k.id).await, (10_000_000, 10));
    }
}
both!(many_keys_at_once);

// Pins that one idempotency key fired 50 times at once from several pools is applied exactly
// once, and that every other call is told it is a replay.
async fn concurrent_idempotent_repeats(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 100.0, None)).await.unwrap();
    let cl = clients(&db, 4).await;
    let tasks = (0..50).map(|i| {
        let kl = cl[i % cl.len()].clone();
        let key = k.key.clone();
        tokio::spawn(async move {
            kl.track_usage(&key, Charge::cents(7.0).idempotent("once"))
                .await
                .unwrap()
        })
    });
    let results: Vec<_> = join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    // One charge, 49 replays of its numbers.
    let charged = ChargeResult::Charged {
        budget_used_cents: 7.0,
        budget_remaining_cents: Some(93.0),
    };
    let replayed = ChargeResult::Replayed {
        budget_used_cents: 7.0,
        budget_remaining_cents: Some(93.0),
    };
    let count = |r: &ChargeResult| results.iter().filter(|x| *x == r).count();
    assert_eq!((count(&charged), count(&replayed)), (1, 49), "{results:?}");
    assert_eq!(db.used_micros(k.id).await, 7_000_000);
    assert_eq!(db.ledger(k.id).await, (7_000_000, 1));
}
both!(concurrent_idempotent_repeats);

// Pins that charges racing a period rollover never lose a charge or double-reset.
async fn charges_across_a_rollover(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db
        .kl
        .create(CreateOptions {
            budget_period: Some("day".into()),
            ..budget("a", 1000.0, None)
        })
        .await
        .unwrap();
    assert!(db
        .kl
        .track_usage(&k.key, Charge::cents(500.0))
        .await
        .unwrap()
        .success());
    db.clock().advance(chrono::Duration::days(1));
    let cl = clients(&db, 3).await;
    let validates = (0..20).map(|i| {
        let kl = cl[i % cl.len()].clone();
        let key = k.key.clone();
        tokio::spawn(async move { kl.validate(&key).await.unwrap() })
    });
    let (charges, _) = tokio::join!(fire(&cl, &k.key, 30, 1.0), join_all(validates));
    assert_eq!(charges, (30, 0));
    assert_eq!(
        db.used_micros(k.id).await,
        30_000_000,
        "the new period holds exactly the 30 new charges"
    );
    assert_eq!(db.ledger(k.id).await, (530_000_000, 31));
}
both!(charges_across_a_rollover);
