//! The hold handle (`Hold`, from `reserve_ref_hold`) on both stores: its state
//! machine, repeats answered without a second store call, concurrent repeats from
//! many tasks checked against the ledger, and the exact refusals of `add`.

mod common;

use common::{budget, Db, Kind};
use futures::future::join_all;
use keyleash::{
    AddRefused, ChargeRefusal, CutShort, Hold, HoldStatus, KeyLeash, KeyRef, Reserve,
    ReserveResult, SettleRefusal, SettleResult,
};

fn key_ref(kl: &KeyLeash, raw: &str) -> KeyRef {
    kl.key_ref(raw).expect("a well-formed key")
}

async fn hold(kl: &KeyLeash, key: &KeyRef, cents: f64) -> Hold {
    let reserved = kl.reserve_ref_hold(key, Reserve::cents(cents)).await;
    reserved
        .expect("reserve")
        .unwrap_or_else(|r| panic!("refused: {r:?}"))
}

fn settled(used: f64, remaining: Option<f64>) -> SettleResult {
    SettleResult::Settled {
        budget_used_cents: used,
        budget_remaining_cents: remaining,
    }
}

/// How many holds of a key are in `state`.
async fn holds_in(db: &Db, key: i64, state: &str) -> i64 {
    db.scalar(&format!(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM {{holds}} WHERE key_id = {key} AND state = '{state}'"
    ))
    .await
    .unwrap_or(0)
}

// Pins the settle path: the handle carries the reserve's numbers, `add` refuses a
// non-amount with the bindings' message and counts the rest, the first settle
// (default: what was added) decides at the call, a concurrent settle with another
// cost shares its result, a release after it frees nothing, `add` is then refused,
// and the store has one ledger row naming the hold.
async fn settle_decides_once(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 10.0, None)).await.unwrap();
    let key = key_ref(&db.kl, &k.key);
    let h = db
        .kl
        .reserve_ref_hold(&key, Reserve::cents(5.0).ttl("1m"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (h.estimate_cents(), h.budget_remaining_cents(), h.state()),
        (5.0, Some(5.0), HoldStatus::Held)
    );
    assert_eq!(keyleash::iso(&h.expires_at()), "2026-01-15T12:01:00.000Z");
    for bad in [-1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(h.add(bad), Err(AddRefused::NotAnAmount));
    }
    assert_eq!(
        AddRefused::NotAnAmount.to_string(),
        "cents must be a finite number ≥ 0"
    );
    assert_eq!(h.add(1.5), Ok(1.5));
    assert_eq!(h.add(6.0), Ok(7.5));
    let (first, again) = (h.settle(None), h.settle(Some(2.0)));
    // Decided at the call, before anything was awaited.
    assert_eq!(h.state(), HoldStatus::Settled);
    assert!(!first.repeats_first() && again.repeats_first());
    let (a, b) = tokio::join!(first, again);
    assert_eq!(a.unwrap(), settled(7.5, Some(2.5)));
    assert_eq!(b.unwrap(), settled(7.5, Some(2.5)));
    let release = h.release();
    assert!(!release.repeats_first());
    assert!(!release.await.unwrap());
    let refused = h.add(1.0).unwrap_err();
    assert_eq!(refused, AddRefused::Ended(HoldStatus::Settled));
    assert_eq!(
        refused.to_string(),
        "the hold is already settled: nothing more can be added"
    );
    assert_eq!(keyleash::Error::from(refused).code(), "invalid_argument");
    assert_eq!(h.consumed_cents(), 7.5);
    assert_eq!(db.ledger(k.id).await, (7_500_000, 1));
    let named = db
        .scalar("SELECT CAST(hold_id AS BIGINT) FROM {ledger}")
        .await;
    assert_eq!(named, Some(h.hold_id()));
    assert_eq!(db.info(&k.key).await.budget_held_cents, 0.0);
}
both!(settle_decides_once);

// Pins the release path: a release decides, a repeat shares its `true`, a settle
// after it is `hold_released` (no store call, no ledger row), `add` is refused
// with the released message, and nothing stays held.
async fn release_decides_once(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 10.0, None)).await.unwrap();
    let key = key_ref(&db.kl, &k.key);
    let h = hold(&db.kl, &key, 1.0).await;
    assert!(h.release().await.unwrap());
    let again = h.release();
    assert!(again.repeats_first());
    assert!(again.await.unwrap());
    let settle = h.settle(Some(1.0));
    assert!(!settle.repeats_first());
    assert_eq!(
        settle.await.unwrap(),
        SettleResult::Refused(SettleRefusal::HoldReleased)
    );
    assert_eq!(h.state(), HoldStatus::Released);
    assert_eq!(
        h.add(1.0).unwrap_err().to_string(),
        "the hold is already released: nothing more can be added"
    );
    assert_eq!(db.ledger(k.id).await, (0, 0));
    assert_eq!(holds_in(&db, k.id, "released").await, 1);
    assert_eq!(db.info(&k.key).await.budget_held_cents, 0.0);
}
both!(release_decides_once);

// Pins cut_short: with something consumed it settles that, with nothing it
// releases; either way it is the first ending, and a repeat of its kind shares it.
async fn cut_short_settles_or_releases(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 10.0, None)).await.unwrap();
    let key = key_ref(&db.kl, &k.key);
    let consumed = hold(&db.kl, &key, 2.0).await;
    consumed.add(0.75).unwrap();
    assert_eq!(
        consumed.cut_short().await.unwrap(),
        CutShort::Settled(settled(0.75, Some(9.25)))
    );
    assert!(consumed.settle(Some(3.0)).repeats_first());
    let idle = hold(&db.kl, &key, 2.0).await;
    assert_eq!(idle.cut_short().await.unwrap(), CutShort::Released(true));
    assert_eq!(idle.state(), HoldStatus::Released);
    assert!(idle.release().repeats_first());
    assert_eq!(db.ledger(k.id).await, (750_000, 1));
    assert_eq!(db.info(&k.key).await.budget_held_cents, 0.0);
}
both!(cut_short_settles_or_releases);

// Pins that a reserve that places no hold gives no handle: the refusal (and a
// replay of an idempotency key, which names the first hold) comes back as it is.
async fn no_handle_without_a_hold(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 10.0, None)).await.unwrap();
    let key = key_ref(&db.kl, &k.key);
    let over = db.kl.reserve_ref_hold(&key, Reserve::cents(11.0)).await;
    assert_eq!(
        over.unwrap().unwrap_err(),
        ReserveResult::Refused(ChargeRefusal::BudgetExceeded)
    );
    let zero = db.kl.reserve_ref_hold(&key, Reserve::cents(0.0)).await;
    assert_eq!(
        zero.unwrap().unwrap_err(),
        ReserveResult::Refused(ChargeRefusal::InvalidCost)
    );
    let once = Reserve::cents(1.0).idempotent("r1");
    let first = db.kl.reserve_ref_hold(&key, once.clone()).await;
    let first = first.unwrap().unwrap();
    let replay = db.kl.reserve_ref_hold(&key, once).await.unwrap();
    match replay.unwrap_err() {
        ReserveResult::Replayed { hold_id, state, .. } => {
            assert_eq!((hold_id, state), (first.hold_id(), HoldStatus::Held));
        }
        other => panic!("not a replay: {other:?}"),
    }
    // A held result becomes a handle; anything else is given back.
    let refused = ReserveResult::Refused(ChargeRefusal::Revoked);
    assert_eq!(
        Hold::new(&db.kl, refused.clone(), 1.0).unwrap_err(),
        refused
    );
}
both!(no_handle_without_a_hold);

// Pins concurrent repeats: 40 holds, each ended by 12 tasks at once (settles with
// different costs, releases and cut_shorts, in varied order, from clones of the
// handle on a multi-threaded runtime). Every task gets the answer of the one
// ending that decided, and the database agrees: one ledger row per settled hold
// with the cost of the first settle, counter == ledger, nothing held.
async fn concurrent_repeats_share_one_ending(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 1_000_000.0, None)).await.unwrap();
    let key = key_ref(&db.kl, &k.key);
    let mut holds = Vec::new();
    for i in 0..40u32 {
        let h = hold(&db.kl, &key, 5.0).await;
        h.add(f64::from(i % 7) * 0.25).unwrap();
        holds.push(h);
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(40 * 12));
    let mut tasks = Vec::new();
    for (i, h) in holds.iter().enumerate() {
        for j in 0..12usize {
            let (h, barrier) = (h.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                match (i + j) % 4 {
                    0 => Ending::Settle(h.settle(None).await.unwrap()),
                    1 => Ending::Settle(h.settle(Some(1.0)).await.unwrap()),
                    2 => Ending::Release(h.release().await.unwrap()),
                    _ => match h.cut_short().await.unwrap() {
                        CutShort::Settled(s) => Ending::Settle(s),
                        CutShort::Released(r) => Ending::Release(r),
                    },
                }
            }));
        }
    }
    let answers: Vec<Ending> = join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let (mut settled_holds, mut settled_micros) = (0, 0i64);
    for (i, h) in holds.iter().enumerate() {
        let mine = &answers[i * 12..(i + 1) * 12];
        let ledger = db
            .scalar(&format!(
                "SELECT CAST(COALESCE(SUM(amount_micros), 0) AS BIGINT) FROM {{ledger}} WHERE hold_id = {}",
                h.hold_id()
            ))
            .await
            .unwrap_or(0);
        match h.state() {
            HoldStatus::Settled => {
                // Every settle got the same result; every release freed nothing.
                let first = mine.iter().find_map(|a| match a {
                    Ending::Settle(s) => Some(s.clone()),
                    Ending::Release(_) => None,
                });
                let first = first.expect("a settle");
                assert!(first.success(), "{first:?}");
                for a in mine {
                    match a {
                        Ending::Settle(s) => assert_eq!(s, &first),
                        Ending::Release(freed) => assert!(!freed),
                    }
                }
                assert!(ledger == 1_000_000 || ledger == micros(h.consumed_cents()));
                settled_holds += 1;
                settled_micros += ledger;
            }
            HoldStatus::Released => {
                for a in mine {
                    match a {
                        Ending::Settle(s) => {
                            assert_eq!(s, &SettleResult::Refused(SettleRefusal::HoldReleased))
                        }
                        Ending::Release(freed) => assert!(freed),
                    }
                }
                assert_eq!(ledger, 0);
            }
            HoldStatus::Held => panic!("hold {} was not ended", h.hold_id()),
        }
    }
    assert_eq!(holds_in(&db, k.id, "settled").await, settled_holds);
    assert_eq!(holds_in(&db, k.id, "held").await, 0);
    let (sum, _) = db.ledger(k.id).await;
    assert_eq!(sum, settled_micros);
    assert_eq!(db.used_micros(k.id).await, sum);
    assert_eq!(db.info(&k.key).await.budget_held_cents, 0.0);
}
both!(concurrent_repeats_share_one_ending);

/// One task's answer in `concurrent_repeats_share_one_ending`.
#[derive(Debug)]
enum Ending {
    Settle(SettleResult),
    Release(bool),
}

fn micros(cents: f64) -> i64 {
    // Whole micro-cents by construction (multiples of 0.25 cents).
    #[allow(clippy::cast_possible_truncation)]
    let m = (cents * 1e6).round() as i64;
    m
}

// Pins that a caller who stops waiting does not lose the ending: the first settle
// is polled once and dropped (a cancelled request), and a repeat awaits the same
// store call; the hold is settled once.
async fn a_dropped_ending_is_resumed(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 10.0, None)).await.unwrap();
    let key = key_ref(&db.kl, &k.key);
    let h = hold(&db.kl, &key, 5.0).await;
    h.add(2.0).unwrap();
    let mut first = h.settle(None);
    assert!(futures::poll!(&mut first).is_pending());
    drop(first);
    assert_eq!(h.settle(None).await.unwrap(), settled(2.0, Some(8.0)));
    assert_eq!(db.ledger(k.id).await, (2_000_000, 1));
}
both!(a_dropped_ending_is_resumed);

// Pins that the first ending's error is final: a settle on a closed connection
// fails with `unavailable`, and a repeat gets the same code and message without
// reaching the store again.
async fn the_first_error_is_every_repeats(kind: Kind) {
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 10.0, None)).await.unwrap();
    let kl = db.another().await;
    let key = key_ref(&kl, &k.key);
    let h = hold(&kl, &key, 5.0).await;
    kl.close().await;
    let first = h.settle(Some(1.0)).await.unwrap_err();
    assert_eq!(first.code(), "unavailable");
    let again = h.settle(Some(1.0)).await.unwrap_err();
    assert_eq!(
        (again.code(), again.to_string()),
        (first.code(), first.to_string())
    );
    assert_eq!(h.state(), HoldStatus::Settled);
    assert_eq!(db.ledger(k.id).await, (0, 0));
}
both!(the_first_error_is_every_repeats);
