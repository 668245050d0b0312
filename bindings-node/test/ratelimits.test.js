// Rate limits from Node: limits set at create, refusals with their name and wait,
// options refused by name and type, and parallel charges from two pools of this
// process checked against the database afterwards, on both stores.

const test = require("node:test");
const assert = require("node:assert/strict");
const { KeyLeash, KeyLeashError } = require("..");
const { STORES, open, closePg, counters } = require("./helpers");

test.after(closePg);

/** The error a promise rejects with (a KeyLeashError), or null when it resolves. */
async function rejection(p) {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof KeyLeashError);
    return e;
  }
  return null;
}

for (const store of STORES) {
  test(`${store}: a requests limit refuses past its burst, says when to retry, and counts no refusal`, async () => {
    const db = await open(store);
    const { kl } = db;
    const k = await kl.create({
      accountId: "a",
      budgetCents: 1000,
      limits: [
        { unit: "requests", limit: 5, period: "1m" },
        { unit: "cents", limit: 20, period: "1m", name: "spend" },
      ],
    });
    for (let i = 0; i < 5; i++) assert.equal((await kl.trackUsage(k.key, { costCents: 1 })).success, true);
    assert.deepEqual(await kl.trackUsage(k.key, { costCents: 1 }), {
      success: false,
      reason: "rate_limited",
      limit: "requests",
      retryAfter: 12,
    });
    await kl.advance({ seconds: 12 });
    const big = await kl.trackUsage(k.key, { costCents: 20 });
    assert.equal(big.reason, "rate_limited");
    assert.equal(big.limit, "spend");
    // The refused 20 cents used no request up: 19 pass.
    assert.equal((await kl.trackUsage(k.key, { costCents: 19 })).success, true);
    const c = await counters(db, k.id);
    assert.deepEqual(c, { used: 24_000_000, ledgerSum: 24_000_000, ledgerRows: 6 });
    await kl.close();
  });

  test(`${store}: parallel charges from two pools admit exactly the burst`, async () => {
    const db = await open(store);
    const other = await KeyLeash.connect(db.url, { tableName: db.tableName, manualClock: "2026-01-15T12:00:00Z" });
    const k = await db.kl.create({ accountId: "a", limits: [{ unit: "requests", limit: 50, period: "1h" }] });
    const calls = Array.from({ length: 120 }, (_, i) => (i % 2 ? other : db.kl).trackUsage(k.key, { costCents: 1 }));
    const results = await Promise.all(calls);
    assert.equal(results.filter((r) => r.success).length, 50);
    assert.ok(results.every((r) => r.success || r.reason === "rate_limited"));
    assert.deepEqual(await counters(db, k.id), { used: 50_000_000, ledgerSum: 50_000_000, ledgerRows: 50 });
    await other.close();
    await db.kl.close();
  });

  test(`${store}: a concurrent limit counts open holds`, async () => {
    const { kl } = await open(store);
    const k = await kl.create({ accountId: "a", limits: [{ unit: "concurrent", limit: 2, name: "streams" }] });
    const holds = await Promise.all(Array.from({ length: 6 }, () => kl.reserve(k.key, { costCents: 1 })));
    const held = holds.filter((h) => h.success);
    assert.equal(held.length, 2);
    assert.deepEqual(
      holds.find((h) => !h.success),
      { success: false, reason: "rate_limited", limit: "streams", retryAfter: null },
    );
    await kl.release(held[0].holdId);
    assert.equal((await kl.reserve(k.key, { costCents: 1 })).success, true);
    const view = [{ name: "streams", unit: "concurrent", limit: 2, periodSeconds: null, burst: null }];
    assert.deepEqual((await kl.validate(k.key)).limits, view);
    assert.deepEqual((await kl.list("a"))[0].limits, view);
    await kl.close();
  });
}

for (const store of STORES) {
  test(`${store}: setLimits keeps what a kept limit counted, and [] removes them`, async () => {
    const db = await open(store);
    const { kl } = db;
    const k = await kl.create({ accountId: "a", limits: [{ unit: "requests", limit: 4, period: "1m" }] });
    for (let i = 0; i < 3; i++) assert.equal((await kl.trackUsage(k.key, { costCents: 1 })).success, true);
    assert.equal(await kl.setLimits(k.id, [{ unit: "requests", limit: 6, period: "1m" }], "a"), true);
    const after = await Promise.all(Array.from({ length: 6 }, () => kl.trackUsage(k.key, { costCents: 1 })));
    assert.equal(after.filter((r) => r.success).length, 3);
    assert.equal(await kl.setLimits(k.id, [], "b"), false);
    assert.equal(await kl.setLimits(k.id + 100, []), false);
    const e = await rejection(kl.setLimits(k.id, [{ unit: "requests", limit: 5, period: "1m", brust: 2 }]));
    assert.match(e.message, /unknown option "brust"; did you mean "burst"/);
    assert.equal((await rejection(kl.setLimits(k.id)))?.code, "invalid_argument");
    assert.equal(await kl.setLimits(k.id, []), true);
    assert.equal((await kl.trackUsage(k.key, { costCents: 1 })).success, true);
    assert.deepEqual(await counters(db, k.id), { used: 7_000_000, ledgerSum: 7_000_000, ledgerRows: 7 });
    await kl.close();
  });
}

test("limit options are refused by name, type and range, and nothing is minted", async () => {
  const { kl } = await open("sqlite");
  const bad = [
    [{ unit: "requests", limit: 5, perod: "1m" }, /unknown option "perod"; did you mean "period"/],
    [{ limit: 5, period: "1m" }, /unit is required/],
    [{ unit: "requests", limit: "5", period: "1m" }, /limit must be a number/],
    [{ unit: "requests", limit: 2.5, period: "1m" }, /limits\[0\]\.limit must be a whole number/],
    [{ unit: "requests", limit: 5, period: "1m", burst: 0 }, /limits\[0\]\.burst must be a whole number/],
    [{ unit: "request", limit: 5, period: "1m" }, /must be requests, cents or concurrent/],
    [{ unit: "concurrent", limit: 5, period: "1m" }, /takes no period/],
    [{ unit: "cents", limit: 5 }, /needs a period/],
    ["5/m", /limits\[0\] must be an object/],
  ];
  for (const [limit, message] of bad) {
    const e = await rejection(kl.create({ accountId: "a", limits: [limit] }));
    assert.equal(e?.code, "invalid_argument", String(message));
    assert.match(e.message, message);
  }
  assert.equal(
    (await rejection(kl.create({ accountId: "a", limits: { unit: "requests" } })))?.code,
    "invalid_argument",
  );
  assert.deepEqual(await kl.list("a"), []);
  await kl.close();
});
