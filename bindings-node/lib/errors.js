// KeyLeashError and the one conversion helper: whatever a native call throws
// becomes a KeyLeashError with a stable `.code`, and no message quotes a value (it
// may be a raw key).

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

// The core's errors cross the boundary as text, `[keyleash:code] message` (a batch
// answer adds a leading `!`, which KeyLeash#sendValidates strips), and TAGGED
// recovers the code and the message. They are not typed across the boundary yet.
const TAGGED = /^\[keyleash:([a-z_]+)\] ([\s\S]*)$/;
const NAPI_CONVERSION = /into rust type `([^`]+)`(?: on \w+\.(\w+))?/;

/** `e` (anything a native call threw) as a KeyLeashError; a KeyLeashError as it is. */
function toKeyLeashError(e) {
  if (e instanceof KeyLeashError) return e;
  const message = e instanceof Error ? e.message : String(e);
  const tagged = TAGGED.exec(message);
  if (tagged) return new KeyLeashError(tagged[1], tagged[2]);
  // Anything else comes from napi converting an argument the checks of options.js
  // let through. napi's message quotes the value, which may be a raw key: keep only
  // the field and the type.
  const conversion = NAPI_CONVERSION.exec(message);
  if (!conversion) return invalid("an argument has the wrong type");
  const type = conversion[1];
  const expected =
    type === "String" ? "a string" : type === "bool" ? "a boolean" : /^Vec</.test(type) ? "an array" : "a number";
  return invalid(`${conversion[2] ?? "an argument"} must be ${expected}`);
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
