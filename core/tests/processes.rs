//! The cap holds when several OS processes charge one key at once. The test binary
//! re-runs itself as the child processes (selected by an environment variable), so
//! each child is a real process with its own pool and runtime.

mod common;

use std::process::{Command, Stdio};

use common::{budget, Db, Kind};
use futures::future::join_all;
use keyleash::{Charge, KeyLeash, Options};

const CHILD: &str = "KEYLEASH_TEST_CHILD";
const PROCESSES: usize = 4;
const PER_PROCESS: usize = 50;

/// Child role: fire `PER_PROCESS` concurrent 1-cent charges and print the tally.
async fn child(spec: &str) {
    let mut parts = spec.split('|');
    let (url, table, key) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let options = Options {
        table_name: table.into(),
        ..Options::default()
    };
    let kl = KeyLeash::connect(url, options).await.unwrap();
    let calls = (0..PER_PROCESS).map(|_| {
        let (kl, key) = (kl.clone(), key.to_string());
        tokio::spawn(async move {
            kl.track_usage(&key, Charge::cents(1.0))
                .await
                .unwrap()
                .success()
        })
    });
    let ok = join_all(calls)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    // libtest prints "test … ... " before the output on the same line.
    println!("\nCHILD-RESULT ok={ok}");
}

// Pins: four processes × 50 parallel 1-cent charges on a 100-cent key → exactly 100 succeed in all.
async fn several_processes(kind: Kind) {
    if let Ok(spec) = std::env::var(CHILD) {
        return child(&spec).await;
    }
    let db = Db::open(kind).await;
    let k = db.kl.create(budget("a", 100.0, None)).await.unwrap();
    let name = format!(
        "several_processes::{}",
        if kind == Kind::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    );
    let spec = format!("{}|{}|{}", db.url, db.table, k.key);
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", &name, "--nocapture", "--test-threads", "1"])
                .env(CHILD, &spec)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let mut ok = 0;
    for out in outputs {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {stdout}");
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("CHILD-RESULT ok="))
            .expect("child tally");
        ok += line.trim().parse::<usize>().unwrap();
    }
    assert_eq!(
        ok, 100,
        "exactly the budget succeeded across {PROCESSES} processes"
    );
    assert_eq!(db.used_micros(k.id).await, 100_000_000);
    assert_eq!(db.ledger(k.id).await, (100_000_000, 100));
}
both!(several_processes);
