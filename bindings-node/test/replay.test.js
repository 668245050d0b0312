// Idempotency keys over real HTTP on 127.0.0.1, on SQLite and Postgres: a repeated
// key never serves new work (streamWithHold answers 409 and never starts the chunks,
// whatever the first hold became), a key reused for another operation is 422, and
// a client that leaves while the hold is being placed gets it released at once.
// Checked in the ledger, the holds and the key's counters.

const test = require("node:test");
const assert = require("node:assert/strict");
const http = require("node:http");
const { setTimeout: sleep } = require("node:timers/promises");
const express = require("express");
const { agentKeyMiddleware, streamWithHold, Spend } = require("..");
const { STORES, open, closePg, counters } = require("./helpers");

test.after(closePg);

/**
 * An app with `POST /stream?chunks=N&delay=MS&fail=1` streaming N chunks of 0.25
 * cents under a 5-cent hold named by the `idempotency-key` header, and `POST
 * /charge?cost=C` charging C cents under it. Before the reserve it awaits `gate`
 * when set (a slow store), else a pause of `delay()` ms when that is set. Counts:
 * `arrived` requests, `started` stream routes, `entered` reserves reached, `closed`
 * responses closed, `calls` chunk generators started; `ends` gets what each
 * streamWithHold resolved to.
 */
async function serve(t, kl) {
  const state = { calls: 0, ends: [], entered: 0, gate: null, closed: 0, started: 0, arrived: 0 };
  const app = express();
  app.use((_req, _res, next) => {
    state.arrived += 1;
    next();
  });
  app.post("/stream", agentKeyMiddleware(kl), async (req, res) => {
    state.started += 1;
    const n = Number(req.query.chunks ?? 4);
    const delay = Number(req.query.delay ?? 0);
    res.on("close", () => {
      state.closed += 1;
    });
    const gate = state.gate ?? (state.delay ? sleep(state.delay()) : null);
    // The request as streamWithHold sees it, with a reserve that first waits at the gate.
    const slow = gate
      ? {
          socket: req.socket,
          agentKey: {
            reserve: async (...args) => {
              state.entered += 1;
              await gate;
              return req.agentKey.reserve(...args);
            },
          },
        }
      : req;
    const opts = { estimateCents: 5, ttl: "2m", idempotencyKey: req.get("idempotency-key") };
    try {
      const spend = await streamWithHold(slow, res, opts, async function* (s) {
        state.calls += 1;
        if (req.query.fail) throw new Error("upstream down");
        for (let i = 0; i < n; i++) {
          if (delay) await sleep(delay, undefined, { signal: s.signal });
          s.add(0.25);
          yield `w${i} `;
        }
      });
      state.ends.push(spend);
    } catch (e) {
      state.ends.push(e);
      if (!res.headersSent) res.status(502).json({ error: "upstream_failed" });
    }
  });
  app.post("/charge", agentKeyMiddleware(kl), async (req, res) => {
    res.json(await req.agentKey.charge(Number(req.query.cost), { idempotencyKey: req.get("idempotency-key") }));
  });
  const server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  t.after(() => new Promise((resolve) => server.close(resolve)));
  return { base: `http://127.0.0.1:${server.address().port}`, state };
}

/** POSTs to `path` with `key` and an idempotency key; the whole answer. */
async function post(base, path, key, idem) {
  const headers = { authorization: `Bearer ${key}` };
  if (idem) headers["idempotency-key"] = idem;
  const res = await fetch(base + path, { method: "POST", headers });
  return { status: res.status, text: await res.text() };
}

/** Waits until `check()` is true. */
async function until(check, what) {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await sleep(25);
  }
  assert.fail(`timed out waiting for ${what}`);
}

const replayed = (state) => JSON.stringify({ error: "idempotency_replayed", replayed: state });

for (const store of STORES) {
  test(`${store}: a settled stream's idempotency key streams nothing more, however often it is sent`, async (t) => {
    const { kl, ...db } = await open(store);
    const { base, state } = await serve(t, kl);
    const k = await kl.create({ accountId: "a", budgetCents: 50 });
    assert.deepEqual(await post(base, "/stream?chunks=4", k.key, "k"), { status: 200, text: "w0 w1 w2 w3 " });
    for (let i = 0; i < 6; i++) {
      assert.deepEqual(await post(base, "/stream?chunks=20", k.key, "k"), { status: 409, text: replayed("settled") });
    }
    assert.equal(state.calls, 1);
    assert.deepEqual(state.ends.slice(1), [null, null, null, null, null, null]);
    const v = await kl.validate(k.key);
    assert.deepEqual([v.budgetUsedCents, v.budgetHeldCents], [1, 0]);
    assert.deepEqual(await counters({ ...db, kl }, k.id), { used: 1e6, ledgerSum: 1e6, ledgerRows: 1 });
    await kl.close();
  });

  test(`${store}: twenty concurrent streams sharing one idempotency key: one streams, nineteen are 409`, async (t) => {
    const { kl, ...db } = await open(store);
    const { base, state } = await serve(t, kl);
    const k = await kl.create({ accountId: "a", budgetCents: 50 });
    const replies = await Promise.all(
      Array.from({ length: 20 }, () => post(base, "/stream?chunks=4&delay=100", k.key, "shared")),
    );
    const ok = replies.filter((r) => r.status === 200);
    assert.deepEqual(
      ok.map((r) => r.text),
      ["w0 w1 w2 w3 "],
    );
    // Each repeat came while the first hold was held (the stream takes 400 ms) or after it settled.
    for (const r of replies.filter((r) => r.status !== 200)) {
      assert.equal(r.status, 409);
      assert.ok([replayed("held"), replayed("settled")].includes(r.text), r.text);
    }
    assert.equal(state.calls, 1);
    assert.deepEqual(await counters({ ...db, kl }, k.id), { used: 1e6, ledgerSum: 1e6, ledgerRows: 1 });
    assert.equal((await kl.validate(k.key)).budgetHeldCents, 0);
    await kl.close();
  });

  test(`${store}: a key whose first stream failed (hold released) does not stream for free`, async (t) => {
    const { kl, ...db } = await open(store);
    const { base, state } = await serve(t, kl);
    const k = await kl.create({ accountId: "a", budgetCents: 50 });
    assert.equal((await post(base, "/stream?fail=1", k.key, "f")).status, 502);
    assert.deepEqual(await post(base, "/stream?chunks=20", k.key, "f"), { status: 409, text: replayed("released") });
    assert.equal(state.calls, 1);
    assert.deepEqual(await counters({ ...db, kl }, k.id), { used: 0, ledgerSum: 0, ledgerRows: 0 });
    await kl.close();
  });

  test(`${store}: an idempotency key is bound to its operation: a charge replays, another use is a conflict`, async (t) => {
    const { kl, ...db } = await open(store);
    const { base, state } = await serve(t, kl);
    const k = await kl.create({ accountId: "a", budgetCents: 50 });
    const first = JSON.parse((await post(base, "/charge?cost=3", k.key, "c")).text);
    assert.deepEqual(first, { success: true, budgetUsedCents: 3, budgetRemainingCents: 47 });
    const again = JSON.parse((await post(base, "/charge?cost=3", k.key, "c")).text);
    assert.deepEqual(again, { success: true, budgetUsedCents: 3, budgetRemainingCents: 47, replayed: "charged" });
    const other = JSON.parse((await post(base, "/charge?cost=4", k.key, "c")).text);
    assert.deepEqual(other, { success: false, reason: "idempotency_conflict" });
    // The charge's key used for a stream, and a stream's key for a charge.
    assert.deepEqual(await post(base, "/stream", k.key, "c"), {
      status: 422,
      text: '{"error":"idempotency_conflict"}',
    });
    assert.equal((await post(base, "/stream?chunks=1", k.key, "s")).status, 200);
    const charged = JSON.parse((await post(base, "/charge?cost=5", k.key, "s")).text);
    assert.deepEqual(charged, { success: false, reason: "idempotency_conflict" });
    assert.equal(state.calls, 1);
    assert.deepEqual(await counters({ ...db, kl }, k.id), { used: 3.25e6, ledgerSum: 3.25e6, ledgerRows: 2 });
    // The library answers the same without HTTP.
    const held = await kl.reserve(k.key, { costCents: 5, idempotencyKey: "lib" });
    assert.equal(held.success, true);
    await kl.settle(held.holdId, { costCents: 9 });
    assert.deepEqual(await kl.reserve(k.key, { costCents: 5, idempotencyKey: "lib" }), {
      success: false,
      reason: "idempotency_replayed",
      replayed: "settled",
      holdId: held.holdId,
      expiresAt: held.expiresAt,
      budgetRemainingCents: held.budgetRemainingCents,
    });
    await kl.close();
  });

  test(`${store}: a client that leaves while the hold is placed gets it released at once, nothing streamed`, async (t) => {
    const { kl } = await open(store);
    const { base, state } = await serve(t, kl);
    const k = await kl.create({ accountId: "a", budgetCents: 50 });
    let open_;
    state.gate = new Promise((resolve) => {
      open_ = resolve;
    });
    const req = http.request(`${base}/stream?chunks=4`, {
      method: "POST",
      headers: { authorization: `Bearer ${k.key}` },
    });
    req.on("error", () => {});
    req.end();
    await until(() => state.entered === 1, "the reserve to start");
    req.destroy();
    await until(() => state.closed === 1, "the server to see the client leave");
    open_();
    await until(() => state.ends.length === 1, "streamWithHold to end");
    const [spend] = state.ends;
    assert.ok(spend instanceof Spend, String(spend));
    assert.equal(spend.state, "released");
    assert.equal(state.calls, 0);
    const v = await kl.validate(k.key);
    assert.deepEqual([v.budgetUsedCents, v.budgetHeldCents], [0, 0]);
    assert.deepEqual(await kl.usage(k.id), []);
    await kl.close();
  });

  test(`${store}: 60 clients resetting 0-4 ms after sending leave no hold behind`, async (t) => {
    const { kl, ...db } = await open(store);
    const { base, state } = await serve(t, kl);
    const k = await kl.create({ accountId: "a", budgetCents: 1000 });
    state.delay = () => Math.random() * 4; // a store taking 0-4 ms to place the hold
    const url = new URL(`${base}/stream?chunks=6&delay=5`);
    await Promise.all(
      Array.from(
        { length: 60 },
        (_, i) =>
          new Promise((resolve) => {
            const req = http.request(url, { method: "POST", headers: { authorization: `Bearer ${k.key}` } });
            req.on("error", () => {});
            req.on("close", resolve);
            // Reset 0-4 ms after the request is on the wire.
            req.on("finish", () => setTimeout(() => req.destroy(), i % 5));
            req.end();
          }),
      ),
    );
    // Every stream that reached streamWithHold ends (settled or released) promptly.
    await until(
      () => state.arrived > 0 && state.started === state.arrived && state.ends.length === state.started,
      "every stream to end",
    );
    assert.ok(state.started >= 30, `only ${state.started} requests reached the route`);
    await until(async () => (await kl.validate(k.key)).budgetHeldCents === 0, "no hold left");
    assert.ok(state.ends.every((s) => s === null || (s instanceof Spend && s.state !== "held")));
    const c = await counters({ ...db, kl }, k.id);
    assert.equal(c.used, c.ledgerSum);
    await kl.close();
  });
}
