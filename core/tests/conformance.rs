//! The Rust runner of the cross-language conformance vectors (`docs/conformance.md`,
//! `tests/conformance/README.md`): every vector of `CONFORMANCE_DIR` (default
//! `tests/conformance`; a relative path is taken from the workspace root), on a fresh
//! SQLite file and on a fresh table of `DATABASE_URL`, through the public API of the
//! core. One line per vector and store, then a summary; the exit status is non-zero
//! when anything failed, when an op or field is unknown, or when there is no vector.
//!
//! Run it with `make conformance` (all three runners) or
//! `cargo test -p keyleash --test conformance` under `scripts/with-postgres.sh`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use futures::future::{join_all, BoxFuture};
use keyleash::options::LimitInput;
use keyleash::{
    clock, parse_time, Charge, Clock, CreateOptions, KeyLeash, Limit, Options, Reserve, UsageRange,
    Validation,
};
use serde_json::{Map, Value};

/// The manual clock's first reading when a vector gives no `start`.
const DEFAULT_START: &str = "2026-01-15T12:00:00Z";
const VECTOR_FIELDS: &[&str] = &["name", "start", "options", "steps"];
const STEP_FIELDS: &[&str] = &[
    "op",
    "args",
    "save",
    "expect",
    "expectError",
    "key",
    "rawKey",
    "id",
    "hold",
    "subject",
    "count",
    "step",
    "expectCount",
];

/// Why a step did not give what its vector expected.
type Failure = String;

/// What an op produced: a JSON result, or the code of the typed error it raised.
type Outcome = Result<Value, keyleash::Error>;

fn main() -> ExitCode {
    let dir = folder();
    let mut vectors: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(e) => {
            println!("FAIL cannot read CONFORMANCE_DIR {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    vectors.sort();
    if vectors.is_empty() {
        println!("FAIL no conformance vectors in {}", dir.display());
        return ExitCode::FAILURE;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime");

    let (mut passed, mut failed) = (0, 0);
    for path in &vectors {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        for store in ["sqlite", "postgres"] {
            match runtime.block_on(run_vector(path, store)) {
                Ok(()) => {
                    passed += 1;
                    println!("ok   {store:<8} {stem}");
                }
                Err(why) => {
                    failed += 1;
                    println!("FAIL {store:<8} {stem}: {why}");
                }
            }
        }
    }
    println!(
        "conformance (rust): {} vectors x 2 stores: {passed} passed, {failed} failed",
        vectors.len()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn folder() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    match std::env::var_os("CONFORMANCE_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("tests/conformance"),
    }
}

fn database_url(store: &str, seq: u32) -> Result<String, Failure> {
    if store == "sqlite" {
        let file =
            std::env::temp_dir().join(format!("keyleash_conf_rs_{}_{seq}.db", std::process::id()));
        return Ok(format!("sqlite://{}", file.display()));
    }
    std::env::var("DATABASE_URL").map_err(|_| {
        "DATABASE_URL is not set: run `make conformance`, which starts a private Postgres".into()
    })
}

async fn run_vector(path: &Path, store: &str) -> Result<(), Failure> {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);

    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let vector: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    let vector = object(&vector, "the vector")?;
    known(vector, VECTOR_FIELDS, "vector")?;
    let start = vector
        .get("start")
        .map_or(Ok(DEFAULT_START), |v| text_of(v, "start"))?;
    let start = parse_time("start", start).map_err(|e| e.to_string())?;
    let empty = Map::new();
    let options = match vector.get("options") {
        Some(v) => object(v, "options")?,
        None => &empty,
    };
    known(
        options,
        &["validScopes", "keyPrefix", "tableName"],
        "options",
    )?;

    // Every vector gets a table of its own, so runs never see each other's rows.
    let table = options
        .get("tableName")
        .map_or(Ok("conf"), |v| text_of(v, "tableName"))?;
    let mut opts = Options {
        table_name: format!("{table}_rs{}_{seq}", std::process::id()),
        clock: Clock::manual(start),
        ..Options::default()
    };
    if let Some(prefix) = options.get("keyPrefix") {
        opts.key_prefix = text_of(prefix, "keyPrefix")?.to_owned();
    }
    if let Some(scopes) = options.get("validScopes") {
        opts.valid_scopes = Some(strings(scopes, "validScopes")?);
    }
    let url = database_url(store, seq)?;
    let kl = KeyLeash::connect(&url, opts)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    kl.migrate().await.map_err(|e| format!("migrate: {e}"))?;
    let runner = Runner {
        kl: kl.clone(),
        saved: Arc::default(),
    };
    let steps = vector
        .get("steps")
        .and_then(Value::as_array)
        .ok_or("the vector has no `steps` list")?;
    let result = run_steps(&runner, steps).await;
    kl.close().await;
    if let Some(file) = url.strip_prefix("sqlite://") {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{file}{suffix}"));
        }
    }
    result
}

async fn run_steps(runner: &Runner, steps: &[Value]) -> Result<(), Failure> {
    for (i, step) in steps.iter().enumerate() {
        let step = object(step, "a step")?;
        let op = step.get("op").and_then(Value::as_str).unwrap_or("?");
        let at = |why: String| format!("step {i} ({op}): {why}");
        let outcome = runner.run(step.clone()).await.map_err(at)?;
        check(step, outcome, &runner.saved).map_err(at)?;
    }
    Ok(())
}

/// Compares one step's outcome with its `expect`, `expectError` and `expectCount`,
/// and saves the result under `save`.
fn check(
    step: &Map<String, Value>,
    outcome: Outcome,
    saved: &Mutex<HashMap<String, Value>>,
) -> Result<(), Failure> {
    let result = match (outcome, step.get("expectError")) {
        (Err(e), Some(code)) if Some(e.code()) == code.as_str() => return Ok(()),
        (Err(e), Some(code)) => return Err(format!("raised {}, expected {code}: {e}", e.code())),
        (Err(e), None) => return Err(format!("raised {}: {e}", e.code())),
        (Ok(result), Some(code)) => {
            return Err(format!("expected error {code}, got {}", shown(&result)))
        }
        (Ok(result), None) => result,
    };
    if let Some(expect) = step.get("expect") {
        if !subset(expect, &result) {
            return Err(format!("expected {expect}, got {}", shown(&result)));
        }
    }
    if let Some(rules) = step.get("expectCount") {
        let results = result
            .as_array()
            .ok_or("expectCount needs a parallel step")?;
        for rule in rules.as_array().ok_or("expectCount must be a list")? {
            let want = rule.get("count").and_then(Value::as_u64).ok_or("count")?;
            let pattern = rule.get("match").ok_or("expectCount needs `match`")?;
            let got = results.iter().filter(|r| subset(pattern, r)).count();
            if got as u64 != want {
                return Err(format!(
                    "{got} of {} results matched {pattern}, expected {want}: {}",
                    results.len(),
                    shown(&result)
                ));
            }
        }
    }
    if let Some(name) = step.get("save") {
        let name = text_of(name, "save")?.to_owned();
        saved.lock().expect("saved results").insert(name, result);
    }
    Ok(())
}

/// One vector's store and the results its steps saved.
#[derive(Clone)]
struct Runner {
    kl: KeyLeash,
    saved: Arc<Mutex<HashMap<String, Value>>>,
}

impl Runner {
    fn saved_field(&self, name: &Value, field: &str) -> Result<Value, Failure> {
        let name = text_of(name, "a saved name")?;
        let saved = self.saved.lock().expect("saved results");
        let result = saved
            .get(name)
            .ok_or_else(|| format!("no saved result named {name:?}"))?;
        result
            .get(field)
            .cloned()
            .ok_or_else(|| format!("saved result {name:?} has no {field}"))
    }

    fn raw_key(&self, step: &Map<String, Value>) -> Result<String, Failure> {
        if let Some(raw) = step.get("rawKey") {
            return Ok(text_of(raw, "rawKey")?.to_owned());
        }
        let name = step.get("key").ok_or("the step needs `key` or `rawKey`")?;
        Ok(text_of(&self.saved_field(name, "key")?, "key")?.to_owned())
    }

    fn key_id(&self, step: &Map<String, Value>) -> Result<i64, Failure> {
        let name = step.get("id").ok_or("the step needs `id`")?;
        self.saved_field(name, "id")?
            .as_i64()
            .ok_or_else(|| "a saved id is not an integer".into())
    }

    fn hold_id(&self, step: &Map<String, Value>) -> Result<i64, Failure> {
        let name = step.get("hold").ok_or("the step needs `hold`")?;
        self.saved_field(name, "holdId")?
            .as_i64()
            .ok_or_else(|| "a saved holdId is not an integer".into())
    }

    fn subject<'a>(&self, step: &'a Map<String, Value>) -> Result<&'a str, Failure> {
        text_of(
            step.get("subject").ok_or("the step needs `subject`")?,
            "subject",
        )
    }

    /// Runs one step. The outer error is a broken vector (unknown op or field, a
    /// missing reference); the inner one is what the API raised.
    fn run(&self, step: Map<String, Value>) -> BoxFuture<'_, Result<Outcome, Failure>> {
        Box::pin(async move {
            known(&step, STEP_FIELDS, "step")?;
            let op = text_of(step.get("op").ok_or("a step has no `op`")?, "op")?;
            let empty = Map::new();
            let args = match step.get("args") {
                Some(v) => object(v, "args")?,
                None => &empty,
            };
            let kl = &self.kl;
            let outcome = match op {
                "create" => match self.create_options(args) {
                    Ok(opts) => kl.create(opts).await.map(json),
                    Err(e) => Err(e),
                },
                "ensureSubject" => match self.create_options(args) {
                    Ok(opts) => kl
                        .ensure_subject(self.subject(&step)?, opts)
                        .await
                        .map(|()| Value::Null),
                    Err(e) => Err(e),
                },
                "validate" => kl.validate(&self.raw_key(&step)?).await.map(json),
                "validateBySubject" => kl.validate_by_subject(self.subject(&step)?).await.map(json),
                "trackUsage" => {
                    let charge = charge(args)?;
                    kl.track_usage(&self.raw_key(&step)?, charge)
                        .await
                        .map(json)
                }
                "trackUsageBySubject" => {
                    let charge = charge(args)?;
                    kl.track_usage_by_subject(self.subject(&step)?, charge)
                        .await
                        .map(json)
                }
                "revoke" => {
                    known(args, &["accountId"], "revoke args")?;
                    let account = args.get("accountId").map(|v| text_of(v, "accountId"));
                    let account = account.transpose()?;
                    kl.revoke(self.key_id(&step)?, account)
                        .await
                        .map(Value::Bool)
                }
                "setLimits" => {
                    known(args, &["limits", "accountId"], "setLimits args")?;
                    let account = args.get("accountId").map(|v| text_of(v, "accountId"));
                    let account = account.transpose()?;
                    let given = args.get("limits").ok_or("a setLimits needs limits")?;
                    match limits(given)? {
                        Ok(l) => kl.set_limits(self.key_id(&step)?, &l, account).await,
                        Err(e) => Err(e),
                    }
                    .map(Value::Bool)
                }
                "hasScope" => {
                    known(args, &["scope"], "hasScope args")?;
                    let scope = text_of(args.get("scope").ok_or("hasScope needs scope")?, "scope")?;
                    kl.validate(&self.raw_key(&step)?)
                        .await
                        .map(|v: Validation| Value::Bool(v.has_scope(scope)))
                }
                "usage" => {
                    known(args, &["from", "to"], "usage args")?;
                    let range = UsageRange {
                        from: time_arg(args, "from")?,
                        to: time_arg(args, "to")?,
                    };
                    kl.usage(self.key_id(&step)?, range).await.map(json)
                }
                "list" => {
                    known(args, &["accountId"], "list args")?;
                    let account = args.get("accountId").ok_or("list needs accountId")?;
                    kl.list(text_of(account, "accountId")?).await.map(json)
                }
                "advance" => {
                    known(
                        args,
                        &["seconds", "minutes", "hours", "days"],
                        "advance args",
                    )?;
                    let n = |k: &str| args.get(k).and_then(Value::as_f64).unwrap_or(0.0);
                    let by = clock::span(n("seconds"), n("minutes"), n("hours"), n("days"));
                    by.map(|by| {
                        manual(kl).advance(by);
                        Value::Null
                    })
                }
                "setNow" => {
                    known(args, &["at"], "setNow args")?;
                    let at = text_of(args.get("at").ok_or("setNow needs at")?, "at")?;
                    parse_time("at", at).map(|at| {
                        manual(kl).set(at);
                        Value::Null
                    })
                }
                "parallel" => {
                    let count = step.get("count").and_then(Value::as_u64).ok_or("count")?;
                    let inner = object(step.get("step").ok_or("parallel needs `step`")?, "step")?;
                    let calls = (0..count).map(|_| {
                        let (runner, inner) = (self.clone(), inner.clone());
                        tokio::spawn(async move { runner.run(inner).await })
                    });
                    let mut results = Vec::new();
                    for joined in join_all(calls).await {
                        // An element that raised is `{"error": code}`, so expectCount
                        // can count errors too.
                        results.push(match joined.map_err(|e| e.to_string())?? {
                            Ok(v) => v,
                            Err(e) => serde_json::json!({ "error": e.code() }),
                        });
                    }
                    Ok(Value::Array(results))
                }
                "reserve" => {
                    known(
                        args,
                        &["costCents", "ttl", "idempotencyKey"],
                        "reserve args",
                    )?;
                    let text = |name: &str| {
                        args.get(name)
                            .map(|v| text_of(v, name).map(str::to_owned))
                            .transpose()
                    };
                    let reserve = Reserve {
                        cost_cents: number(
                            args.get("costCents").ok_or("a reserve needs costCents")?,
                        ),
                        ttl: text("ttl")?,
                        idempotency_key: text("idempotencyKey")?,
                    };
                    kl.reserve(&self.raw_key(&step)?, reserve).await.map(json)
                }
                "settle" => {
                    known(args, &["costCents"], "settle args")?;
                    let cost = number(args.get("costCents").ok_or("a settle needs costCents")?);
                    kl.settle(self.hold_id(&step)?, cost).await.map(json)
                }
                "release" => kl.release(self.hold_id(&step)?).await.map(Value::Bool),
                "setAccountBudget" => {
                    known(
                        args,
                        &["accountId", "budgetCents", "budgetPeriod"],
                        "setAccountBudget args",
                    )?;
                    let account = args
                        .get("accountId")
                        .ok_or("a setAccountBudget needs accountId")?;
                    let cents = match args
                        .get("budgetCents")
                        .ok_or("a setAccountBudget needs budgetCents")?
                    {
                        Value::Null => None,
                        v => Some(number(v)),
                    };
                    let period = args
                        .get("budgetPeriod")
                        .filter(|v| !v.is_null())
                        .map(|v| text_of(v, "budgetPeriod"))
                        .transpose()?;
                    kl.set_account_budget(text_of(account, "accountId")?, cents, period)
                        .await
                        .map(|()| Value::Null)
                }
                _ => return Err(format!("op {op:?} is not known to the Rust runner")),
            };
            Ok(outcome)
        })
    }

    fn create_options(&self, args: &Map<String, Value>) -> Result<CreateOptions, keyleash::Error> {
        let bad = |e: Failure| keyleash::Error::InvalidArgument(format!("bad vector: {e}"));
        known(
            args,
            &[
                "accountId",
                "userId",
                "scopes",
                "budgetCents",
                "budgetPeriod",
                "expiresIn",
                "expiresAt",
                "delegatedBy",
                "name",
                "metadata",
                "parentId",
                "limits",
            ],
            "create args",
        )
        .map_err(bad)?;
        let text = |k: &str| -> Result<Option<String>, keyleash::Error> {
            args.get(k)
                .filter(|v| !v.is_null())
                .map(|v| text_of(v, k).map(str::to_owned).map_err(bad))
                .transpose()
        };
        let scopes = match args.get("scopes").filter(|v| !v.is_null()) {
            Some(v) => Some(strings(v, "scopes").map_err(bad)?),
            None => None,
        };
        let parent_id = match args.get("parentId").filter(|v| !v.is_null()) {
            Some(name) => Some(
                self.saved_field(name, "id")
                    .map_err(bad)?
                    .as_i64()
                    .ok_or_else(|| bad("a saved id is not an integer".into()))?,
            ),
            None => None,
        };
        Ok(CreateOptions {
            account_id: text("accountId")?.unwrap_or_default(),
            user_id: text("userId")?,
            scopes,
            budget_cents: args.get("budgetCents").filter(|v| !v.is_null()).map(number),
            budget_period: text("budgetPeriod")?,
            expires_in: text("expiresIn")?,
            expires_at: match text("expiresAt")? {
                Some(at) => Some(parse_time("expiresAt", &at)?),
                None => None,
            },
            delegated_by: text("delegatedBy")?,
            name: text("name")?,
            metadata: args.get("metadata").filter(|v| !v.is_null()).cloned(),
            parent_id,
            limits: match args.get("limits").filter(|v| !v.is_null()) {
                Some(v) => limits(v).map_err(bad)??,
                None => Vec::new(),
            },
        })
    }
}

fn manual(kl: &KeyLeash) -> &keyleash::ManualClock {
    kl.clock()
        .as_manual()
        .expect("the runner connects with a manual clock")
}

fn charge(args: &Map<String, Value>) -> Result<Charge, Failure> {
    known(args, &["costCents", "idempotencyKey"], "charge args")?;
    let cost = args.get("costCents").ok_or("a charge needs costCents")?;
    let key = args
        .get("idempotencyKey")
        .map(|v| text_of(v, "idempotencyKey"));
    Ok(Charge {
        cost_cents: number(cost),
        idempotency_key: key.transpose()?.map(str::to_owned),
    })
}

/// `create`'s `limits`, converted as the bindings convert theirs
/// (`keyleash::options::LimitInput`): the outer error is a broken vector, the
/// inner one the core's refusal of a limit.
fn limits(v: &Value) -> Result<Result<Vec<Limit>, keyleash::Error>, Failure> {
    let items = v.as_array().ok_or("limits must be a list")?;
    let mut inputs = Vec::with_capacity(items.len());
    for item in items {
        let l = object(item, "a limit")?;
        known(l, &["name", "unit", "limit", "period", "burst"], "limit")?;
        let text = |k: &str| {
            l.get(k)
                .map(|v| text_of(v, k).map(str::to_owned))
                .transpose()
        };
        inputs.push(LimitInput {
            name: text("name")?,
            unit: text("unit")?.ok_or("a limit needs a unit")?,
            limit: l.get("limit").map(number).ok_or("a limit needs a limit")?,
            period: text("period")?,
            burst: l.get("burst").map(number),
        });
    }
    Ok(keyleash::options::limits(inputs))
}

/// A number, or one of the strings `NaN`, `Infinity`, `-Infinity` (which JSON cannot
/// write as numbers). Anything else is NaN, which every op refuses.
fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) if s == "Infinity" => f64::INFINITY,
        Value::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
        _ => f64::NAN,
    }
}

fn time_arg(
    args: &Map<String, Value>,
    field: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, Failure> {
    match args.get(field) {
        Some(v) => parse_time(field, text_of(v, field)?)
            .map(Some)
            .map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

fn json(value: impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("results serialize")
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, Failure> {
    v.as_object()
        .ok_or_else(|| format!("{what} must be an object"))
}

fn text_of<'a>(v: &'a Value, what: &str) -> Result<&'a str, Failure> {
    v.as_str().ok_or_else(|| format!("{what} must be a string"))
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, Failure> {
    v.as_array()
        .and_then(|a| a.iter().map(|s| s.as_str().map(str::to_owned)).collect())
        .ok_or_else(|| format!("{what} must be a list of strings"))
}

/// Fails loudly on a field the format does not define, so no vector is half-run.
fn known(map: &Map<String, Value>, fields: &[&str], what: &str) -> Result<(), Failure> {
    match map.keys().find(|k| !fields.contains(&k.as_str())) {
        Some(k) => Err(format!("unknown {what} field {k:?}")),
        None => Ok(()),
    }
}

/// `expect` as a subset of `actual` (docs/conformance.md): a field given must match, a
/// `null` field matches null or absent; a list result is matched element by element.
fn subset(expect: &Value, actual: &Value) -> bool {
    match (expect, actual) {
        (Value::Object(e), Value::Object(a)) => e.iter().all(|(k, v)| match a.get(k) {
            None => v.is_null(),
            Some(got) => v.is_null() && got.is_null() || matches(v, got),
        }),
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(e, a)| subset(e, a))
        }
        _ => matches(expect, actual),
    }
}

/// One field's value: `"*"` is any non-null value, numbers match within 1e-9, and
/// objects and lists nested inside a field match exactly.
fn matches(expect: &Value, actual: &Value) -> bool {
    match (expect, actual) {
        (Value::String(s), a) if s == "*" => !a.is_null(),
        (Value::Number(e), Value::Number(a)) => match (e.as_f64(), a.as_f64()) {
            (Some(e), Some(a)) => (e - a).abs() <= 1e-9,
            _ => false,
        },
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len()
                && e.iter()
                    .all(|(k, v)| a.get(k).is_some_and(|a| matches(v, a)))
        }
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(e, a)| matches(e, a))
        }
        _ => expect == actual,
    }
}

/// A result as printed in a failure, with raw keys hidden.
fn shown(result: &Value) -> String {
    let mut v = result.clone();
    redact(&mut v);
    v.to_string()
}

fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if k == "key" && v.is_string() {
                    *v = Value::String("<raw key>".into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}
