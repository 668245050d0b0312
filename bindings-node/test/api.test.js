// Every method of KeyLeash and every error code, through the built addon, on SQLite and Postgres.

const test = require("node:test");
const assert = require("node:assert/strict");
const { KeyLeash, KeyLeashError, hasScope } = require("..");
const esm = import("../index.mjs");
const { STORES, open, counters } = require("./helpers");

async function rejectsWith(promise, code) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof KeyLeashError, `not a KeyLeashError: ${e}`);
    assert.ok(e instanceof Error);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

for (const store of STORES) {
  test(`${store}: create, validate, trackUsage with the shapes of docs/api.md`, async () => {
    const { kl } = await open(store, { validScopes: ["proxy.chat", "usage.read"] });
    const k = await kl.create({
      accountId: "a",
      scopes: ["proxy.chat"],
      budgetCents: 50,
      budgetPeriod: "month",
      expiresIn: "7d",
      delegatedBy: "u1",
      name: "agent",
      metadata: { team: "x" },
    });
    assert.match(k.key, /^ak_[0-9A-Za-z]{38}$/);
    assert.deepEqual(
      { ...k, key: undefined },
      {
        key: undefined,
        id: k.id,
        scopes: ["proxy.chat"],
        budgetCents: 50,
        budgetPeriod: "month",
        expiresAt: "2026-01-22T12:00:00.000Z",
      },
    );
    const v = await kl.validate(k.key);
    assert.deepEqual(v, {
      valid: true,
      id: k.id,
      accountId: "a",
      userId: null,
      scopes: ["proxy.chat"],
      budgetCents: 50,
      budgetUsedCents: 0,
      budgetHeldCents: 0,
      budgetRemainingCents: 50,
      budgetPeriod: "month",
      budgetResetAt: "2026-02-15T12:00:00.000Z",
      expiresAt: "2026-01-22T12:00:00.000Z",
      delegatedBy: "u1",
      name: "agent",
    });
    assert.equal(kl.hasScope(v, "proxy.chat"), true);
    assert.equal(kl.hasScope(v, "usage.read"), false);
    assert.equal(hasScope({ valid: true, scopes: null }, "anything"), true);
    assert.equal(hasScope({ valid: true, scopes: ["proxy.*"] }, "proxy.chat"), true);
    assert.equal(hasScope({ valid: false, reason: "invalid" }, "x"), false);

    assert.deepEqual(await kl.trackUsage(k.key, { costCents: 0.5, idempotencyKey: "r1" }), {
      success: true,
      budgetUsedCents: 0.5,
      budgetRemainingCents: 49.5,
    });
    // The repeat returns the first result, says it is a replay, and charges nothing.
    await kl.trackUsage(k.key, { costCents: 1 });
    assert.deepEqual(await kl.trackUsage(k.key, { costCents: 0.5, idempotencyKey: "r1" }), {
      success: true,
      budgetUsedCents: 0.5,
      budgetRemainingCents: 49.5,
      replayed: "charged",
    });
    // The same idempotency key with another cost is refused.
    assert.deepEqual(await kl.trackUsage(k.key, { costCents: 0.6, idempotencyKey: "r1" }), {
      success: false,
      reason: "idempotency_conflict",
    });
    assert.deepEqual(await kl.trackUsage(k.key, { costCents: 0 }), { success: true });
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, -1]) {
      assert.deepEqual(await kl.trackUsage(k.key, { costCents: bad }), { success: false, reason: "invalid_cost" });
    }
    assert.deepEqual(await kl.trackUsage(k.key, { costCents: 48.6 }), {
      success: false,
      reason: "budget_exceeded",
    });
    // A one-character typo in the checksum (never the same character: a key ending
    // in "x" made the old typo no typo at all, and this test fail one run in 62).
    const typo = `${k.key.slice(0, -1)}${k.key.endsWith("x") ? "y" : "x"}`;
    assert.deepEqual(await kl.trackUsage(typo, { costCents: 1 }), {
      success: false,
      reason: "invalid_key",
    });
    assert.equal((await kl.validate(k.key)).budgetUsedCents, 1.5);
  });

  test(`${store}: validate order, expiry, revoke, the manual clock`, async () => {
    const { kl } = await open(store);
    const k = await kl.create({ accountId: 7, budgetCents: 1, expiresAt: new Date("2026-01-15T13:00:00Z") });
    assert.equal((await kl.validate(k.key)).accountId, "7");
    assert.deepEqual(await kl.validate("ak_nope"), { valid: false, reason: "invalid" });
    assert.deepEqual(await kl.trackUsage(k.key, { costCents: 1 }), {
      success: true,
      budgetUsedCents: 1,
      budgetRemainingCents: 0,
    });
    assert.deepEqual(await kl.validate(k.key), { valid: false, reason: "budget_exceeded" });
    await kl.advance({ minutes: 30, seconds: 1800 });
    assert.equal(await kl.now(), "2026-01-15T13:00:00.000Z");
    assert.deepEqual(await kl.validate(k.key), { valid: false, reason: "expired" });
    assert.deepEqual(await kl.trackUsage(k.key, { costCents: 1 }), { success: false, reason: "expired" });
    assert.equal(await kl.revoke(k.id, "other"), false);
    assert.equal(await kl.revoke(k.id, 7), true);
    assert.equal(await kl.revoke(k.id), false);
    assert.deepEqual(await kl.validate(k.key), { valid: false, reason: "revoked" });
    await kl.setNow(new Date("2026-01-01T00:00:00Z"));
    assert.deepEqual(await kl.validate(k.key), { valid: false, reason: "revoked" });
  });

  test(`${store}: subjects, list, usage, parent keys`, async () => {
    const { kl } = await open(store);
    await kl.ensureSubject("idp|machine-1", { budgetCents: 10, scopes: ["read"] });
    await kl.ensureSubject("idp|machine-1", { budgetCents: 99 });
    const s = await kl.validateBySubject("idp|machine-1");
    assert.equal(s.budgetCents, 10);
    assert.equal(s.accountId, "idp|machine-1");
    assert.equal((await kl.trackUsageBySubject("idp|machine-1", { costCents: 4 })).budgetRemainingCents, 6);
    assert.deepEqual(await kl.validateBySubject("nobody"), { valid: false, reason: "invalid" });

    const p = await kl.create({ accountId: "a", budgetCents: 10 });
    const c = await kl.create({ parentId: p.id });
    await kl.trackUsage(c.key, { costCents: 7 });
    assert.equal((await kl.validate(p.key)).budgetUsedCents, 7);
    assert.deepEqual(await kl.trackUsage(c.key, { costCents: 4 }), { success: false, reason: "budget_exceeded" });
    await kl.advance({ hours: 1 });
    await kl.trackUsage(c.key, { costCents: 2 });

    const list = await kl.list("a");
    assert.deepEqual(
      list.map((k) => [k.id, k.budgetUsedCents]),
      [
        [p.id, 9],
        [c.id, 9],
      ],
    );
    assert.ok(list.every((k) => !("key" in k) && k.keyPrefix.startsWith("ak_")));
    const all = await kl.usage(c.id);
    assert.deepEqual(
      all.map((e) => [e.amountCents, e.createdAt]),
      [
        [7, "2026-01-15T12:00:00.000Z"],
        [2, "2026-01-15T13:00:00.000Z"],
      ],
    );
    assert.equal((await kl.usage(c.id, { from: new Date("2026-01-15T12:30:00Z") })).length, 1);
    assert.equal((await kl.usage(c.id, { to: "2026-01-15T12:30:00Z" })).length, 1);
  });

  test(`${store}: every error code is a KeyLeashError with its code`, async () => {
    const { kl, url, tableName } = await open(store, { validScopes: ["read"] });
    await rejectsWith(kl.create({ accountId: "a", scopes: ["write"] }), "invalid_scope");
    await rejectsWith(kl.create({ accountId: "a", expiresIn: "7 days" }), "invalid_duration");
    await rejectsWith(kl.create({ accountId: "a", budgetPeriod: "year" }), "invalid_period");
    await rejectsWith(kl.create({ accountId: "" }), "invalid_argument");
    await rejectsWith(kl.create({ accountId: "a", budgetCents: "ten" }), "invalid_argument");
    await rejectsWith(kl.create({ accountId: "a", expiresAt: "tomorrow" }), "invalid_argument");
    await rejectsWith(kl.create("a"), "invalid_argument");
    // Wrong argument types reject (never throw synchronously, never crash the process).
    await rejectsWith(kl.validate(undefined), "invalid_argument");
    await rejectsWith(kl.trackUsage(42, { costCents: 1 }), "invalid_argument");
    await rejectsWith(kl.trackUsage("ak_x"), "invalid_argument");
    await rejectsWith(kl.revoke("seven"), "invalid_argument");
    await rejectsWith(kl.trackUsage("ak_x", { costCents: 1, idempotencyKey: "x".repeat(300) }), "invalid_argument");
    await rejectsWith(kl.setNow("soon"), "invalid_argument");
    await rejectsWith(KeyLeash.connect(url, { tableName: "bad name;" }), "invalid_argument");
    await rejectsWith(KeyLeash.connect("mysql://x"), "invalid_argument");
    const system = await KeyLeash.connect(url, { tableName });
    await rejectsWith(system.advance({ days: 1 }), "invalid_argument");
    await system.close();
    const live = await kl.create({ accountId: "a" });
    await kl.close();
    await rejectsWith(kl.validate(live.key), "unavailable");
    await rejectsWith(kl.trackUsage(live.key, { costCents: 1 }), "unavailable");
    // Validates of one turn cross as one batch: each caller gets the core's error,
    // its code and its message.
    for (const r of await Promise.allSettled([kl.validate(live.key), kl.validate(live.key)])) {
      assert.equal(r.status, "rejected");
      assert.ok(r.reason instanceof KeyLeashError, `not a KeyLeashError: ${r.reason}`);
      assert.equal(r.reason.code, "unavailable");
      assert.match(r.reason.message, /^key store unavailable: /);
    }
    // A malformed key is answered without the database, even when it is gone.
    assert.deepEqual(await kl.validate(`${live.key.slice(0, -1)}!`), { valid: false, reason: "invalid" });
    // A message never repeats the database URL (it may hold a password).
    const secret = "postgres://user:hunter2@127.0.0.1:1/db";
    await assert.rejects(KeyLeash.connect(secret, { acquireTimeoutMs: 300 }), (e) => {
      assert.equal(e.code, "unavailable");
      assert.ok(!e.message.includes("hunter2"), e.message);
      return true;
    });
  });
}

test("the ES module entry exports the same objects", async () => {
  const m = await esm;
  assert.equal(m.KeyLeash, KeyLeash);
  assert.equal(m.KeyLeashError, KeyLeashError);
  assert.equal(typeof m.agentKeyMiddleware, "function");
  assert.equal(typeof m.createAgentKeyRoutes, "function");
  assert.equal(typeof m.AgentKey, "function");
});

test("counters helper reads SQLite through another connection", async () => {
  const db = await open("sqlite");
  const k = await db.kl.create({ accountId: "a", budgetCents: 5 });
  await db.kl.trackUsage(k.key, { costCents: 2.5 });
  assert.deepEqual(await counters(db, k.id), { used: 2_500_000, ledgerSum: 2_500_000, ledgerRows: 1 });
});
