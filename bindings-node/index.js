// The JavaScript half of the npm package `keyleash`. Every rule lives in the Rust
// core (see native.js); this file only adapts calling conventions: arguments and
// option names are checked before the native half sees them, errors become
// KeyLeashError with a `.code` (never quoting a value: it may be a raw key), Dates
// become ISO strings, and the agentkey drop-in and the Express middleware and
// routes forward requests to the core's HTTP rules.

const util = require("node:util");
const native = loadNative();

/**
 * The native addon (native.js finds it: this folder's own build, else the platform
 * package keyleash-<platform>). When there is none, an error naming this platform,
 * the platforms with prebuilt packages, and how to get an addon, instead of the
 * generated loader's advice about an npm bug.
 */
function loadNative() {
  try {
    return require("./native.js");
  } catch (e) {
    if (!/^(Cannot find|Failed to load) native binding/.test(e?.message ?? "")) throw e;
    const libc =
      process.platform === "linux"
        ? process.report?.getReport?.().header?.glibcVersionRuntime
          ? "-gnu"
          : "-musl"
        : process.platform === "win32"
          ? "-msvc"
          : "";
    const platform = `${process.platform}-${process.arch}${libc}`;
    const prebuilt = Object.keys(require("./package.json").optionalDependencies ?? {});
    const names = prebuilt.map((name) => name.replace(/^keyleash-/, "")).join(", ");
    const fix = prebuilt.includes(`keyleash-${platform}`)
      ? `its package keyleash-${platform} is not installed: it is an optional dependency of keyleash, so reinstall without --omit=optional or --no-optional`
      : `prebuilt addons exist for ${names} only. Build one from source (Rust 1.82 or later): clone ` +
        "https://github.com/keyleash/keyleash, run `make node`, and set NAPI_RS_NATIVE_LIBRARY_PATH to the " +
        `bindings-node/keyleash.${platform}.node it builds (https://github.com/keyleash/keyleash/blob/main/docs/releasing.md#building-from-source)`;
    const error = new Error(`keyleash: no native addon for ${platform}: ${fix}`);
    error.cause = e;
    throw error;
  }
}

/** Error of every keyleash call the caller can act on; `.code` is stable. */
class KeyLeashError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "KeyLeashError";
    this.code = code;
  }
}

function invalid(message) {
  return new KeyLeashError("invalid_argument", message);
}

const TAGGED = /^\[keyleash:([a-z_]+)\] ([\s\S]*)$/;
const NAPI_CONVERSION = /into rust type `([^`]+)`(?: on \w+\.(\w+))?/;

function toKeyLeashError(e) {
  if (e instanceof KeyLeashError) return e;
  const message = e instanceof Error ? e.message : String(e);
  const tagged = TAGGED.exec(message);
  if (tagged) return new KeyLeashError(tagged[1], tagged[2]);
  // Anything else comes from napi converting an argument the checks below let
  // through. napi's message quotes the value, which may be a raw key: keep only
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

function iso(value, field) {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw invalid(`${field} is an invalid Date`);
    return value.toISOString();
  }
  return value;
}

// What a value of each kind must be, checked before the native half sees it: no
// loose conversion (revoke(1.5) is not revoke(1)), and no message that quotes the
// value (it may be a raw key). `to` converts an accepted value for the native half.
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
  strings: { ok: (v) => Array.isArray(v) && v.every((s) => typeof s === "string"), is: "an array of strings" },
  instant: { ok: (v) => typeof v === "string" || v instanceof Date, is: "an ISO 8601 string or a Date", to: iso },
  limit: { ok: (v) => v === false || typeof v === "number", is: "a number or false" },
  function: { ok: (v) => typeof v === "function", is: "a function" },
  cache: {
    ok: (v) => typeof v === "object" && !Array.isArray(v),
    is: "an object ({ttlMs, maxEntries})",
    to: (v) => strict(v, "cache"),
  },
  object: { ok: (v) => typeof v === "object", is: "an object" },
  json: { ok: () => true },
};

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
  },
  charge: { costCents: "number", idempotencyKey: "string" },
  reserve: { costCents: "number", ttl: "string", idempotencyKey: "string" },
  settle: { costCents: "number" },
  setAccountBudget: { budgetCents: "number", budgetPeriod: "string" },
  "req.agentKey.charge": { idempotencyKey: "string" },
  "req.agentKey.reserve": { ttl: "string", idempotencyKey: "string" },
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

/**
 * `created` (a result holding a raw key) with the key hidden from console.log and
 * util.inspect; `created.key` and JSON.stringify still give it, to send it once.
 */
function hideKey(created) {
  if (created && typeof created === "object" && typeof created.key === "string") {
    Object.defineProperty(created, util.inspect.custom, {
      value(_depth, options, inspect) {
        return inspect({ ...this, key: "<redacted>" }, options);
      },
    });
  }
  return created;
}

/** A self-serve body as bytes: a string is UTF-8 encoded, bytes go as they are. */
function bodyBytes(body) {
  if (typeof body === "string") return Buffer.from(body, "utf8");
  if (body instanceof Uint8Array) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  throw invalid("body must be a string, a Buffer or a Uint8Array");
}

/** The middleware's authenticate, which also hands back the granted key's handle. */
const AUTHENTICATE_KEY = Symbol("keyleash.authenticateKey");

/**
 * Scoped, budgeted, time-bounded API keys on Postgres or SQLite.
 * Create one with `await KeyLeash.connect(url, options)`.
 */
class KeyLeash {
  #ready;
  /** The native handle once connected (null before), for the synchronous fast paths. */
  #native = null;
  /** Validates gathered in this turn of the event loop, sent as one native call. */
  #validates = null;

  /** @internal Use KeyLeash.connect (or new AgentKey({ pool })). */
  constructor(ready) {
    this.#ready = ready;
    ready.then(
      (n) => {
        this.#native = n;
      },
      () => {},
    );
  }

  /** Connects to `postgres://…`, `sqlite:path.db` or `sqlite::memory:`. */
  static async connect(url, opts) {
    const nativeHandle = await call(() =>
      native.NativeKeyLeash.connect(required(url, "url", "string"), strict(opts, "connect")),
    );
    const kl = new KeyLeash(Promise.resolve(nativeHandle));
    kl.#native = nativeHandle;
    return kl;
  }

  /** Runs `fn(native handle)` once connected; every failure becomes a KeyLeashError. */
  #run(fn) {
    return call(async () => fn(await this.#ready));
  }

  /** Creates or adopts the schema; idempotent. */
  migrate() {
    return this.#run((n) => n.migrate());
  }

  /** Mints a key; the raw key is in the result once and never again (console.log hides it). */
  create(opts) {
    return this.#run(async (n) => hideKey(await n.create(strict(opts, "create"))));
  }

  /**
   * Validates a raw key. With the validation cache on, a cached valid answer comes
   * back without a trip to the store (or to a native task).
   */
  validate(rawKey) {
    const n = this.#native;
    if (n === null || typeof rawKey !== "string") {
      return this.#run(async (n) => JSON.parse(await n.validate(required(rawKey, "rawKey", "string"))));
    }
    // What the core answers without the store (a malformed key, a cache hit) comes
    // back synchronously: no native task, no async function, one resolved promise.
    // The hot calls return JSON text (cheaper than napi's object conversion).
    const now = n.validateNow(rawKey);
    if (now !== null) return Promise.resolve(JSON.parse(now));
    // The rest wait for the end of this turn of the event loop (a microtask) and
    // cross into the core together: one native task and one wake-up for all of
    // them instead of one each. The core answers each as if it had come alone.
    if (this.#validates === null) {
      this.#validates = [];
      queueMicrotask(() => this.#sendValidates(n));
    }
    return new Promise((resolve, reject) => this.#validates.push({ rawKey, resolve, reject }));
  }

  /** Sends the gathered validates as one `validateMany` and settles each caller. */
  #sendValidates(n) {
    const batch = this.#validates;
    this.#validates = null;
    n.validateMany(batch.map((v) => v.rawKey)).then(
      (answers) => {
        for (let i = 0; i < batch.length; i++) {
          const a = answers[i];
          if (a.startsWith("!")) batch[i].reject(toKeyLeashError(new Error(a.slice(1))));
          else batch[i].resolve(JSON.parse(a));
        }
      },
      (e) => {
        const err = toKeyLeashError(e);
        for (const v of batch) v.reject(err);
      },
    );
  }

  /** Charges a key after the fact, atomically. */
  trackUsage(rawKey, opts) {
    const n = this.#native;
    if (n === null) {
      return this.#run(async (n) =>
        JSON.parse(await n.trackUsage(required(rawKey, "rawKey", "string"), strict(opts, "charge", ["costCents"]))),
      );
    }
    // As validate: a charge the core decides without the store (a bad idempotency
    // key, an invalid or zero cost, a malformed key) is answered synchronously.
    let rawKeyChecked;
    let charge;
    let now;
    try {
      rawKeyChecked = required(rawKey, "rawKey", "string");
      charge = strict(opts, "charge", ["costCents"]);
      now = n.trackUsageNow(rawKeyChecked, charge);
    } catch (e) {
      return Promise.reject(toKeyLeashError(e));
    }
    return now !== null
      ? Promise.resolve(JSON.parse(now))
      : call(async () => JSON.parse(await n.trackUsage(rawKeyChecked, charge)));
  }

  /**
   * Holds an estimate of a key's budget before a spend whose cost is not known yet:
   * `{success: true, holdId, expiresAt, budgetRemainingCents}` or `{success: false,
   * reason}`. Settle the actual cost with `settle(holdId, {costCents})`, or `release`.
   */
  reserve(rawKey, opts) {
    return this.#run(async (n) =>
      JSON.parse(await n.reserve(required(rawKey, "rawKey", "string"), strict(opts, "reserve", ["costCents"]))),
    );
  }

  /**
   * Charges a hold's actual cost (in full, even above the hold) and frees it:
   * `{success: true, budgetUsedCents, budgetRemainingCents}` or `{success: false,
   * reason}` (`unknown_hold`, `hold_released`, `invalid_cost`). Repeats replay.
   */
  settle(holdId, opts) {
    return this.#run(async (n) =>
      JSON.parse(await n.settle(required(holdId, "holdId", "id"), strict(opts, "settle", ["costCents"]).costCents)),
    );
  }

  /** Frees a hold without charging it; whether it freed anything. */
  release(holdId) {
    return this.#run((n) => n.release(required(holdId, "holdId", "id")));
  }

  /**
   * Sets the ceiling of an account: what all its keys charge and hold together
   * may not pass `budgetCents` per `budgetPeriod` (`day`, `week`, `month`; absent
   * for a lifetime ceiling), atomically with each key's own budget. A new ceiling
   * starts with nothing used; the same period again changes only the amount;
   * another period starts over. `{budgetCents: null}` removes it.
   */
  setAccountBudget(accountId, opts) {
    return this.#run(async (n) => {
      const o = strict(opts, "setAccountBudget");
      if (o.budgetCents === undefined && opts?.budgetCents !== null) {
        throw invalid("setAccountBudget options: budgetCents is required (null removes the ceiling)");
      }
      await n.setAccountBudget(
        required(accountId, "accountId", "account"),
        o.budgetCents ?? null,
        o.budgetPeriod ?? null,
      );
    });
  }

  /** Whether a validation result grants `scope`. */
  hasScope(result, scope) {
    return hasScope(result, scope);
  }

  /** Soft-revokes a key (only of `accountId`, when given). */
  revoke(keyId, accountId) {
    return this.#run((n) => n.revoke(required(keyId, "keyId", "id"), checked(accountId, "accountId", "account")));
  }

  /** Creates, once, a budget row bound to an external subject. */
  ensureSubject(subject, opts) {
    return this.#run((n) => n.ensureSubject(required(subject, "subject", "string"), strict(opts, "create")));
  }

  /** Validates a subject row. */
  validateBySubject(subject) {
    return this.#run(async (n) => JSON.parse(await n.validateBySubject(required(subject, "subject", "string"))));
  }

  /**
   * The validation cache's counters `{entries, hits, misses, listening, disconnects,
   * channel}`, or null when the cache is off (or before the connection is made).
   */
  cacheStats() {
    return this.#native === null ? null : this.#native.cacheStats();
  }

  /** Charges a subject row. */
  trackUsageBySubject(subject, opts) {
    return this.#run((n) =>
      n
        .trackUsageBySubject(required(subject, "subject", "string"), strict(opts, "charge", ["costCents"]))
        .then(JSON.parse),
    );
  }

  /** The keys of an account, without secrets. */
  list(accountId) {
    return this.#run((n) => n.list(required(accountId, "accountId", "account")));
  }

  /** A key's ledger rows, `from` inclusive and `to` exclusive. */
  usage(keyId, range) {
    return this.#run((n) => {
      const { from = null, to = null } = strict(range, "usage");
      return n.usage(required(keyId, "keyId", "id"), from, to);
    });
  }

  /** The middleware's decision for one request: `{status, body, cause?}`. */
  authenticate(authorization, scope) {
    return this.#run((n) =>
      n.authenticate(checked(authorization, "authorization", "string"), checked(scope, "scope", "string")),
    );
  }

  /**
   * @internal `authenticate` for agentKeyMiddleware: when granted, `key` is a native
   * handle charging the key by its hash (the raw key stays in the header).
   */
  [AUTHENTICATE_KEY](authorization, scope) {
    return this.#run((n) =>
      n.authenticateKey(checked(authorization, "authorization", "string"), checked(scope, "scope", "string")),
    );
  }

  /**
   * @internal One request to the admin page, for `adminRouter`: `{method, path,
   * query, base, headers: [name, value, …], body?}` to `{status, headers, body}`.
   */
  adminRequest(req) {
    return this.#run((n) => n.admin(req));
  }

  /**
   * One self-serve request (`signup`, `me`, `mint`, `revoke` with `id`) from the
   * client at `clientAddress` (signups are rate-limited per address; null or ""
   * counts against the one bucket of unknown addresses): `{status, body,
   * retryAfter?, cause?}`. `body` is the raw body, a string or the bytes as read
   * (a Buffer or Uint8Array); `contentType` the request's header, whose charset
   * the core checks (JSON bodies are UTF-8, docs/http.md).
   */
  selfServe(route, id, authorization, body, clientAddress, opts, contentType) {
    return this.#run(async (n) => {
      const r = await n.selfServe(
        required(route, "route", "string"),
        checked(id, "id", "string"),
        checked(authorization, "authorization", "string"),
        bodyBytes(body),
        checked(clientAddress, "clientAddress", "string"),
        strict(opts, "selfServe"),
        checked(contentType, "contentType", "string"),
      );
      hideKey(r.body);
      return r;
    });
  }

  /** The clock's reading as an ISO string. */
  now() {
    return this.#run((n) => n.now());
  }

  /** Sets a manual clock. */
  setNow(at) {
    return this.#run((n) => n.setNow(required(at, "at", "instant")));
  }

  /** Moves a manual clock by any mix of `{seconds, minutes, hours, days}`. */
  advance(by) {
    return this.#run((n) => n.advance(strict(by, "advance")));
  }

  /** Closes the connection pool. */
  close() {
    return this.#run((n) => n.close());
  }
}

/** Whether a validation result (or a key's scopes) grants `scope`. */
function hasScope(result, scope) {
  const wanted = required(scope, "scope", "string");
  if (!result || result.valid === false) return false;
  if (typeof result !== "object") throw invalid("result must be a validation result or an array of scopes");
  const scopes = Array.isArray(result) ? result : (result.scopes ?? null);
  return native.hasScope(checked(scopes, "scopes", "strings"), wanted);
}

/** A postgres:// URL from a `pg` Pool's settings (and pg's PG* defaults). */
function urlFromPool(pool) {
  const o = pool?.options ?? {};
  if (o.connectionString) return o.connectionString;
  const env = process.env;
  const user = o.user ?? env.PGUSER ?? env.USER ?? "postgres";
  const password = o.password ?? env.PGPASSWORD;
  const host = o.host ?? env.PGHOST ?? "localhost";
  const port = o.port ?? env.PGPORT ?? 5432;
  const database = o.database ?? env.PGDATABASE ?? user;
  const auth = encodeURIComponent(user) + (password ? `:${encodeURIComponent(password)}` : "");
  const ssl = o.ssl ? "?sslmode=require" : "";
  return `postgres://${auth}@${host}:${port}/${encodeURIComponent(database)}${ssl}`;
}

/**
 * agentkey's class, backed by keyleash: `new AgentKey({ pool, tableName, keyPrefix,
 * validScopes })` (and any option of `KeyLeash.connect`). It reads the `pg` Pool's
 * connection settings and opens its own pool; the first call waits for the
 * connection. A misspelt option throws at once.
 */
class AgentKey extends KeyLeash {
  constructor(opts) {
    const { pool, url, ...o } = strict(opts, "AgentKey");
    const ready = (async () => {
      const target = url ?? (pool ? urlFromPool(pool) : undefined);
      if (!target) throw invalid("AgentKey needs a pg Pool (pool) or a url");
      if (o.poolSize === undefined && pool?.options?.max) o.poolSize = pool.options.max;
      return call(() => native.NativeKeyLeash.connect(target, o));
    })();
    ready.catch(() => {}); // reported by the first call instead
    super(ready);
  }
}

/** The largest request body the self-serve routes read (the core's limit): 65,536 bytes. */
const MAX_BODY_BYTES = native.MAX_BODY_BYTES;

/** The core's answer to a body over MAX_BODY_BYTES: `{status: 413, body}`. */
function payloadTooLarge() {
  return native.payloadTooLarge();
}

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
    req.agentKey = grantedKey(r.body, r.key, kl);
    return next();
  };
}

/**
 * The validation result `info` with `charge(costCents, opts)` and
 * `reserve(estimateCents, opts)`. `charge` is `kl.trackUsage` of the same key,
 * through `handle` (the key's hash, held natively), so the header is not parsed
 * and the key not hashed again; `reserve` is `kl.reserve` of the same key,
 * through the same handle, with a `Spend` on `kl` when it holds. Both methods are
 * not enumerable and the handle lives only in their closures: JSON.stringify and
 * util.inspect show the validation result alone, and the raw key is nowhere.
 */
function grantedKey(info, handle, kl) {
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
        const held = JSON.parse(await handle.reserve({ ...options, costCents }));
        return held.success ? new Spend(kl, held, costCents) : held;
      });
    },
  });
  return info;
}

/** Spend's hook for streamWithHold: aborts `spend.signal` (the client went away). */
const ABORT = Symbol("keyleash.abort");

/**
 * A hold placed by `req.agentKey.reserve`, and what has been consumed under it
 * so far. `add(cents)` counts consumed cost as the work goes (a chunk sent, a
 * token priced); `settle(costCents?)` charges the actual cost (default: what was
 * added) and `release()` frees the hold uncharged. The first of `settle` and
 * `release` decides: a later `settle` returns the first settle's result (or
 * `{success: false, reason: "hold_released"}` after a release) and a later
 * `release` is false after a settle, as the core answers them, without a second
 * call. `signal` is aborted when `streamWithHold` sees the client go away.
 */
class Spend {
  #kl;
  #consumed = 0;
  /** "held", then "settled" or "released". */
  #state = "held";
  #settled = null;
  #released = null;
  #abort = new AbortController();

  /** @internal Made by `req.agentKey.reserve`. */
  constructor(kl, held, estimateCents) {
    this.#kl = kl;
    /** Always true: a refused reserve is `{success: false, reason}`, not a Spend. */
    this.success = true;
    /** The hold's id, as `kl.settle` and `kl.release` take it. */
    this.holdId = held.holdId;
    /** When the hold stops counting by itself (ISO 8601). */
    this.expiresAt = held.expiresAt;
    /** What could still be spent after the hold; null when uncapped. */
    this.budgetRemainingCents = held.budgetRemainingCents;
    /** The estimate held, in cents. */
    this.estimateCents = estimateCents;
  }

  /** The cost added so far, in cents. */
  get consumedCents() {
    return this.#consumed;
  }

  /** `"held"` until the first settle or release, then `"settled"` or `"released"`. */
  get state() {
    return this.#state;
  }

  /** Aborted when the client of `streamWithHold` goes away: pass it to the upstream call. */
  get signal() {
    return this.#abort.signal;
  }

  /**
   * Counts `cents` (finite, ≥ 0) as consumed; the total so far. Refused with
   * `invalid_argument` once the hold is settled or released: the cost would be lost.
   */
  add(cents) {
    const c = required(cents, "cents", "number");
    if (!Number.isFinite(c) || c < 0) throw invalid("cents must be a finite number ≥ 0");
    if (this.#state !== "held") throw invalid(`the hold is already ${this.#state}: nothing more can be added`);
    this.#consumed += c;
    return this.#consumed;
  }

  /**
   * Charges `costCents` (default: `consumedCents`) in full, even above the
   * estimate, and frees the hold: the result of `kl.settle`. Exactly once: a
   * repeat returns the first result.
   */
  settle(costCents) {
    if (this.#settled !== null) return this.#settled;
    if (this.#released !== null) return Promise.resolve({ success: false, reason: "hold_released" });
    let cost;
    try {
      cost = costCents === undefined ? this.#consumed : required(costCents, "costCents", "number");
    } catch (e) {
      return Promise.reject(e);
    }
    this.#state = "settled";
    this.#settled = this.#kl.settle(this.holdId, { costCents: cost });
    return this.#settled;
  }

  /** Frees the hold uncharged; whether it freed anything (false after a settle). */
  release() {
    if (this.#released !== null) return this.#released;
    if (this.#settled !== null) return Promise.resolve(false);
    this.#state = "released";
    this.#released = this.#kl.release(this.holdId);
    return this.#released;
  }

  /**
   * How a stream that did not end normally ends: what was consumed is settled,
   * and a hold with nothing consumed is released.
   */
  cutShort() {
    return this.#consumed > 0 ? this.settle() : this.release();
  }

  /** @internal */
  [ABORT]() {
    this.#abort.abort();
  }
}

/**
 * The HTTP answer to a charge or reserve that serves no work (docs/http.md): 429
 * `budget_exceeded`; 409 `idempotency_replayed` (with `replayed`: what the
 * repeated idempotency key already did) for a repeat; 422 `idempotency_conflict`
 * for an idempotency key first used for another operation; 401 for a key revoked,
 * expired or unknown since the middleware.
 */
function refusalReply(result) {
  if (result.replayed) return { status: 409, body: { error: "idempotency_replayed", replayed: result.replayed } };
  const reason = result.reason;
  if (reason === "budget_exceeded") return { status: 429, body: { error: reason } };
  if (reason === "idempotency_conflict") return { status: 422, body: { error: reason } };
  return { status: 401, body: { error: reason } };
}

/** Whether `res`'s client is gone: the response was not finished and its connection is closed. */
function clientGone(req, res) {
  return !res.writableFinished && Boolean(res.destroyed || res.socket?.destroyed || req.socket?.destroyed);
}

/** Resolves when `res` can take more (`drain`) or is gone (`close`, or already closed). */
function drained(req, res) {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
    if (clientGone(req, res)) done(); // "close" may have fired before we listened
  });
}

/**
 * Streams `chunks(spend)` (an async iterable of strings or Buffers) to `res`
 * under a hold of `estimateCents` on the request's key (`req.agentKey` from
 * agentKeyMiddleware), with the rules of docs/http.md#streaming:
 *
 * - refused (the estimate does not fit: 429 `budget_exceeded`; revoked or
 *   expired since the middleware: 401): answered, nothing streamed, `chunks` not
 *   called; resolves to null. A repeated `idempotencyKey` is never streamed
 *   under, whether its first hold is still held, settled or released: 409
 *   `{"error": "idempotency_replayed", "replayed": "held" | "settled" |
 *   "released"}`; a key first used for another estimate or for a charge is 422
 *   `idempotency_conflict`. A store failure is 500 `auth_unavailable`,
 *   reported to `onError`, and also resolves to null.
 * - the client is gone by the time the hold is placed (it left during the
 *   reserve): the hold is released at once and nothing is streamed.
 * - the stream ends: `spend.settle()` (what `spend.add` counted, unless `chunks`
 *   settled an actual cost itself), then the response ends.
 * - the client goes away first: `spend.signal` is aborted, `chunks` is stopped at
 *   its next step, and what was consumed is settled (released when nothing was).
 * - `chunks` throws: what was consumed is settled (released when nothing was),
 *   and the promise rejects with that error. Before the first chunk nothing was
 *   sent, so the caller answers (a 502, say); after it the response is cut off.
 *
 * A failing settle or release is reported to `onError` (the hold then frees
 * itself at its ttl). Resolves to the Spend once it is settled or released.
 * Options: `estimateCents` (required), `ttl`, `idempotencyKey` (as for reserve),
 * `contentType` (default `text/plain; charset=utf-8`), `onError`.
 */
async function streamWithHold(req, res, opts, chunks) {
  const {
    estimateCents,
    contentType = "text/plain; charset=utf-8",
    onError = logError,
    ...reserveOptions
  } = strict(opts, "streamWithHold", ["estimateCents"]);
  required(chunks, "chunks", "function");
  if (typeof req?.agentKey?.reserve !== "function") {
    throw invalid("streamWithHold needs req.agentKey, set by agentKeyMiddleware");
  }
  // Listening before the reserve: a client that leaves while it runs is seen.
  let left = false;
  const onLeave = () => {
    if (!res.writableFinished) left = true;
  };
  res.on("close", onLeave);
  let spend;
  try {
    spend = await req.agentKey.reserve(estimateCents, reserveOptions);
  } catch (e) {
    res.off("close", onLeave);
    if (e.code !== "unavailable" && e.code !== "not_migrated") throw e;
    report(onError, new KeyLeashError(e.code, `the key store failed, answered 500 auth_unavailable: ${e.message}`));
    res.status(500).json({ error: "auth_unavailable" });
    return null;
  }
  res.off("close", onLeave);
  if (!spend.success) {
    if (spend.reason === "invalid_cost") throw invalid("estimateCents must be a finite number > 0");
    const r = refusalReply(spend);
    if (!left && !clientGone(req, res)) res.status(r.status).json(r.body);
    return null;
  }
  const finish = (pending) =>
    pending.then(
      (r) => r,
      (e) => report(onError, toKeyLeashError(e)),
    );
  if (left || clientGone(req, res)) {
    // Gone during the reserve: nothing was consumed, the hold is released now.
    spend[ABORT]();
    await finish(spend.release());
    return spend;
  }
  let gone = false;
  const onClose = () => {
    if (!res.writableFinished) {
      gone = true;
      spend[ABORT]();
    }
  };
  res.on("close", onClose);
  let iterator;
  try {
    iterator = chunks(spend)[Symbol.asyncIterator]();
    for (;;) {
      const step = gone ? { done: true } : await iterator.next();
      if (gone || step.done) break;
      if (!res.headersSent) res.status(200).type(contentType);
      if (!res.write(step.value)) await drained(req, res);
      if (!gone && clientGone(req, res)) onClose(); // closed without (or before) its event
    }
  } catch (e) {
    await finish(spend.cutShort());
    if (gone) return spend; // the client's abort, surfacing through the upstream call
    if (res.headersSent) res.destroy();
    throw e;
  } finally {
    res.off("close", onClose);
  }
  if (gone) {
    await iterator.return?.();
    await finish(spend.cutShort());
    return spend;
  }
  await finish(spend.settle());
  if (!res.headersSent) res.status(200).type(contentType);
  res.end();
  return spend;
}

/** Calls `onError(err)`; a throwing onError falls back to one stderr line. */
function report(onError, err) {
  try {
    onError(err);
  } catch {
    logError(err);
  }
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

/** The most an admin page request's body may hold (a revoke is a few bytes). */
const ADMIN_MAX_BODY = 16 * 1024;

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
        res.status(401);
        res.set("WWW-Authenticate", 'Basic realm="keyleash admin", charset="UTF-8"');
        res.set("Cache-Control", "no-store");
        res.json({ error: { code: "unauthorized", message: "the admin page needs authorization" } });
        return;
      }
      const url = new URL(req.url, "http://localhost");
      const original = new URL(req.originalUrl ?? req.url, "http://localhost").pathname;
      // Mounted at /admin, Express gives "/" for both /admin and /admin/.
      const path = url.pathname === "/" && !original.endsWith("/") ? "" : url.pathname;
      const body = req.method === "POST" ? await adminBody(req) : Buffer.alloc(0);
      if (body === undefined) {
        res.status(413).json({ error: { code: "payload_too_large", message: "the body is too large" } });
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

module.exports = {
  KeyLeash,
  adminRouter,
  KeyLeashError,
  AgentKey,
  agentKeyMiddleware,
  createAgentKeyRoutes,
  streamWithHold,
  Spend,
  hasScope,
  payloadTooLarge,
  MAX_BODY_BYTES,
};
