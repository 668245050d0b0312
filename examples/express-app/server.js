// An "LLM proxy" protected by keyleash, on embedded SQLite by default. Its twin,
// examples/fastapi-app/app.py, answers every request with the same status and JSON
// (bindings-python/tests/test_http_parity.py checks it).
//
//   POST /signup              an agent gets a key: scope proxy.chat, 50 cents a day
//   POST /v1/chat             {"prompt": "..."} with Authorization: Bearer <key>;
//                             priced per character, charged after the "model" answers;
//                             an Idempotency-Key header names the call: a repeat is
//                             409 idempotency_replayed (never a second answer), the
//                             same key for another prompt cost or a stream 422
//   POST /v1/chat/stream      the same, streamed word by word: 5 cents held first,
//                             0.25 cents per word settled at the end (or at a disconnect)
//   GET  /sdk-keys/me         the key's budget and scopes
//   POST /sdk-keys            mint a narrower child key that draws on this one
//   DELETE /sdk-keys/:id      revoke a key of your own account
//   GET  /admin/              the operators' admin page: HTTP Basic, user "admin",
//                             password ADMIN_PASSWORD (unset: the page stays shut)
//
// Run: make express-app   (or: npm install && node server.js, in this folder)
// Env: DATABASE_URL (default sqlite://keyleash-express.db), PORT (default 3000),
// SOCKET (a path: listen on that Unix socket instead of 127.0.0.1:PORT),
// ADMIN_PASSWORD (opens /admin/),
// CHUNK_DELAY_MS (the streamed model's pause before each word, default 50).

const { timingSafeEqual } = require("node:crypto");
const { setTimeout: sleep } = require("node:timers/promises");
const express = require("express");
const {
  KeyLeash,
  MAX_BODY_BYTES,
  adminRouter,
  agentKeyMiddleware,
  createAgentKeyRoutes,
  payloadTooLarge,
  spendRefused,
  storeFailed,
  streamWithHold,
} = require("keyleash");

/** A pretend model and price list: 0.5 cents per call plus 0.01 cents per character. */
function complete(prompt) {
  return { text: `echo: ${prompt}`, costCents: 0.5 + [...prompt].length * 0.01 };
}

/** Whether an Authorization header is HTTP Basic for "admin" with ADMIN_PASSWORD. */
function isAdmin(header) {
  const password = process.env.ADMIN_PASSWORD;
  if (!password || typeof header !== "string" || !header.startsWith("Basic ")) return false;
  const given = Buffer.from(header.slice(6), "base64");
  const expected = Buffer.from(`admin:${password}`);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** The most words a streamed answer has, and the price of each: the hold is their product. */
const MAX_CHUNKS = 20;
const CHUNK_CENTS = 0.25;
const CHUNK_DELAY_MS = Number(process.env.CHUNK_DELAY_MS ?? 50);

/**
 * A pretend streaming model: the words of `echo: <prompt>` (at most MAX_CHUNKS), one
 * chunk each after a pause, each priced CHUNK_CENTS as it goes out. A prompt starting
 * with `!fail` fails before the first word, as an unreachable upstream would.
 */
async function* streamCompletion(prompt, spend) {
  if (prompt.startsWith("!fail")) throw new Error("the model is unreachable");
  const words = `echo: ${prompt}`.split(/\s+/).filter(Boolean).slice(0, MAX_CHUNKS);
  for (const word of words) {
    await sleep(CHUNK_DELAY_MS, undefined, { signal: spend.signal }); // cut short when the client leaves
    spend.add(CHUNK_CENTS);
    yield `${word} `;
  }
}

/** The deepest nesting of `[` and `{` in JSON text, not counting those inside strings. */
function nesting(raw) {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "[" || c === "{") deepest = Math.max(deepest, ++depth);
    else if (c === "]" || c === "}") depth--;
  }
  return deepest;
}

/** The prompt of a JSON body `{"prompt": "..."}`, or undefined (also for nesting deeper than 32). */
function promptOf(raw) {
  if (nesting(raw) > 32) return undefined;
  try {
    const body = JSON.parse(raw);
    return typeof body?.prompt === "string" ? body.prompt : undefined;
  } catch {
    return undefined;
  }
}

async function main() {
  const kl = await KeyLeash.connect(process.env.DATABASE_URL ?? "sqlite://keyleash-express.db");
  await kl.migrate();

  const app = express();
  // The signup limit counts the connection's address (req.ip): "trust proxy" stays
  // off, so X-Forwarded-For is ignored, as in the FastAPI example. Behind a proxy of
  // your own, name it: app.set("trust proxy", "<the proxy's address>").
  app.set("trust proxy", false);
  app.use(createAgentKeyRoutes(kl, { signupScopes: ["proxy.chat"], signupBudgetCents: 50, signupBudgetPeriod: "day" }));
  app.use("/admin", adminRouter(kl, { authorize: (req) => isAdmin(req.headers.authorization) }));
  // At most MAX_BODY_BYTES of body are read; more is answered 413 (below).
  const chatBody = express.text({ type: () => true, limit: MAX_BODY_BYTES });
  app.post("/v1/chat", agentKeyMiddleware(kl, { scope: "proxy.chat" }), chatBody, async (req, res) => {
    const prompt = promptOf(typeof req.body === "string" ? req.body : "");
    if (prompt === undefined) {
      return res
        .status(400)
        .json({ error: "invalid_argument", message: 'the body must be JSON like {"prompt": "..."}' });
    }
    const answer = complete(prompt);
    let charge;
    try {
      // The key the middleware authenticated, charged without parsing the header again.
      charge = await req.agentKey.charge(answer.costCents, { idempotencyKey: req.get("idempotency-key") });
    } catch (e) {
      // The library's answer: 500 auth_unavailable, the error reported once on
      // stderr (its message never holds a key).
      const r = storeFailed(e);
      return res.status(r.status).json(r.body);
    }
    if (!charge.success || charge.replayed) {
      // The library's answer when the charge serves no completion: the
      // Idempotency-Key was already charged for one (409: the first answer is not
      // stored to repeat) or used for another request (422: another cost, or a
      // stream); or budget_exceeded or rate_limited (429, with Retry-After), or the
      // key was revoked or expired since the middleware checked it (401).
      const r = spendRefused(charge);
      return res.status(r.status).set(r.headers).json(r.body);
    }
    res.json({
      completion: answer.text,
      costCents: answer.costCents,
      budgetRemainingCents: charge.budgetRemainingCents,
    });
  });

  // The same answer streamed: the most it can cost is held before the model starts,
  // what the words sent cost is settled when the stream ends or the client leaves,
  // and the hold is released when the model fails before its first word.
  app.post("/v1/chat/stream", agentKeyMiddleware(kl, { scope: "proxy.chat" }), chatBody, async (req, res) => {
    const prompt = promptOf(typeof req.body === "string" ? req.body : "");
    if (prompt === undefined) {
      return res
        .status(400)
        .json({ error: "invalid_argument", message: 'the body must be JSON like {"prompt": "..."}' });
    }
    try {
      await streamWithHold(
        req,
        res,
        { estimateCents: MAX_CHUNKS * CHUNK_CENTS, ttl: "2m", idempotencyKey: req.get("idempotency-key") },
        (spend) => streamCompletion(prompt, spend),
      );
    } catch (e) {
      console.error(`the model failed: ${e.message}`);
      if (!res.headersSent) res.status(502).json({ error: "upstream_failed" });
    }
  });

  // A chat body too large to read is 413 with the core's JSON; any other unreadable
  // body is a bad body.
  app.use((err, _req, res, _next) => {
    if (err.type === "entity.too.large") {
      const r = payloadTooLarge();
      return res.status(r.status).json(r.body);
    }
    res.status(400).json({ error: "invalid_argument", message: 'the body must be JSON like {"prompt": "..."}' });
  });

  const socketPath = process.env.SOCKET;
  if (socketPath) {
    // Behind a Unix socket req.ip is unknown: every signup counts against one bucket.
    app.listen(socketPath, () => console.log(`listening on ${socketPath}`));
  } else {
    const port = Number(process.env.PORT ?? 3000);
    app.listen(port, "127.0.0.1", () => console.log(`listening on http://127.0.0.1:${port}`));
  }
}

main().catch((e) => {
  console.error(`keyleash example failed to start: ${e.code ?? ""} ${e.message}`);
  process.exit(1);
});
