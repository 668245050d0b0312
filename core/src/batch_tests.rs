//! The store's batch path (what the grouping of concurrent calls will use): one
//! batch of charges must give exactly the outcomes and final state of the same
//! charges run one at a time in the same order, on both stores.

use chrono::{DateTime, Utc};

use crate::client::KeyLeash;
use crate::clock::Clock;
use crate::engine::{ChargeReq, Lookup};
use crate::group::Locked;
use crate::key;
use crate::model::{Charge, CreateOptions, Options, UsageRange};
use crate::spend::{SpendOutcome, SpendReq};

const NOW: &str = "2026-01-15T12:00:00Z";

async fn setup(url: &str, table: &str) -> (KeyLeash, Vec<String>) {
    let options = Options {
        table_name: table.into(),
        clock: Clock::manual(NOW.parse().unwrap()),
        ..Options::default()
    };
    let kl = KeyLeash::connect(url, options).await.unwrap();
    kl.migrate().await.unwrap();
    let mut hashes = Vec::new();
    for cap in [Some(50.0), Some(10.0), None] {
        let k = kl
            .create(CreateOptions {
                account_id: "a".into(),
                budget_cents: cap,
                ..Default::default()
            })
            .await
            .unwrap();
        hashes.push(key::hash(&k.key));
    }
    let subject = CreateOptions {
        budget_cents: Some(3.0),
        ..Default::default()
    };
    kl.ensure_subject("sub", subject).await.unwrap();
    // A spent key, to show earlier ledger rows are found for idempotency across batches.
    let raw = kl
        .create(CreateOptions {
            account_id: "a".into(),
            budget_cents: Some(5.0),
            ..Default::default()
        })
        .await
        .unwrap()
        .key;
    kl.track_usage(&raw, Charge::cents(2.0).idempotent("old"))
        .await
        .unwrap();
    hashes.push(key::hash(&raw));
    (kl, hashes)
}

fn requests(h: &[String]) -> Vec<SpendReq> {
    let r = |lookup: Lookup, cents: i64, idem: Option<&str>| {
        SpendReq::Charge(ChargeReq {
            lookup,
            micros: cents * 1_000_000,
            idempotency_key: idem.map(Into::into),
        })
    };
    let hash = |i: usize| Lookup::Hash(h[i].clone());
    vec![
        r(hash(0), 20, None),
        r(hash(1), 6, Some("x")),
        r(hash(0), 20, None),
        r(hash(1), 6, Some("x")),
        r(Lookup::Subject("sub".into()), 2, None),
        r(hash(0), 20, None),
        r(Lookup::Hash(key::hash("unknown")), 1, None),
        r(hash(2), 1000, None),
        r(Lookup::Subject("sub".into()), 2, None),
        r(hash(1), 5, None),
        r(hash(3), 2, Some("old")),
        r(hash(1), 4, None),
        r(hash(0), 10, Some("y")),
        r(hash(3), 3, None),
    ]
}

async fn state(kl: &KeyLeash) -> Vec<(f64, usize)> {
    let mut out = Vec::new();
    for k in kl
        .list("a")
        .await
        .unwrap()
        .into_iter()
        .chain(kl.list("sub").await.unwrap())
    {
        let ledger = kl.usage(k.id, UsageRange::default()).await.unwrap().len();
        out.push((k.budget_used_cents, ledger));
    }
    out
}

async fn batch_equals_sequential(url: &str, tag: &str) {
    let now: DateTime<Utc> = NOW.parse().unwrap();
    let (batched, h1) = setup(url, &format!("batch_{tag}_{}", std::process::id())).await;
    let (single, h2) = setup(url, &format!("single_{tag}_{}", std::process::id())).await;
    let charged = batched
        .inner
        .store
        .charge(&requests(&h1), now, Locked::none())
        .await
        .unwrap();
    let (got, mut exhausted) = (charged.outcomes, charged.exhausted);
    let (mut want, mut want_exhausted) = (Vec::new(), Vec::new());
    for req in requests(&h2) {
        let one = single
            .inner
            .store
            .charge(std::slice::from_ref(&req), now, Locked::none())
            .await
            .unwrap();
        want.extend(one.outcomes);
        want_exhausted.extend(one.exhausted);
    }
    assert_eq!(got, want);
    // The keys left without budget (what caches are told) are the same too.
    exhausted.sort_unstable();
    want_exhausted.sort_unstable();
    want_exhausted.dedup();
    assert!(!exhausted.is_empty());
    assert_eq!(exhausted, want_exhausted);
    let charged = |o: &&SpendOutcome| matches!(o, SpendOutcome::Charge(c) if c.success());
    assert_eq!(got.iter().filter(charged).count(), 10, "{got:?}");
    assert_eq!(state(&batched).await, state(&single).await);
    assert_eq!(
        state(&batched).await,
        [(50.0, 3), (10.0, 2), (1000.0, 1), (5.0, 2), (2.0, 1)]
    );
}

// Pins batch == one-at-a-time on SQLite.
#[tokio::test]
async fn sqlite_batch_equals_sequential() {
    let path = std::env::temp_dir().join(format!("keyleash_batch_{}.db", std::process::id()));
    batch_equals_sequential(&format!("sqlite://{}", path.display()), "l").await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

// Pins batch == one-at-a-time on Postgres.
#[tokio::test]
async fn postgres_batch_equals_sequential() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL is not set: run `make test`");
    batch_equals_sequential(&url, "p").await;
}
