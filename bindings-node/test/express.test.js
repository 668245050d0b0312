// Express over real HTTP on 127.0.0.1: every status of the middleware and every
// rule of the self-serve routes (docs/http.md), on SQLite and Postgres.

const test = require("node:test");
const assert = require("node:assert/strict");
const express = require("express");
const { spawn } = require("node:child_process");
const path = require("node:path");
const { agentKeyMiddleware, createAgentKeyRoutes, KeyLeashError } = require("..");
const { START, STORES, open, pg, closePg, capturingStderr } = require("./helpers");

test.after(closePg);

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
  const call = async (method, path, { key, body, raw, auth } = {}) => {
    const headers = { "content-type": "application/json" };
    if (key) headers.authorization = `Bearer ${key}`;
    if (auth) headers.authorization = auth;
    const res = await fetch(base + path, {
      method,
      headers,
      body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
    });
    const reply = { status: res.status, body: await res.json() };
    // The headers too, kept out of the deepEqual comparisons below.
    Object.defineProperty(reply, "headers", { value: res.headers });
    return reply;
  };
  call.base = base;
  return call;
}

for (const store of STORES) {
  test(`${store}: middleware answers every status of docs/http.md`, async (t) => {
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

/** Starts test/routes-child.js (the self-serve routes in another process) on `url` and `tableName`. */
async function serveInChild(t, url, tableName) {
  const child = spawn(process.execPath, [path.join(__dirname, "routes-child.js"), url, tableName, START], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  t.after(() => child.kill());
  const port = await new Promise((resolve, reject) => {
    child.stdout.on("data", (d) => {
      const m = /PORT (\d+)/.exec(String(d));
      if (m) resolve(Number(m[1]));
    });
    child.on("exit", (code) => reject(new Error(`routes-child.js exited with ${code}`)));
  });
  return async (body) => {
    const res = await fetch(`http://127.0.0.1:${port}/signup`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const reply = { status: res.status, body: await res.json() };
    Object.defineProperty(reply, "headers", { value: res.headers });
    return reply;
  };
}

for (const store of STORES) {
  test(`${store}: 21 signups from one address over two processes: the 21st is 429 with Retry-After`, async (t) => {
    const { kl, url, tableName } = await open(store);
    const call = await serve(t, kl, { requireEmailForSignup: false });
    const other = await serveInChild(t, url, tableName);
    const replies = [];
    for (let i = 0; i < 21; i++) {
      replies.push(i % 2 ? await other({}) : await call("POST", "/signup", { body: {} }));
    }
    assert.deepEqual(
      replies.slice(0, 20).map((r) => r.status),
      Array(20).fill(201),
    );
    const refused = replies[20];
    assert.equal(refused.status, 429);
    assert.equal(refused.body.error, "rate_limited");
    assert.ok(Number.isInteger(refused.body.retryAfter) && refused.body.retryAfter > 0, JSON.stringify(refused.body));
    assert.equal(refused.headers.get("retry-after"), String(refused.body.retryAfter));
    // Exactly 20 keys exist: the refused signup minted nothing.
    if (store === "postgres") {
      assert.deepEqual(await pg(`SELECT count(*)::int AS n FROM ${tableName}`), [{ n: 20 }]);
    } else {
      assert.equal((await kl.create({ accountId: "probe" })).id, 21);
    }
  });
}

test("signupRateLimit: false turns the limit off; per domain it counts email domains", async (t) => {
  const { kl } = await open("sqlite");
  const open1 = await serve(t, kl, { requireEmailForSignup: false, signupRateLimit: false });
  for (let i = 0; i < 25; i++) assert.equal((await open1("POST", "/signup", { body: {} })).status, 201);
  const { kl: kl2 } = await open("sqlite");
  const perDomain = await serve(t, kl2, { signupRateLimit: 100, signupRateLimitPerDomain: 2 });
  const signup = (email) => perDomain("POST", "/signup", { body: { email } });
  assert.equal((await signup("a@one.test")).status, 201);
  assert.equal((await signup("b@one.test")).status, 201);
  const third = await signup("c@one.test");
  assert.equal(third.status, 429);
  assert.ok(third.headers.get("retry-after"));
  assert.equal((await signup("a@two.test")).status, 201);
});

test("bad route options are refused when the routes are made", async () => {
  const { kl } = await open("sqlite");
  for (const bad of [
    { signupRateLimit: 0 },
    { signupRateLimit: 1.5 },
    { signupRateLimit: 1_000_001 },
    { signupRateLimit: -1 },
    { signupRateLimitPerDomain: 0 },
    { signupExpiresIn: "7 days" },
    { signupBudgetPeriod: "year" },
    { signupBudgetCents: -1 },
  ]) {
    assert.throws(
      () => createAgentKeyRoutes(kl, bad),
      (e) => e instanceof KeyLeashError && e.code !== undefined && e.code.startsWith("invalid_"),
      JSON.stringify(bad),
    );
  }
  assert.throws(() => createAgentKeyRoutes(kl, { signupRateLimit: true }), /signupRateLimit must be a number or false/);
  assert.throws(() => createAgentKeyRoutes(kl, { onError: "log" }), /onError must be a function/);
});

for (const store of STORES) {
  test(`${store}: bodies over 64 KiB are 413, unknown fields and foreign periods are refused`, async (t) => {
    const { kl } = await open(store);
    const call = await serve(t, kl, { signupBudgetCents: 50, signupBudgetPeriod: "month" });
    const tooLarge = {
      status: 413,
      body: { error: "payload_too_large", message: "request body is larger than 65536 bytes" },
    };
    const padded = (bytes) => {
      const name = "x".repeat(bytes - JSON.stringify({ email: "a@b.c", name: "" }).length);
      return JSON.stringify({ email: "a@b.c", name });
    };
    assert.equal(Buffer.byteLength(padded(65_536)), 65_536);
    assert.notEqual((await call("POST", "/signup", { raw: padded(65_536) })).status, 413);
    assert.deepEqual(await call("POST", "/signup", { raw: padded(65_537) }), tooLarge);
    const parent = await kl.create({ accountId: "acme", budgetCents: 50, budgetPeriod: "week" });
    assert.deepEqual(await call("POST", "/sdk-keys", { key: parent.key, raw: "x".repeat(70_000) }), tooLarge);

    const unknown = await call("POST", "/signup", { body: { email: "a@b.c", budgetCents: 5 } });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.error, "invalid_argument");
    assert.match(unknown.body.message, /budgetCents/);
    const unknownMint = await call("POST", "/sdk-keys", { key: parent.key, body: { budgetCents: 5 } });
    assert.equal(unknownMint.status, 400);
    assert.match(unknownMint.body.message, /budgetCents/);

    // The signup period is the operator's: "day" when "month" was configured is refused.
    assert.equal((await call("POST", "/signup", { body: { email: "a@b.c", budget_period: "day" } })).status, 400);
    const same = await call("POST", "/signup", { body: { email: "a@b.c", budget_period: "month" } });
    assert.equal(same.status, 201);
    assert.equal(same.body.budgetPeriod, "month");
    const none = await serve(t, kl, {});
    assert.equal((await none("POST", "/signup", { body: { email: "a@b.c", budget_period: "day" } })).status, 400);

    // A child may not reset more often than its caller.
    const mint = (body) => call("POST", "/sdk-keys", { key: parent.key, body });
    const shorter = await mint({ budget_cents: 10, budget_period: "day" });
    assert.equal(shorter.status, 403);
    assert.equal(shorter.body.error, "period_shorter_than_parent");
    assert.equal((await mint({ budget_cents: 10, budget_period: "year" })).body.error, "invalid_period");
    const longer = await mint({ budget_cents: 10, budget_period: "month" });
    assert.equal(longer.status, 201);
  });
}

test("an app-level JSON parser with a larger limit still gets the core's 413", async (t) => {
  const { kl } = await open("sqlite");
  const app = express();
  app.use(express.json({ limit: "1mb" }));
  app.use(createAgentKeyRoutes(kl, { requireEmailForSignup: false }));
  const server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const res = await fetch(`http://127.0.0.1:${server.address().port}/signup`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "x".repeat(70_000) }),
  });
  assert.equal(res.status, 413);
  assert.equal((await res.json()).error, "payload_too_large");
});

test("postgres: a store failure is reported once to onError, by default one stderr line, never a key", async (t) => {
  const { kl, tableName } = await open("postgres");
  const k = await kl.create({ accountId: "a", scopes: ["proxy.chat"] });
  const reported = [];
  const app = express();
  app.use(createAgentKeyRoutes(kl, { onError: (e) => reported.push(e) }));
  app.get("/custom", agentKeyMiddleware(kl, { onError: (e) => reported.push(e) }), (_req, res) => res.json({}));
  app.get("/default", agentKeyMiddleware(kl), (_req, res) => res.json({}));
  const server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const base = `http://127.0.0.1:${server.address().port}`;
  const get = async (p) => {
    const res = await fetch(base + p, { headers: { authorization: `Bearer ${k.key}` } });
    return { status: res.status, body: await res.json() };
  };
  // A real failure of the store: the table is gone.
  await pg(`DROP TABLE ${tableName} CASCADE`);
  const down = { status: 500, body: { error: "auth_unavailable" } };
  const [reply, lines] = await capturingStderr(() => get("/default"));
  assert.deepEqual(reply, down);
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(lines[0], /^keyleash: .*does not exist/);
  assert.ok(!lines[0].includes(k.key.slice(3, 20)), lines[0]);

  const [replies, quiet] = await capturingStderr(async () => [
    await get("/custom"),
    await get("/sdk-keys/me"),
    await (await fetch(`${base}/signup`, { method: "POST", body: '{"email": "a@b.c"}' })).json(),
  ]);
  assert.deepEqual(replies, [down, down, down.body]);
  assert.deepEqual(quiet, [], "a custom onError replaces the stderr line");
  assert.equal(reported.length, 3);
  for (const e of reported) {
    assert.ok(e instanceof KeyLeashError);
    assert.equal(typeof e.code, "string");
    assert.match(e.message, /does not exist/);
    assert.ok(!e.message.includes(k.key.slice(3, 20)), e.message);
  }
  await kl.close();
});

/** One request over the Unix socket `socketPath`: `{status, body, headers}`. */
function overSocket(socketPath, method, urlPath, { body, key, headers = {} } = {}) {
  const http = require("node:http");
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const h = { ...headers };
  if (data) Object.assign(h, { "content-type": "application/json", "content-length": data.length });
  if (key) h.authorization = `Bearer ${key}`;
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path: urlPath, headers: h }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () =>
        resolve({ status: res.statusCode, body: JSON.parse(Buffer.concat(chunks).toString()), headers: res.headers }),
      );
    });
    req.on("error", reject);
    req.end(data);
  });
}

/** The self-serve routes on a Unix socket in a fresh temporary folder: its path. */
async function serveOnSocket(t, kl, routeOptions) {
  const fs = require("node:fs");
  const os = require("node:os");
  const app = express();
  app.use(createAgentKeyRoutes(kl, routeOptions));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "keyleash-uds-"));
  const socketPath = path.join(dir, "app.sock");
  const server = await new Promise((resolve) => {
    const s = app.listen(socketPath, () => resolve(s));
  });
  t.after(
    () =>
      new Promise((resolve) =>
        server.close(() => {
          fs.rmSync(dir, { recursive: true, force: true });
          resolve();
        }),
      ),
  );
  return socketPath;
}

for (const store of STORES) {
  // Pins issue 21 (4): behind a Unix socket req.ip is unknown; those signups share
  // one bucket of the per-address limit (20 of 25 pass), instead of skipping it.
  test(`${store}: signups over a Unix socket share one rate limit`, async (t) => {
    const { kl } = await open(store);
    const socketPath = await serveOnSocket(t, kl, { requireEmailForSignup: false });
    const statuses = [];
    let last;
    for (let i = 0; i < 25; i++) {
      last = await overSocket(socketPath, "POST", "/signup", { body: {} });
      statuses.push(last.status);
    }
    assert.deepEqual(statuses, [...Array(20).fill(201), ...Array(5).fill(429)]);
    assert.equal(last.body.error, "rate_limited");
    assert.equal(last.headers["retry-after"], String(last.body.retryAfter));
  });

  // Pins issue 21 (10): a key revokes itself and its descendants, never its parent,
  // a sibling or another key of its account (404, as an unknown id).
  test(`${store}: DELETE /sdk-keys/:id revokes only the caller and its descendants`, async (t) => {
    const { kl } = await open(store);
    const call = await serve(t, kl);
    const root = await kl.create({ accountId: "acme" });
    const peer = await kl.create({ accountId: "acme" });
    const mint = async (key) => {
      const r = await call("POST", "/sdk-keys", { key, body: {} });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      return r.body;
    };
    const child = await mint(root.key);
    const sibling = await mint(root.key);
    const grandchild = await mint(child.key);
    const del = (key, id) => call("DELETE", `/sdk-keys/${id}`, { key });
    const notFound = { status: 404, body: { error: "not_found" } };
    assert.deepEqual(await del(child.key, root.id), notFound);
    assert.deepEqual(await del(child.key, sibling.id), notFound);
    assert.deepEqual(await del(child.key, peer.id), notFound);
    assert.deepEqual(await del(grandchild.key, child.id), notFound);
    for (const k of [root.key, peer.key, child.key, sibling.key]) assert.equal((await kl.validate(k)).valid, true);
    assert.deepEqual(await del(root.key, grandchild.id), { status: 200, body: { revoked: true } });
    assert.deepEqual(await del(sibling.key, sibling.id), { status: 200, body: { revoked: true } });
    assert.deepEqual(await del(root.key, child.id), { status: 200, body: { revoked: true } });
  });

  // Pins issue 21 (10): POST /sdk-keys is limited per calling key: 50 an hour by
  // default, then 429 rate_limited with Retry-After; another key is not affected.
  test(`${store}: POST /sdk-keys allows 50 children per key an hour by default`, async (t) => {
    const { kl } = await open(store);
    const call = await serve(t, kl);
    const p = await kl.create({ accountId: "acme" });
    const q = await kl.create({ accountId: "acme" });
    const statuses = [];
    let last;
    for (let i = 0; i < 51; i++) {
      last = await call("POST", "/sdk-keys", { key: p.key, body: {} });
      statuses.push(last.status);
    }
    assert.deepEqual(statuses, [...Array(50).fill(201), 429]);
    assert.equal(last.body.error, "rate_limited");
    assert.equal(last.body.retryAfter, 72);
    assert.equal(last.headers.get("retry-after"), "72");
    assert.equal((await call("POST", "/sdk-keys", { key: q.key, body: {} })).status, 201);
  });
}

// Pins the mintRateLimit option: a chosen limit counted per key tree, false for off,
// checked like the others.
test("mintRateLimit: a number limits, false turns it off, bad values are refused", async (t) => {
  const { kl } = await open("sqlite");
  const two = await serve(t, kl, { mintRateLimit: 2 });
  const p = await kl.create({ accountId: "acme" });
  const statuses = [];
  for (let i = 0; i < 3; i++) statuses.push((await two("POST", "/sdk-keys", { key: p.key, body: {} })).status);
  assert.deepEqual(statuses, [201, 201, 429]);
  // The allowance is the tree's: a child's mints count on its root key.
  const root = await kl.create({ accountId: "acme" });
  const child = (await two("POST", "/sdk-keys", { key: root.key, body: {} })).body;
  assert.equal((await two("POST", "/sdk-keys", { key: child.key, body: {} })).status, 201);
  assert.equal((await two("POST", "/sdk-keys", { key: child.key, body: {} })).status, 429);
  assert.equal((await two("POST", "/sdk-keys", { key: root.key, body: {} })).status, 429);
  const off = await serve(t, kl, { mintRateLimit: false });
  for (let i = 0; i < 60; i++) assert.equal((await off("POST", "/sdk-keys", { key: p.key, body: {} })).status, 201);
  for (const bad of [0, 1.5, -1, 1_000_001]) {
    assert.throws(() => createAgentKeyRoutes(kl, { mintRateLimit: bad }), /the mint rate limit must be/, String(bad));
  }
  assert.throws(() => createAgentKeyRoutes(kl, { mintRateLimit: true }), /mintRateLimit must be a number or false/);
  assert.throws(() => createAgentKeyRoutes(kl, { mintRateLimt: 3 }), /did you mean "mintRateLimit"/);
});

// Pins issue 21 (9): the raw bytes go to the core: a leading UTF-8 BOM is skipped, a
// charset other than UTF-8 is 415 unsupported_charset (Express no longer decodes it).
test("bodies: a UTF-8 BOM is skipped, a UTF-16 charset is 415", async (t) => {
  const { kl } = await open("sqlite");
  const call = await serve(t, kl, { requireEmailForSignup: false });
  const p = await kl.create({ accountId: "acme" });
  const bom = await call("POST", "/sdk-keys", { key: p.key, raw: '\ufeff{"name":"bom"}' });
  assert.equal(bom.status, 201, JSON.stringify(bom.body));
  const utf16 = await fetch(`${call.base}/signup`, {
    method: "POST",
    headers: { "content-type": "application/json; charset=utf-16le" },
    body: Buffer.from('{"name":"u16"}', "utf16le"),
  });
  assert.deepEqual(
    { status: utf16.status, body: await utf16.json() },
    {
      status: 415,
      body: {
        error: "unsupported_charset",
        message: 'request body: charset "utf-16le" is not supported; send JSON as UTF-8',
      },
    },
  );
});
