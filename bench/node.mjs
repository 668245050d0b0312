// The Node driver of `make bench`: keyleash through the napi-rs addon, as an Express
// or plain Node service calls it. Read its rows against the Rust driver's (what the
// binding adds per call) and against the pgbench references (what keyleash adds).
//
// Usage: node bench/node.mjs CASE URL KEYS_FILE SECONDS CALLERS
//
//   CASE      validate  validate a random key of KEYS_FILE (one raw key a line)
//             charge    trackUsage 1 cent on a random key
//             hot       trackUsage 1 cent on the file's first key
//             hold      reserve 1 cent on a random key, then settle it at 1 cent: one
//                       call is the pair (two transactions)
//             cached    validate a random key with the validation cache on (ttl 60 s)
//             soak      like cached, for BENCH_SOAK_CALLS calls in all (default ten
//                       million) instead of SECONDS, sampling the resident set
//                       (VmRSS) ten times: the line gets rss_samples_mb
//             floor     validate("ak_x") from one caller, one call after another:
//                       malformed, so it never reaches the store (the binding floor)
//             mp        like charge, but a refusal (budget_exceeded) is expected and
//                       counted: the multi-process case gives some keys a tiny cap.
//                       With BENCH_START_AT (epoch ms) set, waits until then, so
//                       several processes measure the same window.
//
// Prints one JSON line (the same fields as bench/rust and bench/python.py): calls in
// the timed window, ops/s, p50/p99 latency per call, unexpected results, and the
// process's peak RSS (VmHWM) at the end. A short warm-up before the window is untimed.
// For bench/run.py's Postgres counters and CPU samples also: calls_all (every call
// made, warm-up included), began_epoch_s (when the first call started) and
// window_epoch_s (the timed window's start and end), in seconds since the epoch.

import { readFileSync } from "node:fs";
import { KeyLeash } from "../bindings-node/index.mjs";

const [caseName, url, keysFile, secondsArg, callersArg] = process.argv.slice(2);
if (callersArg === undefined) {
  console.error("usage: node bench/node.mjs CASE URL KEYS_FILE SECONDS CALLERS");
  process.exit(2);
}
const seconds = Number(secondsArg);
const callers = caseName === "floor" ? 1 : Number(callersArg);
const keys = readFileSync(keysFile, "utf8").split("\n").filter(Boolean);

/** Nearest-rank percentile of sorted numbers (the rule every driver uses). */
function percentile(sorted, q) {
  if (sorted.length === 0) return 0;
  const i = Math.min(Math.max(Math.ceil(q * sorted.length), 1), sorted.length) - 1;
  return sorted[i];
}

/** This process's peak resident set (VmHWM), in MB. */
function peakRssMb() {
  return statusMb("VmHWM");
}

/** A memory line of /proc/self/status (VmHWM, VmRSS), in MB. */
function statusMb(field) {
  const m = readFileSync("/proc/self/status", "utf8").match(new RegExp(`${field}:\\s+(\\d+) kB`));
  return m ? Number(m[1]) / 1024 : 0;
}

/** Now, in seconds since the epoch (sub-millisecond). */
function epochSeconds() {
  return (performance.timeOrigin + performance.now()) / 1000;
}

/** One call of the case; resolves to null if the result is the expected one, else a description. */
async function call(kl) {
  switch (caseName) {
    case "validate":
    case "cached":
    case "soak": {
      const v = await kl.validate(keys[Math.floor(Math.random() * keys.length)]);
      return v.valid ? null : `validate said ${v.reason}`;
    }
    case "floor": {
      const v = await kl.validate("ak_x");
      return v.valid ? 'validate("ak_x") said valid' : null;
    }
    case "charge":
    case "hot":
    case "mp": {
      const key = caseName === "hot" ? keys[0] : keys[Math.floor(Math.random() * keys.length)];
      const c = await kl.trackUsage(key, { costCents: 1 });
      if (c.success) return null;
      if (caseName === "mp" && c.reason === "budget_exceeded") return "refused";
      return `charge refused: ${c.reason}`;
    }
    case "hold": {
      const r = await kl.reserve(keys[Math.floor(Math.random() * keys.length)], { costCents: 1 });
      if (!r.success) return `reserve refused: ${r.reason}`;
      const s = await kl.settle(r.holdId, { costCents: 1 });
      return s.success ? null : `settle refused: ${s.reason}`;
    }
    default:
      throw new Error(`unknown case ${caseName}`);
  }
}

const cached = caseName === "cached" || caseName === "soak";
const kl = await KeyLeash.connect(url, cached ? { cache: { ttlMs: 60_000, maxEntries: 10_000 } } : {});
// The soak case counts calls instead of watching the clock.
const soakCalls = Number(process.env.BENCH_SOAK_CALLS ?? 10_000_000);
const rssSamples = [];
let soakStarted = 0;
const startAt = Number(process.env.BENCH_START_AT ?? 0);
if (startAt > Date.now()) await new Promise((r) => setTimeout(r, startAt - Date.now()));

const warmupNs = BigInt(Math.round(Math.min(seconds * 0.2, 1) * 1e9));
const beganEpoch = epochSeconds();
const start = process.hrtime.bigint() + (caseName === "soak" ? 0n : warmupNs);
const startEpoch = beganEpoch + (caseName === "soak" ? 0 : Number(warmupNs) / 1e9);
const end = start + BigInt(Math.round(seconds * 1e9));
const latencies = [];
let errors = 0;
let refused = 0;
let succeeded = 0; // every expected result, warm-up included: for mp, the charges applied
let firstError = null;

async function caller() {
  for (;;) {
    const began = process.hrtime.bigint();
    if (caseName === "soak") {
      if (soakStarted >= soakCalls) return;
      soakStarted += 1;
      if (soakStarted % (soakCalls / 10) === 0) rssSamples.push(statusMb("VmRSS"));
    } else if (began >= end) return;
    let outcome;
    try {
      outcome = await call(kl);
    } catch (e) {
      outcome = `${e.code ?? "error"}: ${e.message}`;
    }
    if (outcome === null) {
      succeeded += 1;
    } else if (outcome === "refused") {
      refused += 1;
    } else if (outcome !== null) {
      errors += 1;
      firstError ??= outcome;
    }
    if (caseName === "soak") {
      // A uniform sample of 100,000 latencies (reservoir), so the driver's own
      // memory stops growing long before the second RSS sample.
      const ns = Number(process.hrtime.bigint() - began);
      if (latencies.length < 100_000) latencies.push(ns);
      else if (Math.random() * soakStarted < 100_000) latencies[Math.floor(Math.random() * 100_000)] = ns;
    } else if (began >= start) latencies.push(Number(process.hrtime.bigint() - began));
  }
}

await Promise.all(Array.from({ length: callers }, caller));
const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
const endEpoch = epochSeconds();
const stats = kl.cacheStats();
await kl.close();

latencies.sort((a, b) => a - b);
console.log(
  JSON.stringify({
    driver: "node",
    case: caseName,
    store: url.startsWith("sqlite:") ? "sqlite" : "postgres",
    callers,
    seconds: elapsed,
    ops: caseName === "soak" ? soakStarted : latencies.length,
    ops_per_s: (caseName === "soak" ? soakStarted : latencies.length) / elapsed,
    p50_ms: percentile(latencies, 0.5) / 1e6,
    p99_ms: percentile(latencies, 0.99) / 1e6,
    errors,
    first_error: firstError,
    refused,
    succeeded,
    calls_all: succeeded + refused + errors,
    began_epoch_s: beganEpoch,
    window_epoch_s: [startEpoch, endEpoch],
    rss_mb: peakRssMb(),
    rss_samples_mb: caseName === "soak" ? rssSamples : undefined,
    cache_hits: stats?.hits,
    cache_misses: stats?.misses,
  }),
);
