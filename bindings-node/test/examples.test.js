// The Express example and the README's quickstart, run as real processes on
// embedded SQLite and driven over HTTP: signup, chat until the budget runs out.

const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { spawn } = require("node:child_process");
const { urlOf, pgUrl, pg, closePg, freePort } = require("./helpers");

test.after(closePg);

const EXAMPLE = path.join(__dirname, "..", "..", "examples", "express-app");

/** Starts `file` of the example folder; resolves to a `call(method, path, {key, body})` once it listens. */
async function start(t, file, url = urlOf("sqlite")) {
  const port = await freePort();
  const child = spawn(process.execPath, [file], {
    cwd: EXAMPLE,
    env: { ...process.env, PORT: String(port), DATABASE_URL: url },
    stdio: ["ignore", "pipe", "pipe"],
  });
  t.after(() => child.kill());
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  await new Promise((resolve, reject) => {
    child.stdout.on("data", (d) => String(d).includes("listening") && resolve());
    child.on("exit", (code) => reject(new Error(`${file} exited with ${code}: ${stderr}`)));
  });
  const call = async (method, p, { key, body, raw } = {}) => {
    const headers = { "content-type": "application/json" };
    if (key) headers.authorization = `Bearer ${key}`;
    const res = await fetch(`http://127.0.0.1:${port}${p}`, {
      method,
      headers,
      body: raw ?? (body && JSON.stringify(body)),
    });
    return { status: res.status, body: await res.json() };
  };
  call.stderr = () => stderr;
  return call;
}

test("examples/express-app: a signup key chats until its 50 cents a day run out", async (t) => {
  const call = await start(t, "server.js");
  const signup = await call("POST", "/signup", { body: { email: "agent@example.com" } });
  assert.equal(signup.status, 201);
  assert.deepEqual(signup.body.scopes, ["proxy.chat"]);
  assert.equal(signup.body.budgetCents, 50);
  const key = signup.body.key;
  assert.equal((await call("POST", "/v1/chat", { body: { prompt: "hi" } })).status, 401);
  // Each call costs 0.5 + 50 * 0.01 = 1 cent: exactly 50 fit, in parallel too.
  const prompt = "x".repeat(50);
  const answers = await Promise.all(
    Array.from({ length: 60 }, () => call("POST", "/v1/chat", { key, body: { prompt } })),
  );
  assert.equal(answers.filter((a) => a.status === 200).length, 50);
  assert.ok(answers.filter((a) => a.status !== 200).every((a) => a.status === 429));
  const me = await call("GET", "/sdk-keys/me", { key });
  assert.deepEqual(me, { status: 429, body: { error: "budget_exceeded" } });
});

test("the READMEs' Express quickstart is examples/express-app/quickstart.js and it works", async (t) => {
  const quickstart = fs.readFileSync(path.join(EXAMPLE, "quickstart.js"), "utf8");
  // The repository's README and the npm package's (scripts/test-dist.sh runs the latter
  // against the packed tarballs).
  for (const readme of [path.join(__dirname, "..", "..", "README.md"), path.join(__dirname, "..", "README.md")]) {
    assert.ok(
      fs.readFileSync(readme, "utf8").includes(quickstart),
      `${readme}'s Express example differs from quickstart.js`,
    );
  }
  assert.ok(quickstart.trim().split("\n").length <= 16);
  const call = await start(t, "quickstart.js");
  const { body } = await call("POST", "/signup", { body: { email: "a@b.c" } });
  const first = await call("POST", "/chat", { key: body.key });
  assert.deepEqual(first, { status: 200, body: { reply: "hello", budgetRemainingCents: 45 } });
  assert.equal((await call("POST", "/chat")).status, 401);
});

test("examples/express-app: chat bodies over 64 KiB are 413, nesting deeper than 32 is a bad body", async (t) => {
  const call = await start(t, "server.js");
  const { key } = (await call("POST", "/signup", { body: { email: "agent@example.com" } })).body;
  const chat = (raw) => call("POST", "/v1/chat", { key, raw });
  assert.deepEqual(await chat(JSON.stringify({ prompt: "x".repeat(70_000) })), {
    status: 413,
    body: { error: "payload_too_large", message: "request body is larger than 65536 bytes" },
  });
  // Exactly 65,536 bytes are read (and priced beyond the key's budget).
  const full = JSON.stringify({ prompt: "x".repeat(65_536 - '{"prompt":""}'.length) });
  assert.equal(Buffer.byteLength(full), 65_536);
  assert.equal((await chat(full)).status, 429);
  const nested = (depth) => `{"prompt": "hi", "x": ${"[".repeat(depth - 1)}${"]".repeat(depth - 1)}}`;
  assert.equal((await chat(nested(32))).status, 200);
  // Brackets inside strings do not count.
  assert.equal((await chat(JSON.stringify({ prompt: "[".repeat(100) }))).status, 200);
  assert.deepEqual(await chat(nested(33)), {
    status: 400,
    body: { error: "invalid_argument", message: 'the body must be JSON like {"prompt": "..."}' },
  });
  assert.equal((await chat("[".repeat(100_000))).status, 413);
  assert.equal((await chat("[".repeat(60_000))).status, 400);
  assert.equal((await call("GET", "/sdk-keys/me", { key })).body.budgetUsedCents, 2.02);
});

test("examples/express-app: a store failure is answered 500 and logged once, without the key", async (t) => {
  // The example's default table in the test Postgres, dropped under the running app.
  await pg("DROP TABLE IF EXISTS sdk_api_keys CASCADE");
  const call = await start(t, "server.js", pgUrl());
  const { key } = (await call("POST", "/signup", { body: { email: "agent@example.com" } })).body;
  await pg("DROP TABLE sdk_api_keys CASCADE");
  assert.deepEqual(await call("POST", "/v1/chat", { key, body: { prompt: "hi" } }), {
    status: 500,
    body: { error: "auth_unavailable" },
  });
  await new Promise((resolve) => setTimeout(resolve, 100));
  const lines = call.stderr().split("\n").filter(Boolean);
  assert.equal(lines.length, 1, call.stderr());
  assert.match(lines[0], /^keyleash: .*sdk_api_keys/);
  assert.ok(!lines[0].includes(key.slice(3, 20)));
});
