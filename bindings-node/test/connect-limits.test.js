// Pool sizes and timeouts out of range are refused with `invalid_argument` and the
// core's message; they used to abort the process (poolSize -1), wrap around
// (acquireTimeoutMs -5) or be bent into range (statementTimeoutMs 0 → 1 ms). Each
// value runs in its own child process, so a crash fails one test instead of
// killing the test runner.

const test = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const path = require("node:path");
const { urlOf } = require("./helpers");

/** Connects in a child process with `options` (JSON, plus NaN/Infinity); the child's outcome. */
function connectInChild(options) {
  const script = `
    const { KeyLeash } = require(${JSON.stringify(path.join(__dirname, ".."))});
    const options = JSON.parse(process.env.OPTIONS, (_k, v) => (v === "NaN" ? NaN : v === "Infinity" ? Infinity : v));
    KeyLeash.connect(process.env.URL, options).then(
      async (kl) => { await kl.close(); console.log(JSON.stringify({ ok: true })); },
      (e) => console.log(JSON.stringify({ code: e.code, message: e.message })),
    );`;
  const r = spawnSync(process.execPath, ["-e", script], {
    env: { ...process.env, URL: urlOf("sqlite"), OPTIONS: JSON.stringify(options) },
    encoding: "utf8",
    timeout: 30_000,
  });
  assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
  assert.equal(r.status, 0, `the process died: ${r.stderr}`);
  return JSON.parse(r.stdout.trim());
}

const REFUSED = [
  ["poolSize", -1],
  ["poolSize", 0],
  ["poolSize", 1.5],
  ["poolSize", 1001],
  ["poolSize", 2147483648],
  ["poolSize", 1e10],
  ["poolSize", "NaN"],
  ["acquireTimeoutMs", -5],
  ["acquireTimeoutMs", 0],
  ["acquireTimeoutMs", 600_001],
  ["acquireTimeoutMs", "Infinity"],
  ["statementTimeoutMs", 0],
  ["statementTimeoutMs", -1],
  ["statementTimeoutMs", 86_400_001],
  ["statementTimeoutMs", 2 ** 32 + 5],
];

for (const [field, value] of REFUSED) {
  test(`connect refuses ${field}: ${value} without crashing`, () => {
    const r = connectInChild({ [field]: value });
    assert.equal(r.code, "invalid_argument", JSON.stringify(r));
    assert.match(r.message, new RegExp(`\\b${field} must be `), r.message);
  });
}

test("connect accepts the limits themselves", () => {
  assert.deepEqual(connectInChild({ poolSize: 1 }), { ok: true });
  assert.deepEqual(connectInChild({ poolSize: 1000, acquireTimeoutMs: 600_000, statementTimeoutMs: 86_400_000 }), {
    ok: true,
  });
});
