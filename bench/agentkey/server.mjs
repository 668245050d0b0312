// agentkey's side of the HTTP rows of `make bench` (only with BENCH_AGENTKEY): the
// Express example's POST /v1/chat built on agentkey itself, as a user of agentkey
// writes it: its agentKeyMiddleware, then trackUsage of the request's key. Same
// body handling and response shape as examples/express-app/server.js, so the two
// servers differ only in the library. agentkey keeps whole cents: 1 cent a request.
//
// Usage: node bench/agentkey/server.mjs AGENTKEY_DIST  (env DATABASE_URL, PORT)
//   AGENTKEY_DIST  agentkey's compiled dist/ folder (bench/prepare.sh builds it)

import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import path from "node:path";

const dist = path.resolve(process.argv[2]);
const require = createRequire(path.join(dist, "..", "package.json"));
const express = require("express");
const pg = require("pg");
const { AgentKey, agentKeyMiddleware } = await import(pathToFileURL(path.join(dist, "index.js")).href);

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
const ak = new AgentKey({ pool });
const app = express();
const chatBody = express.text({ type: () => true, limit: 65536 });
app.post("/v1/chat", agentKeyMiddleware(ak, { scope: "proxy.chat" }), chatBody, async (req, res) => {
  let prompt;
  try {
    prompt = JSON.parse(req.body).prompt;
  } catch {
    return res.status(400).json({ error: "invalid_argument" });
  }
  if (typeof prompt !== "string") return res.status(400).json({ error: "invalid_argument" });
  const rawKey = req.headers.authorization.slice(7);
  const charge = await ak.trackUsage(rawKey, { costCents: 1 });
  if (!charge.success) return res.status(charge.reason === "budget_exceeded" ? 429 : 401).json({ error: charge.reason });
  res.json({ reply: `echo: ${prompt}`, costCents: 1, budgetRemainingCents: charge.budgetRemainingCents });
});
app.listen(Number(process.env.PORT), "127.0.0.1", () => console.log("listening"));
