// A surface that cannot be misused: misspelt option names, loose conversions and
// wrong argument types are refused with `invalid_argument` before anything is
// minted or charged, and no error message or console output repeats a raw key.

const test = require("node:test");
const assert = require("node:assert/strict");
const util = require("node:util");
const { KeyLeash, KeyLeashError, AgentKey, agentKeyMiddleware, createAgentKeyRoutes, hasScope } = require("..");
const { open } = require("./helpers");

/** Asserts `fn()` throws or rejects with invalid_argument and a message matching every pattern. */
async function refused(fn, ...patterns) {
  let error;
  try {
    await fn();
  } catch (e) {
    error = e;
  }
  assert.ok(error, "accepted, but it should have been refused");
  assert.ok(error instanceof KeyLeashError, `not a KeyLeashError: ${error}`);
  assert.equal(error.code, "invalid_argument", error.message);
  for (const p of patterns) assert.match(error.message, p);
  return error;
}

test("a misspelt option is refused, named, with the right spelling suggested", async () => {
  const { kl, url } = await open("sqlite");
  await refused(() => kl.create({ accountId: "a", budgetCent: 5 }), /"budgetCent"/, /budgetCents/);
  await refused(() => kl.create({ accountId: "a", expiresin: "1h" }), /"expiresin"/, /expiresIn/);
  await refused(() => kl.create({ accountId: "a", scope: ["x"] }), /"scope"/, /scopes/);
  await refused(() => kl.create({ accountId: "a", budget_cents: 5 }), /"budget_cents"/, /budgetCents/);
  // Nothing was minted by the refused calls.
  assert.deepEqual(await kl.list("a"), []);

  const k = await kl.create({ accountId: "a", budgetCents: 5 });
  await refused(
    () => kl.trackUsage(k.key, { costCents: 1, idempotency_key: "k" }),
    /"idempotency_key"/,
    /idempotencyKey/,
  );
  assert.equal((await kl.validate(k.key)).budgetUsedCents, 0, "a refused charge charged");
  await refused(() => KeyLeash.connect(url, { maxConections: 3 }), /"maxConections"/, /poolSize/);
  await refused(() => KeyLeash.connect(url, { tablename: "t" }), /"tablename"/, /tableName/);
  await refused(() => kl.ensureSubject("s", { budget_cents: 5 }), /"budget_cents"/, /budgetCents/);
  await refused(() => kl.trackUsageBySubject("s", { cost: 1 }), /"cost"/);
  await refused(() => kl.usage(k.id, { form: "2026-01-01T00:00:00Z" }), /"form"/, /from/);
  await refused(() => kl.advance({ hour: 1 }), /"hour"/, /hours/);
  await refused(() => agentKeyMiddleware(kl, { scopes: "proxy.chat" }), /"scopes"/, /scope\b/);
  await refused(() => createAgentKeyRoutes(kl, { signupScope: ["a"] }), /"signupScope"/, /signupScopes/);
  await refused(() => createAgentKeyRoutes(kl, { signup_budget_cents: 5 }), /signupBudgetCents/);
  await refused(() => kl.selfServe("signup", null, null, "{}", null, { requireEmail: false }), /"requireEmail"/);
  await refused(() => new AgentKey({ url, tablename: "t" }), /"tablename"/, /tableName/);
  await refused(() => new AgentKey({ url, validScope: ["a"] }), /"validScope"/, /validScopes/);
  // agentkey's own option names are all accepted.
  const ak = new AgentKey({ url, tableName: unique(), keyPrefix: "ak_", validScopes: ["a"] });
  await ak.migrate();
  createAgentKeyRoutes(ak, { signupRateLimit: 20, signupScopes: ["a"], requireEmailForSignup: false });
  agentKeyMiddleware(ak, { scope: "a" });
  await ak.close();
});

let n = 0;
function unique() {
  n += 1;
  return `misuse_${process.pid}_${n}`;
}

test("values of the wrong type are refused before anything happens", async () => {
  const { kl } = await open("sqlite");
  const first = await kl.create({ accountId: "a" });
  assert.equal(first.id, 1);
  // revoke(1.5) used to revoke key 1.
  for (const bad of [1.5, 0, -1, 2 ** 53, Number.NaN, "1", null, undefined, {}]) {
    await refused(() => kl.revoke(bad), /keyId/);
  }
  assert.equal((await kl.validate(first.key)).valid, true);
  await refused(() => kl.usage(1.5), /keyId/);
  await refused(() => kl.create({ accountId: "a", parentId: 1.5 }), /parentId/);
  await refused(() => kl.create({ accountId: "a", parentId: "1" }), /parentId/);
  await refused(() => kl.create({ accountId: { id: 1 } }), /accountId/);
  await refused(() => kl.create({ accountId: "a", budgetCents: "5" }), /budgetCents/);
  await refused(() => kl.create({ accountId: "a", scopes: "proxy.chat" }), /scopes/);
  await refused(() => kl.create({ accountId: "a", expiresAt: 1767225600000 }), /expiresAt/);
  await refused(() => kl.trackUsage(first.key, { costCents: "1" }), /costCents/);
  await refused(() => kl.trackUsage(first.key, {}), /costCents/);
  await refused(() => kl.list({ id: "a" }), /accountId/);
  await refused(() => kl.revoke(first.id, { id: "a" }), /accountId/);
  await refused(() => kl.validateBySubject(7), /subject/);
  await refused(() => kl.advance({ hours: "1" }), /hours/);
  await refused(() => kl.setNow(1767225600000), /at\b/);
  await refused(() => KeyLeash.connect(42), /url/);
  await refused(() => hasScope({ valid: true, scopes: ["a"] }, 7), /scope/);
  await refused(() => createAgentKeyRoutes(kl, { signupRateLimit: true }), /signupRateLimit/);
  await refused(() => createAgentKeyRoutes(kl, { onError: "log" }), /onError/);
  await refused(() => agentKeyMiddleware(kl, { onError: "log" }), /onError/);
  assert.equal((await kl.validate(first.key)).budgetUsedCents, 0);
  // NaN and infinite costs stay agentkey's `invalid_cost` result, not an error.
  assert.deepEqual(await kl.trackUsage(first.key, { costCents: Number.NaN }), {
    success: false,
    reason: "invalid_cost",
  });
});

test("arrays with holes and metadata JSON cannot hold are refused before the native half", async () => {
  const { kl } = await open("sqlite");
  const holed = [];
  holed[1] = "a";
  await refused(() => kl.create({ accountId: "a", scopes: holed }), /^scopes must be an array of strings$/);
  await refused(() => createAgentKeyRoutes(kl, { signupScopes: holed }), /^signupScopes must be an array of strings$/);
  await refused(() => hasScope(holed, "a"), /^scopes must be an array of strings$/);
  const cyclic = {};
  cyclic.self = cyclic;
  for (const [metadata, what] of [
    [{ f() {} }, /it holds a function/],
    [[1, undefined], /it holds undefined/],
    [{ n: Number.NaN }, /it holds NaN or an infinite number/],
    [{ big: 1n }, /it holds a bigint/],
    [Symbol("s"), /it holds a symbol/],
    [cyclic, /nested at most 128 deep/],
  ]) {
    await refused(() => kl.create({ accountId: "a", metadata }), /^metadata must be JSON/, what);
  }
  assert.deepEqual(await kl.list("a"), []);
  // What is checked is what is sent: an array read twice cannot change in between.
  let reads = 0;
  const shifty = new Proxy(["a"], {
    get: (target, name) => (name === "0" && ++reads > 1 ? 7 : Reflect.get(target, name)),
  });
  assert.deepEqual((await kl.create({ accountId: "a", scopes: shifty })).scopes, ["a"]);
  // Undefined properties are left out, as JSON.stringify leaves them out.
  await kl.create({ accountId: "b", metadata: { kept: [1, "x", null, true], gone: undefined } });
  assert.deepEqual((await kl.list("b"))[0].metadata, { kept: [1, "x", null, true] });
});

test("no error message and no console output repeats a raw key", async () => {
  const { kl } = await open("sqlite");
  const created = await kl.create({ accountId: "a", scopes: ["proxy.chat"] });
  const raw = created.key;
  const attempts = [
    () => kl.validate({ key: raw }),
    () => kl.validate([raw]),
    () => kl.trackUsage({ key: raw }, { costCents: 1 }),
    () => kl.trackUsage(raw, { costCents: { raw } }),
    () => kl.trackUsage(raw, { costCents: 1, idempotencyKey: { raw } }),
    () => kl.create({ accountId: "a", name: { raw } }),
    () => kl.create({ accountId: "a", scopes: [raw, 7] }),
    () => kl.validateBySubject({ raw }),
    () => kl.authenticate([`Bearer ${raw}`]),
    () => kl.selfServe("me", null, { raw }, ""),
    () => kl.selfServe("signup", null, null, { raw }),
    () => kl.selfServe("signup", null, null, "{}", { raw }),
    () => kl.revoke(raw),
    () => kl.list([raw]),
    () => hasScope({ valid: true, scopes: raw }, "a"),
  ];
  for (const attempt of attempts) {
    const e = await refused(attempt);
    assert.ok(!e.message.includes(raw.slice(3, 20)), `the key is in: ${e.message}`);
    assert.ok(!util.inspect(e).includes(raw.slice(3, 20)), "the key is in the inspected error");
  }
  // console.log(created) hides the key; the program still reads and sends it.
  const shown = util.inspect(created);
  assert.ok(!shown.includes(raw.slice(3)), shown);
  assert.match(shown, /key: '<redacted>'/);
  assert.match(shown, new RegExp(`id: ${created.id}`));
  assert.equal(created.key, raw);
  assert.equal(JSON.parse(JSON.stringify(created)).key, raw);
  assert.deepEqual(Object.keys(created).sort(), ["budgetCents", "budgetPeriod", "expiresAt", "id", "key", "scopes"]);
  assert.ok(!util.format("%o", created).includes(raw.slice(3)));
});
