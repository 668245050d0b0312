// The self-serve routes as an Express Router (signup, me, mint, revoke): each
// request's raw body goes to the core's HTTP rules, which answer it; and their body
// limit, MAX_BODY_BYTES, with the core's answer past it.

const native = require("./addon.js");
const { callSync } = require("./errors.js");
const { strict } = require("./options.js");
const { logError, answer } = require("./outage.js");

/** The largest request body the self-serve routes read (the core's limit): 65,536 bytes. */
const MAX_BODY_BYTES = native.MAX_BODY_BYTES;

/** The core's answer to a body over MAX_BODY_BYTES: `{status: 413, body}`. */
function payloadTooLarge() {
  return native.payloadTooLarge();
}

/**
 * The self-serve routes as an Express Router: `POST /signup`, `GET /sdk-keys/me`,
 * `POST /sdk-keys`, `DELETE /sdk-keys/:id`. Options: `signupScopes`,
 * `requireEmailForSignup` (default true), `signupExpiresIn` (default "24h"),
 * `signupBudgetCents`, `signupBudgetPeriod`, `signupRateLimit` (signups per
 * client address per hour, default 20; false disables), `signupRateLimitPerDomain`
 * (per email domain per hour; default none), `onError(err)` (as for the
 * middleware). The client address is `req.ip` (set Express's `trust proxy` behind
 * a proxy). Bodies over MAX_BODY_BYTES are answered 413.
 */
function createAgentKeyRoutes(kl, opts) {
  const express = require("express");
  const { onError = logError, ...routeOptions } = strict(opts, "createAgentKeyRoutes");
  callSync(() => native.checkRouteOptions(routeOptions));
  const router = express.Router();
  // The raw bytes go to the core, which decodes and parses them (charset, BOM,
  // UTF-8), so both packages answer every body identically. A body an app-level
  // parser already read is reused.
  const rawBody = express.raw({ type: () => true, limit: MAX_BODY_BYTES });
  const handle = (route) => async (req, res) => {
    const b = req.body;
    const body = Buffer.isBuffer(b) || typeof b === "string" ? b : b ? JSON.stringify(b) : "";
    const pending = kl.selfServe(
      route,
      req.params.id ?? null,
      req.headers.authorization ?? null,
      body,
      // Unknown behind a Unix socket: the core counts those signups together.
      req.ip ?? null,
      routeOptions,
      req.headers["content-type"] ?? null,
    );
    const r = await answer(pending, onError);
    if (r.retryAfter !== undefined && r.retryAfter !== null) res.set("Retry-After", String(r.retryAfter));
    res.status(r.status).json(r.body);
  };
  router.post("/signup", rawBody, handle("signup"));
  router.get("/sdk-keys/me", handle("me"));
  router.post("/sdk-keys", rawBody, handle("mint"));
  router.delete("/sdk-keys/:id", handle("revoke"));
  router.use((err, _req, res, _next) => {
    const r = err.type === "entity.too.large" ? payloadTooLarge() : null;
    if (r) return res.status(r.status).json(r.body);
    res.status(400).json({ error: "invalid_argument", message: "request body: could not be read" });
  });
  return router;
}

module.exports = { createAgentKeyRoutes, MAX_BODY_BYTES, payloadTooLarge };
