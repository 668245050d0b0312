// The cap holds under real parallel callers from JavaScript, checked in the database after.

const test = require("node:test");
const assert = require("node:assert/strict");
const { execFile } = require("node:child_process");
const path = require("node:path");
const { KeyLeash } = require("..");
const { STORES, open, counters, closePg } = require("./helpers");

test.after(closePg);

/** Runs `n` 1-cent charges of `key` from a separate Node process; resolves to its successes. */
function chargeFromProcess(url, tableName, key, n) {
  const script = `
    const { KeyLeash } = require(${JSON.stringify(path.join(__dirname, ".."))});
    (async () => {
      const kl = await KeyLeash.connect(process.env.URL, { tableName: process.env.TABLE });
      const rs = await Promise.all(Array.from({ length: ${n} }, () => kl.trackUsage(process.env.KEY, { costCents: 1 })));
      process.stdout.write(String(rs.filter((r) => r.success).length));
    })();`;
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ["-e", script],
      { env: { ...process.env, URL: url, TABLE: tableName, KEY: key } },
      (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve(Number(stdout))),
    );
  });
}

for (const store of STORES) {
  test(`${store}: Promise.all of 200 one-cent charges on a 100-cent key: exactly 100 succeed`, async () => {
    const db = await open(store);
    const k = await db.kl.create({ accountId: "a", budgetCents: 100 });
    const results = await Promise.all(Array.from({ length: 200 }, () => db.kl.trackUsage(k.key, { costCents: 1 })));
    assert.equal(results.filter((r) => r.success).length, 100);
    assert.ok(results.filter((r) => !r.success).every((r) => r.reason === "budget_exceeded"));
    assert.deepEqual(await counters(db, k.id), { used: 100_000_000, ledgerSum: 100_000_000, ledgerRows: 100 });
  });

  test(`${store}: two Node processes charging one key hold the cap together`, async () => {
    const db = await open(store);
    const k = await db.kl.create({ accountId: "a", budgetCents: 100 });
    const [a, b] = await Promise.all([
      chargeFromProcess(db.url, db.tableName, k.key, 80),
      chargeFromProcess(db.url, db.tableName, k.key, 80),
    ]);
    assert.equal(a + b, 100);
    assert.deepEqual(await counters(db, k.id), { used: 100_000_000, ledgerSum: 100_000_000, ledgerRows: 100 });
  });

  test(`${store}: fifty concurrent repeats of one idempotency key apply once`, async () => {
    const db = await open(store);
    const k = await db.kl.create({ accountId: "a", budgetCents: 100 });
    const other = await KeyLeash.connect(db.url, { tableName: db.tableName });
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        (i % 2 ? other : db.kl).trackUsage(k.key, { costCents: 3, idempotencyKey: "req-1" }),
      ),
    );
    assert.ok(results.every((r) => r.success && r.budgetUsedCents === 3));
    assert.deepEqual(await counters(db, k.id), { used: 3_000_000, ledgerSum: 3_000_000, ledgerRows: 1 });
    await other.close();
  });
}

for (const store of STORES) {
  test(`${store}: validates gathered in one turn of the event loop answer as sequential ones`, async () => {
    const db = await open(store);
    const live = await db.kl.create({ accountId: "a", budgetCents: 5 });
    const revoked = await db.kl.create({ accountId: "a" });
    await db.kl.revoke(revoked.id);
    const spent = await db.kl.create({ accountId: "a", budgetCents: 1 });
    await db.kl.trackUsage(spent.key, { costCents: 1 });
    const unknown = `${live.key.slice(0, -1)}${live.key.endsWith("A") ? "B" : "A"}`;
    const asked = Array.from({ length: 120 }, (_, i) => [live.key, revoked.key, spent.key, "ak_x", unknown][i % 5]);
    const together = await Promise.all(asked.map((k) => db.kl.validate(k)));
    for (let i = 0; i < asked.length; i++) assert.deepEqual(together[i], await db.kl.validate(asked[i]));
    assert.deepEqual(
      together.slice(0, 5).map((v) => v.reason ?? "valid"),
      ["valid", "revoked", "budget_exceeded", "invalid", "invalid"],
    );
  });
}
