// Test harness: every test runs on a real SQLite file and a real Postgres
// (DATABASE_URL, which `make test` provides by starting a private cluster), each
// on its own freshly migrated table, through the built addon.

const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const { Pool } = require("pg");
const { KeyLeash } = require("..");

const START = "2026-01-15T12:00:00.000Z";
let seq = 0;

function pgUrl() {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error("DATABASE_URL is not set: run `make test`, which starts a private Postgres cluster");
  return url;
}

/** The stores every behaviour test runs on. */
const STORES = ["sqlite", "postgres"];

function unique(tag) {
  seq += 1;
  return `${tag}_${process.pid}_${seq}`;
}

function urlOf(store) {
  // The time too: pids wrap around, and an earlier run's file would be opened again.
  return store === "sqlite"
    ? `sqlite://${path.join(os.tmpdir(), `${unique("keyleash_node")}_${Date.now()}.db`)}`
    : pgUrl();
}

/** A migrated KeyLeash on a fresh table of `store`, with a manual clock at START. */
async function open(store, options = {}) {
  const url = urlOf(store);
  const tableName = unique("n");
  const kl = await KeyLeash.connect(url, { tableName, manualClock: START, ...options });
  await kl.migrate();
  return { kl, url, tableName, store };
}

let pool;
/** Runs SQL on the test Postgres. */
async function pg(sql, params) {
  pool ??= new Pool({ connectionString: pgUrl(), max: 2 });
  return (await pool.query(sql, params)).rows;
}

async function closePg() {
  if (pool) await pool.end();
  pool = undefined;
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
async function freePort() {
  const s = net.createServer();
  await new Promise((resolve) => s.listen(0, "127.0.0.1", resolve));
  const { port } = s.address();
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** The counter and the ledger sum (micro-cents) of a key, read back from the database. */
async function counters(db, keyId, account = "a") {
  if (db.store === "postgres") {
    const [k] = await pg(`SELECT budget_used_micros::int8 AS used FROM ${db.tableName} WHERE id = $1`, [keyId]);
    const [l] = await pg(
      `SELECT COALESCE(SUM(amount_micros), 0)::int8 AS sum, COUNT(*)::int8 AS n FROM ${db.tableName}_ledger WHERE key_id = $1`,
      [keyId],
    );
    return { used: Number(k.used), ledgerSum: Number(l.sum), ledgerRows: Number(l.n) };
  }
  // SQLite: a second, independent connection reads what was committed.
  const other = await KeyLeash.connect(db.url, { tableName: db.tableName });
  const ledger = await other.usage(keyId);
  const key = (await other.list(account)).find((k) => k.id === keyId);
  await other.close();
  return {
    used: Math.round((key?.budgetUsedCents ?? 0) * 1e6),
    ledgerSum: Math.round(ledger.reduce((s, e) => s + e.amountCents, 0) * 1e6),
    ledgerRows: ledger.length,
  };
}

/** Runs `fn` with stderr captured; resolves to [its result, the lines written]. */
async function capturingStderr(fn) {
  const lines = [];
  const write = process.stderr.write;
  process.stderr.write = (chunk, ...rest) => {
    lines.push(...String(chunk).split("\n").filter(Boolean));
    const done = rest.find((r) => typeof r === "function");
    if (done) done();
    return true;
  };
  try {
    return [await fn(), lines];
  } finally {
    process.stderr.write = write;
  }
}

module.exports = { START, STORES, open, pg, closePg, counters, urlOf, pgUrl, unique, capturingStderr, freePort };
