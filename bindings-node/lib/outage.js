// A key store failure in the Express layer: the middleware, the routes and
// streamWithHold answer it with the core's answer, 500 auth_unavailable (fail
// closed), and report it once to the caller's `onError` (default: one
// `keyleash: …` line on stderr).

const native = require("./addon.js");
const { KeyLeashError, toKeyLeashError } = require("./errors.js");
const { strict } = require("./options.js");

/** The default `onError`: one line on stderr per store failure. */
function logError(err) {
  console.error(`keyleash: ${String(err.message).replace(/\s+/g, " ")}`);
}

/** Reports to `onError` that the store failed with `cause` (a message) and error `code`. */
function reportFailure(onError, code, cause) {
  report(onError, new KeyLeashError(code, `the key store failed, answered 500 auth_unavailable: ${cause}`));
}

/**
 * The reply of `pending` (an authenticate or selfServe call); a store failure is
 * reported to `onError` once and answered with the core's 500 auth_unavailable.
 */
async function answer(pending, onError) {
  let r;
  let code = "unavailable";
  try {
    r = await pending;
  } catch (e) {
    const err = toKeyLeashError(e);
    code = err.code;
    r = native.storeFailed(err.message);
  }
  if (r.cause !== undefined && r.cause !== null) reportFailure(onError, code, r.cause);
  return r;
}

/**
 * The core's answer to a key store failure `err` (what a call rejects with when
 * the store is down), as the middleware answers one: `{status: 500, body:
 * {error: "auth_unavailable"}}`, after reporting `err` once to `onError` (default:
 * one `keyleash: …` line on stderr). Options: `onError`.
 */
function storeFailed(err, opts) {
  const { onError = logError } = strict(opts, "storeFailed");
  return failed(toKeyLeashError(err), onError);
}

/** `storeFailed` with `onError` given: reports `err` (a KeyLeashError) and answers it. */
function failed(err, onError) {
  const r = native.storeFailed(err.message);
  reportFailure(onError, err.code, r.cause);
  return { status: r.status, body: r.body };
}

/** Calls `onError(err)`; a throwing onError falls back to one stderr line. */
function report(onError, err) {
  try {
    onError(err);
  } catch {
    logError(err); // a throwing onError must not take the request down with it
  }
}

module.exports = { logError, answer, report, storeFailed, failed };
