// req.agentKey.charge: the middleware's key charged without a second lookup, exactly
// as kl.trackUsage with the raw key (counters, ledger, idempotency), with the raw key
// nowhere on req.agentKey; and the synchronous answers of validate and trackUsage.

const test = require("node:test");
const assert = require("node:assert/strict");
const util = require("node:util");
const express = require("express");
const { agentKeyMiddleware, KeyLeashError } = require("..");
const { STORES, open, closePg, counters } = require("./helpers");

test.after(closePg);

/** An app whose route charges `req.agentKey` and reports what the handler saw. */
async function serve(t, kl) {
  const app = express();
  app.post("/charge", agentKeyMiddleware(kl, { scope: "proxy.chat" }), async (req, res) => {
    const cost = Number(req.get("x-cost"));
    const opts = req.get("idempotency-key") ? { idempotencyKey: req.get("idempotency-key") } : undefined;
    if (req.get("x-revoke-first")) await kl.revoke(req.agentKey.id);
    res.json({
      result: await req.agentKey.charge(cost, opts),
      json: JSON.stringify(req.agentKey),
      inspect: util.inspect(req.agentKey),
      hidden: util.inspect(req.agentKey, { showHidden: true, depth: 10 }),
      keys: Object.keys(req.agentKey),
      chargeType: typeof req.agentKey.charge,
      errors: await Promise.all(
        [
          () => req.agentKey.charge("1"),
          () => req.agentKey.charge(1, { costCents: 2 }),
          () => req.agentKey.charge(1, { idempotencyKey: "" }),
        ].map((f) =>
          f().then(
            () => "resolved",
            (e) => (e instanceof KeyLeashError ? e.code : `not a KeyLeashError: ${e}`),
          ),
        ),
      ),
    });
  });
  const server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const base = `http://127.0.0.1:${server.address().port}`;
  return async (key, cost, { idempotencyKey, revokeFirst } = {}) => {
    const headers = { authorization: `Bearer ${key}`, "x-cost": String(cost) };
    if (idempotencyKey) headers["idempotency-key"] = idempotencyKey;
    if (revokeFirst) headers["x-revoke-first"] = "1";
    const res = await fetch(`${base}/charge`, { method: "POST", headers });
    assert.equal(res.status, 200);
    return res.json();
  };
}

for (const store of STORES) {
  test(`${store}: req.agentKey.charge counts exactly like trackUsage, idempotency included`, async (t) => {
    const db = await open(store);
    const { kl } = db;
    const charge = await serve(t, kl);
    const opts = { accountId: "a", scopes: ["proxy.chat"], budgetCents: 10 };
    const viaReq = await kl.create(opts);
    const viaKl = await kl.create(opts);

    const steps = [
      [3, "i1"],
      [3, "i1"], // a repeat: the first result, applied once
      [4, undefined],
      [0.5, "i2"],
      [5, undefined], // over the cap
      [0, undefined], // free
      [-1, undefined], // invalid_cost
      [2.5, "i2"], // a repeat with another cost: still the first result
    ];
    for (const [cost, idempotencyKey] of steps) {
      const got = await charge(viaReq.key, cost, { idempotencyKey });
      const expected = await kl.trackUsage(viaKl.key, { costCents: cost, idempotencyKey });
      assert.deepEqual(got.result, expected, `charge ${cost} ${idempotencyKey}`);
      // The raw key is nowhere on req.agentKey, shown or hidden; charge is not enumerable.
      for (const shown of [got.json, got.inspect, got.hidden]) assert.ok(!shown.includes(viaReq.key), shown);
      assert.ok(!got.json.includes("charge") && !got.inspect.includes("charge"));
      assert.ok(!got.keys.includes("charge"));
      assert.equal(got.chargeType, "function");
      const shown = JSON.parse(got.json);
      assert.equal(shown.valid, true);
      assert.equal(shown.id, viaReq.id);
      assert.deepEqual(got.errors, ["invalid_argument", "invalid_argument", "invalid_argument"]);
    }
    assert.equal((await kl.validate(viaReq.key)).budgetUsedCents, 7.5);

    // The database agrees: the same counter and ledger for both keys.
    const a = await counters(db, viaReq.id);
    const b = await counters(db, viaKl.id);
    assert.deepEqual(a, { used: 7_500_000, ledgerSum: 7_500_000, ledgerRows: 3 });
    assert.deepEqual(a, b);
    const strip = (rows) => rows.map(({ amountCents, idempotencyKey }) => ({ amountCents, idempotencyKey }));
    assert.deepEqual(strip(await kl.usage(viaReq.id)), strip(await kl.usage(viaKl.id)));
    assert.deepEqual(
      (await kl.usage(viaReq.id)).map((e) => e.idempotencyKey),
      ["i1", null, "i2"],
    );

    // A key revoked after the middleware granted it: refused, as trackUsage refuses it.
    const late = await kl.create(opts);
    const got = await charge(late.key, 1, { revokeFirst: true });
    assert.deepEqual(got.result, { success: false, reason: "revoked" });
    assert.deepEqual(got.result, await kl.trackUsage(late.key, { costCents: 1 }));
    await kl.close();
  });
}

test("answers without the store: fresh results, errors as rejections", async () => {
  const { kl } = await open("sqlite");
  const first = await kl.validate("ak_x");
  assert.deepEqual(first, { valid: false, reason: "invalid" });
  first.reason = "mutated";
  assert.deepEqual(await kl.validate("ak_x"), { valid: false, reason: "invalid" });
  assert.deepEqual(await kl.trackUsage("ak_x", { costCents: 1 }), { success: false, reason: "invalid_key" });
  assert.deepEqual(await kl.trackUsage("ak_x", { costCents: 0 }), { success: true });
  assert.deepEqual(await kl.trackUsage("ak_x", { costCents: Number.NaN }), { success: false, reason: "invalid_cost" });
  for (const bad of [
    () => kl.trackUsage("ak_x", { costCents: 1, idempotencyKey: "" }),
    () => kl.trackUsage("ak_x", { costCents: "1" }),
    () => kl.trackUsage("ak_x", { costCent: 1 }),
    () => kl.trackUsage(42, { costCents: 1 }),
    () => kl.validate(42),
  ]) {
    const pending = bad(); // never a synchronous throw
    await assert.rejects(pending, (e) => e instanceof KeyLeashError && e.code === "invalid_argument");
  }
  await kl.close();
});
