// The client, KeyLeash: every operation of the package, each a checked call into
// the native handle. Validates gathered in one turn of the event loop cross as one
// native call; what the core answers without the store comes back synchronously.

const util = require("node:util");
const native = require("./addon.js");
const { invalid, toKeyLeashError, call } = require("./errors.js");
const { checked, required, strict } = require("./options.js");

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
    const now = n.validateNowOrRef(rawKey);
    if (typeof now === "string") return Promise.resolve(JSON.parse(now));
    // A miss comes back as the key hashed once (the cache looked at once). The
    // misses wait for the end of this turn of the event loop (a microtask) and
    // cross into the core together: one native task and one wake-up for all of
    // them instead of one each. The core answers each as if it had come alone.
    if (this.#validates === null) {
      this.#validates = [];
      queueMicrotask(() => this.#sendValidates(n));
    }
    return new Promise((resolve, reject) => this.#validates.push({ key: now, resolve, reject }));
  }

  /** Sends the gathered misses as one `validateRefs` and settles each caller. */
  #sendValidates(n) {
    const batch = this.#validates;
    this.#validates = null;
    n.validateRefs(batch.map((v) => v.key)).then(
      (answers) => {
        for (let i = 0; i < batch.length; i++) {
          const a = answers[i];
          if (typeof a === "string") batch[i].resolve(JSON.parse(a));
          else batch[i].reject(toKeyLeashError(a));
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

  /**
   * Replaces a key's rate limits (`[]`: none; only of `accountId`, when given),
   * checked as `create` checks them; a limit kept under its name and unit keeps
   * what it counted. Resolves to whether a key was found.
   */
  setLimits(keyId, limits, accountId) {
    return this.#run((n) =>
      n.setLimits(
        required(keyId, "keyId", "id"),
        required(limits, "limits", "limits"),
        checked(accountId, "accountId", "account"),
      ),
    );
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
    return this.#run(async (n) => {
      const r = await n.authenticateKey(
        checked(authorization, "authorization", "string"),
        checked(scope, "scope", "string"),
      );
      // The body crosses as JSON text, as validate's answer does (the cheaper crossing).
      r.body = JSON.parse(r.body);
      return r;
    });
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

module.exports = { KeyLeash, hasScope, AUTHENTICATE_KEY };
