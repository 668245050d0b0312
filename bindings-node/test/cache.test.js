// The opt-in validation cache from JavaScript: options checked strictly, hits
// answered, and, on Postgres, a revoke made by another process reaching this
// process's cache through LISTEN/NOTIFY (the delay is measured and printed).

const test = require("node:test");
const assert = require("node:assert/strict");
const { spawn } = require("node:child_process");
const path = require("node:path");
const { createInterface } = require("node:readline");
const { KeyLeash } = require("..");
const { STORES, open, closePg } = require("./helpers");

test.after(closePg);

const now = () => performance.timeOrigin + performance.now();

test("cache options are checked like every other option", async () => {
  const bad = [
    [{ cache: { ttl_ms: 5 } }, /cache options: unknown option "ttl_ms"; did you mean "ttlMs"/],
    [{ cache: { size: 5 } }, /unknown option "size" \(known: ttlMs, maxEntries\)/],
    [{ cache: { ttlMs: 0 } }, /cache.ttlMs must be a whole number from 1 to 3600000/],
    [{ cache: { ttlMs: "5s" } }, /ttlMs must be a number/],
    [{ cache: { maxEntries: 0 } }, /cache.maxEntries must be a whole number from 1 to 1000000/],
    [{ cache: { maxEntries: 1.5 } }, /cache.maxEntries/],
    [{ cache: 5 }, /cache must be an object/],
    [{ cache: [] }, /cache must be an object/],
  ];
  for (const [options, message] of bad) {
    await assert.rejects(KeyLeash.connect("sqlite::memory:", options), (e) => {
      assert.equal(e.code, "invalid_argument");
      assert.match(e.message, message);
      return true;
    });
  }
  const off = await KeyLeash.connect("sqlite::memory:");
  assert.equal(off.cacheStats(), null);
});

for (const store of STORES) {
  test(`${store}: a cached valid answer is served until a revoke or an exhausted budget`, async () => {
    const db = await open(store, { cache: { ttlMs: 60_000, maxEntries: 50 } });
    const { kl } = db;
    while (!kl.cacheStats().listening) await new Promise((r) => setTimeout(r, 5));
    const k = await kl.create({ accountId: "a", budgetCents: 2 });
    const first = await kl.validate(k.key);
    assert.equal(first.valid, true);
    const again = await kl.validate(k.key);
    assert.deepEqual(again, first);
    assert.equal(kl.cacheStats().hits, 1);
    assert.equal(kl.cacheStats().entries, 1);
    // A charge that exhausts the key drops it from the cache at once.
    assert.equal((await kl.trackUsage(k.key, { costCents: 2 })).success, true);
    assert.deepEqual(await kl.validate(k.key), { valid: false, reason: "budget_exceeded" });
    const other = await kl.create({ accountId: "a" });
    assert.equal((await kl.validate(other.key)).valid, true);
    assert.equal(await kl.revoke(other.id), true);
    assert.deepEqual(await kl.validate(other.key), { valid: false, reason: "revoked" });
    assert.equal(kl.cacheStats().channel === null, store === "sqlite");
  });
}

for (const store of STORES) {
  // Pins one look per validate: a miss hashes the key and looks the cache up once,
  // so it counts one miss, and the next validate of that key counts one hit.
  test(`${store}: a validate that misses the cache counts one miss`, async () => {
    const db = await open(store, { cache: { ttlMs: 60_000, maxEntries: 50 } });
    const { kl } = db;
    while (!kl.cacheStats().listening) await new Promise((r) => setTimeout(r, 5));
    const k = await kl.create({ accountId: "a" });
    assert.equal((await kl.validate(k.key)).valid, true);
    assert.deepEqual([kl.cacheStats().hits, kl.cacheStats().misses], [0, 1]);
    assert.equal((await kl.validate(k.key)).valid, true);
    assert.deepEqual([kl.cacheStats().hits, kl.cacheStats().misses], [1, 1]);
  });

  // Pins that 50 validates at once with the cache on (repeated keys, a revoked and a
  // malformed one among them) each get the answer they would get alone.
  test(`${store}: concurrent validates with the cache on answer each`, async () => {
    const db = await open(store, { cache: { ttlMs: 60_000, maxEntries: 50 } });
    const { kl } = db;
    while (!kl.cacheStats().listening) await new Promise((r) => setTimeout(r, 5));
    const keys = [];
    for (let i = 0; i < 5; i++) keys.push(await kl.create({ accountId: "a" }));
    const gone = await kl.create({ accountId: "a" });
    assert.equal(await kl.revoke(gone.id), true);
    const asked = [...Array.from({ length: 48 }, (_, i) => keys[i % 5].key), gone.key, "not a key"];
    const answers = await Promise.all(asked.map((raw) => kl.validate(raw)));
    for (let i = 0; i < 48; i++) {
      assert.equal(answers[i].valid, true);
      assert.equal(answers[i].id, keys[i % 5].id);
    }
    assert.deepEqual(answers[48], { valid: false, reason: "revoked" });
    assert.deepEqual(answers[49], { valid: false, reason: "invalid" });
  });
}

/** A Node process that connects to `url` and revokes the key id named by each stdin line. */
function revoker(url, tableName) {
  const script = `
    const { KeyLeash } = require(${JSON.stringify(path.join(__dirname, ".."))});
    const { createInterface } = require("node:readline");
    (async () => {
      const kl = await KeyLeash.connect(process.env.URL, { tableName: process.env.TABLE });
      process.stdout.write("READY\\n");
      for await (const line of createInterface({ input: process.stdin })) {
        await kl.revoke(Number(line));
        process.stdout.write("REVOKED " + (performance.timeOrigin + performance.now()) + "\\n");
      }
      await kl.close();
    })();`;
  const child = spawn(process.execPath, ["-e", script], {
    env: { ...process.env, URL: url, TABLE: tableName },
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return { child, next: async () => (await lines.next()).value };
}

test("postgres: another process's revoke reaches this process's cache within milliseconds", async () => {
  const db = await open("postgres", { cache: { ttlMs: 3_600_000 } });
  const { kl } = db;
  while (!kl.cacheStats().listening) await new Promise((r) => setTimeout(r, 5));
  const { child, next } = revoker(db.url, db.tableName);
  assert.equal(await next(), "READY");
  const delays = [];
  for (let i = 0; i < 10; i++) {
    const k = await kl.create({ accountId: "a" });
    assert.equal((await kl.validate(k.key)).valid, true);
    assert.equal((await kl.validate(k.key)).valid, true, "served from the cache");
    child.stdin.write(`${k.id}\n`);
    const started = now();
    let seen;
    for (;;) {
      if ((await kl.validate(k.key)).valid === false) {
        seen = now();
        break;
      }
      assert.ok(now() - started < 10_000, "the revoke never reached the cache");
      await new Promise((r) => setImmediate(r));
    }
    const revokedAt = Number((await next()).split(" ")[1]);
    delays.push(Math.max(0, seen - revokedAt));
  }
  child.stdin.end();
  delays.sort((a, b) => a - b);
  console.log(
    `revocation delay across processes: median ${delays[5].toFixed(2)} ms, max ${delays[9].toFixed(2)} ms (10 revokes)`,
  );
  // The time to live is an hour: only the notification can have done this.
  assert.ok(delays[9] < 1000, `max delay ${delays[9]} ms`);
  assert.ok(kl.cacheStats().hits >= 10);
});
