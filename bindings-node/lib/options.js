// The option schema: the names and kinds of every options object of the package,
// and the strict check of each options object and argument before the native half
// sees it (an unknown name is refused with the closest known name as a hint).

const { invalid } = require("./errors.js");

/**
 * A Date as an ISO 8601 string (an invalid Date refused); any other value as it is.
 * Date's own methods, so a subclass overriding them cannot hand the native half a
 * value of another type.
 */
function iso(value, field) {
  if (value instanceof Date) {
    if (Number.isNaN(Date.prototype.getTime.call(value))) throw invalid(`${field} is an invalid Date`);
    return Date.prototype.toISOString.call(value);
  }
  return value;
}

/**
 * A copy of an array of strings (each element read once), so what the native half
 * converts is what was checked: a hole, or a Proxy answering differently on a
 * second read, would otherwise reach napi's conversion.
 */
function strings(value, field) {
  const copy = [];
  for (let i = 0; i < value.length; i++) {
    const s = value[i];
    if (typeof s !== "string") throw invalid(`${field} must be ${KINDS.strings.is}`);
    copy.push(s);
  }
  return copy;
}

// napi's limits on a JSON value (its nesting depth, its number of values): past
// them napi refuses it, and they end the walk of a value that contains itself.
const JSON_DEPTH = 128;
const JSON_VALUES = 1_000_000;

/**
 * A plain copy of `value` as napi converts it into JSON (an object's enumerable
 * properties, inherited ones too, without those that are undefined), or an
 * invalid_argument naming what JSON cannot hold, before napi refuses it.
 */
function json(value, field) {
  let values = 0;
  const copy = (v, depth) => {
    values += 1;
    if (values > JSON_VALUES) throw invalid(`${field} must be JSON of at most ${JSON_VALUES} values`);
    if (v === null || typeof v === "string" || typeof v === "boolean") return v;
    if (typeof v === "number") {
      if (!Number.isFinite(v)) throw invalid(`${field} must be JSON: it holds NaN or an infinite number`);
      return v;
    }
    if (typeof v !== "object") {
      const what = v === undefined ? "undefined" : `a ${typeof v}`; // a function, symbol or bigint
      throw invalid(`${field} must be JSON: it holds ${what}`);
    }
    if (depth >= JSON_DEPTH) throw invalid(`${field} must be JSON nested at most ${JSON_DEPTH} deep`);
    if (Array.isArray(v)) {
      const out = [];
      for (let i = 0; i < v.length; i++) out.push(copy(v[i], depth + 1));
      return out;
    }
    const out = Object.create(null); // so that a key "__proto__" stays a key
    for (const k in v) {
      const item = v[k];
      if (item !== undefined) out[k] = copy(item, depth + 1);
    }
    return out;
  };
  return copy(value, 0);
}

// What a value of each kind must be, checked before the native half sees it: no
// loose conversion (revoke(1.5) is not revoke(1)), and no message that quotes the
// value (it may be a raw key). `to` converts an accepted value for the native half;
// a kind whose values napi converts element by element copies them, so that napi
// never refuses what was accepted here.
const KINDS = {
  string: { ok: (v) => typeof v === "string", is: "a string" },
  // Ranges and finiteness are the core's to check, with the core's messages.
  number: { ok: (v) => typeof v === "number", is: "a number" },
  boolean: { ok: (v) => typeof v === "boolean", is: "true or false" },
  id: { ok: (v) => Number.isSafeInteger(v) && v > 0, is: "a whole number from 1 to 2^53 - 1" },
  account: {
    ok: (v) => typeof v === "string" || Number.isSafeInteger(v),
    is: "a string or a whole number",
    to: String,
  },
  strings: { ok: (v) => Array.isArray(v), is: "an array of strings", to: strings },
  instant: { ok: (v) => typeof v === "string" || v instanceof Date, is: "an ISO 8601 string or a Date", to: iso },
  limit: { ok: (v) => v === false || typeof v === "number", is: "a number or false" },
  function: { ok: (v) => typeof v === "function", is: "a function" },
  cache: {
    ok: (v) => typeof v === "object" && !Array.isArray(v),
    is: "an object ({ttlMs, maxEntries})",
    to: (v) => strict(v, "cache"),
  },
  object: { ok: (v) => typeof v === "object", is: "an object" },
  limits: { ok: (v) => Array.isArray(v), is: "an array of limits ({unit, limit, period, burst, name})", to: limits },
  json: { ok: () => true, to: json },
};

/** A checked copy of an array of rate limits, each element read once. */
function limits(value, field) {
  const copy = [];
  for (let i = 0; i < value.length; i++) {
    const item = value[i];
    if (typeof item !== "object" || item === null || Array.isArray(item)) {
      throw invalid(`${field}[${i}] must be an object ({unit, limit, period, burst, name})`);
    }
    copy.push(strict(item, "limit", ["unit", "limit"]));
  }
  return copy;
}

/** `value` as the native half takes a `kind`; null and undefined stay null (absent). */
function checked(value, field, kind) {
  if (value === undefined || value === null) return null;
  const k = KINDS[kind];
  if (!k.ok(value)) throw invalid(`${field} must be ${k.is}`);
  return k.to ? k.to(value, field) : value;
}

/** Like `checked`, for an argument that may not be absent. */
function required(value, field, kind) {
  const v = checked(value, field, kind);
  if (v === null) throw invalid(`${field} must be ${KINDS[kind].is}`);
  return v;
}

const CONNECT = {
  tableName: "string",
  keyPrefix: "string",
  validScopes: "strings",
  poolSize: "number",
  acquireTimeoutMs: "number",
  statementTimeoutMs: "number",
  manualClock: "instant",
  cache: "cache",
};
const ROUTE = {
  signupScopes: "strings",
  requireEmailForSignup: "boolean",
  signupExpiresIn: "string",
  signupBudgetCents: "number",
  signupBudgetPeriod: "string",
  signupRateLimit: "limit",
  signupRateLimitPerDomain: "number",
  mintRateLimit: "limit",
};

/** The names and kinds of every options object of the package. */
const OPTIONS = {
  connect: CONNECT,
  cache: { ttlMs: "number", maxEntries: "number" },
  AgentKey: { pool: "object", url: "string", ...CONNECT },
  create: {
    accountId: "account",
    userId: "string",
    scopes: "strings",
    budgetCents: "number",
    budgetPeriod: "string",
    expiresIn: "string",
    expiresAt: "instant",
    delegatedBy: "string",
    name: "string",
    parentId: "id",
    metadata: "json",
    limits: "limits",
  },
  limit: { name: "string", unit: "string", limit: "number", period: "string", burst: "number" },
  charge: { costCents: "number", idempotencyKey: "string" },
  reserve: { costCents: "number", ttl: "string", idempotencyKey: "string" },
  settle: { costCents: "number" },
  setAccountBudget: { budgetCents: "number", budgetPeriod: "string" },
  "req.agentKey.charge": { idempotencyKey: "string" },
  "req.agentKey.reserve": { ttl: "string", idempotencyKey: "string" },
  storeFailed: { onError: "function" },
  streamWithHold: {
    estimateCents: "number",
    ttl: "string",
    idempotencyKey: "string",
    contentType: "string",
    onError: "function",
  },
  usage: { from: "instant", to: "instant" },
  advance: { seconds: "number", minutes: "number", hours: "number", days: "number" },
  selfServe: ROUTE,
  agentKeyMiddleware: { scope: "string", onError: "function" },
  createAgentKeyRoutes: { ...ROUTE, onError: "function" },
  adminRouter: { authorize: "function" },
};

/**
 * A checked copy of an options object of `what` (a key of OPTIONS), without its
 * null and undefined fields (null means absent). A name it does not know is
 * refused, never ignored: a misspelt `budgetCent` must not mint an uncapped key.
 */
function strict(value, what, mandatory = []) {
  if (value === undefined || value === null) value = {};
  if (typeof value !== "object" || Array.isArray(value)) throw invalid(`${what} options must be an object`);
  const spec = OPTIONS[what];
  const out = {};
  for (const [name, v] of Object.entries(value)) {
    if (!Object.hasOwn(spec, name)) throw unknownOption(name, what, Object.keys(spec));
    const c = checked(v, name, spec[name]);
    if (c !== null) out[name] = c;
  }
  for (const name of mandatory) {
    if (out[name] === undefined) throw invalid(`${what} options: ${name} is required`);
  }
  return out;
}

/** The error for an unknown option `name` of `what`: the closest known name, or all of them. */
function unknownOption(name, what, known) {
  const close = closest(name, known);
  const hint = close ? `; did you mean "${close}"?` : ` (known: ${known.join(", ")})`;
  return invalid(`${what} options: unknown option "${name}"${hint}`);
}

/** The known name closest to `name` (case, `_` and `-` aside), if one is close. */
function closest(name, known) {
  const norm = (s) => s.toLowerCase().replace(/[_-]/g, "");
  const n = norm(name);
  let best;
  let bestDistance = Math.min(2, Math.ceil(n.length / 3));
  for (const k of known) {
    const d = distance(n, norm(k));
    if (d <= bestDistance && (best === undefined || d < distance(n, norm(best)))) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

/** Edit distance with transpositions (optimal string alignment). */
function distance(a, b) {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1); // a transposition
      }
    }
  }
  return d[a.length][b.length];
}

module.exports = { checked, required, strict };
