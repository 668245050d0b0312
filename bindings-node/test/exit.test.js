// The process exits by itself when the app is done: neither the tokio runtime
// nor an open pool keeps Node alive, on either store.

const test = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const path = require("node:path");
const { STORES, urlOf, unique } = require("./helpers");

for (const store of STORES) {
  test(`${store}: a script that never calls close() exits with 0 on its own`, () => {
    const script = `
      const { KeyLeash } = require(${JSON.stringify(path.join(__dirname, ".."))});
      (async () => {
        const kl = await KeyLeash.connect(process.env.URL, { tableName: process.env.TABLE });
        await kl.migrate();
        const k = await kl.create({ accountId: "a", budgetCents: 5 });
        await Promise.all([kl.validate(k.key), kl.trackUsage(k.key, { costCents: 1 })]);
        console.log("done");
      })();`;
    const started = Date.now();
    const r = spawnSync(process.execPath, ["-e", script], {
      env: { ...process.env, URL: urlOf(store), TABLE: unique("exit") },
      encoding: "utf8",
      timeout: 30_000,
    });
    assert.equal(r.signal, null, "killed: the process did not exit by itself");
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), "done");
    assert.ok(Date.now() - started < 20_000);
  });
}
