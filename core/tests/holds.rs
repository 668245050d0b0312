//! Holds (`reserve` → `settle` / `release`) on both stores, checked against the
//! database: what counts as held, when a hold stops counting, and that nothing is
//! counted twice, one caller at a time and under real parallel callers.

mod common;

use common::{budget, Db, Kind};
use futures::future::join_all;
use keyleash::{
    Charge, ChargeRefusal, CreateOptions, CreatedKey, HoldStatus, KeyLeash, Reserve, ReserveResult,
    SettleRefusal, SettleResult,
};

async fn hold(kl: &KeyLeash, raw: &str, reserve: Reserve) -> i64 {
    let r = kl.reserve(raw, reserve).await.expect("reserve");
    r.hold_id().unwrap_or_else(|| panic!("refused: {r:?}"))
}

fn settled(used: f64, remaining: Option<f64>) -> SettleResult {
    SettleResult::Settled {
        budget_used_cents: used,
        budget_remaining_cents: remaining,
    }
}

/// The sum of the shares the database still stores for a key, in micro-cents.
async fn shares(db: &Db, key: i64) -> i64 {
    db.scalar(&format!(
        "SELECT CAST(COALESCE(SUM(amount_micros), 0) AS BIGINT) FROM {{hold_keys}} WHERE key_id = {key}"
    ))
    .await
    .unwrap_or(0)
}

/// How many holds of a key are in `state`.
async fn holds_in(db: &Db, key: i64, state: &str) -> i64 {
    db.scalar(&format!(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM {{holds}} WHERE key_id = {key} AND state = '{state}'"
    ))
    .await
    .unwrap_or(0)
}

// Pins the basic cycle: a hold counts against the cap for reserves and charges,
// validate reports it, settle charges the actual cost in full once (ledger row
// naming the hold), and a repeated settle or a release changes nothing.
async fn reserve_then_settle(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 100.0, None)).await.unwrap();
    let h = hold(&db.kl, &k.key, Reserve::cents(60.0)).await;
    let info = db.info(&k.key).await;
    assert_eq!(
        (info.budget_held_cents, info.budget_remaining_cents),
        (60.0, Some(40.0))
    );
    let refused = db.kl.reserve(&k.key, Reserve::cents(50.0)).await.unwrap();
    assert_eq!(
        refused,
        ReserveResult::Refused(ChargeRefusal::BudgetExceeded)
    );
    assert!(!db.charge(&k.key, 41.0).await.success());
    assert!(db.charge(&k.key, 10.0).await.success());
    // Above the hold: recorded in full, the key is then spent.
    assert_eq!(
        db.kl.settle(h, 95.0).await.unwrap(),
        settled(105.0, Some(0.0))
    );
    assert_eq!(
        db.kl.settle(h, 1.0).await.unwrap(),
        settled(105.0, Some(0.0))
    );
    assert!(!db.kl.release(h).await.unwrap());
    assert_eq!(db.used_micros(k.id).await, 105_000_000);
    assert_eq!(db.ledger(k.id).await, (105_000_000, 2));
    let named = db
        .scalar("SELECT CAST(hold_id AS BIGINT) FROM {ledger} WHERE amount_micros = 95000000")
        .await;
    assert_eq!(named, Some(h));
    assert_eq!(
        (
            shares(&db, k.id).await,
            holds_in(&db, k.id, "settled").await
        ),
        (0, 1)
    );
    assert_eq!(
        db.reason(&k.key).await,
        Some(keyleash::InvalidReason::BudgetExceeded)
    );
}
both!(reserve_then_settle);

// Pins release: frees the hold once; a settle after it is refused; unknown ids.
async fn release_frees_once(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 100.0, None)).await.unwrap();
    let h = hold(&db.kl, &k.key, Reserve::cents(100.0)).await;
    assert!(!db.charge(&k.key, 1.0).await.success());
    assert!(db.kl.release(h).await.unwrap());
    assert!(!db.kl.release(h).await.unwrap());
    let refused = SettleResult::Refused(SettleRefusal::HoldReleased);
    assert_eq!(db.kl.settle(h, 5.0).await.unwrap(), refused);
    assert!(db.charge(&k.key, 100.0).await.success());
    let unknown = SettleResult::Refused(SettleRefusal::UnknownHold);
    assert_eq!(db.kl.settle(h + 1000, 5.0).await.unwrap(), unknown);
    assert!(!db.kl.release(h + 1000).await.unwrap());
    assert_eq!(db.ledger(k.id).await, (100_000_000, 1));
    assert_eq!(shares(&db, k.id).await, 0);
}
both!(release_frees_once);

// Pins ttl expiry with no background job: the hold stops counting at its expiry,
// the next write deletes its share, and a late settle still records the cost.
async fn expiry_frees_and_late_settle_counts(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 100.0, None)).await.unwrap();
    let h = hold(&db.kl, &k.key, Reserve::cents(90.0).ttl("1m")).await;
    db.clock().advance(chrono::Duration::seconds(59));
    assert_eq!(db.info(&k.key).await.budget_held_cents, 90.0);
    db.clock().advance(chrono::Duration::seconds(1));
    assert_eq!(db.info(&k.key).await.budget_held_cents, 0.0);
    assert!(db.charge(&k.key, 50.0).await.success());
    assert_eq!(
        shares(&db, k.id).await,
        0,
        "the charge's write removed the expired share"
    );
    // An expired hold frees nothing; released, it can no longer be settled.
    assert!(!db.kl.release(h).await.unwrap());
    let refused = SettleResult::Refused(SettleRefusal::HoldReleased);
    assert_eq!(db.kl.settle(h, 1.0).await.unwrap(), refused);
    let db2 = Db::open(kind).await;
    let k2 = db2.kl.create(budget("a", 100.0, None)).await.unwrap();
    let h2 = hold(&db2.kl, &k2.key, Reserve::cents(90.0).ttl("1m")).await;
    db2.clock().advance(chrono::Duration::seconds(3600));
    assert_eq!(
        db2.kl.settle(h2, 30.0).await.unwrap(),
        settled(30.0, Some(70.0))
    );
    assert_eq!(db2.ledger(k2.id).await, (30_000_000, 1));
}
both!(expiry_frees_and_late_settle_counts);

// Pins the period rule: a hold counts in the period it was made in only; after
// the reset it holds nothing, and its settle lands in the new period.
async fn a_hold_belongs_to_its_period(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 100.0, Some("day"))).await.unwrap();
    db.clock().advance(chrono::Duration::seconds(86_400 - 60));
    let h = hold(&db.kl, &k.key, Reserve::cents(80.0).ttl("10m")).await;
    assert_eq!(db.info(&k.key).await.budget_held_cents, 80.0);
    db.clock().advance(chrono::Duration::seconds(120));
    let info = db.info(&k.key).await;
    assert_eq!((info.budget_held_cents, info.budget_used_cents), (0.0, 0.0));
    assert!(db.charge(&k.key, 30.0).await.success());
    assert_eq!(
        db.kl.settle(h, 60.0).await.unwrap(),
        settled(90.0, Some(10.0))
    );
    assert_eq!(db.used_micros(k.id).await, 90_000_000);
}
both!(a_hold_belongs_to_its_period);

/// A parent key capped at 100 cents and its child capped at `child_cents`.
async fn parent_and_child(db: &Db, child_cents: f64) -> (CreatedKey, CreatedKey) {
    let parent = db.kl.create(budget("a", 100.0, None)).await.unwrap();
    let child = CreateOptions {
        parent_id: Some(parent.id),
        ..budget("a", child_cents, None)
    };
    (parent, db.kl.create(child).await.unwrap())
}

// Pins holds against ancestors: a child's hold counts against its parent.
async fn holds_count_against_ancestors(kind: Kind) {
    let db = Db::open(kind).await;
    let (parent, child) = parent_and_child(&db, 90.0).await;
    let h = hold(&db.kl, &child.key, Reserve::cents(80.0)).await;
    assert_eq!(db.info(&parent.key).await.budget_held_cents, 80.0);
    let refused = db
        .kl
        .reserve(&parent.key, Reserve::cents(30.0))
        .await
        .unwrap();
    assert_eq!(
        refused,
        ReserveResult::Refused(ChargeRefusal::BudgetExceeded)
    );
    assert_eq!(
        db.kl.settle(h, 10.0).await.unwrap(),
        settled(10.0, Some(80.0))
    );
    let parent_info = db.info(&parent.key).await;
    assert_eq!(
        (parent_info.budget_held_cents, parent_info.budget_used_cents),
        (0.0, 10.0)
    );
}
both!(holds_count_against_ancestors);

/// A row's `holds_until_us` hint: while it is ahead, reads fetch the row's shares.
async fn hint(db: &Db, id: i64) -> Option<i64> {
    db.column(id, "holds_until_us").await
}

// Pins the share hint of a key and its parent: it comes down once the hold that
// set it closes, to the latest share still open (which still counts), and goes
// once the last one closes, so that the next spend reads no shares; a share that
// expires meanwhile is no reason to keep it.
async fn the_share_hint_follows_the_open_holds(kind: Kind) {
    let db = Db::open(kind).await;
    let (parent, child) = parent_and_child(&db, 50.0).await;
    let now_us = db.kl.clock().now().timestamp_micros();
    let long = hold(&db.kl, &child.key, Reserve::cents(10.0).ttl("10m")).await;
    let short = hold(&db.kl, &child.key, Reserve::cents(20.0).ttl("5m")).await;
    let (ten, five) = (now_us + 600_000_000, now_us + 300_000_000);
    for id in [child.id, parent.id] {
        assert_eq!(hint(&db, id).await, Some(ten));
    }
    assert_eq!(
        db.kl.settle(long, 5.0).await.unwrap(),
        settled(5.0, Some(25.0))
    );
    for id in [child.id, parent.id] {
        assert_eq!(hint(&db, id).await, Some(five), "the short hold is open");
    }
    // The short hold still counts: 5 used + 20 held of 50 leaves 25.
    let refused = db
        .kl
        .track_usage(&child.key, Charge::cents(30.0))
        .await
        .unwrap();
    assert_eq!(refused.reason(), Some(ChargeRefusal::BudgetExceeded));
    assert_eq!(db.info(&parent.key).await.budget_held_cents, 20.0);
    assert!(db.kl.release(short).await.unwrap());
    for id in [child.id, parent.id] {
        assert_eq!(hint(&db, id).await, None, "no hold is open");
        assert_eq!(shares(&db, id).await, 0);
    }
    assert!(db.charge(&child.key, 30.0).await.success());
    // A hold left to expire: the next spend after its expiry finds the hint
    // passed, deletes the share, and a new hold sets the hint again.
    hold(&db.kl, &child.key, Reserve::cents(1.0).ttl("1m")).await;
    db.clock().advance(chrono::Duration::seconds(61));
    let later = hold(&db.kl, &child.key, Reserve::cents(2.0).ttl("1m")).await;
    assert_eq!(shares(&db, child.id).await, 2_000_000);
    assert!(db.kl.release(later).await.unwrap());
    assert_eq!(hint(&db, child.id).await, None);
    assert_eq!(db.info(&child.key).await.budget_held_cents, 0.0);
}
both!(the_share_hint_follows_the_open_holds);

// Pins replayed reserves: the same idempotency key holds once and every repeat is a
// replay naming the first hold and where it stands (held, settled, released), never a
// success, even from 20 callers on 4 pools at once; another estimate is a conflict.
async fn idempotent_reserve(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 10.0, None)).await.unwrap();
    let mut pools = vec![db.kl.clone()];
    for _ in 0..3 {
        pools.push(db.another().await);
    }
    let tasks = (0..20).map(|i| {
        let (kl, key) = (pools[i % 4].clone(), k.key.clone());
        tokio::spawn(async move {
            kl.reserve(&key, Reserve::cents(5.0).idempotent("x"))
                .await
                .unwrap()
        })
    });
    let results: Vec<ReserveResult> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let held: Vec<i64> = results.iter().filter_map(ReserveResult::hold_id).collect();
    assert_eq!(held.len(), 1, "{results:?}");
    let replays_of = |state: HoldStatus, results: &[ReserveResult]| {
        results
            .iter()
            .filter(|r| {
                matches!(r, ReserveResult::Replayed { hold_id, state: s, .. }
                    if *hold_id == held[0] && *s == state)
            })
            .count()
    };
    assert_eq!(replays_of(HoldStatus::Held, &results), 19);
    assert!(results.iter().filter(|r| r.success()).count() == 1);
    assert_eq!(holds_in(&db, k.id, "held").await, 1);
    assert_eq!(db.info(&k.key).await.budget_held_cents, 5.0);
    // Settled at 9 of 10: a replay is no hold to spend under, a fresh reserve is refused.
    db.kl.settle(held[0], 9.0).await.unwrap();
    let again = db
        .kl
        .reserve(&k.key, Reserve::cents(5.0).idempotent("x"))
        .await
        .unwrap();
    assert_eq!(
        replays_of(HoldStatus::Settled, std::slice::from_ref(&again)),
        1,
        "{again:?}"
    );
    assert!(!again.success());
    let fresh = db.kl.reserve(&k.key, Reserve::cents(5.0)).await.unwrap();
    assert_eq!(fresh, ReserveResult::Refused(ChargeRefusal::BudgetExceeded));
    let other = db
        .kl
        .reserve(&k.key, Reserve::cents(1.0).idempotent("x"))
        .await
        .unwrap();
    assert_eq!(
        other,
        ReserveResult::Refused(ChargeRefusal::IdempotencyConflict)
    );
    // Released: the replay says so.
    let r = hold(&db.kl, &k.key, Reserve::cents(1.0).idempotent("y")).await;
    assert!(db.kl.release(r).await.unwrap());
    let again = db
        .kl
        .reserve(&k.key, Reserve::cents(1.0).idempotent("y"))
        .await
        .unwrap();
    assert!(
        matches!(again, ReserveResult::Replayed { hold_id, state: HoldStatus::Released, .. } if hold_id == r),
        "{again:?}"
    );
    assert_eq!(db.ledger(k.id).await, (9_000_000, 1));
}
both!(idempotent_reserve);

// Pins the bounds decided without the store.
async fn refusals_without_the_store(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 100.0, None)).await.unwrap();
    for cost in [0.0, -1.0, f64::NAN] {
        let r = db.kl.reserve(&k.key, Reserve::cents(cost)).await.unwrap();
        assert_eq!(r, ReserveResult::Refused(ChargeRefusal::InvalidCost));
    }
    for ttl in ["0s", "2d", "soon"] {
        let e = db
            .kl
            .reserve(&k.key, Reserve::cents(1.0).ttl(ttl))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "invalid_duration", "{ttl}");
    }
    let r = db.kl.reserve("ak_nope", Reserve::cents(1.0)).await.unwrap();
    assert_eq!(r, ReserveResult::Refused(ChargeRefusal::InvalidKey));
    let r = db.kl.settle(1, f64::INFINITY).await.unwrap();
    assert_eq!(r, SettleResult::Refused(SettleRefusal::InvalidCost));
}
both!(refusals_without_the_store);

/// Four clients on one table, as four processes would be.
async fn clients(db: &Db) -> Vec<KeyLeash> {
    let mut v = vec![db.kl.clone()];
    for _ in 1..4 {
        v.push(db.another().await);
    }
    v
}

// Pins the cap under parallel reserves: 200 estimates adding up to 4x the
// remainder admit holds totalling at most the remainder.
async fn parallel_reserves_never_pass_the_cap(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 100.0, None)).await.unwrap();
    assert!(db.charge(&k.key, 50.0).await.success());
    let cl = clients(&db).await;
    let tasks = (0..200).map(|i| {
        let (kl, key) = (cl[i % cl.len()].clone(), k.key.clone());
        tokio::spawn(async move { kl.reserve(&key, Reserve::cents(1.0)).await.unwrap() })
    });
    let held = join_all(tasks)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().success())
        .count();
    assert_eq!(held, 50);
    assert_eq!(shares(&db, k.id).await, 50_000_000);
    let spent = Some(keyleash::InvalidReason::BudgetExceeded);
    assert_eq!(db.reason(&k.key).await, spent);
}
both!(parallel_reserves_never_pass_the_cap);

// Pins 200 reserve→settle pairs with varied costs, in parallel, and releases and
// settles racing on the same holds: counter == ledger, nothing left held.
async fn parallel_settles_count_once(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 1_000_000.0, None)).await.unwrap();
    let cl = clients(&db).await;
    let tasks = (0..200).map(|i| {
        let (kl, other, key) = (cl[i % 4].clone(), cl[(i + 1) % 4].clone(), k.key.clone());
        tokio::spawn(async move {
            let h = kl
                .reserve(&key, Reserve::cents(5.0))
                .await
                .unwrap()
                .hold_id()
                .unwrap();
            let cost = f64::from(u32::try_from(i % 13).unwrap()) * 0.37;
            // Settle, a racing settle and a racing release on the same hold.
            let (a, b, c) =
                tokio::join!(kl.settle(h, cost), other.settle(h, cost), other.release(h));
            (a.unwrap(), b.unwrap(), c.unwrap())
        })
    });
    for r in join_all(tasks).await {
        let (a, b, released) = r.unwrap();
        // Either the release came first (both settles refused) or a settle did
        // (both settles agree, the release freed nothing).
        if released {
            assert!(!a.success() && !b.success());
        } else {
            assert_eq!(a, b);
        }
    }
    let (sum, _) = db.ledger(k.id).await;
    assert_eq!(db.used_micros(k.id).await, sum);
    assert_eq!(shares(&db, k.id).await, 0);
    assert_eq!(holds_in(&db, k.id, "held").await, 0);
    assert_eq!(db.info(&k.key).await.budget_held_cents, 0.0);
}
both!(parallel_settles_count_once);

// Pins settles, releases and ttl expiry racing on the same holds: 120 holds, from
// four clients, are settled, released or left alone (with a 1-cent charge beside
// each of those) while the clock passes their expiry in the middle of it all. A settle that lands after the expiry still
// records its cost (late settles are real spend), a release then frees nothing,
// and nothing is counted twice: counter == ledger == the settled costs, one
// ledger row per settled hold, nothing held afterwards.
async fn expiry_races_settles_and_releases(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 1_000_000.0, None)).await.unwrap();
    let cl = clients(&db).await;
    let mut ids = Vec::new();
    for _ in 0..120 {
        ids.push(hold(&db.kl, &k.key, Reserve::cents(5.0).ttl("1m")).await);
    }
    let tasks = ids.iter().enumerate().map(|(i, &h)| {
        let (kl, key) = (cl[i % cl.len()].clone(), k.key.clone());
        tokio::spawn(async move {
            match i % 3 {
                0 => Some(kl.settle(h, 3.0).await.unwrap()),
                1 => {
                    kl.release(h).await.unwrap();
                    None
                }
                // The hold left alone, and a charge beside it, whose write
                // cleans up the shares that stopped counting.
                _ => {
                    let charged = kl.track_usage(&key, Charge::cents(1.0)).await.unwrap();
                    assert!(charged.success());
                    None
                }
            }
        })
    });
    let clock = db.clock().clone();
    let expire = tokio::spawn(async move {
        tokio::task::yield_now().await;
        clock.advance(chrono::Duration::seconds(61));
    });
    let outcomes = join_all(tasks).await;
    expire.await.unwrap();
    let settled = outcomes
        .into_iter()
        .filter_map(|o| o.unwrap())
        .inspect(|s| assert!(s.success(), "{s:?}"))
        .count();
    assert_eq!(settled, 40);
    let (sum, rows) = db.ledger(k.id).await;
    assert_eq!((sum, rows), (160_000_000, 80));
    assert_eq!(db.used_micros(k.id).await, sum);
    let named = db
        .scalar("SELECT CAST(COUNT(DISTINCT hold_id) AS BIGINT) FROM {ledger} WHERE hold_id IS NOT NULL")
        .await;
    assert_eq!(named, Some(40));
    let info = db.info(&k.key).await;
    assert_eq!(
        (info.budget_held_cents, info.budget_used_cents),
        (0.0, 160.0)
    );
    assert_eq!(holds_in(&db, k.id, "settled").await, 40);
    // Every release after the expiry, and every second release, frees nothing.
    for &h in &ids {
        assert!(!db.kl.release(h).await.unwrap());
    }
    assert_eq!(db.ledger(k.id).await, (160_000_000, 80));
    assert!(db.charge(&k.key, 1.0).await.success());
    assert_eq!(
        shares(&db, k.id).await,
        0,
        "the charge's write removed every share"
    );
}
both!(expiry_races_settles_and_releases);
