// adminRouter's own part, on a real Express server on 127.0.0.1: who gets in, its
// options checked, and its body limit. The page itself is the core's (core/tests/
// admin.rs) and is driven in Chromium by test-browser/admin.test.js.

const test = require("node:test");
const assert = require("node:assert/strict");
const express = require("express");
const { adminRouter, KeyLeashError } = require("..");
const { open } = require("./helpers");

async function serve(t, router) {
  const app = express();
  app.use("/admin", router);
  app.use((err, _req, res, _next) => res.status(500).json({ error: String(err.message) }));
  const server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  t.after(() => server.close());
  return `http://127.0.0.1:${server.address().port}/admin`;
}

test("adminRouter: 401 with a Basic challenge unless authorize says true; its errors go to Express", async (t) => {
  const db = await open("sqlite");
  t.after(() => db.kl.close());
  for (const authorize of [undefined, () => false, async () => 1, async () => "yes"]) {
    const base = await serve(t, adminRouter(db.kl, authorize ? { authorize } : undefined));
    const res = await fetch(`${base}/`);
    assert.equal(res.status, 401, String(authorize));
    assert.match(res.headers.get("www-authenticate"), /^Basic realm="keyleash admin"/);
    assert.equal((await res.json()).error.code, "unauthorized");
  }
  const seen = [];
  const open_ = await serve(t, adminRouter(db.kl, { authorize: async (req) => seen.push(req.path) > 0 }));
  const page = await fetch(`${open_}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<title>keyleash admin<\/title>/);
  const redirect = await fetch(open_, { redirect: "manual" });
  assert.equal(redirect.status, 308);
  assert.equal(redirect.headers.get("location"), "/admin/");
  const big = await fetch(`${open_}/api/revoke`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "x".repeat(20_000),
  });
  assert.equal(big.status, 413);
  const failing = await serve(
    t,
    adminRouter(db.kl, {
      authorize: () => {
        throw new Error("directory down");
      },
    }),
  );
  const res = await fetch(`${failing}/`);
  assert.equal(res.status, 500);
  assert.equal((await res.json()).error, "directory down");
});

test("adminRouter: options are checked", async (t) => {
  const db = await open("sqlite");
  t.after(() => db.kl.close());
  for (const [opts, message] of [
    [{ authorise: () => true }, /unknown option "authorise"; did you mean "authorize"/],
    [{ authorize: true }, /authorize/],
  ]) {
    assert.throws(
      () => adminRouter(db.kl, opts),
      (e) => e instanceof KeyLeashError && e.code === "invalid_argument" && message.test(e.message),
    );
  }
  assert.throws(
    () => adminRouter({}, {}),
    (e) => e.code === "invalid_argument",
  );
});
