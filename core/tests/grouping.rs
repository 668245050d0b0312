//! Grouped calls against one-at-a-time calls (docs/semantics.md, "Concurrency").
//!
//! Concurrent charges of one `KeyLeash` are grouped into batches; each caller's
//! outcome must be exactly what it would have been had the calls run one at a
//! time in arrival order. These tests make random workloads (a seeded generator,
//! so a failure names its seed), submit them all at once so they arrive in list
//! order (every call joins the queue on its first poll, before its first await),
//! and compare outcomes and the final database with the same workload run one
//! call after another on a fresh table.

mod common;

use common::{budget, opts, Db, Kind};
use futures::future::join_all;
use keyleash::{Charge, ChargeResult, CreateOptions, KeyLeash, Options, Validation};
use serde_json::Value;

/// A small deterministic generator (xorshift64*), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }
}

/// The keys of a workload: a family (a parent and two children), a small cap, a
/// revoked key and an uncapped one. Returns the raw keys, created in one order so
/// both tables get the same ids.
async fn keys(kl: &KeyLeash) -> Vec<String> {
    keys_of(kl, "a").await
}

/// [`keys`] of `account`.
async fn keys_of(kl: &KeyLeash, account: &str) -> Vec<String> {
    let parent = kl.create(budget(account, 12.0, None)).await.unwrap();
    let child = |cap| CreateOptions {
        parent_id: Some(parent.id),
        ..budget(account, cap, None)
    };
    let c1 = kl.create(child(8.0)).await.unwrap();
    let c2 = kl.create(child(20.0)).await.unwrap();
    let small = kl.create(budget(account, 3.0, Some("day"))).await.unwrap();
    let revoked = kl.create(budget(account, 50.0, None)).await.unwrap();
    kl.revoke(revoked.id, None).await.unwrap();
    let open = kl.create(opts(account)).await.unwrap();
    vec![parent.key, c1.key, c2.key, small.key, revoked.key, open.key]
}

/// [`keys`] of four accounts, the last two sharing a 10-cent ceiling each, so
/// that the spends spread over every lane (`lanes.rs`) and some are bound by a
/// ceiling.
async fn keys_of_four(kl: &KeyLeash) -> Vec<String> {
    let mut all = Vec::new();
    for a in ["a", "b", "c", "d"] {
        if a == "c" || a == "d" {
            kl.set_account_budget(a, Some(10.0), None).await.unwrap();
        }
        all.extend(keys_of(kl, a).await);
    }
    all
}

/// One random charge: a key (or a malformed one), a cost of 0 to 4.5 cents, and an
/// idempotency key drawn from a small set so repeats land inside one batch.
fn workload(seed: u64, keys: &[String], n: usize) -> Vec<(String, Charge)> {
    let mut rng = Rng(seed.max(1));
    (0..n)
        .map(|_| {
            let key = if rng.below(20) == 0 {
                "ak_malformed".to_string()
            } else {
                keys[rng.below(keys.len())].clone()
            };
            #[allow(clippy::cast_precision_loss)]
            let cost = rng.below(10) as f64 * 0.5;
            let charge = Charge::cents(cost);
            let charge = match rng.below(6) {
                0 => charge.idempotent("x"),
                1 => charge.idempotent(format!("y{}", rng.below(3))),
                _ => charge,
            };
            (key, charge)
        })
        .collect()
}

fn json(r: &ChargeResult) -> Value {
    serde_json::to_value(r).unwrap()
}

/// Every key's numbers as `validate` reports them, and the ledger of each.
async fn state(db: &Db, keys: &[String]) -> Vec<(Value, Option<i64>)> {
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let v = db.kl.validate(k).await.unwrap();
        let id = i64::try_from(i + 1).unwrap();
        let ledger = db
            .scalar(&format!(
                "SELECT CAST(COALESCE(SUM(amount_micros), 0) AS BIGINT) FROM {{ledger}} WHERE key_id = {id}"
            ))
            .await;
        out.push((serde_json::to_value(&v).unwrap(), ledger));
    }
    out
}

// Pins that grouped charges give each caller exactly its one-at-a-time outcome, in
// arrival order, and leave the same counters and ledger, over many random workloads.
async fn grouped_equals_sequential(kind: Kind) {
    for seed in 1..=12u64 {
        grouped_against_sequential(kind, seed, 120, Options::default(), keys).await;
    }
}
both!(grouped_equals_sequential);

// Pins the same over four accounts, whose spends go to different lanes on Postgres
// (several transactions in flight): each account's spends keep their arrival
// order, so every outcome and the final state are still the one-at-a-time ones.
async fn grouped_equals_sequential_across_lanes(kind: Kind) {
    for seed in 101..=108u64 {
        // A pool of 40: four lanes on Postgres (one per 10 connections), each with
        // two batches in flight (pipelined, an option) on an even seed and one,
        // the default, on an odd one.
        let options = Options {
            pool_size: (kind == Kind::Postgres).then_some(40),
            pipeline_depth: Some(if seed % 2 == 0 { 2 } else { 1 }),
            ..Options::default()
        };
        grouped_against_sequential(kind, seed, 240, options, keys_of_four).await;
    }
}
both!(grouped_equals_sequential_across_lanes);

/// Runs `n` random charges of seed `seed` over the keys `make` creates, all at
/// once on one table (connected with `options`) and one after another on
/// another, and compares.
async fn grouped_against_sequential<F>(kind: Kind, seed: u64, n: usize, options: Options, make: F)
where
    F: for<'a> AsyncFn(&'a KeyLeash) -> Vec<String>,
{
    {
        let grouped = Db::with(kind, options).await;
        let sequential = Db::open(kind).await;
        let keys_g = make(&grouped.kl).await;
        let keys_s = make(&sequential.kl).await;
        let work = workload(seed, &keys_g, n);
        let together = join_all(
            work.iter()
                .map(|(k, c)| grouped.kl.track_usage(k, c.clone())),
        )
        .await;
        let mut one_by_one = Vec::new();
        for (k, c) in &work {
            let k = keys_g
                .iter()
                .position(|g| g == k)
                .map_or(k.clone(), |i| keys_s[i].clone());
            one_by_one.push(sequential.kl.track_usage(&k, c.clone()).await);
        }
        for (i, (g, s)) in together.iter().zip(&one_by_one).enumerate() {
            let (g, s) = (g.as_ref().unwrap(), s.as_ref().unwrap());
            assert_eq!(json(g), json(s), "seed {seed}, call {i}: {:?}", work[i].1);
        }
        assert_eq!(
            state(&grouped, &keys_g).await,
            state(&sequential, &keys_s).await,
            "seed {seed}: final state"
        );
    }
}

// Pins that a batch of validates answers each caller as a lone validate would.
async fn grouped_validates(kind: Kind) {
    let db = Db::open(kind).await;
    let keys = keys(&db.kl).await;
    assert!(db
        .kl
        .track_usage(&keys[3], Charge::cents(3.0))
        .await
        .unwrap()
        .success());
    let mut asked: Vec<String> = keys.iter().cycle().take(60).cloned().collect();
    asked.push("ak_malformed".into());
    asked.push(format!("{}x", &keys[0][..keys[0].len() - 1]));
    let together: Vec<Validation> = join_all(asked.iter().map(|k| db.kl.validate(k)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    // validate_many (what the Node binding sends a turn of its event loop as).
    let many: Vec<Validation> = db
        .kl
        .validate_many(&asked)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(many.len(), asked.len());
    for ((k, v), m) in asked.iter().zip(&together).zip(&many) {
        let alone = db.kl.validate(k).await.unwrap();
        assert_eq!(
            serde_json::to_value(v).unwrap(),
            serde_json::to_value(&alone).unwrap()
        );
        assert_eq!(
            serde_json::to_value(m).unwrap(),
            serde_json::to_value(&alone).unwrap()
        );
    }
    assert_eq!(together[4].reason().map(|r| r.as_str()), Some("revoked"));
    assert_eq!(
        together[3].reason().map(|r| r.as_str()),
        Some("budget_exceeded")
    );
}
both!(grouped_validates);

// Pins that a batch that fails fails every call in it with `unavailable` and
// applies nothing, and that calls after the store is back succeed.
async fn failed_batch_applies_nothing(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 100.0, None)).await.unwrap();
    let moved = format!("{}_moved", db.table);
    db.exec(&format!("ALTER TABLE {{ledger}} RENAME TO {moved}"))
        .await;
    let results = join_all((0..40).map(|_| db.kl.track_usage(&k.key, Charge::cents(1.0)))).await;
    for r in &results {
        let code = r.as_ref().err().map(keyleash::Error::code);
        assert!(
            matches!(code, Some("unavailable" | "not_migrated")),
            "{r:?}"
        );
    }
    db.exec(&format!(
        "ALTER TABLE {moved} RENAME TO {}_ledger",
        db.table
    ))
    .await;
    assert_eq!(db.used_micros(k.id).await, 0, "nothing applied");
    let results = join_all((0..40).map(|_| db.kl.track_usage(&k.key, Charge::cents(1.0)))).await;
    assert!(results.iter().all(|r| r.as_ref().unwrap().success()));
    assert_eq!(db.used_micros(k.id).await, 40_000_000);
}
both!(failed_batch_applies_nothing);
