// The operators' admin page (docs/admin.md) as Express middleware: the authorize
// gate, the body limit, and the request forwarded to the core, which serves the page.
// The gate's 401, the limit and its 413 are the core's (core/src/admin.rs).

const native = require("./addon.js");
const { invalid } = require("./errors.js");
const { strict } = require("./options.js");
const { KeyLeash } = require("./client.js");

/** The most an admin page request's body may hold (the core's limit, 16 KiB). */
const ADMIN_MAX_BODY = native.ADMIN_MAX_BODY_BYTES;

/**
 * The operators' admin page (docs/admin.md) as Express middleware, to mount under
 * a path: `app.use("/admin", adminRouter(kl, { authorize }))`. The page, its files
 * and its JSON API are served by the core, byte for byte as FastAPI's
 * `admin_router` serves them. `authorize(req)` (may return a promise) is asked
 * first on every request and only `true` lets it through; without `authorize`
 * every request is refused. A refused request gets 401 with a
 * `WWW-Authenticate: Basic` challenge, so a browser asks for a password the app
 * can check in `authorize`. Revoking needs the page's CSRF token (the core checks
 * it). An error thrown by `authorize` goes to Express's error handling.
 */
function adminRouter(kl, opts) {
  if (!(kl instanceof KeyLeash)) throw invalid("adminRouter needs a KeyLeash");
  const { authorize = null } = strict(opts, "adminRouter");
  return async function keyleashAdmin(req, res, next) {
    try {
      const allowed = authorize ? await authorize(req) : false;
      if (allowed !== true) {
        sendOwn(res, native.adminUnauthorized());
        return;
      }
      const url = new URL(req.url, "http://localhost");
      const original = new URL(req.originalUrl ?? req.url, "http://localhost").pathname;
      // Mounted at /admin, Express gives "/" for both /admin and /admin/.
      const path = url.pathname === "/" && !original.endsWith("/") ? "" : url.pathname;
      const body = req.method === "POST" ? await adminBody(req) : Buffer.alloc(0);
      if (body === undefined) {
        sendOwn(res, native.adminPayloadTooLarge());
        return;
      }
      const r = await kl.adminRequest({
        method: req.method,
        path,
        query: url.search.replace(/^\?/, ""),
        base: req.baseUrl ?? "",
        headers: req.rawHeaders,
        body,
      });
      for (let i = 0; i + 1 < r.headers.length; i += 2) res.set(r.headers[i], r.headers[i + 1]);
      res.status(r.status).end(r.body);
    } catch (err) {
      next(err);
    }
  };
}

/**
 * Sends one of the mount's own answers (the core's 401 or 413): through
 * `res.send`, as these answers always were, so Express adds its `Content-Length`
 * and `ETag` (the core's page answers go out with `res.end`, as the core wrote them).
 */
function sendOwn(res, r) {
  res.status(r.status);
  for (let i = 0; i + 1 < r.headers.length; i += 2) res.set(r.headers[i], r.headers[i + 1]);
  res.send(r.body);
}

/** The request's body as a Buffer (an app-level parser's result reused), or undefined past the limit. */
async function adminBody(req) {
  if (Buffer.isBuffer(req.body)) return req.body.length > ADMIN_MAX_BODY ? undefined : req.body;
  if (typeof req.body === "string") return adminBody({ body: Buffer.from(req.body) });
  if (req.body && typeof req.body === "object") return adminBody({ body: JSON.stringify(req.body) });
  if (Number(req.headers["content-length"]) > ADMIN_MAX_BODY) return undefined;
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > ADMIN_MAX_BODY) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

module.exports = { adminRouter };
