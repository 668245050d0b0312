//! Parent keys: a child's charges count against every ancestor, atomically, and a
//! revoked or expired ancestor disables its descendants.

mod common;

use chrono::Duration;
use common::{budget, opts, Db, Kind};
use futures::future::join_all;
use keyleash::{Charge, ChargeRefusal, CreateOptions, InvalidReason};

fn child_of(parent: i64, cap: Option<f64>) -> CreateOptions {
    CreateOptions {
        parent_id: Some(parent),
        budget_cents: cap,
        ..CreateOptions::default()
    }
}

// Pins: a child's charge uses the parent's budget too, and fits only if it fits both.
async fn child_draws_on_parent(kind: Kind) {
    let db = Db::open(kind).await;
    let p = db.kl.create(budget("a", 100.0, None)).await.unwrap();
    let c1 = db.kl.create(child_of(p.id, None)).await.unwrap();
    let c2 = db.kl.create(child_of(p.id, Some(30.0))).await.unwrap();
    assert_eq!(db.info(&c1.key).await.account_id, "a");
    assert!(db.charge(&c1.key, 60.0).await.success());
    assert_eq!(db.info(&p.key).await.budget_used_cents, 60.0);
    // The child's own cap is 30 but only 40 is left above it: 31 does not fit the child.
    let r = db.charge(&c2.key, 31.0).await;
    assert_eq!(r.reason(), Some(ChargeRefusal::BudgetExceeded));
    let info = db.info(&c2.key).await;
    assert_eq!(info.budget_remaining_cents, Some(30.0));
    assert!(db.charge(&c2.key, 30.0).await.success());
    // Now the parent has 10 left: c1 (uncapped itself) sees 10 remaining.
    assert_eq!(db.info(&c1.key).await.budget_remaining_cents, Some(10.0));
    let r = db.charge(&c1.key, 11.0).await;
    assert_eq!(r.reason(), Some(ChargeRefusal::BudgetExceeded));
    assert!(db.charge(&p.key, 10.0).await.success());
    assert_eq!(
        db.reason(&c1.key).await,
        Some(InvalidReason::BudgetExceeded)
    );
    assert_eq!(db.used_micros(p.id).await, 100_000_000);
    assert_eq!(db.used_micros(c1.id).await, 60_000_000);
    assert_eq!(db.used_micros(c2.id).await, 30_000_000);
    // The ledger has one row per charge, on the charged key only.
    assert_eq!(db.ledger(p.id).await, (10_000_000, 1));
    assert_eq!(db.ledger(c1.id).await, (60_000_000, 1));
}
both!(child_draws_on_parent);

// Pins: revoking or expiring an ancestor disables its descendants, revoked first.
async fn ancestors_disable_descendants(kind: Kind) {
    let db = Db::open(kind).await;
    let p = db
        .kl
        .create(CreateOptions {
            expires_in: Some("1h".into()),
            ..opts("a")
        })
        .await
        .unwrap();
    let c = db.kl.create(child_of(p.id, None)).await.unwrap();
    let g = db.kl.create(child_of(c.id, None)).await.unwrap();
    assert!(db.reason(&g.key).await.is_none());
    db.clock().advance(Duration::hours(1));
    assert_eq!(db.reason(&g.key).await, Some(InvalidReason::Expired));
    let r = db.charge(&g.key, 1.0).await;
    assert_eq!(r.reason(), Some(ChargeRefusal::Expired));
    assert!(db.kl.revoke(c.id, None).await.unwrap());
    assert_eq!(db.reason(&g.key).await, Some(InvalidReason::Revoked));
    let r = db.charge(&g.key, 1.0).await;
    assert_eq!(r.reason(), Some(ChargeRefusal::Revoked));
    assert_eq!(db.ledger(g.id).await.1, 0);
}
both!(ancestors_disable_descendants);

// Pins: 200 parallel 1-cent charges spread over four children of a 100-cent parent → exactly 100 succeed.
async fn family_cap_holds_in_parallel(kind: Kind) {
    let db = Db::open(kind).await;
    let p = db.kl.create(budget("a", 100.0, None)).await.unwrap();
    let mut kids = Vec::new();
    for _ in 0..4 {
        kids.push(db.kl.create(child_of(p.id, None)).await.unwrap().key);
    }
    let other = db.another().await;
    let tasks = (0..200).map(|i| {
        let kl = if i % 2 == 0 {
            db.kl.clone()
        } else {
            other.clone()
        };
        let key = kids[i % 4].clone();
        tokio::spawn(async move { kl.track_usage(&key, Charge::cents(1.0)).await })
    });
    let ok = join_all(tasks)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().as_ref().unwrap().success())
        .count();
    assert_eq!(ok, 100);
    assert_eq!(db.used_micros(p.id).await, 100_000_000);
    let total = db
        .scalar("SELECT CAST(SUM(amount_micros) AS BIGINT) FROM {ledger}")
        .await;
    assert_eq!(total, Some(100_000_000));
}
both!(family_cap_holds_in_parallel);

// Pins the parent checks at create: it must exist, be live and be of the same account.
async fn parent_checks(kind: Kind) {
    let db = Db::open(kind).await;
    let p = db.kl.create(opts("a")).await.unwrap();
    let code =
        |r: Result<_, keyleash::Error>| r.map(|_: keyleash::CreatedKey| ()).unwrap_err().code();
    assert_eq!(
        code(db.kl.create(child_of(p.id + 100, None)).await),
        "invalid_argument"
    );
    let other = CreateOptions {
        account_id: "b".into(),
        ..child_of(p.id, None)
    };
    assert_eq!(code(db.kl.create(other).await), "invalid_argument");
    let same = CreateOptions {
        account_id: "a".into(),
        ..child_of(p.id, None)
    };
    assert!(db.kl.create(same).await.is_ok());
    db.kl.revoke(p.id, None).await.unwrap();
    assert_eq!(
        code(db.kl.create(child_of(p.id, None)).await),
        "invalid_argument"
    );
}
both!(parent_checks);
