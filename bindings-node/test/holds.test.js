// Holds from Node: reserve, settle and release through the addon on both stores,
// options refused by name, and parallel reserves from this process checked against
// the database afterwards.

const test = require("node:test");
const assert = require("node:assert/strict");
const { KeyLeashError } = require("..");
const { STORES, open, closePg, counters } = require("./helpers");

test.after(closePg);

/** The error code a promise rejects with (a KeyLeashError's), or "resolved". */
async function code(p) {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof KeyLeashError);
    return e.code;
  }
  return "resolved";
}

for (const store of STORES) {
  test(`${store}: reserve holds, settle charges the actual cost once, release frees once`, async () => {
    const db = await open(store);
    const { kl } = db;
    const k = await kl.create({ accountId: "a", budgetCents: 100 });
    const held = await kl.reserve(k.key, { costCents: 60, ttl: "2m", idempotencyKey: "call-1" });
    assert.equal(held.success, true);
    assert.equal(held.expiresAt, "2026-01-15T12:02:00.000Z");
    assert.equal(held.budgetRemainingCents, 40);
    // A repeat holds nothing and is no success: it names the first hold.
    assert.deepEqual(await kl.reserve(k.key, { costCents: 60, idempotencyKey: "call-1" }), {
      success: false,
      reason: "idempotency_replayed",
      replayed: "held",
      holdId: held.holdId,
      expiresAt: held.expiresAt,
      budgetRemainingCents: 40,
    });
    const v = await kl.validate(k.key);
    assert.equal(v.budgetHeldCents, 60);
    assert.deepEqual(await kl.reserve(k.key, { costCents: 50 }), { success: false, reason: "budget_exceeded" });
    assert.equal((await kl.trackUsage(k.key, { costCents: 41 })).success, false);
    const settled = await kl.settle(held.holdId, { costCents: 75 });
    assert.deepEqual(settled, { success: true, budgetUsedCents: 75, budgetRemainingCents: 25 });
    assert.deepEqual(await kl.settle(held.holdId, { costCents: 1 }), settled);
    assert.equal(await kl.release(held.holdId), false);
    const other = await kl.reserve(k.key, { costCents: 20 });
    assert.equal(await kl.release(other.holdId), true);
    assert.deepEqual(await kl.settle(other.holdId, { costCents: 1 }), { success: false, reason: "hold_released" });
    assert.deepEqual(await kl.settle(999999, { costCents: 1 }), { success: false, reason: "unknown_hold" });
    const ledger = await kl.usage(k.id);
    assert.deepEqual(
      ledger.map((e) => [e.amountCents, e.holdId]),
      [[75, held.holdId]],
    );
    assert.deepEqual(await counters(db, k.id), { used: 75e6, ledgerSum: 75e6, ledgerRows: 1 });
    await kl.close();
  });

  test(`${store}: 200 parallel reserves hold at most the remainder`, async () => {
    const db = await open(store);
    const { kl } = db;
    const k = await kl.create({ accountId: "a", budgetCents: 100 });
    await kl.trackUsage(k.key, { costCents: 50 });
    const results = await Promise.all(Array.from({ length: 200 }, () => kl.reserve(k.key, { costCents: 1 })));
    const held = results.filter((r) => r.success);
    assert.equal(held.length, 50);
    assert.ok(results.filter((r) => !r.success).every((r) => r.reason === "budget_exceeded"));
    const settles = await Promise.all(held.map((h, i) => kl.settle(h.holdId, { costCents: i % 2 })));
    assert.ok(settles.every((s) => s.success));
    const v = await kl.validate(k.key);
    assert.deepEqual([v.budgetUsedCents, v.budgetHeldCents, v.budgetRemainingCents], [75, 0, 25]);
    assert.deepEqual(await counters(db, k.id), { used: 75e6, ledgerSum: 75e6, ledgerRows: 26 });
    await kl.close();
  });
}

test("reserve and settle refuse bad options by name, never coerce them", async () => {
  const { kl } = await open("sqlite");
  const k = await kl.create({ accountId: "a", budgetCents: 100 });
  assert.equal(await code(kl.reserve(k.key, { costCent: 5 })), "invalid_argument");
  assert.equal(await code(kl.reserve(k.key, { costCents: "5" })), "invalid_argument");
  assert.equal(await code(kl.reserve(k.key, { costCents: 5, ttl: "forever" })), "invalid_duration");
  assert.equal(await code(kl.reserve(k.key, { costCents: 5, ttl: "2d" })), "invalid_duration");
  assert.equal(await code(kl.settle(1.5, { costCents: 1 })), "invalid_argument");
  assert.equal(await code(kl.settle(1, {})), "invalid_argument");
  assert.equal(await code(kl.release("1")), "invalid_argument");
  assert.deepEqual(await kl.reserve(k.key, { costCents: 0 }), { success: false, reason: "invalid_cost" });
  assert.deepEqual(await kl.reserve("ak_nope", { costCents: 1 }), { success: false, reason: "invalid_key" });
  await kl.close();
});

for (const store of STORES) {
  test(`${store}: an account ceiling bounds the sum of its keys; 200 parallel spends admit exactly it`, async () => {
    const db = await open(store);
    const { kl } = db;
    const keys = await Promise.all([1, 2, 3, 4].map(() => kl.create({ accountId: "a", budgetCents: 1000 })));
    const other = await kl.create({ accountId: "b" });
    assert.equal(await kl.setAccountBudget("a", { budgetCents: 60, budgetPeriod: "day" }), undefined);
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        i % 2 === 0 ? kl.trackUsage(keys[i % 4].key, { costCents: 1 }) : kl.reserve(keys[i % 4].key, { costCents: 1 }),
      ),
    );
    assert.equal(results.filter((r) => r.success).length, 60);
    for (const k of keys) assert.equal((await kl.validate(k.key)).reason, "budget_exceeded");
    // The key's own numbers stay its own; the remaining amount is the ceiling's.
    const charged = results.filter((r, i) => r.success && i % 2 === 0).length;
    const sum = (await Promise.all(keys.map((k) => counters(db, k.id)))).reduce((s, c) => s + c.ledgerSum, 0);
    assert.equal(sum, charged * 1e6);
    assert.equal((await kl.trackUsage(other.key, { costCents: 500 })).success, true);
    // Removed: each key is bound by its own budget again.
    await kl.setAccountBudget("a", { budgetCents: null });
    const v = await kl.validate(keys[0].key);
    assert.equal(v.valid, true);
    assert.equal(v.budgetRemainingCents, 1000 - v.budgetUsedCents - v.budgetHeldCents);
    await kl.close();
  });
}

test("setAccountBudget refuses bad options by name, never coerces them", async () => {
  const { kl } = await open("sqlite");
  const k = await kl.create({ accountId: "a" });
  assert.equal(await code(kl.setAccountBudget("a", { budgetCent: 5 })), "invalid_argument");
  assert.equal(await code(kl.setAccountBudget("a", {})), "invalid_argument");
  assert.equal(await code(kl.setAccountBudget("a")), "invalid_argument");
  assert.equal(await code(kl.setAccountBudget("a", { budgetCents: "5" })), "invalid_argument");
  assert.equal(await code(kl.setAccountBudget("a", { budgetCents: -1 })), "invalid_argument");
  assert.equal(await code(kl.setAccountBudget("a", { budgetCents: 5, budgetPeriod: "daily" })), "invalid_period");
  assert.equal(await code(kl.setAccountBudget("a", { budgetCents: null, budgetPeriod: "day" })), "invalid_argument");
  assert.equal(await code(kl.setAccountBudget("", { budgetCents: 5 })), "invalid_argument");
  assert.equal(await code(kl.setAccountBudget(null, { budgetCents: 5 })), "invalid_argument");
  // Nothing was set by any of them.
  assert.equal((await kl.validate(k.key)).budgetRemainingCents, null);
  await kl.close();
});
