//! Account ceilings (`set_account_budget`) on both stores, checked against the
//! database: the sum of an account's keys (charges and holds) never passes its
//! ceiling, one caller at a time and under real parallel callers.

mod common;

use std::time::Duration;

use common::{budget, opts, Db, Kind};
use futures::future::join_all;
use keyleash::{Charge, InvalidReason, KeyLeash, Options, Reserve, ReserveResult};
use sqlx::{Connection, PgConnection, SqliteConnection};

/// The ceiling's counter, in micro-cents.
async fn ceiling_used(db: &Db, account: &str) -> i64 {
    db.scalar(&format!(
        "SELECT budget_used_micros FROM {{accounts}} WHERE account_id = '{account}'"
    ))
    .await
    .expect("ceiling row")
}

/// The sum of the account's ledger rows, in micro-cents.
async fn account_ledger(db: &Db, account: &str) -> i64 {
    db.scalar(&format!(
        "SELECT CAST(COALESCE(SUM(amount_micros), 0) AS BIGINT) FROM {{ledger}} WHERE account_id = '{account}'"
    ))
    .await
    .unwrap_or(0)
}

/// What the database still holds against the account's ceiling, in micro-cents.
async fn ceiling_held(db: &Db, account: &str) -> i64 {
    db.scalar(&format!(
        "SELECT CAST(COALESCE(SUM(s.amount_micros), 0) AS BIGINT) FROM {{hold_keys}} s \
         JOIN {{accounts}} a ON s.key_id = -a.id WHERE a.account_id = '{account}'"
    ))
    .await
    .unwrap_or(0)
}

/// Four clients on one table, as four processes would be.
async fn clients(db: &Db) -> Vec<KeyLeash> {
    let mut v = vec![db.kl.clone()];
    for _ in 1..4 {
        v.push(db.another().await);
    }
    v
}

// Pins the ceiling as one more budget of every key of the account: charges and
// holds of all keys add up against it, validate reports it when it binds, and
// other accounts are not touched.
async fn bounds_the_sum_of_the_keys(kind: Kind) {
    let db = Db::open(kind).await;
    let a = db.kl.create(budget("acme", 1000.0, None)).await.unwrap();
    let b = db.kl.create(opts("acme")).await.unwrap();
    let other = db.kl.create(opts("other")).await.unwrap();
    db.kl
        .set_account_budget("acme", Some(100.0), None)
        .await
        .unwrap();
    // A key created after the ceiling is bound by it too.
    let c = db.kl.create(opts("acme")).await.unwrap();
    assert!(db.charge(&a.key, 60.0).await.success());
    assert_eq!(db.info(&b.key).await.budget_remaining_cents, Some(40.0));
    assert_eq!(db.info(&a.key).await.budget_remaining_cents, Some(40.0));
    assert!(!db.charge(&b.key, 50.0).await.success());
    let h = db.kl.reserve(&c.key, Reserve::cents(30.0)).await.unwrap();
    let h = h.hold_id().expect("held");
    assert_eq!(db.info(&b.key).await.budget_remaining_cents, Some(10.0));
    let refused = db.kl.reserve(&b.key, Reserve::cents(11.0)).await.unwrap();
    assert!(matches!(refused, ReserveResult::Refused(_)));
    assert!(db.charge(&b.key, 10.0).await.success());
    assert_eq!(db.reason(&a.key).await, Some(InvalidReason::BudgetExceeded));
    // The other account has no ceiling.
    assert!(db.charge(&other.key, 500.0).await.success());
    // The settle records its cost in full on the key and the ceiling.
    db.kl.settle(h, 35.0).await.unwrap();
    assert_eq!(ceiling_used(&db, "acme").await, 105_000_000);
    assert_eq!(account_ledger(&db, "acme").await, 105_000_000);
    assert_eq!(ceiling_held(&db, "acme").await, 0);
    // Listing the account shows its keys only, not the ceiling.
    assert_eq!(db.kl.list("acme").await.unwrap().len(), 3);
}
both!(bounds_the_sum_of_the_keys);

// Pins the rules of setting a ceiling again: the same period keeps what was
// used, another period starts over, removing it unbinds the keys, and a
// periodic ceiling rolls over on its own schedule.
async fn set_again_change_and_remove(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(opts("acme")).await.unwrap();
    db.kl
        .set_account_budget("acme", Some(50.0), Some("day"))
        .await
        .unwrap();
    assert!(db.charge(&k.key, 40.0).await.success());
    db.kl
        .set_account_budget("acme", Some(45.0), Some("day"))
        .await
        .unwrap();
    assert_eq!(db.info(&k.key).await.budget_remaining_cents, Some(5.0));
    assert!(!db.charge(&k.key, 6.0).await.success());
    // The period ends a day after the ceiling was first set.
    db.clock().advance(chrono::Duration::hours(24));
    assert_eq!(db.info(&k.key).await.budget_remaining_cents, Some(45.0));
    assert!(db.charge(&k.key, 45.0).await.success());
    assert_eq!(ceiling_used(&db, "acme").await, 45_000_000);
    // Another period: starts over.
    db.kl
        .set_account_budget("acme", Some(45.0), Some("week"))
        .await
        .unwrap();
    assert_eq!(ceiling_used(&db, "acme").await, 0);
    assert!(db.charge(&k.key, 45.0).await.success());
    // Removed: the key has no cap of its own any more.
    db.kl.set_account_budget("acme", None, None).await.unwrap();
    assert_eq!(db.info(&k.key).await.budget_remaining_cents, None);
    assert!(db.charge(&k.key, 1000.0).await.success());
    // A new ceiling starts empty, whatever was spent before it.
    db.kl
        .set_account_budget("acme", Some(10.0), None)
        .await
        .unwrap();
    assert_eq!(db.info(&k.key).await.budget_remaining_cents, Some(10.0));
}
both!(set_again_change_and_remove);

// Pins the refusals of bad input: nothing is written.
async fn bad_input_is_refused(kind: Kind) {
    let db = Db::open(kind).await;
    let code = |r: keyleash::Result<()>| r.unwrap_err().code();
    let kl = &db.kl;
    assert_eq!(
        code(kl.set_account_budget("acme", Some(-1.0), None).await),
        "invalid_argument"
    );
    assert_eq!(
        code(kl.set_account_budget("acme", Some(f64::NAN), None).await),
        "invalid_argument"
    );
    assert_eq!(
        code(
            kl.set_account_budget("acme", Some(5.0), Some("fortnight"))
                .await
        ),
        "invalid_period"
    );
    assert_eq!(
        code(kl.set_account_budget("acme", None, Some("day")).await),
        "invalid_argument"
    );
    assert_eq!(
        code(kl.set_account_budget("", Some(5.0), None).await),
        "invalid_argument"
    );
    let rows = db
        .scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM {accounts}")
        .await;
    assert_eq!(rows, Some(0));
}
both!(bad_input_is_refused);

// Pins the ceiling under parallel callers: 200 charges and 200 reserves over ten
// keys of one account, from four clients, never pass it, and the ceiling's
// counter equals the account's ledger afterwards.
async fn parallel_spends_never_pass_the_ceiling(kind: Kind) {
    let db = Db::open(kind).await;
    let mut keys = Vec::new();
    for _ in 0..10 {
        keys.push(db.kl.create(budget("acme", 1000.0, None)).await.unwrap());
    }
    db.kl
        .set_account_budget("acme", Some(150.0), None)
        .await
        .unwrap();
    let cl = clients(&db).await;
    let tasks = (0..400).map(|i| {
        let (kl, key) = (cl[i % cl.len()].clone(), keys[i % keys.len()].key.clone());
        tokio::spawn(async move {
            if i % 2 == 0 {
                kl.track_usage(&key, Charge::cents(1.0))
                    .await
                    .unwrap()
                    .success()
            } else {
                kl.reserve(&key, Reserve::cents(1.0))
                    .await
                    .unwrap()
                    .success()
            }
        })
    });
    let admitted = join_all(tasks)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(admitted, 150);
    let (used, held) = (
        ceiling_used(&db, "acme").await,
        ceiling_held(&db, "acme").await,
    );
    assert_eq!(used + held, 150_000_000);
    assert_eq!(used, account_ledger(&db, "acme").await);
    for k in &keys {
        assert_eq!(db.reason(&k.key).await, Some(InvalidReason::BudgetExceeded));
    }
}
both!(parallel_spends_never_pass_the_ceiling);

// Pins the ceiling hint every key carries: keys created while the ceiling is set,
// from four clients at once, all end up naming it, and removing it clears them.
async fn keys_created_meanwhile_name_the_ceiling(kind: Kind) {
    let db = Db::open(kind).await;
    let cl = clients(&db).await;
    let creates = (0..80).map(|i| {
        let kl = cl[i % cl.len()].clone();
        tokio::spawn(async move { kl.create(opts("acme")).await.unwrap() })
    });
    let setter = db.kl.clone();
    let set = tokio::spawn(async move {
        tokio::task::yield_now().await;
        setter.set_account_budget("acme", Some(5.0), None).await
    });
    let keys: Vec<_> = join_all(creates)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    set.await.unwrap().unwrap();
    let unhinted = db
        .scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM {keys} WHERE ceiling_id IS NULL")
        .await;
    assert_eq!(unhinted, Some(0));
    assert!(db.charge(&keys[0].key, 5.0).await.success());
    assert_eq!(
        db.reason(&keys[79].key).await,
        Some(InvalidReason::BudgetExceeded)
    );
    db.kl.set_account_budget("acme", None, None).await.unwrap();
    let hinted = db
        .scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM {keys} WHERE ceiling_id IS NOT NULL")
        .await;
    assert_eq!(hinted, Some(0));
    assert_eq!(db.reason(&keys[79].key).await, None);
}
both!(keys_created_meanwhile_name_the_ceiling);

/// A second connection that keeps an account's key rows from being written: on
/// Postgres their row locks (`FOR UPDATE` in an open transaction), on SQLite the
/// database's write lock (`BEGIN IMMEDIATE`), as a long charge elsewhere would.
enum Locker {
    Pg(PgConnection),
    Lite(SqliteConnection),
}

impl Locker {
    async fn hold(db: &Db, account: &str) -> Locker {
        match db.kind {
            Kind::Postgres => {
                let mut c = PgConnection::connect(&db.url).await.unwrap();
                sqlx::raw_sql("BEGIN").execute(&mut c).await.unwrap();
                let sql = format!(
                    "SELECT id FROM {} WHERE account_id = '{account}' ORDER BY id FOR UPDATE",
                    db.table
                );
                let locked = sqlx::query(&sql).fetch_all(&mut c).await.unwrap();
                assert!(!locked.is_empty(), "the account has keys to lock");
                Locker::Pg(c)
            }
            Kind::Sqlite => {
                let mut c = SqliteConnection::connect(&db.url).await.unwrap();
                sqlx::raw_sql("BEGIN IMMEDIATE")
                    .execute(&mut c)
                    .await
                    .unwrap();
                Locker::Lite(c)
            }
        }
    }

    async fn release(self) {
        match self {
            Locker::Pg(mut c) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
            Locker::Lite(mut c) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
        }
    }
}

/// A store whose statements give up after 300 ms.
async fn impatient(kind: Kind) -> Db {
    let options = Options {
        statement_timeout: Duration::from_millis(300),
        ..Options::default()
    };
    Db::with(kind, options).await
}

async fn ceiling_rows(db: &Db) -> Option<i64> {
    db.scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM {accounts}")
        .await
}

// Pins setting a ceiling as all or nothing: with the account's keys locked
// elsewhere past the statement timeout, the call fails `unavailable` and leaves
// no ceiling behind, so a 50-cent charge under the intended 10-cent ceiling is
// judged by the key's own budget alone, on the existing key and on a key created
// afterwards, and the admin page shows no ceiling either.
async fn a_failed_set_leaves_no_ceiling(kind: Kind) {
    let db = impatient(kind).await;
    let k = db.kl.create(budget("acme", 100.0, None)).await.unwrap();
    let lock = Locker::hold(&db, "acme").await;
    let err = db
        .kl
        .set_account_budget("acme", Some(10.0), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "unavailable");
    lock.release().await;
    assert_eq!(ceiling_rows(&db).await, Some(0));
    let later = db.kl.create(budget("acme", 100.0, None)).await.unwrap();
    assert!(db.charge(&k.key, 50.0).await.success());
    assert!(db.charge(&later.key, 50.0).await.success());
    let page = db.kl.accounts("acme", 10).await.unwrap();
    assert_eq!(page.accounts[0].ceiling, None);
    // Tried again without the lock, it applies to both keys.
    db.kl
        .set_account_budget("acme", Some(10.0), None)
        .await
        .unwrap();
    assert!(!db.charge(&k.key, 11.0).await.success());
    assert!(!db.charge(&later.key, 11.0).await.success());
    assert!(db.charge(&later.key, 10.0).await.success());
}
both!(a_failed_set_leaves_no_ceiling);

// Pins removing a ceiling as all or nothing: when the removal fails after the
// row could have been deleted (the keys' hints still to clear), the ceiling
// stays in force on every key of the account, old and new, and the admin page
// still shows it.
async fn a_failed_removal_keeps_the_ceiling(kind: Kind) {
    let db = impatient(kind).await;
    let k = db.kl.create(budget("acme", 100.0, None)).await.unwrap();
    db.kl
        .set_account_budget("acme", Some(10.0), None)
        .await
        .unwrap();
    let lock = Locker::hold(&db, "acme").await;
    let err = db
        .kl
        .set_account_budget("acme", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "unavailable");
    lock.release().await;
    assert_eq!(ceiling_rows(&db).await, Some(1));
    let later = db.kl.create(budget("acme", 100.0, None)).await.unwrap();
    assert!(!db.charge(&k.key, 50.0).await.success());
    assert!(!db.charge(&later.key, 50.0).await.success());
    assert!(db.charge(&k.key, 10.0).await.success());
    let page = db.kl.accounts("acme", 10).await.unwrap();
    let ceiling = page.accounts[0].ceiling.as_ref().expect("still in force");
    assert_eq!(ceiling.budget_cents, Some(10.0));
}
both!(a_failed_removal_keeps_the_ceiling);

// Pins a caller that gives up while the ceiling waits for the keys' locks (a
// killed client, a request timeout): nothing of the ceiling is written, and the
// key keeps its own budget only. Postgres: the future is dropped mid-call with
// the statement timeout far away.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abandoned_set_leaves_no_ceiling() {
    let db = Db::open(Kind::Postgres).await;
    let k = db.kl.create(budget("acme", 100.0, None)).await.unwrap();
    let lock = Locker::hold(&db, "acme").await;
    let gave_up = tokio::time::timeout(
        Duration::from_millis(500),
        db.kl.set_account_budget("acme", Some(10.0), None),
    )
    .await;
    assert!(gave_up.is_err(), "the call waits for the locked keys");
    lock.release().await;
    assert_eq!(ceiling_rows(&db).await, Some(0));
    assert!(db.charge(&k.key, 50.0).await.success());
    let page = db.kl.accounts("acme", 10).await.unwrap();
    assert_eq!(page.accounts[0].ceiling, None);
}

// Pins the lock order of setting a ceiling against charges (keys in id order,
// then the ceiling): ceilings set, changed and removed while four clients charge
// a family of the account's keys never deadlock or time out, and every key ends
// naming the last ceiling.
async fn set_while_charging_never_deadlocks(kind: Kind) {
    let db = Db::open(kind).await;
    let root = db.kl.create(opts("acme")).await.unwrap();
    let mut keys = vec![root.key.clone()];
    for _ in 0..5 {
        let child = db
            .kl
            .create(keyleash::CreateOptions {
                parent_id: Some(root.id),
                ..opts("acme")
            })
            .await
            .unwrap();
        keys.push(child.key);
    }
    let cl = clients(&db).await;
    let charges = (0..200).map(|i| {
        let (kl, key) = (cl[i % cl.len()].clone(), keys[i % keys.len()].clone());
        tokio::spawn(async move { kl.track_usage(&key, Charge::cents(0.01)).await })
    });
    let setter = db.kl.clone();
    let sets = tokio::spawn(async move {
        for i in 0..20 {
            let cents = if i % 3 == 2 {
                None
            } else {
                Some(1e6 + f64::from(i))
            };
            setter.set_account_budget("acme", cents, None).await?;
        }
        setter.set_account_budget("acme", Some(1e6), None).await
    });
    for r in join_all(charges).await {
        assert!(r.unwrap().unwrap().success());
    }
    sets.await.unwrap().unwrap();
    let unhinted = db
        .scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM {keys} WHERE ceiling_id IS NULL")
        .await;
    assert_eq!(unhinted, Some(0));
}
both!(set_while_charging_never_deadlocks);
