// The JavaScript half of the npm package `keyleash`. Every rule lives in the Rust
// core (see native.js); this file only adapts calling conventions: errors become
// KeyLeashError with a `.code`, Dates become ISO strings, and the agentkey drop-in
// and the Express middleware and routes forward requests to the core's HTTP rules.

const native = require("./native.js");

/** Error of every keyleash call the caller can act on; `.code` is stable. */
class KeyLeashError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "KeyLeashError";
    this.code = code;
  }
}

const TAGGED = /^\[keyleash:([a-z_]+)\] ([\s\S]*)$/;

function toKeyLeashError(e) {
  if (e instanceof KeyLeashError) return e;
  const message = e instanceof Error ? e.message : String(e);
  const tagged = TAGGED.exec(message);
  if (tagged) return new KeyLeashError(tagged[1], tagged[2]);
  // Anything else comes from converting arguments (a string where a number was
  // expected, a missing field): the caller's mistake.
  return new KeyLeashError("invalid_argument", message);
}

/** Runs `fn` and rejects with a KeyLeashError instead of whatever it threw. */
async function call(fn) {
  try {
    return await fn();
  } catch (e) {
    throw toKeyLeashError(e);
  }
}

function iso(value, field) {
  if (value === undefined || value === null) return value;
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new KeyLeashError("invalid_argument", `${field} is an invalid Date`);
    return value.toISOString();
  }
  return value;
}

/** A copy of an options object without its null and undefined fields (null means absent). */
function options(value, what) {
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new KeyLeashError("invalid_argument", `${what} must be an object`);
  }
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null && v !== undefined));
}

function createArgs(opts) {
  const o = options(opts, "create options");
  if (typeof o.accountId === "number") o.accountId = String(o.accountId);
  o.expiresAt = iso(o.expiresAt, "expiresAt");
  return o;
}

function chargeArgs(opts) {
  const { costCents, idempotencyKey } = options(opts, "charge options");
  return options({ costCents, idempotencyKey });
}

/**
 * Scoped, budgeted, time-bounded API keys on Postgres or SQLite.
 * Create one with `await KeyLeash.connect(url, options)`.
 */
class KeyLeash {
  #ready;

  /** @internal Use KeyLeash.connect (or new AgentKey({ pool })). */
  constructor(ready) {
    this.#ready = ready;
  }

  /** Connects to `postgres://…`, `sqlite:path.db` or `sqlite::memory:`. */
  static async connect(url, opts) {
    const nativeHandle = await call(() => {
      const o = options(opts, "options");
      o.manualClock = iso(o.manualClock, "manualClock");
      return native.NativeKeyLeash.connect(url, o);
    });
    return new KeyLeash(Promise.resolve(nativeHandle));
  }

  #run(fn) {
    return call(async () => fn(await this.#ready));
  }

  /** Creates or adopts the schema; idempotent. */
  migrate() {
    return this.#run((n) => n.migrate());
  }

  /** Mints a key; the raw key is in the result once and never again. */
  create(opts) {
    return this.#run((n) => n.create(createArgs(opts)));
  }

  /** Validates a raw key. */
  validate(rawKey) {
    return this.#run((n) => n.validate(rawKey));
  }

  /** Charges a key after the fact, atomically. */
  trackUsage(rawKey, opts) {
    return this.#run((n) => n.trackUsage(rawKey, chargeArgs(opts)));
  }

  /** Whether a validation result grants `scope`. */
  hasScope(result, scope) {
    return hasScope(result, scope);
  }

  /** Soft-revokes a key (only of `accountId`, when given). */
  revoke(keyId, accountId) {
    return this.#run((n) => n.revoke(keyId, accountId === undefined || accountId === null ? null : String(accountId)));
  }

  /** Creates, once, a budget row bound to an external subject. */
  ensureSubject(subject, opts) {
    return this.#run((n) => n.ensureSubject(subject, createArgs(opts)));
  }

  /** Validates a subject row. */
  validateBySubject(subject) {
    return this.#run((n) => n.validateBySubject(subject));
  }

  /** Charges a subject row. */
  trackUsageBySubject(subject, opts) {
    return this.#run((n) => n.trackUsageBySubject(subject, chargeArgs(opts)));
  }

  /** The keys of an account, without secrets. */
  list(accountId) {
    return this.#run((n) => n.list(String(accountId)));
  }

  /** A key's ledger rows, `from` inclusive and `to` exclusive. */
  usage(keyId, range) {
    return this.#run((n) => {
      const { from, to } = options(range, "usage range");
      return n.usage(keyId, iso(from, "from") ?? null, iso(to, "to") ?? null);
    });
  }

  /** The middleware's decision for one request: `{status, body}`. */
  authenticate(authorization, scope) {
    return this.#run((n) => n.authenticate(authorization ?? null, scope ?? null));
  }

  /** One self-serve request (`signup`, `me`, `mint`, `revoke`): `{status, body}`. */
  selfServe(route, id, authorization, body, opts) {
    return this.#run((n) =>
      n.selfServe(route, id ?? null, authorization ?? null, body, options(opts, "route options")),
    );
  }

  /** The clock's reading as an ISO string. */
  now() {
    return this.#run((n) => n.now());
  }

  /** Sets a manual clock. */
  setNow(at) {
    return this.#run((n) => n.setNow(iso(at, "at")));
  }

  /** Moves a manual clock by any mix of `{seconds, minutes, hours, days}`. */
  advance(by) {
    return this.#run((n) => n.advance(options(by, "advance")));
  }

  /** Closes the connection pool. */
  close() {
    return this.#run((n) => n.close());
  }
}

/** Whether a validation result (or a key's scopes) grants `scope`. */
function hasScope(result, scope) {
  if (!result || result.valid === false) return false;
  const scopes = Array.isArray(result) ? result : (result.scopes ?? null);
  return native.hasScope(scopes, String(scope));
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
 * validScopes })`. It reads the `pg` Pool's connection settings and opens its own
 * pool; the first call waits for the connection.
 */
class AgentKey extends KeyLeash {
  constructor(opts) {
    const { pool, url, ...rest } = options(opts, "AgentKey options");
    const ready = (async () => {
      const target = url ?? (pool ? urlFromPool(pool) : undefined);
      if (!target) throw new KeyLeashError("invalid_argument", "AgentKey needs a pg Pool (pool) or a url");
      const o = options(rest, "AgentKey options");
      if (o.poolSize === undefined && pool?.options?.max) o.poolSize = pool.options.max;
      return call(() => native.NativeKeyLeash.connect(target, o));
    })();
    ready.catch(() => {}); // reported by the first call instead
    super(ready);
  }
}

const AUTH_UNAVAILABLE = { status: 500, body: { error: "auth_unavailable" } };

/**
 * Express middleware: authenticates `Authorization: Bearer <key>`, requires
 * `scope` when given, attaches the validation result as `req.agentKey`, and
 * answers SPEC §6's statuses (fail closed with 500 when the store is down).
 */
function agentKeyMiddleware(kl, opts) {
  const scope = opts?.scope ?? null;
  return async function keyleashMiddleware(req, res, next) {
    const r = await kl.authenticate(req.headers.authorization ?? null, scope).catch(() => AUTH_UNAVAILABLE);
    if (r.status !== 200) return res.status(r.status).json(r.body);
    req.agentKey = r.body;
    return next();
  };
}

/**
 * The self-serve routes as an Express Router: `POST /signup`, `GET /sdk-keys/me`,
 * `POST /sdk-keys`, `DELETE /sdk-keys/:id`. Options: `signupScopes`,
 * `requireEmailForSignup` (default true), `signupExpiresIn` (default "24h"),
 * `signupBudgetCents`, `signupBudgetPeriod`.
 */
function createAgentKeyRoutes(kl, opts) {
  const express = require("express");
  const o = options(opts, "route options");
  const { signupScopes, requireEmailForSignup, signupExpiresIn, signupBudgetCents, signupBudgetPeriod } = o;
  const routeOptions = { signupScopes, requireEmailForSignup, signupExpiresIn, signupBudgetCents, signupBudgetPeriod };
  const router = express.Router();
  // The raw body goes to the core, which parses it, so both packages answer a
  // malformed body identically. A body an app-level parser already read is reused.
  const rawBody = express.text({ type: () => true, limit: "64kb" });
  const handle = (route) => async (req, res) => {
    const body = typeof req.body === "string" ? req.body : req.body ? JSON.stringify(req.body) : "";
    const r = await kl
      .selfServe(route, req.params.id ?? null, req.headers.authorization ?? null, body, routeOptions)
      .catch(() => AUTH_UNAVAILABLE);
    res.status(r.status).json(r.body);
  };
  router.post("/signup", rawBody, handle("signup"));
  router.get("/sdk-keys/me", handle("me"));
  router.post("/sdk-keys", rawBody, handle("mint"));
  router.delete("/sdk-keys/:id", handle("revoke"));
  router.use((err, _req, res, _next) => {
    const status = err.status === 413 ? 413 : 400;
    res.status(status).json({ error: "invalid_argument", message: "request body: could not be read" });
  });
  return router;
}

module.exports = {
  KeyLeash,
  KeyLeashError,
  AgentKey,
  agentKeyMiddleware,
  createAgentKeyRoutes,
  hasScope,
};
