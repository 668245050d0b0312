// The bare Express row of `make bench`: the Express example's POST /v1/chat
// (examples/express-app/server.js) with no key check, so the table shows what keyleash
// adds to an Express route. The same body is read (at most 64 KiB as text, JSON
// nesting checked before parsing), the same pretend model prices the prompt, and the
// same JSON comes back, with a fixed budgetRemainingCents of the size the real route
// sends; the Authorization header wrk sends is ignored. No store is opened.
//
// Usage: PORT=3000 node bench/bare/express.mjs   (Express from examples/express-app)

import { createRequire } from "node:module";

const require = createRequire(new URL("../../examples/express-app/package.json", import.meta.url));
const express = require("express");

/** keyleash's MAX_BODY_BYTES (the example's body limit), without loading keyleash. */
const MAX_BODY_BYTES = 65536;
/** A remaining budget of the size the keyleash route answers with (a $1M key). */
const BUDGET_REMAINING_CENTS = 99999999.45;

/** The example's pretend model and price list: 0.5 cents per call plus 0.01 per character. */
function complete(prompt) {
  return { text: `echo: ${prompt}`, costCents: 0.5 + [...prompt].length * 0.01 };
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

const app = express();
app.set("trust proxy", false);
const chatBody = express.text({ type: () => true, limit: MAX_BODY_BYTES });
app.post("/v1/chat", chatBody, (req, res) => {
  const prompt = promptOf(typeof req.body === "string" ? req.body : "");
  if (prompt === undefined) {
    return res.status(400).json({ error: "invalid_argument", message: 'the body must be JSON like {"prompt": "..."}' });
  }
  const answer = complete(prompt);
  res.json({ completion: answer.text, costCents: answer.costCents, budgetRemainingCents: BUDGET_REMAINING_CENTS });
});
app.use((err, _req, res, _next) => {
  const status = err.type === "entity.too.large" ? 413 : 400;
  res.status(status).json({ error: status === 413 ? "payload_too_large" : "invalid_argument" });
});

const port = Number(process.env.PORT ?? 3000);
app.listen(port, "127.0.0.1", () => console.log(`bare Express listening on http://127.0.0.1:${port}`));
