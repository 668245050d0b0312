// KeyLeashError and the one conversion helper: whatever a native call throws
// becomes a KeyLeashError with a stable `.code`, and no message quotes a value (it
// may be a raw key).

const native = require("./addon.js");

/** Error of every keyleash call the caller can act on; `.code` is stable. */
class KeyLeashError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "KeyLeashError";
    this.code = code;
  }
}

/** An `invalid_argument` KeyLeashError: a value the caller passed is wrong. */
function invalid(message) {
  return new KeyLeashError("invalid_argument", message);
}

// The core's errors cross the boundary typed: a native call throws (or its promise
// rejects with, or a batch answers) an Error whose `code` is the core's code and
// whose message is the core's. CODES tells them from napi's own errors, whose
// `code` is a napi status.
const CODES = new Set(native.errorCodes());

/** `e` (anything a native call threw) as a KeyLeashError; a KeyLeashError as it is. */
function toKeyLeashError(e) {
  if (e instanceof KeyLeashError) return e;
  if (e instanceof Error && CODES.has(e.code)) return new KeyLeashError(e.code, e.message);
  // Anything else is napi refusing to convert an argument, or a getter of the
  // caller's throwing while options.js reads it. options.js refuses (or copies)
  // every value of the public calls before napi converts it; this stays for the
  // internal entry points it does not check (adminRequest, fed by adminRouter).
  // napi's message quotes the value, which may be a raw key: none of it is kept.
  return invalid("an argument has the wrong type");
}

/** Runs `fn` and rejects with a KeyLeashError instead of whatever it threw. */
async function call(fn) {
  try {
    return await fn();
  } catch (e) {
    throw toKeyLeashError(e);
  }
}

/** Runs `fn` and throws a KeyLeashError instead of whatever it threw (synchronous calls). */
function callSync(fn) {
  try {
    return fn();
  } catch (e) {
    throw toKeyLeashError(e);
  }
}

module.exports = { KeyLeashError, invalid, toKeyLeashError, call, callSync };
