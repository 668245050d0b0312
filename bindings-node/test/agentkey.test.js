// The agentkey drop-in: `new AgentKey({ pool })` with a real `pg` Pool, agentkey's
// methods and result shapes, and keys that agentkey itself minted into its table.

const test = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const { Pool } = require("pg");
const { AgentKey, KeyLeashError } = require("..");
const { pg, pgUrl, unique, closePg } = require("./helpers");

test.after(closePg);

/** A pg Pool built from separate settings (not a connection string), as apps often do. */
function poolFromParts() {
  const u = new URL(pgUrl());
  return new Pool({
    host: u.hostname,
    port: Number(u.port),
    user: decodeURIComponent(u.username),
    password: u.password ? decodeURIComponent(u.password) : undefined,
    database: u.pathname.slice(1),
    max: 4,
  });
}

test("AgentKey({ pool }) offers agentkey's methods and shapes", async () => {
  const pool = poolFromParts();
  const tableName = unique("ak");
  const ak = new AgentKey({ pool, tableName, validScopes: ["proxy.chat", "usage.read"] });
  await ak.migrate();
  const key = await ak.create({
    accountId: "acct_123",
    scopes: ["proxy.chat"],
    budgetCents: 5000,
    budgetPeriod: "month",
    expiresIn: "7d",
    delegatedBy: "user_456",
  });
  assert.deepEqual(Object.keys(key).sort(), ["budgetCents", "budgetPeriod", "expiresAt", "id", "key", "scopes"]);
  const result = await ak.validate(key.key);
  assert.equal(result.valid, true);
  assert.equal(result.budgetRemainingCents, 5000);
  assert.equal(result.delegatedBy, "user_456");
  assert.equal(ak.hasScope(result, "proxy.chat"), true);
  assert.equal(ak.hasScope(result, "billing.write"), false);
  assert.deepEqual(await ak.trackUsage(key.key, { costCents: 15 }), {
    success: true,
    budgetUsedCents: 15,
    budgetRemainingCents: 4985,
  });
  await ak.ensureSubject("m2m|1", { accountId: "acct_123", budgetCents: 3 });
  assert.equal((await ak.validateBySubject("m2m|1")).budgetCents, 3);
  assert.equal((await ak.trackUsageBySubject("m2m|1", { costCents: 4 })).reason, "budget_exceeded");
  assert.equal(await ak.revoke(key.id, "acct_123"), true);
  assert.deepEqual(await ak.validate(key.key), { valid: false, reason: "revoked" });
  await assert.rejects(
    ak.create({ accountId: "a", scopes: ["nope"] }),
    (e) => e instanceof KeyLeashError && e.code === "invalid_scope",
  );
  // What keyleash wrote is in the app's own Postgres, as agentkey's columns.
  const rows = await pool.query(`SELECT budget_used_cents, scopes FROM ${tableName} WHERE id = $1`, [key.id]);
  assert.deepEqual(rows.rows[0], { budget_used_cents: 15, scopes: ["proxy.chat"] });
  await ak.close();
  await pool.end();
});

test("keys agentkey minted into its own table keep validating and charging", async () => {
  const tableName = unique("legacy");
  // agentkey's table and one of its keys, exactly as agentkey writes them.
  await pg(`CREATE TABLE ${tableName} (id SERIAL PRIMARY KEY, account_id TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL, name TEXT NOT NULL DEFAULT 'default', created_at TIMESTAMPTZ DEFAULT NOW(),
    last_used_at TIMESTAMPTZ, revoked_at TIMESTAMPTZ, user_id TEXT, scopes TEXT[], budget_cents INTEGER,
    budget_used_cents INTEGER DEFAULT 0, budget_period TEXT, budget_reset_at TIMESTAMPTZ, expires_at TIMESTAMPTZ,
    delegated_by TEXT)`);
  const raw = `ak_${crypto.randomBytes(24).toString("hex")}`;
  const hash = crypto.createHash("sha256").update(raw).digest("hex");
  await pg(
    `INSERT INTO ${tableName} (account_id, key_hash, key_prefix, scopes, budget_cents, budget_used_cents)
     VALUES ('legacy', $1, $2, '{proxy.chat}', 100, 40)`,
    [hash, raw.slice(0, 11)],
  );
  const pool = new Pool({ connectionString: pgUrl(), max: 2 });
  const ak = new AgentKey({ pool, tableName });
  await ak.migrate();
  const v = await ak.validate(raw);
  assert.equal(v.valid, true);
  assert.equal(v.budgetUsedCents, 40);
  assert.equal(v.accountId, "legacy");
  assert.equal((await ak.trackUsage(raw, { costCents: 60 })).budgetRemainingCents, 0);
  assert.equal((await ak.trackUsage(raw, { costCents: 1 })).reason, "budget_exceeded");
  const [row] = await pg(`SELECT budget_used_cents FROM ${tableName} WHERE key_hash = $1`, [hash]);
  assert.equal(row.budget_used_cents, 100);
  await ak.close();
  await pool.end();
});

test("a pool that cannot be reached rejects with unavailable, never crashes", async () => {
  const pool = new Pool({ host: "127.0.0.1", port: 1, user: "x", password: "hunter2", database: "x" });
  const ak = new AgentKey({ pool, acquireTimeoutMs: 300 });
  await assert.rejects(ak.validate("ak_x"), (e) => {
    assert.equal(e.code, "unavailable");
    assert.ok(!e.message.includes("hunter2"));
    return true;
  });
  await assert.rejects(new AgentKey({}).migrate(), (e) => e.code === "invalid_argument");
  await pool.end();
});
