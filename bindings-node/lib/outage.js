// A key store failure in the Express layer: the middleware, the routes and
// streamWithHold answer it 500 auth_unavailable (fail closed) and report it once to
// the caller's `onError` (default: one `keyleash: …` line on stderr).

const { KeyLeashError, toKeyLeashError } = require("./errors.js");

/** The default `onError`: one line on stderr per store failure. */
function logError(err) {
  console.error(`keyleash: ${String(err.message).replace(/\s+/g, " ")}`);
}

/**
 * The reply of `pending` (an authenticate or selfServe call); a store failure is
 * reported to `onError` once and answered 500 auth_unavailable (fail closed).
 */
async function answer(pending, onError) {
  let r;
  let code = "unavailable";
  try {
    r = await pending;
  } catch (e) {
    const err = toKeyLeashError(e);
    code = err.code;
    r = { status: 500, body: { error: "auth_unavailable" }, cause: err.message };
  }
  if (r.cause !== undefined && r.cause !== null) {
    const err = new KeyLeashError(code, `the key store failed, answered 500 auth_unavailable: ${r.cause}`);
    try {
      onError(err);
    } catch {
      logError(err); // a throwing onError must not take the request down with it
    }
  }
  return r;
}

/** Calls `onError(err)`; a throwing onError falls back to one stderr line. */
function report(onError, err) {
  try {
    onError(err);
  } catch {
    logError(err);
  }
}

module.exports = { logError, answer, report };
