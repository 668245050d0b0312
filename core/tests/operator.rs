//! The operator queries behind the `keyleash` CLI (`get`, `top_spenders`,
//! `export_ledger`) on both stores, with the manual clock: statuses in validate's
//! order, windows by the core's time, and export ids that depend only on the row.

mod common;

use chrono::Duration;
use common::{budget, opts, t, Db, Kind, START};
use futures::StreamExt;
use keyleash::{CreateOptions, KeyStatus, SpendBy, UsageRange};

// get: the chain's smallest remaining amount and the status validate would give,
// for a key, a child under an exhausted parent, an expired and a revoked key.
async fn get_reports_status(kind: Kind) {
    let db = Db::open(kind).await;
    let parent = db.kl.create(budget("acme", 10.0, None)).await.unwrap();
    let child = db
        .kl
        .create(CreateOptions {
            parent_id: Some(parent.id),
            budget_cents: Some(100.0),
            ..opts("acme")
        })
        .await
        .unwrap();
    db.charge(&child.key, 4.0).await;
    let d = db.kl.get(child.id).await.unwrap().expect("the child");
    assert_eq!(d.status, KeyStatus::Active);
    assert_eq!(d.key.budget_used_cents, 4.0);
    assert_eq!(d.budget_remaining_cents, Some(6.0), "the parent's 10 binds");
    db.charge(&parent.key, 6.0).await;
    let d = db.kl.get(child.id).await.unwrap().unwrap();
    assert_eq!(d.status, KeyStatus::BudgetExceeded);
    assert_eq!(d.budget_remaining_cents, Some(0.0));
    assert_eq!(
        db.reason(&child.key).await.map(|r| r.as_str()),
        Some("budget_exceeded")
    );

    let short = db
        .kl
        .create(CreateOptions {
            expires_in: Some("1h".into()),
            ..opts("acme")
        })
        .await
        .unwrap();
    assert_eq!(
        db.kl.get(short.id).await.unwrap().unwrap().status,
        KeyStatus::Active
    );
    db.clock().advance(Duration::hours(2));
    let d = db.kl.get(short.id).await.unwrap().unwrap();
    assert_eq!(d.status, KeyStatus::Expired);
    assert_eq!(d.budget_remaining_cents, None, "uncapped");
    assert!(db.kl.revoke(parent.id, None).await.unwrap());
    assert_eq!(
        db.kl.get(child.id).await.unwrap().unwrap().status,
        KeyStatus::Revoked
    );
    assert!(db.kl.get(999_999).await.unwrap().is_none());
    assert!(db.kl.get(0).await.unwrap().is_none());
}
both!(get_reports_status);

// top_spenders: sums per key and per account within the window, biggest first.
async fn top_spenders_sums_the_window(kind: Kind) {
    let db = Db::open(kind).await;
    let a = db.kl.create(opts("acme")).await.unwrap();
    let b = db.kl.create(opts("bolt")).await.unwrap();
    db.charge(&a.key, 50.0).await; // two days before the window
    db.clock().advance(Duration::days(2));
    db.charge(&a.key, 1.0).await;
    db.charge(&b.key, 2.5).await;
    let now = db.kl.clock().now();
    let day = UsageRange::trailing("day", now).unwrap();
    assert_eq!((day.from, day.to), (Some(now - Duration::days(1)), None));
    let top = db.kl.top_spenders(SpendBy::Key, day, 10).await.unwrap();
    let got: Vec<(Option<i64>, f64, i64)> = top
        .iter()
        .map(|s| (s.key_id, s.spent_cents, s.charges))
        .collect();
    assert_eq!(got, vec![(Some(b.id), 2.5, 1), (Some(a.id), 1.0, 1)]);
    assert_eq!(top[0].account_id.as_deref(), Some("bolt"));
    let all = UsageRange::trailing("all", now).unwrap();
    let top = db.kl.top_spenders(SpendBy::Account, all, 1).await.unwrap();
    assert_eq!(top.len(), 1);
    assert_eq!(
        (top[0].account_id.as_deref(), top[0].spent_cents),
        (Some("acme"), 51.0)
    );
    assert_eq!(top[0].key_id, None);
    let err = db.kl.top_spenders(SpendBy::Key, all, 0).await.unwrap_err();
    assert_eq!(err.code(), "invalid_argument");
    assert_eq!(
        UsageRange::trailing("year", now).unwrap_err().code(),
        "invalid_period"
    );
}
both!(top_spenders_sums_the_window);

// top_spenders past the counters' range: sums that pass i64::MAX micro-cents
// answer i64::MAX (saturated, as the counters are) instead of an error, by key
// and by account, ranked first; sums below it stay exact to the micro-cent,
// carries between the halves of a 64-bit amount included.
async fn top_spenders_saturate_past_the_range(kind: Kind) {
    let db = Db::open(kind).await;
    let big = db.kl.create(opts("acme")).await.unwrap();
    let odd = db.kl.create(opts("bolt")).await.unwrap();
    let small = db.kl.create(opts("acme")).await.unwrap();
    for _ in 0..3 {
        db.charge(&big.key, 1.0).await;
        db.charge(&odd.key, 1.0).await;
    }
    db.charge(&small.key, 2.5).await;
    db.exec(&format!(
        "UPDATE {{ledger}} SET amount_micros = {} WHERE key_id = {}",
        i64::MAX - 1,
        big.id
    ))
    .await;
    db.exec(&format!(
        "UPDATE {{ledger}} SET amount_micros = 4294967295 WHERE key_id = {}",
        odd.id
    ))
    .await;
    let cents = keyleash::amount::micros_to_cents;
    let all = UsageRange::trailing("all", db.kl.clock().now()).unwrap();
    let top = db.kl.top_spenders(SpendBy::Key, all, 10).await.unwrap();
    let got: Vec<(Option<i64>, f64, i64)> = top
        .iter()
        .map(|s| (s.key_id, s.spent_cents, s.charges))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some(big.id), cents(i64::MAX), 3),
            (Some(odd.id), cents(3 * 4_294_967_295), 3),
            (Some(small.id), 2.5, 1),
        ]
    );
    let top = db.kl.top_spenders(SpendBy::Account, all, 10).await.unwrap();
    let got: Vec<(Option<&str>, f64, i64)> = top
        .iter()
        .map(|s| (s.account_id.as_deref(), s.spent_cents, s.charges))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some("acme"), cents(i64::MAX), 4),
            (Some("bolt"), cents(3 * 4_294_967_295), 3),
        ]
    );
}
both!(top_spenders_saturate_past_the_range);

// export_ledger: every row of the window once, in id order, with ids built from
// the table and the row; a namespace changes them; a backwards window is refused.
async fn export_streams_the_window(kind: Kind) {
    let db = Db::open(kind).await;
    let a = db.kl.create(opts("acme")).await.unwrap();
    for i in 1..=5 {
        db.charge(&a.key, f64::from(i)).await;
        db.clock().advance(Duration::minutes(1));
    }
    let start = t(START);
    let range = UsageRange {
        from: Some(start + Duration::minutes(1)),
        to: Some(start + Duration::minutes(4)),
    };
    let read = |namespace: Option<&'static str>| {
        let kl = db.kl.clone();
        async move {
            kl.export_ledger(range, namespace)
                .map(|r| r.expect("a record"))
                .collect::<Vec<_>>()
                .await
        }
    };
    let first = read(None).await;
    assert_eq!(
        first.iter().map(|r| r.amount_cents).collect::<Vec<_>>(),
        vec![2.0, 3.0, 4.0]
    );
    assert_eq!(first, read(None).await);
    for r in &first {
        assert_eq!(r.key_id, a.id);
        assert_eq!(
            Some(r.amount_micros),
            keyleash::amount::cents_to_micros(r.amount_cents)
        );
        assert!(r.id.starts_with("kl_") && r.id.ends_with(&format!("_{}", r.ledger_id)));
        assert_eq!(r.id.len(), 20 + r.ledger_id.to_string().len());
    }
    let other = read(Some("eu-1")).await;
    assert_ne!(other[0].id, first[0].id);
    assert_eq!(other[0].ledger_id, first[0].ledger_id);
    let backwards = UsageRange {
        from: range.to,
        to: range.from,
    };
    let errors: Vec<_> = db.kl.export_ledger(backwards, None).collect().await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].as_ref().unwrap_err().code(), "invalid_argument");
    // Dropping the stream early ends the export without error.
    let mut stream = db.kl.export_ledger(UsageRange::default(), None);
    assert!(stream.next().await.is_some());
    drop(stream);
    assert_eq!(
        db.kl
            .usage(a.id, UsageRange::default())
            .await
            .unwrap()
            .len(),
        5
    );
}
both!(export_streams_the_window);
