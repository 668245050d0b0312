// The store going away: Postgres is stopped under a live app, calls reject with
// `unavailable` in bounded time, the middleware answers 500, and the same
// instance recovers by itself once Postgres is back.

const test = require("node:test");
const assert = require("node:assert/strict");
const { execSync } = require("node:child_process");
const express = require("express");
const { KeyLeash, agentKeyMiddleware } = require("..");
const { open, capturingStderr } = require("./helpers");

function cluster(action) {
  const cmd = process.env[action === "stop" ? "KEYLEASH_PG_STOP" : "KEYLEASH_PG_START"];
  if (!cmd) throw new Error("KEYLEASH_PG_STOP/START are not set: run under scripts/with-postgres.sh (make test)");
  execSync(cmd, { stdio: "ignore", shell: "/bin/sh" });
}

test("postgres stopped and restarted under a live Express app", async (t) => {
  const { kl } = await open("postgres", { acquireTimeoutMs: 1000, statementTimeoutMs: 2000 });
  const k = await kl.create({ accountId: "a", budgetCents: 10 });
  const app = express();
  app.get("/x", agentKeyMiddleware(kl), (req, res) => res.json({ ok: req.agentKey.id }));
  const server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const get = async () => {
    const res = await fetch(`http://127.0.0.1:${server.address().port}/x`, {
      headers: { authorization: `Bearer ${k.key}` },
    });
    return { status: res.status, body: await res.json() };
  };
  assert.deepEqual(await get(), { status: 200, body: { ok: k.id } });

  cluster("stop");
  try {
    const started = Date.now();
    await assert.rejects(kl.trackUsage(k.key, { costCents: 1 }), (e) => e.code === "unavailable");
    await assert.rejects(kl.validate(k.key), (e) => e.code === "unavailable");
    await assert.rejects(
      KeyLeash.connect(process.env.DATABASE_URL, { acquireTimeoutMs: 500 }),
      (e) => e.code === "unavailable",
    );
    // Answered 500 and reported once on stderr (the default onError), without the key.
    const [down, lines] = await capturingStderr(get);
    assert.deepEqual(down, { status: 500, body: { error: "auth_unavailable" } });
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0], /^keyleash: the key store failed/);
    assert.ok(!lines[0].includes(k.key.slice(3, 20)), lines[0]);
    assert.ok(Date.now() - started < 15_000, "failures must be bounded in time");
  } finally {
    cluster("start");
  }
  // The same instance and the same app recover without a restart.
  let recovered;
  for (let i = 0; i < 50 && recovered?.status !== 200; i++) {
    recovered = await get();
    if (recovered.status !== 200) await new Promise((r) => setTimeout(r, 200));
  }
  assert.deepEqual(recovered, { status: 200, body: { ok: k.id } });
  assert.equal((await kl.trackUsage(k.key, { costCents: 1 })).budgetUsedCents, 1);
});
