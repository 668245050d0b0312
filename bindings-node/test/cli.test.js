// `npx keyleash …`: the package's bin (cli.js) runs the core's command line in a
// real Node process, and what it prints is what the database holds.

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const { spawnSync } = require("node:child_process");
const { STORES, open, pg, closePg } = require("./helpers");

test.after(closePg);

const CLI = path.join(__dirname, "..", "cli.js");

function keyleash(db, ...args) {
  const r = spawnSync(process.execPath, [CLI, "--url", db.url, "--table", db.tableName, ...args], {
    encoding: "utf8",
    env: { ...process.env, DATABASE_URL: "" },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

for (const store of STORES) {
  test(`cli.js on ${store}: list --json and the table show the database's keys; errors are one typed line`, async () => {
    const db = await open(store, { manualClock: null });
    const k = await db.kl.create({ accountId: "ops", budgetCents: 250, name: "bot" });
    assert.equal((await db.kl.trackUsage(k.key, { costCents: 12.5 })).success, true);

    const json = keyleash(db, "--json", "list", "--account", "ops");
    assert.equal(json.status, 0, json.stderr);
    const listed = JSON.parse(json.stdout);
    assert.equal(listed.length, 1);
    assert.equal(listed[0].id, k.id);
    assert.equal(listed[0].budgetUsedCents, 12.5);
    assert.ok(!json.stdout.includes(k.key), "no raw key");
    if (store === "postgres") {
      const [row] = await pg(`SELECT budget_used_micros FROM ${db.tableName} WHERE id = $1`, [k.id]);
      assert.equal(Number(row.budget_used_micros), 12_500_000);
    }

    const table = keyleash(db, "show", String(k.id));
    assert.equal(table.status, 0, table.stderr);
    assert.match(table.stdout, /^status\s+active$/m);
    assert.match(table.stdout, /^used\s+12\.50$/m);

    const created = keyleash(db, "--json", "create", "--account", "ops", "--budget-cents", "5");
    assert.equal(created.status, 0, created.stderr);
    const raw = JSON.parse(created.stdout).key;
    assert.equal((await db.kl.validate(raw)).valid, true, "the printed key is a live key");

    const bad = keyleash(db, "create", "--account", "ops", "--budget-period", "daily", "--budget-cents", "5");
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /^keyleash: invalid_argument: /);
    assert.equal(bad.stderr.trim().split("\n").length, 1);
    await db.kl.close();
  });
}
