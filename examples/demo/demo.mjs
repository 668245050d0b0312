// The main job, end to end on embedded SQLite (`make demo`):
//
// 1. Start the Express example and the FastAPI example as two server processes that
//    share ONE SQLite file.
// 2. Sign up for a key (50 cents a day) and mint two agent keys of 20 cents each
//    from it, one through each server. Their spend also counts against the parent.
// 3. Fire 80 "LLM calls" of 1 cent each at once, split across both servers: 30 per
//    agent key and 20 on the parent key itself. Demand is 80 cents; 50 may be spent.
// 4. Read the database through keyleash and print each key's usage as a table.
// 5. Holds at work: a fresh 50-cent key streams answers (POST /v1/chat/stream), each
//    holding its 5-cent ceiling while the words go out and settling the 3 cents it
//    really cost. A client that hangs up after two words pays for those two. Then two
//    waves of 30 parallel streams: while 10 holds are in flight the rest are refused,
//    and what the settles give back lets the second wave's first streams through.
//    Checked: used + held never passed 50 cents, nothing stays held, the counter
//    equals the ledger, and every ledger row names its hold.
//
// The cap holds across both processes because every charge is one SQLite write
// transaction (BEGIN IMMEDIATE). The demo exits non-zero if any cap was exceeded,
// if the ledger disagrees with the counters, or if the servers answered otherwise
// than 200 or 429.
//
// Env: KEYLEASH_PYTHON (the Python with keyleash, fastapi and uvicorn; `make demo`
// builds it), DEMO_DB (the SQLite file; default a fresh file in a temporary folder).

import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { KeyLeash } from "../../bindings-node/index.mjs";

const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const DB = process.env.DEMO_DB ?? join(mkdtempSync(join(tmpdir(), "keyleash-demo-")), "demo.db");
const PYTHON = resolve(process.env.KEYLEASH_PYTHON ?? join(ROOT, ".venv", "bin", "python"));
const PROMPT = "x".repeat(50); // 0.5 + 50 * 0.01 = exactly 1 cent a call
const children = [];

async function freePort() {
  const server = createServer();
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address();
  await new Promise((ok) => server.close(ok));
  return port;
}

/** Starts one example and resolves once it accepts requests. */
async function start(name, command, args, cwd) {
  const port = await freePort();
  const env = { ...process.env, PORT: String(port), DATABASE_URL: `sqlite://${DB}` };
  const child = spawn(command, args, { cwd: join(ROOT, cwd), env, stdio: ["ignore", "ignore", "pipe"] });
  children.push(child);
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  let failed = null;
  child.on("error", (e) => {
    failed = e;
  });
  const base = `http://127.0.0.1:${port}`;
  for (let waited = 0; ; waited += 100) {
    if (failed) throw new Error(`cannot start ${name} (${command}): ${failed.message}`);
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}: ${stderr}`);
    if (waited > 60_000) throw new Error(`${name} did not start within 60 s: ${stderr}`);
    try {
      await fetch(`${base}/sdk-keys/me`);
      return { name, base };
    } catch {
      await new Promise((ok) => setTimeout(ok, 100));
    }
  }
}

/** One request; resolves to {status, body}. */
async function call(server, method, path, { key, body } = {}) {
  const headers = { "content-type": "application/json" };
  if (key) headers.authorization = `Bearer ${key}`;
  const res = await fetch(server.base + path, { method, headers, body: body && JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

function expectStatus(what, res, status) {
  if (res.status !== status) throw new Error(`${what}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

const cents = (n) => (n === null || n === undefined ? "-" : n.toFixed(2));

async function main() {
  console.log(`keyleash demo: one SQLite file (${DB}) shared by two servers`);
  const express = await start("express", process.execPath, ["server.js"], "examples/express-app");
  const fastapi = await start("fastapi", PYTHON, ["app.py"], "examples/fastapi-app");
  console.log(`  Express example at ${express.base}, FastAPI example at ${fastapi.base}`);

  const parent = expectStatus(
    "signup",
    await call(express, "POST", "/signup", { body: { email: "owner@example.com", name: "parent" } }),
    201,
  );
  const me = await call(fastapi, "GET", "/sdk-keys/me", { key: parent.key });
  const account = expectStatus("me", me, 200).accountId;
  const keys = [{ name: "parent", via: "express (signup)", calls: 20, ...parent }];
  for (const [name, server] of [
    ["agent-a", express],
    ["agent-b", fastapi],
  ]) {
    const body = { name, budget_cents: 20, scopes: ["proxy.chat"] };
    const child = expectStatus(`mint ${name}`, await call(server, "POST", "/sdk-keys", { key: parent.key, body }), 201);
    keys.push({ name, via: `${server.name} (mint)`, calls: 30, ...child });
  }
  console.log("  minted: parent 50¢/day; agent-a and agent-b 20¢ each, drawing on the parent");

  // Every call at once: each key's calls alternate between the two servers.
  const total = keys.reduce((n, k) => n + k.calls, 0);
  console.log(`  firing ${total} parallel 1¢ calls (demand ${total}¢ against a 50¢ cap)…`);
  const calls = keys.flatMap((k) =>
    Array.from({ length: k.calls }, (_, i) => {
      const server = i % 2 === 0 ? express : fastapi;
      return call(server, "POST", "/v1/chat", { key: k.key, body: { prompt: PROMPT } }).then((res) => ({
        key: k,
        server: server.name,
        status: res.status,
      }));
    }),
  );
  const results = await Promise.all(calls);
  const problems = results.filter((r) => r.status !== 200 && r.status !== 429);
  if (problems.length > 0) throw new Error(`unexpected statuses: ${problems.map((r) => r.status).join(", ")}`);

  // Read the database itself through keyleash: counters and the ledger.
  const kl = await KeyLeash.connect(`sqlite://${DB}`);
  const rows = new Map((await kl.list(account)).map((row) => [row.id, row]));
  const table = [];
  let ledgerTotal = 0;
  for (const k of keys) {
    const row = rows.get(k.id);
    const ledger = (await kl.usage(k.id)).reduce((sum, entry) => sum + entry.amountCents, 0);
    ledgerTotal += ledger;
    const mine = results.filter((r) => r.key === k);
    const count = (server, status) => mine.filter((r) => r.server === server && r.status === status).length;
    table.push({
      key: k.name,
      id: k.id,
      via: k.via,
      budget: row.budgetCents,
      used: row.budgetUsedCents,
      ledger,
      ok: `${count("express", 200)} + ${count("fastapi", 200)}`,
      refused: `${count("express", 429)} + ${count("fastapi", 429)}`,
    });
  }
  await kl.close();

  const header = ["key", "id", "minted via", "budget ¢", "used ¢", "own ledger ¢", "200s (ex + fa)", "429s (ex + fa)"];
  const lines = table.map((r) => [
    r.key,
    r.id,
    r.via,
    cents(r.budget),
    cents(r.used),
    cents(r.ledger),
    r.ok,
    r.refused,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => String(l[i]).length)));
  const show = (cells) => `  ${cells.map((c, i) => String(c).padEnd(widths[i])).join("  ")}`;
  console.log();
  console.log(show(header));
  console.log(show(widths.map((w) => "-".repeat(w))));
  for (const l of lines) console.log(show(l));
  console.log("  (a parent's `used` counts its own calls and its children's: the children's spend draws on it)");

  const ok = results.filter((r) => r.status === 200).length;
  const [root, ...agents] = table;
  const failures = [];
  if (root.used > 50 + 1e-9) failures.push(`the parent spent ${root.used}¢ of 50¢`);
  for (const a of agents) if (a.used > 20 + 1e-9) failures.push(`${a.key} spent ${a.used}¢ of 20¢`);
  if (Math.abs(ledgerTotal - root.used) > 1e-9)
    failures.push(`the ledger (${ledgerTotal}¢) differs from the parent's counter (${root.used}¢)`);
  if (Math.abs(ledgerTotal - ok) > 1e-9) failures.push(`${ok} calls answered 200 but the ledger holds ${ledgerTotal}¢`);
  console.log();
  console.log(`  ${ok} of ${total} calls were served across both servers; ${total - ok} got 429 budget_exceeded.`);
  console.log(`  ledger total ${cents(ledgerTotal)}¢ = parent counter ${cents(root.used)}¢ ≤ 50¢ cap`);
  if (failures.length > 0) throw new Error(`the cap did not hold: ${failures.join("; ")}`);
  console.log("  the cap held across both servers.");
  await holds(express, fastapi);
}

/** One streamed answer: `{status, text}`; `hangUpAfter` words, then the client leaves. */
async function stream(server, key, prompt, hangUpAfter) {
  const ac = new AbortController();
  const res = await fetch(`${server.base}/v1/chat/stream`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ prompt }),
    signal: ac.signal,
  });
  if (!res.headers.get("content-type")?.startsWith("text/plain")) return { status: res.status, text: await res.text() };
  let text = "";
  const decoder = new TextDecoder();
  try {
    for await (const chunk of res.body) {
      text += decoder.decode(chunk, { stream: true });
      if (hangUpAfter !== undefined && text.split(" ").length > hangUpAfter) {
        ac.abort();
        break;
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") throw e;
  }
  return { status: res.status, text };
}

/** Part 5: holds under more streaming demand than budget (see the header). */
async function holds(express, fastapi) {
  const WORDS = "w ".repeat(11); // "echo:" and 11 words: 12 chunks of 0.25 = 3 cents
  console.log();
  console.log("holds: a fresh 50¢ key streams answers that hold 5¢ each and cost 3¢");
  const owner = expectStatus(
    "signup",
    await call(fastapi, "POST", "/signup", { body: { email: "streams@example.com", name: "streamer" } }),
    201,
  );
  const account = expectStatus("me", await call(express, "GET", "/sdk-keys/me", { key: owner.key }), 200).accountId;
  const kl = await KeyLeash.connect(`sqlite://${DB}`);
  const read = async () => (await kl.list(account)).find((k) => k.id === owner.id);

  const left = await stream(express, owner.key, WORDS, 2);
  for (let i = 0; (await read()).budgetHeldCents > 0; i++) {
    if (i > 200) throw new Error("the hung-up stream's hold was never ended");
    await new Promise((ok) => setTimeout(ok, 25));
  }
  const afterHangUp = (await read()).budgetUsedCents;
  console.log(`  a client hung up after "${left.text.trim()}": charged ${cents(afterHangUp)}¢, not the 5¢ held`);

  let peak = 0;
  let peakHeld = 0;
  let watching = true;
  const watch = (async () => {
    while (watching) {
      const row = await read();
      peak = Math.max(peak, row.budgetUsedCents + row.budgetHeldCents);
      peakHeld = Math.max(peakHeld, row.budgetHeldCents);
      await new Promise((ok) => setTimeout(ok, 10));
    }
  })();
  const waves = [];
  for (const wave of [1, 2]) {
    const replies = await Promise.all(
      Array.from({ length: 30 }, (_, i) => stream(i % 2 === 0 ? express : fastapi, owner.key, WORDS)),
    );
    const odd = replies.filter((r) => r.status !== 200 && r.status !== 429);
    if (odd.length > 0) throw new Error(`unexpected statuses: ${odd.map((r) => r.status).join(", ")}`);
    const served = replies.filter((r) => r.status === 200).length;
    const row = await read();
    waves.push({ served, refused: 30 - served });
    console.log(
      `  wave ${wave}: 30 streams at once, ${served} streamed, ${30 - served} refused 429; used ${cents(row.budgetUsedCents)}¢, held ${cents(row.budgetHeldCents)}¢`,
    );
  }
  watching = false;
  await watch;

  const row = await read();
  const ledger = await kl.usage(owner.id);
  await kl.close();
  const ledgerSum = ledger.reduce((sum, e) => sum + e.amountCents, 0);
  const streamed = waves.reduce((n, w) => n + w.served, 0);
  console.log(`  peak in flight: ${cents(peakHeld)}¢ held; used + held at most ${cents(peak)}¢ of the 50¢ cap`);
  console.log(
    `  counter ${cents(row.budgetUsedCents)}¢ = ledger ${cents(ledgerSum)}¢ (${ledger.length} rows, each naming its hold); held now ${cents(row.budgetHeldCents)}¢`,
  );
  const failures = [];
  if (peak > 50 + 1e-9) failures.push(`used + held reached ${peak}¢`);
  if (row.budgetHeldCents !== 0) failures.push(`${row.budgetHeldCents}¢ still held`);
  if (Math.abs(row.budgetUsedCents - ledgerSum) > 1e-9) failures.push("the counter differs from the ledger");
  if (ledger.some((e) => e.holdId === null || e.holdId === undefined)) failures.push("a ledger row names no hold");
  if (Math.abs(ledgerSum - (afterHangUp + 3 * streamed)) > 1e-9)
    failures.push(`the ledger holds ${ledgerSum}¢ for ${streamed} streams of 3¢ and a hang-up`);
  if (waves[0].refused === 0) failures.push("no stream was refused: demand never exceeded the budget");
  if (failures.length > 0) throw new Error(`holds: ${failures.join("; ")}`);
  console.log("  holds: the cap held with streams in flight; counter == ledger.");
}

function stopAll() {
  for (const child of children) if (child.exitCode === null) child.kill();
}

process.on("SIGINT", () => {
  stopAll();
  process.exit(130);
});
try {
  await main();
} catch (e) {
  console.error(`demo failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  stopAll();
}
