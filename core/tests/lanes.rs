//! Spend lanes (docs/semantics.md, "Concurrency"): several spend transactions in
//! flight per process on Postgres, one account's spends in one lane.
//!
//! Checked here against the database afterwards: hundreds of parallel charges and
//! holds over many accounts, from a process that knows the keys (it created
//! them) and one that does not (its first spend of a key cannot know the key's
//! account), keep every cap, ceiling, counter, ledger and idempotency key exact;
//! and a spend waiting on one account's row lock holds up no other account.

mod common;

use std::time::Duration;

use common::{opts, Db, Kind};
use futures::future::join_all;
use keyleash::{
    Charge, ChargeRefusal, ChargeResult, CreateOptions, KeyLeash, Options, Reserve, ReserveResult,
};

const ACCOUNTS: usize = 8;

/// Options with a pool of 40 on Postgres: 4 lanes (one per 10 connections; the
/// default pool of 10 has one), each with two batches in flight (pipelined, an
/// option), so that the pipelining keeps its tests.
fn four_lanes(kind: Kind) -> Options {
    Options {
        pool_size: (kind == Kind::Postgres).then_some(40),
        pipeline_depth: Some(2),
        ..Options::default()
    }
}
const CEILING_CENTS: f64 = 30.0;

/// One account's keys: a parent, its two children, a lone key; all uncapped, so
/// the account's 30-cent ceiling is what binds.
struct Account {
    name: String,
    parent: (i64, String),
    children: [(i64, String); 2],
    lone: (i64, String),
}

impl Account {
    fn keys(&self) -> [&(i64, String); 4] {
        [
            &self.parent,
            &self.children[0],
            &self.children[1],
            &self.lone,
        ]
    }
}

async fn accounts(kl: &KeyLeash) -> Vec<Account> {
    let mut out = Vec::new();
    for a in 0..ACCOUNTS {
        let name = format!("acct_{a}");
        kl.set_account_budget(&name, Some(CEILING_CENTS), None)
            .await
            .unwrap();
        let made = |o: CreateOptions| async { kl.create(o).await.map(|k| (k.id, k.key)).unwrap() };
        let parent = made(opts(&name)).await;
        let child = || CreateOptions {
            parent_id: Some(parent.0),
            ..opts(&name)
        };
        let children = [made(child()).await, made(child()).await];
        let lone = made(opts(&name)).await;
        out.push(Account {
            name,
            parent,
            children,
            lone,
        });
    }
    out
}

/// What a call did: a new charge (cents), a replay, or a refusal.
#[derive(Debug, PartialEq)]
enum Did {
    Charged(f64),
    Replayed,
    Refused,
}

fn did(r: &ChargeResult, cents: f64) -> Did {
    match r {
        ChargeResult::Charged { .. } => Did::Charged(cents),
        ChargeResult::Replayed { .. } => Did::Replayed,
        other => {
            assert_eq!(other.reason().map(|r| r.as_str()), Some("budget_exceeded"));
            Did::Refused
        }
    }
}

// Pins that 200-way parallel charges and holds across every lane, half from a
// process that has never seen the keys, fill each account's ceiling exactly,
// charge each idempotency key once, and leave every counter equal to its ledger.
async fn parallel_spends_across_lanes_stay_exact(kind: Kind) {
    let db = Db::with(kind, four_lanes(kind)).await;
    let accts = accounts(&db.kl).await;
    let fresh = KeyLeash::connect(
        &db.url,
        Options {
            table_name: db.table.clone(),
            clock: db.kl.clock().clone(),
            ..four_lanes(kind)
        },
    )
    .await
    .unwrap();
    let clients = [db.kl.clone(), fresh];
    // Per account: 60 one-cent charges round the four keys, 8 repeats of one
    // idempotency key on a child, 10 one-cent holds settled at 1 cent.
    let mut tasks = Vec::new();
    for (a, acct) in accts.iter().enumerate() {
        for i in 0..78usize {
            let kl = clients[(i + a) % 2].clone();
            let (_, key) = acct.keys()[i % 4].clone();
            let child = acct.children[0].1.clone();
            tasks.push(tokio::spawn(async move {
                match i {
                    0..=59 => (
                        a,
                        "plain",
                        did(
                            &kl.track_usage(&key, Charge::cents(1.0)).await.unwrap(),
                            1.0,
                        ),
                    ),
                    60..=67 => {
                        let charge = Charge::cents(1.0).idempotent("same");
                        (
                            a,
                            "same",
                            did(&kl.track_usage(&child, charge).await.unwrap(), 1.0),
                        )
                    }
                    _ => match kl.reserve(&key, Reserve::cents(1.0)).await.unwrap() {
                        ReserveResult::Held { hold_id, .. } => {
                            let settled = kl.settle(hold_id, 1.0).await.unwrap();
                            assert!(settled.success(), "{settled:?}");
                            (a, "hold", Did::Charged(1.0))
                        }
                        ReserveResult::Refused(ChargeRefusal::BudgetExceeded) => {
                            (a, "hold", Did::Refused)
                        }
                        other => panic!("reserve: {other:?}"),
                    },
                }
            }));
        }
    }
    let outcomes: Vec<(usize, &str, Did)> = join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for (a, acct) in accts.iter().enumerate() {
        let mine = || outcomes.iter().filter(move |(o, _, _)| *o == a);
        let charged = mine()
            .filter(|(_, _, d)| matches!(d, Did::Charged(_)))
            .count();
        assert_eq!(charged, 30, "{}: the ceiling binds exactly", acct.name);
        let same: Vec<&Did> = mine()
            .filter(|(_, kind, _)| *kind == "same")
            .map(|(_, _, d)| d)
            .collect();
        let first = same.iter().filter(|d| ***d == Did::Charged(1.0)).count();
        let replays = same.iter().filter(|d| ***d == Did::Replayed).count();
        assert!(
            (first, replays) == (1, 7) || (first, replays) == (0, 0),
            "{}: one charge of the idempotency key and its replays, or all refused: {same:?}",
            acct.name
        );
        let account_ledger = db
            .scalar(&format!(
                "SELECT CAST(COALESCE(SUM(amount_micros), 0) AS BIGINT) FROM {{ledger}} WHERE account_id = '{}'",
                acct.name
            ))
            .await;
        assert_eq!(account_ledger, Some(30_000_000), "{}", acct.name);
        let ceiling = db
            .scalar(&format!(
                "SELECT budget_used_micros FROM {{accounts}} WHERE account_id = '{}'",
                acct.name
            ))
            .await;
        assert_eq!(ceiling, Some(30_000_000), "{}: ceiling counter", acct.name);
        for (id, _) in acct.keys() {
            let (own, _) = db.ledger(*id).await;
            let counted = own + below_of(&db, acct, *id).await;
            assert_eq!(
                db.used_micros(*id).await,
                counted,
                "{}: key {id}",
                acct.name
            );
        }
        let idem = db
            .scalar(&format!(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM {{ledger}} WHERE key_id = {} AND idempotency_key = 'same'",
                acct.children[0].0
            ))
            .await;
        assert_eq!(idem, Some(i64::try_from(first).unwrap()));
        let open = db
            .scalar(&format!(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM {{holds}} WHERE account_id = '{}' AND state = 'held'",
                acct.name
            ))
            .await;
        assert_eq!(
            open,
            Some(0),
            "{}: every hold placed was settled",
            acct.name
        );
    }
}
both!(parallel_spends_across_lanes_stay_exact);

/// What a key's counter holds beyond its own ledger: its children's charges (a
/// parent counts them), in micro-cents.
async fn below_of(db: &Db, acct: &Account, id: i64) -> i64 {
    if id != acct.parent.0 {
        return 0;
    }
    let mut sum = 0;
    for (child, _) in &acct.children {
        sum += db.ledger(*child).await.0;
    }
    sum
}

// Pins that a charge waiting on one account's row lock holds up no other
// account's charges: with one spend transaction in flight per process, every
// charge would queue behind the waiting one. Postgres only: SQLite has one
// writer, so it runs one lane by design (docs/semantics.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_locked_account_holds_up_no_other() {
    let db = Db::with(Kind::Postgres, four_lanes(Kind::Postgres)).await;
    let blocked = db.kl.create(opts("blocked")).await.unwrap();
    let mut others = Vec::new();
    // 32 accounts: with 4 lanes, all of them in the locked account's lane has a
    // chance of 2^-64.
    for i in 0..32 {
        others.push(db.kl.create(opts(&format!("other_{i}"))).await.unwrap().key);
    }
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(&format!(
        "SELECT id FROM {} WHERE id = $1 FOR UPDATE",
        db.table
    ))
    .bind(blocked.id)
    .execute(&mut *tx)
    .await
    .unwrap();
    let kl = db.kl.clone();
    let key = blocked.key.clone();
    let waiting = tokio::spawn(async move { kl.track_usage(&key, Charge::cents(1.0)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the charge waits for the row lock");
    // Each other account's charge, with a deadline well below the lock's hold.
    let done = join_all(others.iter().map(|k| {
        let kl = db.kl.clone();
        let k = k.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(5),
                kl.track_usage(&k, Charge::cents(1.0)),
            )
            .await
            .is_ok()
        }
    }))
    .await;
    let through = done.iter().filter(|d| **d).count();
    assert!(
        through >= 1,
        "no other account's charge went through while one account's row was locked"
    );
    assert!(!waiting.is_finished(), "the blocked charge still waits");
    tx.commit().await.unwrap();
    assert!(waiting.await.unwrap().unwrap().success());
    // Every charge ran exactly once, the late ones included (a caller that gave up
    // waiting does not cancel its charge: it runs in its lane's batch).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let total = db
            .scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM {ledger}")
            .await;
        if total == Some(33) {
            break;
        }
        assert!(total < Some(33), "{total:?} ledger rows for 33 charges");
        assert!(
            std::time::Instant::now() < deadline,
            "{total:?} of 33 charges ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// Pins the pipeline depth: one batch of a lane in flight unless asked (on a
// durable server and with `fsync` off alike: measured, docs/semantics.md), an
// explicit depth honoured on Postgres, one on SQLite whatever is asked, and a
// depth outside 1..=8 refused.
async fn pipeline_depth_is_one_unless_asked(kind: Kind) {
    let db = Db::with(kind, Options::default()).await;
    let connect = |depth| {
        KeyLeash::connect(
            &db.url,
            Options {
                table_name: db.table.clone(),
                pipeline_depth: depth,
                ..Options::default()
            },
        )
    };
    assert_eq!(db.kl.pipeline_depth(), 1);
    let asked = connect(Some(3)).await.unwrap();
    assert_eq!(
        asked.pipeline_depth(),
        if kind == Kind::Sqlite { 1 } else { 3 }
    );
    for bad in [0, 9] {
        let Err(e) = connect(Some(bad)).await else {
            panic!("pipeline_depth {bad} accepted");
        };
        assert_eq!(e.code(), "invalid_argument");
        assert!(e.to_string().contains("pipeline_depth"), "{e}");
    }
}
both!(pipeline_depth_is_one_unless_asked);
