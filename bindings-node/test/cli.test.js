// `npx keyleash …`: the package's bin (cli.js) runs the core's command line in a
// real Node process, and what it prints is what the database holds.

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const os = require("node:os");
const { spawn, spawnSync } = require("node:child_process");
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

for (const store of STORES) {
  // Ctrl-C (SIGINT) ends an endless watch with status 0 within seconds, as it ends
  // the binary: the addon's runtime sees the signal although runCli holds the event loop.
  test(`cli.js on ${store}: SIGINT ends watch with status 0`, async () => {
    const db = await open(store, { manualClock: null });
    const child = spawn(
      process.execPath,
      [CLI, "--url", db.url, "--table", db.tableName, "watch", "--interval", "1s"],
      {
        env: { ...process.env, DATABASE_URL: "" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    let err = "";
    child.stderr.on("data", (d) => {
      err += d;
    });
    const ended = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no refresh: ${out} ${err}`)), 15_000);
      child.stdout.on("data", (d) => {
        out += d;
        if (out.includes("keyleash watch: spend in the last day")) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const sent = Date.now();
    child.kill("SIGINT");
    const timeout = new Promise((resolve) => setTimeout(() => resolve(null), 5_000).unref());
    const result = await Promise.race([ended, timeout]);
    if (result === null) child.kill("SIGKILL");
    assert.deepEqual(result, { code: 0, signal: null }, `still running 5 s after SIGINT: ${err}`);
    assert.ok(Date.now() - sent < 5_000);
    await db.kl.close();
  });
}

// A database URL typed where another value belongs is not echoed with its
// password: one typed line, status 2, the password nowhere in the output.
test("cli.js: a misplaced database URL's password is never printed", () => {
  const dir = require("node:fs").mkdtempSync(path.join(os.tmpdir(), "kl_cli_"));
  const sqlite = `sqlite://${path.join(dir, "k.db")}`;
  const url = "postgres://u:SECRET@host/db";
  const cases = [
    [url, "list", "--account", "a"],
    ["show", url],
    ["create", "--account", "a", "--budget-cents", url],
    ["--table", url, "list", "--account", "a"],
    ["usage", "1", "--from", url],
  ];
  for (const args of cases) {
    const r = spawnSync(process.execPath, [CLI, "--url", sqlite, ...args], {
      encoding: "utf8",
      cwd: dir,
      env: { ...process.env, DATABASE_URL: "" },
    });
    assert.equal(r.status, 2, `${args}: ${r.stderr}`);
    assert.match(r.stderr, /^keyleash: invalid_argument: /);
    assert.ok(!r.stderr.includes("SECRET") && !r.stdout.includes("SECRET"), r.stderr);
  }
  require("node:fs").rmSync(dir, { recursive: true, force: true });
});
