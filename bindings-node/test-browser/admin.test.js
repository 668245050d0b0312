// The admin page as an operator uses it: each example (Express and FastAPI) runs
// as a real server with the page mounted at /admin, on SQLite and on Postgres;
// headless Chromium (Debian's package) logs in, searches, reads the keys table
// and the spend charts, and revokes a key through the page; the database is then
// read to check that exactly that key is revoked.
//
// Run by `make test-browser` (part of `make test`), which provides KEYLEASH_CHROMIUM
// (scripts/chromium.sh installs the package when missing), KEYLEASH_PYTHON (the
// virtualenv with the wheel) and DATABASE_URL. With KEYLEASH_SCREENSHOTS set, a
// screenshot of each run is saved there (`make screenshots` refreshes docs/images).

const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { spawn, execFileSync } = require("node:child_process");
const puppeteer = require("puppeteer-core");
const { KeyLeash } = require("..");
const { pg, closePg, freePort, urlOf } = require("../test/helpers");

const ROOT = path.join(__dirname, "..", "..");
const PASSWORD = "browser-test-password";
const CHROMIUM = process.env.KEYLEASH_CHROMIUM;
const PYTHON = process.env.KEYLEASH_PYTHON;
if (!CHROMIUM || !PYTHON) {
  throw new Error("KEYLEASH_CHROMIUM and KEYLEASH_PYTHON are not set: run `make test-browser`");
}

let browser;
test.before(async () => {
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root in CI containers: Chromium's sandbox needs user namespaces it may not have.
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
});
test.after(async () => {
  await browser?.close();
  await closePg();
});

const EXAMPLES = {
  express: { cmd: process.execPath, file: path.join(ROOT, "examples", "express-app", "server.js") },
  fastapi: { cmd: PYTHON, file: path.join(ROOT, "examples", "fastapi-app", "app.py") },
};

/** Starts an example on `url` with the admin password; resolves to its origin once it answers. */
async function startExample(t, name, url) {
  const port = await freePort();
  const { cmd, file } = EXAMPLES[name];
  const child = spawn(cmd, [file], {
    cwd: path.dirname(file),
    env: { ...process.env, PORT: String(port), DATABASE_URL: url, ADMIN_PASSWORD: PASSWORD },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (d) => {
    output += d;
  });
  child.stderr.on("data", (d) => {
    output += d;
  });
  t.after(() => child.kill());
  const origin = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}: ${output}`);
    try {
      await fetch(`${origin}/admin/`);
      return origin;
    } catch {
      if (i > 300) throw new Error(`${name} did not listen: ${output}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** One SQL query's rows on the store of `url` (Postgres through pg, SQLite through Python's sqlite3). */
async function query(url, sql) {
  if (url.startsWith("postgres")) return pg(sql);
  const script =
    "import json,sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nc.row_factory=sqlite3.Row\n" +
    "print(json.dumps([dict(r) for r in c.execute(sys.argv[2])]))";
  return JSON.parse(execFileSync(PYTHON, ["-c", script, url.slice("sqlite://".length), sql], { encoding: "utf8" }));
}

/** An account with a ceiling, three keys, charges and a hold, made through the library. */
async function seed(url, account) {
  const kl = await KeyLeash.connect(url);
  await kl.migrate();
  const capped = await kl.create({ accountId: account, name: "agent", budgetCents: 500, budgetPeriod: "month" });
  const open = await kl.create({ accountId: account, name: "ci" });
  const spare = await kl.create({ accountId: account, name: "spare", budgetCents: 100 });
  await kl.setAccountBudget(account, { budgetCents: 1000, budgetPeriod: "month" });
  assert.equal((await kl.trackUsage(capped.key, { costCents: 120.5 })).success, true);
  assert.equal((await kl.trackUsage(open.key, { costCents: 5.25 })).success, true);
  const hold = await kl.reserve(capped.key, { costCents: 30 });
  assert.equal(hold.success, true);
  await kl.close();
  return { capped, open, spare };
}

/** Saves a screenshot into KEYLEASH_SCREENSHOTS, when set (`make screenshots`). */
async function screenshot(page, file) {
  const dir = process.env.KEYLEASH_SCREENSHOTS;
  if (!dir) return;
  fs.mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: path.join(dir, file) });
}

const micros = (v) => Math.round(Number(v) * 1e6);

async function expectCents(page, selector, cents) {
  const value = await page.$eval(selector, (el) => el.getAttribute("data-cents"));
  assert.equal(micros(value), micros(cents), `${selector}: ${value}`);
}

for (const name of Object.keys(EXAMPLES)) {
  for (const store of ["sqlite", "postgres"]) {
    test(`admin page of examples/${name}-app on ${store}: numbers, charts and a revoke in Chromium`, async (t) => {
      const url = urlOf(store);
      const account = `acct-${name}-${store}-${process.pid}-${Date.now()}`;
      const origin = await startExample(t, name, url);
      const keys = await seed(url, account);

      // Without the password nothing is served; the files are the core's, byte for byte.
      const refused = await fetch(`${origin}/admin/`);
      assert.equal(refused.status, 401);
      assert.match(refused.headers.get("www-authenticate") ?? "", /^Basic /);
      const auth = { authorization: `Basic ${Buffer.from(`admin:${PASSWORD}`).toString("base64")}` };
      for (const file of ["admin.js", "admin.css", "index.html"]) {
        const res = await fetch(`${origin}/admin/${file === "index.html" ? "" : file}`, { headers: auth });
        assert.equal(res.status, 200, file);
        assert.deepEqual(Buffer.from(await res.arrayBuffer()), fs.readFileSync(path.join(ROOT, "core", "admin", file)));
      }

      const page = await browser.newPage();
      t.after(() => page.close());
      const problems = [];
      page.on("console", (m) => m.type() === "error" && problems.push(m.text()));
      page.on("pageerror", (e) => problems.push(String(e)));
      await page.setViewport({ width: 1280, height: 900 });
      await page.authenticate({ username: "admin", password: PASSWORD });
      await page.goto(`${origin}/admin`, { waitUntil: "networkidle0" });
      assert.equal(new URL(page.url()).pathname, "/admin/", "redirected to the slash");

      // Search for the account, then read its ceiling and keys.
      await page.type("#q", account);
      // The search waits for a pause in typing (250 ms): let the last one land and
      // render before holding on to any element of the list.
      await page.waitForNetworkIdle({ idleTime: 600 });
      const section = `section.account[data-account="${account}"]`;
      await page.waitForSelector(section);
      await page.waitForFunction((n) => document.querySelectorAll("section.account").length === n, {}, 1);
      const row = (key) => `${section} tr.key[data-key-id="${key.id}"]`;
      const db = await query(
        url,
        `SELECT id, budget_used_micros FROM sdk_api_keys WHERE account_id = '${account}' ORDER BY id`,
      );
      assert.equal(db.length, 3);
      for (const r of db)
        await expectCents(
          page,
          `${section} tr.key[data-key-id="${r.id}"] [data-col=used]`,
          Number(r.budget_used_micros) / 1e6,
        );
      await expectCents(page, `${row(keys.capped)} [data-col=budget]`, 500);
      await expectCents(page, `${row(keys.capped)} [data-col=held]`, 30);
      await expectCents(page, `${row(keys.capped)} [data-col=remaining]`, 500 - 120.5 - 30);
      const ceilingUsed = await query(
        url,
        `SELECT budget_used_micros FROM sdk_api_keys_accounts WHERE account_id = '${account}'`,
      );
      await expectCents(page, `${section} .ceiling [data-col=used]`, Number(ceilingUsed[0].budget_used_micros) / 1e6);
      await expectCents(page, `${section} .ceiling [data-col=used]`, 125.75);
      const text = await page.$eval("body", (b) => b.textContent);
      for (const k of Object.values(keys)) assert.ok(!text.includes(k.key), "no raw key on the page");
      const html = await page.content();
      for (const r of await query(url, `SELECT key_hash FROM sdk_api_keys WHERE account_id = '${account}'`)) {
        assert.ok(!html.includes(r.key_hash), "no hash on the page");
      }

      // The key's chart: 30 days, today's bar is what the ledger holds for today.
      const today = new Date().toISOString().slice(0, 10);
      await page.click(`${row(keys.capped)} button.chart`);
      await page.waitForFunction(() => document.querySelectorAll("#chart rect.bar").length === 30);
      const bars = await page.$$eval("#chart rect.bar", (rs) =>
        rs.map((r) => [r.getAttribute("data-day"), Number(r.getAttribute("data-cents"))]),
      );
      assert.equal(bars.at(-1)[0], today);
      const ledger = await query(
        url,
        `SELECT SUM(amount_micros) AS s FROM sdk_api_keys_ledger WHERE key_id = ${keys.capped.id}`,
      );
      assert.equal(micros(bars.at(-1)[1]), Number(ledger[0].s));
      assert.equal(
        bars.slice(0, -1).reduce((a, [, c]) => a + c, 0),
        0,
      );
      await expectCents(page, "#chart .total", 120.5);
      // The account's chart adds up all its keys.
      await page.click(`${section} button.account-chart`);
      await page.waitForFunction(
        (c) => document.querySelector("#chart .total")?.getAttribute("data-cents") === c,
        {},
        "125.75",
      );
      if (store === "postgres") await screenshot(page, `admin-${name}.png`);

      // Revoke the spare key through the confirmation; only it is revoked in the database.
      await page.click(`${row(keys.spare)} button.revoke`);
      await page.waitForSelector("button.confirm-revoke");
      if (store === "postgres") await screenshot(page, `admin-${name}-revoke.png`);
      await page.click("button.confirm-revoke");
      await page.waitForFunction(
        (sel) => document.querySelector(sel)?.getAttribute("data-status") === "revoked",
        {},
        `${row(keys.spare)} [data-col=status]`,
      );
      const revoked = await query(
        url,
        `SELECT id FROM sdk_api_keys WHERE account_id = '${account}' AND revoked_at IS NOT NULL`,
      );
      assert.deepEqual(
        revoked.map((r) => Number(r.id)),
        [keys.spare.id],
      );
      assert.deepEqual(problems, [], "no console errors");
    });
  }
}
