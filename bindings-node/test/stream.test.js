// Streaming under a hold (docs/http.md#streaming) over real HTTP on 127.0.0.1, on
// SQLite and Postgres: req.agentKey.reserve, Spend, and streamWithHold's rule for
// each way a stream ends, checked in the ledger and the key's counters.

const test = require("node:test");
const assert = require("node:assert/strict");
const http = require("node:http");
const util = require("node:util");
const { setTimeout: sleep } = require("node:timers/promises");
const express = require("express");
const { agentKeyMiddleware, streamWithHold, spendRefused, storeFailed, KeyLeashError, Spend } = require("..");
const { STORES, open, pg, closePg, counters, capturingStderr } = require("./helpers");

test.after(closePg);

/**
 * An app with `POST /stream?chunks=N&delay=MS&fail=1` streaming N chunks of 0.25
 * cents under a hold of `estimate` (default 5), and `GET /key` answering what
 * req.agentKey shows. Returns the base URL and `ends`, the Spend (or null) each
 * streamWithHold resolved to, and `calls`, how often the chunks were started.
 */
async function serve(t, kl, estimate = 5) {
  const ends = [];
  const state = { calls: 0 };
  const app = express();
  app.post("/stream", agentKeyMiddleware(kl), async (req, res) => {
    const n = Number(req.query.chunks ?? 4);
    const delay = Number(req.query.delay ?? 0);
    try {
      const spend = await streamWithHold(req, res, { estimateCents: estimate, ttl: "2m" }, async function* (s) {
        state.calls += 1;
        if (req.query.fail) throw new Error("upstream down");
        for (let i = 0; i < n; i++) {
          if (delay) await sleep(delay, undefined, { signal: s.signal });
          s.add(0.25);
          yield `w${i} `;
        }
      });
      ends.push(spend);
    } catch (e) {
      ends.push(e);
      if (!res.headersSent) res.status(502).json({ error: "upstream_failed" });
    }
  });
  app.get("/key", agentKeyMiddleware(kl), (req, res) => {
    res.json({
      json: JSON.stringify(req.agentKey),
      inspect: util.inspect(req.agentKey, { showHidden: true }),
      keys: Object.keys(req.agentKey),
    });
  });
  const server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  t.after(() => new Promise((resolve) => server.close(resolve)));
  return { base: `http://127.0.0.1:${server.address().port}`, ends, state };
}

/** POSTs to `path` with `key` and reads the whole answer: `{status, type, text}`. */
async function post(base, path, key) {
  const res = await fetch(base + path, { method: "POST", headers: { authorization: `Bearer ${key}` } });
  return { status: res.status, type: res.headers.get("content-type"), text: await res.text() };
}

/** Waits until `check()` is true (the server ends a cut-short stream after the client left). */
async function until(check, what) {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await sleep(25);
  }
  assert.fail(`timed out waiting for ${what}`);
}

for (const store of STORES) {
  test(`${store}: a stream that ends settles what was added, with a ledger row naming the hold`, async (t) => {
    const db = await open(store);
    const { kl } = db;
    const { base, ends } = await serve(t, kl);
    const k = await kl.create({ accountId: "a", budgetCents: 10 });
    const r = await post(base, "/stream?chunks=4", k.key);
    assert.deepEqual(r, { status: 200, type: "text/plain; charset=utf-8", text: "w0 w1 w2 w3 " });
    // Settled before the response ended: nothing to wait for.
    const [spend] = ends;
    assert.ok(spend instanceof Spend);
    assert.equal(spend.state, "settled");
    const ledger = await kl.usage(k.id);
    assert.deepEqual(
      ledger.map((e) => [e.amountCents, e.holdId]),
      [[1, spend.holdId]],
    );
    const v = await kl.validate(k.key);
    assert.deepEqual([v.budgetUsedCents, v.budgetHeldCents], [1, 0]);
    assert.deepEqual(await counters(db, k.id), { used: 1e6, ledgerSum: 1e6, ledgerRows: 1 });
    await kl.close();
  });

  test(`${store}: a client that leaves half way is charged what was consumed, no more`, async (t) => {
    const db = await open(store);
    const { kl } = db;
    const { base, ends } = await serve(t, kl);
    const k = await kl.create({ accountId: "a", budgetCents: 10 });
    // 20 chunks 150 ms apart; the client hangs up after the third.
    const got = await new Promise((resolve, reject) => {
      const req = http.request(`${base}/stream?chunks=20&delay=150`, {
        method: "POST",
        headers: { authorization: `Bearer ${k.key}` },
      });
      req.on("response", (res) => {
        let text = "";
        res.on("data", (d) => {
          text += d;
          if (text.split(" ").length > 3) {
            req.destroy();
            resolve(text);
          }
        });
      });
      req.on("error", () => {});
      req.on("close", () => resolve(null));
      setTimeout(() => reject(new Error("no chunks")), 10_000).unref();
      req.end();
    });
    assert.equal(got, "w0 w1 w2 ");
    await until(() => ends.length === 1, "the stream to end");
    const [spend] = ends;
    assert.equal(spend.state, "settled");
    assert.equal(spend.signal.aborted, true);
    assert.equal(spend.consumedCents, 0.75);
    const ledger = await kl.usage(k.id);
    assert.deepEqual(
      ledger.map((e) => [e.amountCents, e.holdId]),
      [[0.75, spend.holdId]],
    );
    const v = await kl.validate(k.key);
    assert.deepEqual([v.budgetUsedCents, v.budgetHeldCents], [0.75, 0]);
    assert.deepEqual(await counters(db, k.id), { used: 0.75e6, ledgerSum: 0.75e6, ledgerRows: 1 });
    await kl.close();
  });

  test(`${store}: a client that leaves before the first chunk releases the hold`, async (t) => {
    const db = await open(store);
    const { kl } = db;
    const { base, ends } = await serve(t, kl);
    const k = await kl.create({ accountId: "a", budgetCents: 10 });
    const ac = new AbortController();
    const pending = fetch(`${base}/stream?chunks=3&delay=2000`, {
      method: "POST",
      headers: { authorization: `Bearer ${k.key}` },
      signal: ac.signal,
    }).catch((e) => e.name);
    await until(async () => (await kl.validate(k.key)).budgetHeldCents === 5, "the hold");
    ac.abort();
    assert.equal(await pending, "AbortError");
    await until(() => ends.length === 1, "the stream to end");
    assert.equal(ends[0].state, "released");
    assert.deepEqual(await kl.usage(k.id), []);
    assert.equal((await kl.validate(k.key)).budgetHeldCents, 0);
    assert.deepEqual(await counters(db, k.id), { used: 0, ledgerSum: 0, ledgerRows: 0 });
    await kl.close();
  });

  test(`${store}: an upstream that fails before any output releases the hold; the route answers`, async (t) => {
    const db = await open(store);
    const { kl } = db;
    const { base, ends } = await serve(t, kl);
    const k = await kl.create({ accountId: "a", budgetCents: 10 });
    const r = await post(base, "/stream?fail=1", k.key);
    assert.deepEqual([r.status, r.text], [502, '{"error":"upstream_failed"}']);
    assert.equal(ends[0].message, "upstream down");
    assert.deepEqual(await kl.usage(k.id), []);
    const v = await kl.validate(k.key);
    assert.deepEqual([v.budgetUsedCents, v.budgetHeldCents], [0, 0]);
    assert.deepEqual(await counters(db, k.id), { used: 0, ledgerSum: 0, ledgerRows: 0 });
    await kl.close();
  });

  test(`${store}: an estimate that does not fit is 429 and nothing is streamed`, async (t) => {
    const db = await open(store);
    const { kl } = db;
    const { base, ends, state } = await serve(t, kl);
    const k = await kl.create({ accountId: "a", budgetCents: 4.99 });
    const r = await post(base, "/stream", k.key);
    assert.deepEqual(r, { status: 429, type: "application/json; charset=utf-8", text: '{"error":"budget_exceeded"}' });
    assert.deepEqual([ends, state.calls], [[null], 0]);
    assert.deepEqual(await counters(db, k.id), { used: 0, ledgerSum: 0, ledgerRows: 0 });
    await kl.revoke(k.id);
    await kl.close();
  });

  test(`${store}: 40 parallel streams on one key never hold or spend past its cap`, async (t) => {
    const db = await open(store);
    const { kl } = db;
    const { base, ends } = await serve(t, kl, 2);
    const k = await kl.create({ accountId: "a", budgetCents: 10 });
    let running = true;
    let peak = 0;
    const watch = (async () => {
      while (running) {
        // list, not validate: a key at its cap validates as budget_exceeded, without numbers.
        const [row] = await kl.list("a");
        peak = Math.max(peak, row.budgetUsedCents + row.budgetHeldCents);
        await sleep(5);
      }
    })();
    // Each stream holds 2 cents and spends 0 to 2 (i % 9 chunks of 0.25).
    const replies = await Promise.all(
      Array.from({ length: 40 }, (_, i) => post(base, `/stream?chunks=${i % 9}&delay=20`, k.key)),
    );
    running = false;
    await watch;
    const ok = replies.filter((r) => r.status === 200);
    assert.ok(ok.length >= 5, `only ${ok.length} streams ran`);
    assert.ok(ok.length < 40, "every stream ran: the cap was never reached");
    assert.ok(replies.every((r) => r.status === 200 || (r.status === 429 && r.text === '{"error":"budget_exceeded"}')));
    assert.ok(peak <= 10, `used + held reached ${peak}`);
    const spent = ends.filter((s) => s !== null).reduce((sum, s) => sum + s.consumedCents, 0);
    const v = await kl.validate(k.key);
    assert.equal(v.budgetHeldCents, 0);
    assert.ok(v.budgetUsedCents <= 10);
    assert.equal(Math.round(v.budgetUsedCents * 1e6), Math.round(spent * 1e6));
    const c = await counters(db, k.id);
    assert.equal(c.used, c.ledgerSum);
    assert.equal(c.used, Math.round(spent * 1e6));
    await kl.close();
  });
}

test("reserve and Spend: options checked, exactly one ending, the raw key nowhere on req.agentKey", async (t) => {
  const db = await open("sqlite");
  const { kl } = db;
  const k = await kl.create({ accountId: "a", budgetCents: 10 });
  let granted;
  const app = express();
  app.get("/", agentKeyMiddleware(kl), (req, res) => {
    granted = req.agentKey;
    res.json({ json: JSON.stringify(req.agentKey), inspect: util.inspect(req.agentKey, { showHidden: true }) });
  });
  const server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const base = `http://127.0.0.1:${server.address().port}`;
  const shown = await (await fetch(base, { headers: { authorization: `bearer  ${k.key} ` } })).json();
  assert.ok(!shown.json.includes(k.key) && !shown.inspect.includes(k.key));
  assert.deepEqual(
    Object.keys(granted).filter((n) => n === "reserve" || n === "charge"),
    [],
  );

  const refusedWith = async (p, message) => {
    const e = await p.then(
      () => null,
      (err) => err,
    );
    assert.ok(e instanceof KeyLeashError, `no KeyLeashError for ${message}`);
    assert.equal(e.code, "invalid_argument");
    assert.match(e.message, message);
    assert.ok(!e.message.includes(k.key));
  };
  await refusedWith(granted.reserve("5"), /estimateCents must be a number/);
  await refusedWith(granted.reserve(5, { tll: "2m" }), /unknown option "tll"; did you mean "ttl"/);
  await refusedWith(granted.reserve(5, { ttl: 120 }), /ttl must be a string/);
  assert.deepEqual(await granted.reserve(0), { success: false, reason: "invalid_cost" });
  assert.deepEqual(await granted.reserve(11), { success: false, reason: "budget_exceeded" });

  const spend = await granted.reserve(5, { ttl: "1m", idempotencyKey: "s1" });
  assert.equal(spend.expiresAt, "2026-01-15T12:01:00.000Z");
  assert.deepEqual([spend.budgetRemainingCents, spend.estimateCents, spend.state], [5, 5, "held"]);
  // A repeat is no Spend: it names the first hold and holds nothing.
  const again = await granted.reserve(5, { idempotencyKey: "s1" });
  assert.ok(!(again instanceof Spend));
  assert.deepEqual([again.success, again.replayed, again.holdId], [false, "held", spend.holdId]);
  assert.throws(() => spend.add(-1), /cents must be a finite number/);
  assert.throws(() => spend.add(Number.NaN), /cents must be a finite number/);
  assert.throws(() => spend.add("1"), /cents must be a number/);
  assert.equal(spend.add(1.5), 1.5);
  assert.equal(spend.add(6), 7.5);
  const [a, b] = await Promise.all([spend.settle(), spend.settle(2)]);
  assert.deepEqual(a, { success: true, budgetUsedCents: 7.5, budgetRemainingCents: 2.5 });
  assert.equal(a, b); // one settle: the second call shares the first's result
  assert.equal(await spend.release(), false);
  assert.throws(
    () => spend.add(1),
    (e) => e.code === "invalid_argument" && /already settled/.test(e.message),
  );
  assert.deepEqual(
    (await kl.usage(k.id)).map((e) => [e.amountCents, e.holdId]),
    [[7.5, spend.holdId]],
  );

  const other = await granted.reserve(1);
  assert.equal(await other.release(), true);
  assert.equal(await other.release(), true);
  assert.deepEqual(await other.settle(1), { success: false, reason: "hold_released" });
  assert.equal(other.state, "released");
  assert.equal((await kl.validate(k.key)).budgetHeldCents, 0);

  // streamWithHold's own options are checked before anything is held.
  const res = {};
  await refusedWith(
    streamWithHold({ agentKey: granted }, res, { estimate: 5 }, async function* () {}),
    /unknown option "estimate"/,
  );
  await refusedWith(
    streamWithHold({ agentKey: granted }, res, { ttl: "1m" }, async function* () {}),
    /estimateCents is required/,
  );
  await refusedWith(streamWithHold({ agentKey: granted }, res, { estimateCents: 1 }, "x"), /chunks must be a function/);
  await refusedWith(
    streamWithHold({}, res, { estimateCents: 1 }, async function* () {}),
    /needs req.agentKey, set by agentKeyMiddleware/,
  );
  assert.equal((await kl.validate(k.key)).budgetHeldCents, 0);
  await kl.close();
});

test("spendRefused and storeFailed: the core's answers, for an app's own routes", async () => {
  const replay = { success: true, budgetUsedCents: 1, budgetRemainingCents: 2 };
  const cases = [
    [{ ...replay, replayed: "charged" }, 409, { error: "idempotency_replayed", replayed: "charged" }],
    [
      { success: false, reason: "idempotency_replayed", replayed: "held", holdId: 1 },
      409,
      { error: "idempotency_replayed", replayed: "held" },
    ],
  ];
  for (const [reason, status] of [
    ["budget_exceeded", 429],
    ["idempotency_conflict", 422],
    ["revoked", 401],
  ]) {
    cases.push([{ success: false, reason }, status, { error: reason }]);
  }
  for (const [result, status, body] of cases) {
    assert.deepEqual(spendRefused(result), { status, body, headers: {} });
  }
  // A rate limit's refusal: whole seconds in the body and in Retry-After; none for a
  // limit that waiting does not end.
  assert.deepEqual(spendRefused({ success: false, reason: "rate_limited", limit: "rpm", retryAfter: 0.6 }), {
    status: 429,
    body: { error: "rate_limited", limit: "rpm", message: "rate limit rpm reached; retry in 1 s", retryAfter: 1 },
    headers: { "Retry-After": "1" },
  });
  assert.deepEqual(spendRefused({ success: false, reason: "rate_limited", limit: "streams", retryAfter: null }), {
    status: 429,
    body: { error: "rate_limited", limit: "streams", message: "rate limit streams reached", retryAfter: null },
    headers: {},
  });
  for (const served of [replay, { success: true, holdId: 1 }, null, "budget_exceeded"]) {
    assert.throws(
      () => spendRefused(served),
      (e) => e instanceof KeyLeashError && e.code === "invalid_argument",
    );
  }
  const down = new KeyLeashError("unavailable", "key store unavailable: gone");
  const reported = [];
  assert.deepEqual(storeFailed(down, { onError: (e) => reported.push(e) }), {
    status: 500,
    body: { error: "auth_unavailable" },
  });
  assert.deepEqual(
    reported.map((e) => [e.code, e.message]),
    [["unavailable", "the key store failed, answered 500 auth_unavailable: key store unavailable: gone"]],
  );
  const [reply, lines] = await capturingStderr(async () => storeFailed(down));
  assert.equal(reply.status, 500);
  assert.deepEqual(lines, [
    "keyleash: the key store failed, answered 500 auth_unavailable: key store unavailable: gone",
  ]);
  assert.throws(() => storeFailed(down, { onErr: () => {} }), /did you mean "onError"/);
});

test("postgres: a store failure at the reserve is the core's 500, reported once, nothing streamed", async (t) => {
  const { kl, tableName } = await open("postgres");
  const k = await kl.create({ accountId: "a", budgetCents: 10 });
  const reported = [];
  const app = express();
  // The table goes away after the middleware granted the key, before the reserve.
  const drop = async (_req, _res, next) => {
    await pg(`DROP TABLE ${tableName} CASCADE`);
    next();
  };
  let chunksCalled = false;
  app.post("/stream", agentKeyMiddleware(kl), drop, async (req, res) => {
    const onError = (e) => reported.push(e);
    const spend = await streamWithHold(req, res, { estimateCents: 1, onError }, async function* () {
      chunksCalled = true;
      yield "x";
    });
    assert.equal(spend, null);
  });
  const server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const res = await fetch(`http://127.0.0.1:${server.address().port}/stream`, {
    method: "POST",
    headers: { authorization: `Bearer ${k.key}` },
  });
  assert.deepEqual(
    { status: res.status, body: await res.json() },
    { status: 500, body: { error: "auth_unavailable" } },
  );
  assert.equal(chunksCalled, false);
  assert.deepEqual(
    reported.map((e) => e.code),
    ["not_migrated"],
  );
  assert.match(reported[0].message, /^the key store failed, answered 500 auth_unavailable: .*does not exist/);
  assert.ok(!reported[0].message.includes(k.key.slice(3, 20)));
  await kl.close();
});
