// Express over real HTTP on 127.0.0.1: every status of the middleware and every
// rule of the self-serve routes (SPEC §6), on SQLite and Postgres.

const test = require("node:test");
const assert = require("node:assert/strict");
const express = require("express");
const { agentKeyMiddleware, createAgentKeyRoutes } = require("..");
const { STORES, open } = require("./helpers");

/** Starts an app on 127.0.0.1 and returns a `call(method, path, {key, body, raw})`. */
async function serve(t, kl, routeOptions) {
  const app = express();
  app.use(createAgentKeyRoutes(kl, routeOptions));
  app.post("/v1/chat", agentKeyMiddleware(kl, { scope: "proxy.chat" }), (req, res) => {
    res.json({ id: req.agentKey.id, remaining: req.agentKey.budgetRemainingCents });
  });
  app.get("/v1/any", agentKeyMiddleware(kl), (req, res) => res.json({ account: req.agentKey.accountId }));
  const server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const base = `http://127.0.0.1:${server.address().port}`;
  return async (method, path, { key, body, raw, auth } = {}) => {
    const headers = { "content-type": "application/json" };
    if (key) headers.authorization = `Bearer ${key}`;
    if (auth) headers.authorization = auth;
    const res = await fetch(base + path, {
      method,
      headers,
      body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
    });
    return { status: res.status, body: await res.json() };
  };
}

for (const store of STORES) {
  test(`${store}: middleware answers every status of SPEC §6`, async (t) => {
    const { kl } = await open(store);
    const call = await serve(t, kl);
    const k = await kl.create({ accountId: "a", scopes: ["proxy.chat"], budgetCents: 5, expiresIn: "1h" });
    const narrow = await kl.create({ accountId: "a", scopes: ["usage.read"] });

    assert.deepEqual(await call("POST", "/v1/chat"), { status: 401, body: { error: "Missing API key" } });
    assert.deepEqual(await call("POST", "/v1/chat", { auth: "Basic abc" }), {
      status: 401,
      body: { error: "Missing API key" },
    });
    assert.deepEqual(await call("POST", "/v1/chat", { key: "ak_unknown" }), {
      status: 401,
      body: { error: "invalid" },
    });
    assert.deepEqual(await call("POST", "/v1/chat", { key: narrow.key }), {
      status: 403,
      body: { error: "insufficient_scope", required: "proxy.chat", available: ["usage.read"] },
    });
    assert.deepEqual(await call("GET", "/v1/any", { key: narrow.key }), { status: 200, body: { account: "a" } });
    assert.deepEqual(await call("POST", "/v1/chat", { key: k.key }), {
      status: 200,
      body: { id: k.id, remaining: 5 },
    });
    await kl.trackUsage(k.key, { costCents: 5 });
    assert.deepEqual(await call("POST", "/v1/chat", { key: k.key }), {
      status: 429,
      body: { error: "budget_exceeded" },
    });
    await kl.advance({ hours: 1 });
    assert.deepEqual(await call("POST", "/v1/chat", { key: k.key }), { status: 401, body: { error: "expired" } });
    await kl.revoke(narrow.id);
    assert.deepEqual(await call("GET", "/v1/any", { key: narrow.key }), { status: 401, body: { error: "revoked" } });
    await kl.close();
    assert.deepEqual(await call("GET", "/v1/any", { key: k.key }), {
      status: 500,
      body: { error: "auth_unavailable" },
    });
  });

  test(`${store}: signup grants only signup scopes, each signup its own account`, async (t) => {
    const { kl } = await open(store);
    const call = await serve(t, kl, { signupScopes: ["proxy.chat"], signupBudgetCents: 100 });
    assert.deepEqual(await call("POST", "/signup", { body: { email: "a@b.c", scopes: ["admin"] } }), {
      status: 400,
      body: { error: "Scopes not allowed on signup: admin", allowed: ["proxy.chat"] },
    });
    assert.deepEqual(await call("POST", "/signup", { body: {} }), {
      status: 400,
      body: { error: "Valid email is required" },
    });
    const tooMuch = await call("POST", "/signup", { body: { email: "a@b.c", budget_cents: 101 } });
    assert.equal(tooMuch.status, 400);
    assert.equal(tooMuch.body.error, "invalid_argument");
    const malformed = await call("POST", "/signup", { raw: "{not json" });
    assert.equal(malformed.status, 400);
    assert.equal(malformed.body.error, "invalid_argument");

    const one = await call("POST", "/signup", { body: { email: "a@b.c", name: "bot" } });
    const two = await call("POST", "/signup", { body: { email: "a@b.c" } });
    assert.equal(one.status, 201);
    assert.deepEqual(
      { ...one.body, key: typeof one.body.key, id: typeof one.body.id },
      {
        key: "string",
        id: "number",
        scopes: ["proxy.chat"],
        budgetCents: 100,
        budgetPeriod: null,
        expiresAt: "2026-01-16T12:00:00.000Z",
      },
    );
    const me1 = await call("GET", "/sdk-keys/me", { key: one.body.key });
    const me2 = await call("GET", "/sdk-keys/me", { key: two.body.key });
    assert.equal(me1.status, 200);
    assert.equal(me1.body.valid, true);
    assert.equal(me1.body.userId, "a@b.c");
    assert.equal(me1.body.name, "bot");
    assert.notEqual(me1.body.accountId, me2.body.accountId);
    // One signup cannot revoke the other's key (another account).
    assert.deepEqual(await call("DELETE", `/sdk-keys/${two.body.id}`, { key: one.body.key }), {
      status: 404,
      body: { error: "not_found" },
    });
    assert.equal((await call("GET", "/sdk-keys/me", { key: two.body.key })).status, 200);
  });

  test(`${store}: child keys are attenuated and draw on the caller`, async (t) => {
    const { kl } = await open(store);
    const call = await serve(t, kl);
    const parent = await kl.create({
      accountId: "acme",
      userId: "u1",
      scopes: ["proxy.chat", "usage.read"],
      budgetCents: 50,
      expiresIn: "2h",
    });
    const mint = (body) => call("POST", "/sdk-keys", { key: parent.key, body });
    assert.deepEqual(await call("POST", "/sdk-keys", { body: {} }), {
      status: 401,
      body: { error: "Missing API key" },
    });
    assert.deepEqual(await mint({ scopes: ["admin"] }), {
      status: 403,
      body: { error: "insufficient_scope", required: "admin", available: ["proxy.chat", "usage.read"] },
    });
    assert.equal((await mint({ budget_cents: 51 })).body.error, "budget_exceeds_parent");
    assert.equal((await mint({ budget_cents: 51 })).status, 403);
    assert.equal((await mint({ expires_in: "3h" })).body.error, "expiry_exceeds_parent");
    // A lifetime cap is the longest period: any periodic child could outspend it.
    assert.equal((await mint({ budget_period: "month" })).body.error, "period_shorter_than_parent");
    const child = await mint({ scopes: ["proxy.chat"], budget_cents: 40, name: "sub" });
    assert.equal(child.status, 201);
    assert.equal(child.body.expiresAt, "2026-01-15T14:00:00.000Z");
    const me = await call("GET", "/sdk-keys/me", { key: child.body.key });
    assert.equal(me.body.accountId, "acme");
    assert.equal(me.body.delegatedBy, "u1");
    // The parent spends 30 of its 50: the child's 40 now has only 20 behind it.
    await kl.trackUsage(parent.key, { costCents: 30 });
    assert.deepEqual(await kl.trackUsage(child.body.key, { costCents: 21 }), {
      success: false,
      reason: "budget_exceeded",
    });
    assert.equal((await call("GET", "/sdk-keys/me", { key: child.body.key })).body.budgetRemainingCents, 20);
    // Revoke: bad id, another account's key, own key, twice.
    const stranger = await kl.create({ accountId: "other" });
    assert.deepEqual(await call("DELETE", "/sdk-keys/1x", { key: parent.key }), {
      status: 400,
      body: { error: "Invalid key ID" },
    });
    assert.equal((await call("DELETE", `/sdk-keys/${stranger.id}`, { key: parent.key })).status, 404);
    assert.equal((await kl.validate(stranger.key)).valid, true);
    assert.deepEqual(await call("DELETE", `/sdk-keys/${child.body.id}`, { key: parent.key }), {
      status: 200,
      body: { revoked: true },
    });
    assert.deepEqual(await call("GET", "/sdk-keys/me", { key: child.body.key }), {
      status: 401,
      body: { error: "revoked" },
    });
  });
}

test("anonymous signups are each their own account and scopeless without signupScopes", async (t) => {
  const { kl } = await open("sqlite");
  const call = await serve(t, kl, { requireEmailForSignup: false });
  const a = await call("POST", "/signup", { body: {} });
  const b = await call("POST", "/signup", { body: { scopes: [] } });
  assert.deepEqual([a.status, b.status, a.body.scopes], [201, 201, []]);
  assert.deepEqual(await call("POST", "/signup", { body: { scopes: ["proxy.chat"] } }), {
    status: 400,
    body: { error: "Scopes not allowed on signup: proxy.chat", allowed: [] },
  });
  const meA = await call("GET", "/sdk-keys/me", { key: a.body.key });
  const meB = await call("GET", "/sdk-keys/me", { key: b.body.key });
  assert.notEqual(meA.body.accountId, meB.body.accountId);
  assert.equal(meA.body.userId, null);
  // A scopeless key is refused by a scoped route: [] grants nothing.
  assert.equal((await call("POST", "/v1/chat", { key: a.body.key })).status, 403);
});

test("routes reuse a body an app-level JSON parser already read", async (t) => {
  const { kl } = await open("sqlite");
  const app = express();
  app.use(express.json());
  app.use(createAgentKeyRoutes(kl, { requireEmailForSignup: false, signupScopes: ["a"] }));
  const server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const res = await fetch(`http://127.0.0.1:${server.address().port}/signup`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ scopes: ["b"] }),
  });
  assert.equal(res.status, 400);
  assert.deepEqual(await res.json(), { error: "Scopes not allowed on signup: b", allowed: ["a"] });
});
