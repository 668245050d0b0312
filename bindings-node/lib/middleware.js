// The Express middleware: authenticates a request's key through the core's HTTP
// rules and attaches the granted key as `req.agentKey`, with `charge` and `reserve`
// bound to that key.

const { call } = require("./errors.js");
const { required, strict } = require("./options.js");
const { AUTHENTICATE_KEY } = require("./client.js");
const { logError, answer } = require("./outage.js");
const { Spend } = require("./spend.js");

/**
 * Express middleware: authenticates `Authorization: Bearer <key>`, requires
 * `scope` when given, attaches the validation result as `req.agentKey`, and
 * answers the statuses of docs/http.md (fail closed with 500 when the store is down).
 * `req.agentKey.charge(costCents, { idempotencyKey })` charges that key, as
 * `kl.trackUsage(rawKey, { costCents, idempotencyKey })` would.
 * Options: `scope`, `onError(err)` (called once per store failure with a
 * KeyLeashError; default: one `keyleash: …` line on stderr).
 */
function agentKeyMiddleware(kl, opts) {
  const { scope = null, onError = logError } = strict(opts, "agentKeyMiddleware");
  return async function keyleashMiddleware(req, res, next) {
    const r = await answer(kl[AUTHENTICATE_KEY](req.headers.authorization ?? null, scope), onError);
    if (r.status !== 200) return res.status(r.status).json(r.body);
    req.agentKey = grantedKey(r.body, r.key);
    return next();
  };
}

/**
 * The validation result `info` with `charge(costCents, opts)` and
 * `reserve(estimateCents, opts)`. `charge` is `kl.trackUsage` of the same key,
 * through `handle` (the key's hash, held natively), so the header is not parsed
 * and the key not hashed again; `reserve` is `kl.reserve` of the same key,
 * through the same handle, with a `Spend` on the hold's native handle when it
 * holds. Both methods are not enumerable and the handle lives only in their
 * closures: JSON.stringify and util.inspect show the validation result alone, and
 * the raw key is nowhere.
 */
function grantedKey(info, handle) {
  Object.defineProperty(info, "charge", {
    value: function charge(costCents, opts) {
      return call(() => {
        const cost = required(costCents, "costCents", "number");
        return handle.charge({ ...strict(opts, "req.agentKey.charge"), costCents: cost }).then(JSON.parse);
      });
    },
  });
  Object.defineProperty(info, "reserve", {
    value: function reserve(estimateCents, opts) {
      return call(async () => {
        const costCents = required(estimateCents, "estimateCents", "number");
        const options = strict(opts, "req.agentKey.reserve");
        // The hold's native handle when it holds, else the result as JSON text.
        const reserved = await handle.reserve({ ...options, costCents });
        return typeof reserved === "string" ? JSON.parse(reserved) : new Spend(reserved);
      });
    },
  });
  return info;
}

module.exports = { agentKeyMiddleware };
