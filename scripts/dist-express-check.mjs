// Part of scripts/test-dist.sh: in a fresh npm project (argv[2]) that installed the
// packed tarballs, runs the npm README's Express example (quickstart.js) as a server
// on 127.0.0.1 and its plain example (plain.mjs), both on embedded SQLite, and checks
// what they answer over real HTTP and print.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";

const project = process.argv[2];

const port = await new Promise((resolve) => {
  const probe = net.createServer().listen(0, "127.0.0.1", () => {
    const { port } = probe.address();
    probe.close(() => resolve(port));
  });
});
const server = spawn(process.execPath, ["quickstart.js"], {
  cwd: project,
  env: { ...process.env, PORT: String(port), DATABASE_URL: `sqlite://${path.join(project, "quick.db")}` },
  stdio: ["ignore", "pipe", "inherit"],
});
try {
  await new Promise((resolve, reject) => {
    server.stdout.on("data", (chunk) => String(chunk).includes("listening") && resolve());
    server.on("exit", (code) => reject(new Error(`quickstart.js exited with ${code}`)));
    setTimeout(() => reject(new Error("quickstart.js did not listen within 20 s")), 20_000);
  });
  const call = async (url, key, body) => {
    const headers = { "content-type": "application/json" };
    if (key) headers.authorization = `Bearer ${key}`;
    const res = await fetch(`http://127.0.0.1:${port}${url}`, {
      method: "POST",
      headers,
      body: JSON.stringify(body ?? {}),
    });
    return { status: res.status, body: await res.json() };
  };
  const signup = await call("/signup", null, { email: "a@b.c" });
  assert.equal(signup.status, 201, JSON.stringify(signup));
  assert.deepEqual(await call("/chat", signup.body.key), {
    status: 200,
    body: { reply: "hello", budgetRemainingCents: 45 },
  });
  assert.equal((await call("/chat")).status, 401);
  console.log("  npm: the README's Express example served signup, a charged call (45 cents left) and a 401");
} finally {
  server.kill();
}

const plain = fs.readFileSync(path.join(project, "plain.mjs"), "utf8");
assert.match(plain, /"postgres:\/\/app@localhost\/app"/);
fs.writeFileSync(path.join(project, "plain.mjs"), plain.replace("postgres://app@localhost/app", "sqlite://plain.db"));
const printed = execFileSync(process.execPath, ["plain.mjs"], { cwd: project, encoding: "utf8" }).trim();
assert.equal(printed, "true 4999.58");
console.log(`  npm: the README's plain example printed '${printed}'`);
