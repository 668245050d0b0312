//! Every public operation's future can be spawned on a multi-threaded tokio runtime
//! (it is `Send + 'static` once its arguments are owned), as the Python and Node
//! bindings do. A future the compiler cannot prove `Send` is a build error there.

mod common;

use std::future::Future;

use common::{budget, Db, Kind};
use keyleash::{Charge, UsageRange};

/// Runs `fut` on another tokio task, the way `future_into_py` / napi do.
async fn spawned<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    tokio::spawn(fut).await.expect("task")
}

// Pins: migrate, create, validate, charge, revoke, list, usage and close all spawn.
async fn every_operation_spawns(kind: Kind) {
    let db = Db::open(kind).await;
    let kl = db.kl.clone();
    spawned(async move { kl.migrate().await }).await.unwrap();
    let kl = db.kl.clone();
    let key = spawned(async move { kl.create(budget("a", 10.0, None)).await })
        .await
        .unwrap();
    let (kl, raw) = (db.kl.clone(), key.key.clone());
    assert!(spawned(async move { kl.validate(&raw).await })
        .await
        .unwrap()
        .is_valid());
    let (kl, raw) = (db.kl.clone(), key.key.clone());
    let charged = spawned(async move { kl.track_usage(&raw, Charge::cents(4.0)).await });
    assert!(charged.await.unwrap().success());
    let kl = db.kl.clone();
    let listed = spawned(async move { kl.list("a").await }).await.unwrap();
    assert_eq!(listed.len(), 1);
    let kl = db.kl.clone();
    let rows = spawned(async move { kl.usage(key.id, UsageRange::default()).await });
    assert_eq!(rows.await.unwrap().len(), 1);
    let kl = db.kl.clone();
    assert!(spawned(async move { kl.revoke(key.id, None).await })
        .await
        .unwrap());
    let kl = db.kl.clone();
    spawned(async move { kl.close().await }).await;
}
both!(every_operation_spawns);
