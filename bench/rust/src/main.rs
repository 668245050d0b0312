//! The Rust driver of `make bench`: keyleash's own cost, with no binding in between.
//!
//! It calls the core directly from tokio tasks, the way a Rust service would, so the
//! Node and Python rows of the table can be read against it (what the binding adds)
//! and this row against the pgbench references (what keyleash adds over the SQL).
//!
//! Usage: keyleash-bench CASE URL KEYS_FILE SECONDS CALLERS
//!
//!   CASE      validate  validate a random key of KEYS_FILE (one raw key a line)
//!             charge    track_usage 1 cent on a random key
//!             hot       track_usage 1 cent on the file's first key
//!             hold      reserve 1 cent on a random key, then settle it at 1 cent: one
//!                       call is the pair (two transactions)
//!             cached    validate a random key with the validation cache on (ttl 60 s)
//!             floor     validate("ak_x") from one caller: malformed, never reaches the store
//!             pragma    print the `synchronous` and `journal_mode` of a SQLite URL opened
//!                       as keyleash opens it (sqlx defaults + WAL)
//!
//! Environment, for measurements outside `make bench` (which sets neither):
//! BENCH_POOL, the pool size (default keyleash's), and BENCH_DEPTH, the spend
//! lanes' pipeline depth (`Options::pipeline_depth`, default 1).
//!
//! Each case prints one JSON line (the same fields as bench/node.mjs and
//! bench/python.py): calls made in the timed window, ops/s, p50 and p99 latency per
//! call, unexpected results, and the process's peak RSS (VmHWM) at the end.
//! Before the window every caller runs for a short warm-up (pools fill), untimed.
//! For bench/run.py's Postgres counters and CPU samples also: `calls_all` (every
//! call made, warm-up included), `began_epoch_s` (when the first call started) and
//! `window_epoch_s` (the timed window's start and end), in seconds since the epoch.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyleash::{Charge, KeyLeash, Options, Reserve, SettleResult};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, Row};

/// What one caller saw: how many calls it started inside the window, a uniform
/// sample of their latencies (ns), and its unexpected results.
#[derive(Default)]
struct Tally {
    calls: u64,
    calls_all: u64,
    latencies_ns: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// A whole number from the environment variable `name`, if set.
fn knob<T: FromStr>(name: &str) -> Option<T> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {v:?}")),
    )
}

/// At most this many latencies are kept per caller (reservoir sampling beyond it): the
/// floor case makes millions of calls, and keeping them all would inflate the peak
/// RSS this driver reports. Far above what any store-bound case reaches.
const SAMPLE: usize = 200_000;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "pragma" {
        pragma(&args[2]).await;
        return;
    }
    if args.len() != 6 {
        eprintln!("usage: keyleash-bench CASE URL KEYS_FILE SECONDS CALLERS");
        std::process::exit(2);
    }
    let (case, url, keys_file) = (args[1].clone(), args[2].clone(), &args[3]);
    let seconds: f64 = args[4].parse().expect("SECONDS is a number");
    let mut callers: usize = args[5].parse().expect("CALLERS is a whole number");
    let keys: Vec<String> = std::fs::read_to_string(keys_file)
        .expect("cannot read KEYS_FILE")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(!keys.is_empty(), "KEYS_FILE is empty");
    if case == "floor" {
        callers = 1;
    }

    let options = Options {
        cache: (case == "cached").then(|| keyleash::CacheOptions {
            ttl: Duration::from_secs(60),
            max_entries: 10_000,
        }),
        pipeline_depth: knob("BENCH_DEPTH"),
        pool_size: knob("BENCH_POOL"),
        ..Options::default()
    };
    let kl = KeyLeash::connect(&url, options)
        .await
        .unwrap_or_else(|e| panic!("connect failed: {e}"));
    let keys = Arc::new(keys);
    let warmup = Duration::from_secs_f64((seconds * 0.2).min(1.0));
    let began_epoch = epoch_seconds();
    let start = Instant::now() + warmup;
    let end = start + Duration::from_secs_f64(seconds);

    let mut tasks = Vec::new();
    for i in 0..callers {
        let (kl, keys, case) = (kl.clone(), keys.clone(), case.clone());
        tasks.push(tokio::spawn(async move {
            caller(&kl, &keys, &case, i as u64, start, end).await
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await.expect("a caller task panicked");
        all.calls += t.calls;
        all.calls_all += t.calls_all;
        all.latencies_ns.extend(t.latencies_ns);
        all.errors += t.errors;
        all.first_error = all.first_error.or(t.first_error);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let end_epoch = epoch_seconds();
    kl.close().await;

    let mut lat = all.latencies_ns;
    lat.sort_unstable();
    let ms = |q: f64| percentile(&lat, q) as f64 / 1e6;
    let line = serde_json::json!({
        "driver": "rust",
        "case": case,
        "store": store_of(&url),
        "callers": callers,
        "seconds": elapsed,
        "ops": all.calls,
        "ops_per_s": all.calls as f64 / elapsed,
        "p50_ms": ms(0.50),
        "p99_ms": ms(0.99),
        "errors": all.errors,
        "first_error": all.first_error,
        "calls_all": all.calls_all,
        "began_epoch_s": began_epoch,
        "window_epoch_s": [began_epoch + warmup.as_secs_f64(), end_epoch],
        "rss_mb": peak_rss_mb(),
    });
    println!("{line}");
}

/// One caller: call in a loop until `end`, timing the calls started after `start`.
async fn caller(
    kl: &KeyLeash,
    keys: &[String],
    case: &str,
    seed: u64,
    start: Instant,
    end: Instant,
) -> Tally {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (seed + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    let mut t = Tally::default();
    loop {
        let began = Instant::now();
        if began >= end {
            return t;
        }
        let key = match case {
            "hot" => &keys[0],
            "floor" => "ak_x",
            _ => &keys[rng.below(keys.len())],
        };
        let outcome: Result<(), String> = match case {
            "validate" | "cached" => match kl.validate(key).await {
                Ok(v) if v.is_valid() => Ok(()),
                Ok(v) => Err(format!("validate said {:?}", v.reason())),
                Err(e) => Err(e.to_string()),
            },
            "floor" => match kl.validate(key).await {
                Ok(v) if !v.is_valid() => Ok(()),
                Ok(_) => Err("validate(\"ak_x\") said valid".into()),
                Err(e) => Err(e.to_string()),
            },
            "charge" | "hot" => match kl.track_usage(key, Charge::cents(1.0)).await {
                Ok(c) if c.success() => Ok(()),
                Ok(c) => Err(format!("charge refused: {:?}", c.reason())),
                Err(e) => Err(e.to_string()),
            },
            "hold" => match kl.reserve(key, Reserve::cents(1.0)).await {
                Ok(r) => match r.hold_id() {
                    Some(id) => match kl.settle(id, 1.0).await {
                        Ok(SettleResult::Settled { .. }) => Ok(()),
                        Ok(s) => Err(format!("settle refused: {s:?}")),
                        Err(e) => Err(e.to_string()),
                    },
                    None => Err(format!("reserve refused: {r:?}")),
                },
                Err(e) => Err(e.to_string()),
            },
            other => panic!("unknown case {other}"),
        };
        t.calls_all += 1;
        if let Err(e) = outcome {
            t.errors += 1;
            t.first_error.get_or_insert(e);
        }
        if began >= start {
            let ns = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
            t.calls += 1;
            if t.latencies_ns.len() < SAMPLE {
                t.latencies_ns.push(ns);
            } else {
                // Algorithm R: the kept sample stays uniform over every call so far.
                let j = rng.below(usize::try_from(t.calls).unwrap_or(usize::MAX));
                if j < SAMPLE {
                    t.latencies_ns[j] = ns;
                }
            }
        }
    }
}

/// Prints the `synchronous` level (0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA) and journal
/// mode of a SQLite file opened with the options keyleash's SQLite store sets
/// (core/src/store/sqlite.rs: sqlx's defaults, create_if_missing, WAL).
async fn pragma(url: &str) {
    let mut conn = SqliteConnectOptions::from_str(url)
        .expect("a sqlite: URL")
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await
        .expect("open the SQLite file");
    let sync: i64 = sqlx::query("PRAGMA synchronous")
        .fetch_one(&mut conn)
        .await
        .expect("PRAGMA synchronous")
        .get(0);
    let journal: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .expect("PRAGMA journal_mode")
        .get(0);
    let version: String = sqlx::query("SELECT sqlite_version()")
        .fetch_one(&mut conn)
        .await
        .expect("sqlite_version()")
        .get(0);
    let line = serde_json::json!({"synchronous": sync, "journal_mode": journal, "sqlite_version": version});
    println!("{line}");
}

/// Nearest-rank percentile of sorted values (0 when there are none): the same rule
/// as bench/node.mjs, bench/python.py and bench/run.py.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn store_of(url: &str) -> &'static str {
    if url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    }
}

/// Now, in seconds since the Unix epoch.
fn epoch_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// This process's peak resident set (VmHWM in /proc/self/status), in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A tiny PRNG (xorshift64*): key choice needs to be uniform, not secure.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}
