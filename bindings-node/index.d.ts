// Types of the npm package `keyleash` (hand-written over the generated native.d.ts:
// the results are discriminated unions, which the generator cannot express).

/** The stable codes of KeyLeashError (docs/errors.md). */
export type ErrorCode =
  | "invalid_scope"
  | "invalid_duration"
  | "invalid_period"
  | "invalid_argument"
  | "unavailable"
  | "not_migrated";

/**
 * Thrown (as a rejection) by every call the caller can act on; thrown at once by
 * `new AgentKey`, `agentKeyMiddleware` and `createAgentKeyRoutes` for a bad option.
 * An unknown option name or a value of the wrong type is `invalid_argument`. The
 * message never repeats an argument that could be a key.
 */
export declare class KeyLeashError extends Error {
  readonly name: "KeyLeashError";
  /**
   * `invalid_scope`, `invalid_duration`, `invalid_period`, `invalid_argument`,
   * `unavailable`, or `not_migrated` (a table is missing: run `migrate()`).
   */
  readonly code: ErrorCode;
}

/** A budget period: every 24 h, every 7 days, or a calendar month (anchor day kept). */
export type BudgetPeriod = "day" | "week" | "month";

/** Options of `KeyLeash.connect`; an unknown name is refused (`invalid_argument`). */
export interface ConnectOptions {
  /** The keys table, `name` or `schema.name` (Postgres only). Default `sdk_api_keys`. */
  tableName?: string;
  /** Prefix of minted keys: 1 to 16 of `[A-Za-z0-9_-]`. Default `ak_`. */
  keyPrefix?: string;
  /** When set, every scope given to `create` must be in this list. */
  validScopes?: string[] | null;
  /** Maximum connections: a whole number from 1 to 1000 (default 10 for Postgres, 4 for a SQLite file). */
  poolSize?: number;
  /** How long a call waits for a connection before `unavailable`, in ms: 1 to 600000. Default 5000. */
  acquireTimeoutMs?: number;
  /** The longest one statement may run before `unavailable`, in ms: 1 to 86400000. Default 10000. */
  statementTimeoutMs?: number;
  /** Use a manual clock starting at this instant (tests); see `setNow` / `advance`. */
  manualClock?: string | Date;
  /**
   * The opt-in validation cache: valid answers are served from this process for
   * up to `ttlMs` (never past the key's expiry or budget reset). On Postgres,
   * revokes and exhausted budgets reach every process's cache through
   * LISTEN/NOTIFY; changes made by hand in SQL are seen after `ttlMs`. Charges
   * never read the cache. Absent: off. `{}` takes the defaults.
   */
  cache?: CacheOptions;
}

/** Options of the validation cache; an unknown name is refused (`invalid_argument`). */
export interface CacheOptions {
  /** How long a valid answer may be served, in ms: 1 to 3600000. Default 10000. */
  ttlMs?: number;
  /** The most answers kept (the oldest goes first): 1 to 1000000. Default 10000. */
  maxEntries?: number;
}

/** The validation cache's counters (`cacheStats()`). */
export interface CacheStats {
  /** Answers held now. */
  entries: number;
  /** Validates answered from the cache. */
  hits: number;
  /** Validates that went to the store. */
  misses: number;
  /** Whether the cache serves answers: on Postgres only while its LISTEN connection is up. */
  listening: boolean;
  /** How many times the LISTEN connection was lost (each emptied the cache). */
  disconnects: number;
  /** The Postgres channel listened on (null on SQLite); `pg_notify(channel, '*')` empties every cache. */
  channel: string | null;
}

/** Options of `create` and `ensureSubject`; an unknown name is refused (`invalid_argument`). */
export interface CreateOptions {
  /** The owning account (required by `create`, unless `parentId` is given). */
  accountId?: string | number;
  /** The user the key belongs to. */
  userId?: string | null;
  /** Scopes; null or absent grants everything. */
  scopes?: string[] | null;
  /** The cap in cents (sub-cent allowed); null is uncapped. */
  budgetCents?: number | null;
  /** The budget period; null is a lifetime cap. */
  budgetPeriod?: BudgetPeriod | null;
  /** Expiry as a duration from now: `30s`, `15m`, `12h`, `7d`, `2w`, `1mo` (30 days). */
  expiresIn?: string | null;
  /** Expiry as an instant in the future (exclusive with `expiresIn`). */
  expiresAt?: string | Date | null;
  /** The human who authorized the key. */
  delegatedBy?: string | null;
  /** A label. Default `default`. */
  name?: string | null;
  /** A parent key's id (a safe integer ≥ 1): the new key's charges also count against it and its ancestors. */
  parentId?: number | null;
  /** Free-form JSON kept with the key (at most 16 KiB). */
  metadata?: unknown;
  /**
   * Rate limits (at most 8, names unique): every charge and reserve of the key
   * counts against them and against its ancestors'. A refused request counts
   * against nothing.
   */
  limits?: LimitOptions[] | null;
}

/** What a rate limit counts: charges and reserves, the cents charges and settles record, or holds open at once. */
export type LimitUnit = "requests" | "cents" | "concurrent";

/**
 * A rate limit of a key; an unknown name is refused (`invalid_argument`).
 * `burst` may come at once from idle, then `limit` per `period`: any span of
 * time `w` admits at most `burst + limit × w / period`.
 */
export interface LimitOptions {
  /** Names it in refusals and headers: 1 to 32 of `a-z 0-9 _ -`. Default: the unit. */
  name?: string;
  unit: LimitUnit;
  /** How many per period (whole cents for `cents`), or holds open at once: 1 to 1e12. */
  limit: number;
  /** The period of `requests` and `cents` (`1s` to `31d`); a `concurrent` limit has none. */
  period?: string;
  /** How many may come at once from idle: 1 to 1e12, default `limit`; not for `concurrent`. */
  burst?: number;
}

/**
 * A refusal by a rate limit: nothing was counted anywhere. `retryAfter` is the
 * seconds until the same request would pass, null when it never can under this
 * limit (a cost above its burst; a `concurrent` limit, which frees when a hold ends).
 */
export interface RateLimitedResult {
  success: false;
  reason: "rate_limited";
  limit: string;
  retryAfter: number | null;
  replayed?: undefined;
}

/**
 * The result of `create`. `key` is the raw key: shown once, never stored.
 * `console.log` / `util.inspect` show it as `'<redacted>'`; `JSON.stringify` keeps it.
 */
export interface CreatedKey {
  key: string;
  id: number;
  scopes: string[] | null;
  budgetCents: number | null;
  budgetPeriod: BudgetPeriod | null;
  /** ISO 8601 with milliseconds and `Z`. */
  expiresAt: string | null;
}

/** A valid key, as `validate` sees it. Amounts in cents, times as ISO strings. */
export interface ValidKey {
  valid: true;
  id: number;
  accountId: string;
  userId: string | null;
  scopes: string[] | null;
  budgetCents: number | null;
  budgetUsedCents: number;
  budgetHeldCents: number;
  /** What can still be spent: the smallest remaining of the key and its ancestors. */
  budgetRemainingCents: number | null;
  budgetPeriod: BudgetPeriod | null;
  budgetResetAt: string | null;
  expiresAt: string | null;
  delegatedBy: string | null;
  name: string;
  /** The key's own rate limits; absent when it has none. */
  limits?: LimitView[];
}

/** A rate limit as `validate` and `list` show it: what it allows, not what is used. */
export interface LimitView {
  name: string;
  unit: LimitUnit;
  limit: number;
  /** Whole seconds; null for `concurrent`. */
  periodSeconds: number | null;
  /** Null for `concurrent`. */
  burst: number | null;
}

/** Why a key is not valid. */
export type InvalidReason = "invalid" | "expired" | "revoked" | "budget_exceeded";

/** A key that may not be used. */
export interface InvalidKey {
  valid: false;
  reason: InvalidReason;
}

/** The result of `validate`: discriminated on `valid`. */
export type ValidateResult = ValidKey | InvalidKey;

/**
 * Why a charge or a reserve was refused. `idempotency_conflict`: the idempotency
 * key was first used for another cost or the other operation (nothing changed).
 */
export type ChargeRefusal =
  | "budget_exceeded"
  | "invalid_key"
  | "invalid_cost"
  | "expired"
  | "revoked"
  | "idempotency_conflict";

/**
 * The result of `trackUsage`. A zero cost succeeds with no numbers. A repeat of an
 * idempotency key with the same cost succeeds with the first charge's numbers and
 * `replayed: "charged"`: nothing was charged again, so serve no new work under it.
 */
export type TrackUsageResult =
  | { success: true; budgetUsedCents: number; budgetRemainingCents: number | null; replayed?: undefined }
  | { success: true; budgetUsedCents: number; budgetRemainingCents: number | null; replayed: "charged" }
  | { success: true; budgetUsedCents?: undefined; budgetRemainingCents?: undefined; replayed?: undefined }
  | { success: false; reason: ChargeRefusal; replayed?: undefined }
  | RateLimitedResult;

/** Where the hold a replayed reserve names stands. */
export type HoldStatus = "held" | "settled" | "released";

/**
 * A reserve that repeated an idempotency key: nothing new is held, and it is not a
 * success even while the first hold is held (there is no new budget to spend).
 * It names the first hold, and where that hold stands, so the caller that placed
 * it can still settle or release it.
 */
export interface ReserveReplayed {
  success: false;
  reason: "idempotency_replayed";
  replayed: HoldStatus;
  holdId: number;
  expiresAt: string;
  budgetRemainingCents: number | null;
}

/** A hold to place before a spend (`reserve`). */
export interface ReserveOptions {
  /** The estimate in cents: finite and > 0 (else `invalid_cost`). */
  costCents: number;
  /** How long the hold counts unless settled or released: a duration from `1s` to `1d`; default `5m`. */
  ttl?: string;
  /**
   * Names this reserve of this key: a repeat with the same estimate holds nothing
   * and answers `ReserveReplayed`; another estimate, or a key a charge used, is
   * refused with `idempotency_conflict`.
   */
  idempotencyKey?: string;
}

/** The result of `reserve`. */
export type ReserveResult =
  | { success: true; holdId: number; expiresAt: string; budgetRemainingCents: number | null; replayed?: undefined }
  | ReserveReplayed
  | { success: false; reason: ChargeRefusal; replayed?: undefined }
  | RateLimitedResult;

/** Why a settle was refused. */
/** Options of `setAccountBudget`. */
export interface AccountBudgetOptions {
  /** The ceiling in cents (0 to 1e12), or null to remove the account's ceiling. */
  budgetCents: number | null;
  /** `day`, `week` or `month`; absent for a lifetime ceiling. Not allowed with a null budgetCents. */
  budgetPeriod?: BudgetPeriod | null;
}

export type SettleRefusal = "unknown_hold" | "hold_released" | "invalid_cost";

/** The result of `settle`. */
export type SettleResult =
  | { success: true; budgetUsedCents: number; budgetRemainingCents: number | null }
  | { success: false; reason: SettleRefusal };

/** A charge. */
export interface ChargeOptions {
  /** The cost in cents: finite and ≥ 0 (else `invalid_cost`); rounded to the micro-cent. */
  costCents: number;
  /** A repeat with the same idempotency key is applied once and returns the first result. */
  idempotencyKey?: string | null;
}

/** One key of an account, without its secret. */
export interface KeySummary {
  id: number;
  accountId: string;
  userId: string | null;
  name: string;
  keyPrefix: string;
  scopes: string[] | null;
  budgetCents: number | null;
  budgetUsedCents: number;
  budgetHeldCents: number;
  budgetPeriod: BudgetPeriod | null;
  budgetResetAt: string | null;
  expiresAt: string | null;
  revokedAt: string | null;
  createdAt: string | null;
  lastUsedAt: string | null;
  delegatedBy: string | null;
  externalSubject: string | null;
  metadata: unknown;
  /** The key's own rate limits; absent when it has none. */
  limits?: LimitView[];
}

/** One ledger row: a successful charge. */
export interface LedgerEntry {
  id: number;
  keyId: number;
  amountCents: number;
  createdAt: string;
  idempotencyKey: string | null;
  holdId: number | null;
}

/** An HTTP answer of the core: the status and the JSON body to send. */
export interface HttpReply {
  status: number;
  body: unknown;
  /** On 429 `rate_limited`: seconds for a `Retry-After` header. */
  retryAfter?: number;
  /** On 500 `auth_unavailable`: what failed in the store, to log (never sent; never a key or password). */
  cause?: string;
}

/** The body of 413: a request body over `MAX_BODY_BYTES`. */
export interface PayloadTooLargeBody {
  error: "payload_too_large";
  message: string;
}

/** The body of 429 from `POST /signup` over a signup rate limit (with a `Retry-After` header). */
export interface RateLimitedBody {
  error: "rate_limited";
  message: string;
  /** Seconds until a signup from this address (or domain) is accepted again. */
  retryAfter: number;
}

/** How far to move a manual clock. */
export interface AdvanceBy {
  seconds?: number;
  minutes?: number;
  hours?: number;
  days?: number;
}

/** Scoped, budgeted, time-bounded API keys on Postgres or SQLite. */
export declare class KeyLeash {
  /** Connects to `postgres://…`, `sqlite:path.db` or `sqlite::memory:`. */
  static connect(url: string, options?: ConnectOptions): Promise<KeyLeash>;
  /** Creates or adopts the schema (agentkey's table included); idempotent. */
  migrate(): Promise<void>;
  /** Mints a key. Rejects with `invalid_scope`, `invalid_period`, `invalid_duration`, `invalid_argument`. */
  create(options: CreateOptions): Promise<CreatedKey>;
  /** Validates a raw key: revoked beats expired beats over budget. */
  validate(rawKey: string): Promise<ValidateResult>;
  /** Charges a key after the fact, atomically (used + held + cost ≤ cap for the key and its ancestors). */
  trackUsage(rawKey: string, charge: ChargeOptions): Promise<TrackUsageResult>;
  /** Whether a validation result grants `scope` (null scopes = all, `admin`, `prefix.*`). */
  hasScope(result: ValidateResult, scope: string): boolean;
  /** Soft-revokes a key (`keyId`: a safe integer ≥ 1; only a key of `accountId`, when given); whether one was revoked. */
  revoke(keyId: number, accountId?: string | number | null): Promise<boolean>;
  /**
   * Replaces a key's rate limits (`[]`: none; only a key of `accountId`, when
   * given), checked as `create` checks them. A limit kept under the same name and
   * unit keeps what it has counted, restated at its new rate (no fresh burst).
   * Resolves to whether a key was found.
   */
  setLimits(keyId: number, limits: LimitOptions[], accountId?: string | number | null): Promise<boolean>;
  /** Creates, once, a budget row bound to an external subject (idempotent). */
  ensureSubject(subject: string, options?: CreateOptions): Promise<void>;
  /** Validates a subject row. */
  validateBySubject(subject: string): Promise<ValidateResult>;
  /** Holds an estimate before a spend; settle or release it (docs/semantics.md "Holds"). */
  reserve(rawKey: string, options: ReserveOptions): Promise<ReserveResult>;
  /** Charges a hold's actual cost in full and frees it; a repeat replays the first result. */
  settle(holdId: number, options: { costCents: number }): Promise<SettleResult>;
  /** Frees a hold without charging it; whether it freed anything. */
  release(holdId: number): Promise<boolean>;
  /**
   * Sets an account's ceiling over the sum of its keys (charges and holds); `budgetCents: null`
   * removes it (docs/semantics.md "Account ceilings").
   */
  setAccountBudget(accountId: string, options: AccountBudgetOptions): Promise<void>;
  /** The validation cache's counters, or null when the cache is off. */
  cacheStats(): CacheStats | null;
  /** Charges a subject row. */
  trackUsageBySubject(subject: string, charge: ChargeOptions): Promise<TrackUsageResult>;
  /** The keys of an account (revoked ones included), without secrets. */
  list(accountId: string | number): Promise<KeySummary[]>;
  /** A key's ledger rows, `from` inclusive and `to` exclusive. */
  usage(keyId: number, range?: { from?: string | Date; to?: string | Date }): Promise<LedgerEntry[]>;
  /** The middleware's decision for one request (used by the Express integration). */
  authenticate(authorization: string | null | undefined, scope?: string | null): Promise<HttpReply>;
  /**
   * One self-serve request from the client at `clientAddress` (null: the shared
   * bucket of unknown addresses), with the raw body and the `Content-Type` header
   * whose charset the core checks (used by the Express integration).
   */
  selfServe(
    route: "signup" | "me" | "mint" | "revoke",
    id: string | null | undefined,
    authorization: string | null | undefined,
    body: string | Uint8Array,
    clientAddress?: string | null,
    options?: SelfServeOptions,
    contentType?: string | null,
  ): Promise<HttpReply>;
  /** The clock's reading, ISO 8601. */
  now(): Promise<string>;
  /** Sets a manual clock (rejects with `invalid_argument` on the system clock). */
  setNow(at: string | Date): Promise<void>;
  /** Moves a manual clock. */
  advance(by: AdvanceBy): Promise<void>;
  /** Closes the connection pool; later calls reject with `unavailable`. */
  close(): Promise<void>;
}

/** Options of `new AgentKey(...)`: agentkey's, with a `pg` Pool. */
export interface AgentKeyOptions extends ConnectOptions {
  /** A `pg` Pool: its connection settings are read; keyleash opens its own pool. */
  pool?: { options?: object };
  /** Or a database URL instead of a pool. */
  url?: string;
}

/** agentkey's class, backed by keyleash: change the import, keep the code. */
export declare class AgentKey extends KeyLeash {
  constructor(options: AgentKeyOptions);
}

/** Whether a validation result grants `scope`. */
export declare function hasScope(result: ValidateResult | string[] | null, scope: string): boolean;

/** Called once per store failure (the request is answered 500 `auth_unavailable`). */
export type OnError = (err: KeyLeashError) => void;

/** Options of `agentKeyMiddleware`; an unknown name throws `invalid_argument`. */
export interface MiddlewareOptions {
  /** The scope every request's key must hold. */
  scope?: string;
  /** Store failures; default: one `keyleash: …` line on stderr per failure. */
  onError?: OnError;
}

/** Options of `req.agentKey.charge`; an unknown name rejects with `invalid_argument`. */
export interface KeyChargeOptions {
  /** A repeat with the same idempotency key is applied once and returns the first result. */
  idempotencyKey?: string | null;
}

/**
 * `req.agentKey`: the validation result of the request's key, and `charge`. The raw
 * key is not on it: JSON.stringify and util.inspect show the validation result only.
 */
export interface GrantedKey extends ValidKey {
  /**
   * Charges the request's key, as `kl.trackUsage(rawKey, { costCents, ...options })`
   * would, without parsing the header or hashing the key again. Not enumerable.
   */
  charge(costCents: number, options?: KeyChargeOptions): Promise<TrackUsageResult>;
  /**
   * Holds `estimateCents` of the request's key, as `kl.reserve(rawKey, { costCents:
   * estimateCents, ...options })` would: a `Spend` when it fits the key and every
   * ancestor, else the refusal (`budget_exceeded`, or the key was revoked or expired
   * since the middleware; `invalid_cost` for an estimate that is not > 0). Not enumerable.
   */
  reserve(estimateCents: number, options?: KeyReserveOptions): Promise<Spend | ReserveRefused>;
}

/** Options of `req.agentKey.reserve`; an unknown name rejects with `invalid_argument`. */
export interface KeyReserveOptions {
  /** How long the hold counts unless settled or released: `1s` to `1d`; default `5m`. */
  ttl?: string | null;
  /** Names this reserve of this key, as for `kl.reserve`: a repeat is a `ReserveReplayed`. */
  idempotencyKey?: string | null;
}

/** A refused reserve: nothing is held (a replay names the first hold). */
export type ReserveRefused =
  | { success: false; reason: ChargeRefusal; replayed?: undefined }
  | ReserveReplayed
  | RateLimitedResult;

/**
 * A hold placed by `req.agentKey.reserve`, and what has been consumed under it. The
 * first of `settle` and `release` decides; repeats answer as the core would (a
 * settle replays, a release after a settle is false) without a second call.
 */
export declare class Spend {
  private constructor();
  /** Always true: a refused reserve is `{ success: false, reason }`. */
  readonly success: true;
  /** The hold's id, as `kl.settle` and `kl.release` take it. */
  readonly holdId: number;
  /** When the hold stops counting by itself (ISO 8601). */
  readonly expiresAt: string;
  /** What could still be spent after the hold; null when uncapped. */
  readonly budgetRemainingCents: number | null;
  /** The estimate held, in cents. */
  readonly estimateCents: number;
  /** The cost `add` counted so far, in cents. */
  readonly consumedCents: number;
  /** `"held"` until the first settle or release. */
  readonly state: "held" | "settled" | "released";
  /** Aborted when `streamWithHold`'s client goes away: pass it to the upstream call. */
  readonly signal: AbortSignal;
  /**
   * Counts `cents` (finite, ≥ 0) as consumed; returns the total. Throws
   * `invalid_argument` once the hold is settled or released.
   */
  add(cents: number): number;
  /** Charges `costCents` (default: `consumedCents`) in full and frees the hold; exactly once. */
  settle(costCents?: number): Promise<SettleResult>;
  /** Frees the hold uncharged; whether it freed anything (false after a settle). */
  release(): Promise<boolean>;
  /** Settles what was consumed, or releases when nothing was (a stream cut short). */
  cutShort(): Promise<SettleResult | boolean>;
}

/** Options of `streamWithHold`; an unknown name throws `invalid_argument`. */
export interface StreamWithHoldOptions {
  /** The most the stream may cost, held before it starts: > 0. */
  estimateCents: number;
  /** The hold's ttl: `1s` to `1d`; default `5m`. */
  ttl?: string | null;
  /** Repeats with the same key and idempotency key share the first hold. */
  idempotencyKey?: string | null;
  /** The response's Content-Type. Default `text/plain; charset=utf-8`. */
  contentType?: string;
  /** Store failures (a reserve: answered 500; a settle or release: the hold expires). */
  onError?: OnError;
}

/**
 * The members of an Express response (a Node `ServerResponse`) that `streamWithHold`
 * uses, typed structurally so that no `@types/node` or `@types/express` is needed.
 */
export interface StreamResponse {
  readonly headersSent: boolean;
  readonly writableFinished: boolean;
  status(code: number): this;
  json(body: unknown): this;
  type(contentType: string): this;
  setHeader(name: string, value: string): unknown;
  write(chunk: string | Uint8Array): boolean;
  end(): unknown;
  destroy(error?: Error): unknown;
  on(event: "close" | "drain", listener: () => void): unknown;
  off(event: "close" | "drain", listener: () => void): unknown;
}

/**
 * Streams `chunks(spend)` to `res` under a hold of `estimateCents` on
 * `req.agentKey`, by docs/http.md#streaming: refused → 429/401 (500 when the store
 * fails), resolves to null; normal end → settles what `spend.add` counted; client
 * gone → `spend.signal` aborts, settles what was consumed (releases when nothing
 * was); `chunks` throws → the same, and rejects with its error (before the first
 * chunk nothing was sent, so the caller answers). Otherwise resolves to the Spend.
 */
export declare function streamWithHold(
  req: { agentKey?: GrantedKey },
  res: StreamResponse,
  options: StreamWithHoldOptions,
  chunks: (spend: Spend) => AsyncIterable<string | Uint8Array>,
): Promise<Spend | null>;

/**
 * An Express (4 or 5) handler, typed without importing Express, so that a project that
 * does not use Express needs no `@types/express`: `app.use` and `app.post` take it as
 * they take any handler. With `@types/express` installed, `req.agentKey` is typed too.
 */
export type ExpressHandler = (req: unknown, res: unknown, next: (err?: unknown) => void) => void;

/** Express middleware: the statuses of docs/http.md; attaches `req.agentKey`. */
export declare function agentKeyMiddleware(kl: KeyLeash, options?: MiddlewareOptions): ExpressHandler;

/** The largest request body the self-serve routes read: 65536 bytes. */
export declare const MAX_BODY_BYTES: number;

/** The core's 413 answer, for an app's own routes that read a body. */
export declare function payloadTooLarge(): { status: 413; body: PayloadTooLargeBody };

/** The body of a charge or reserve refused where work was to be served. */
export type SpendRefusedBody =
  | { error: "idempotency_replayed"; replayed: "charged" | HoldStatus }
  | { error: ChargeRefusal }
  | { error: "rate_limited"; limit: string; message: string; retryAfter: number | null };

/**
 * The core's answer to a charge or reserve result that serves no work (`success`
 * false, or `replayed` set), as `streamWithHold` answers a refused reserve: 409
 * `idempotency_replayed` for a repeated idempotency key, 429 `budget_exceeded`,
 * 429 `rate_limited` (with `Retry-After` in `headers` when waiting ends it), 422
 * `idempotency_conflict`, else 401. Send `headers` too. A result that serves work throws
 * `invalid_argument`.
 */
export declare function spendRefused(result: TrackUsageResult | ReserveResult): {
  status: 401 | 409 | 422 | 429;
  body: SpendRefusedBody;
  /** `Retry-After` (whole seconds) for a rate limit's refusal that waiting ends; else empty. */
  headers: { "Retry-After"?: string };
};

/** Options of `storeFailed`. */
export interface StoreFailedOptions {
  /** Called once with the failure (default: one `keyleash: …` line on stderr). */
  onError?: OnError;
}

/**
 * The core's answer to a key store failure `err` (what a call rejects with when the
 * store is down), as the middleware answers one, for an app's own routes; `err` is
 * reported to `onError` once first.
 */
export declare function storeFailed(
  err: unknown,
  options?: StoreFailedOptions,
): { status: 500; body: { error: "auth_unavailable" } };

/** Options of `selfServe`: the self-serve routes' own options. */
export interface SelfServeOptions {
  /** The scopes `POST /signup` may grant; none when unset. */
  signupScopes?: string[];
  /** Whether signup needs an email. Default true. */
  requireEmailForSignup?: boolean;
  /** Expiry of signup keys and the longest a signup may ask for. Default `24h`. */
  signupExpiresIn?: string;
  /** Budget of signup keys and the largest a signup may ask for. */
  signupBudgetCents?: number;
  /** Period of the signup budget; a signup asking for another period is refused (400). */
  signupBudgetPeriod?: BudgetPeriod;
  /** Signups per client address (`req.ip`) per hour, 1 to 1000000; default 20; `false` turns it off. */
  signupRateLimit?: number | false;
  /** Signups per email domain per hour, 1 to 1000000; default none. */
  signupRateLimitPerDomain?: number;
  /** Children a key tree (a root key and its descendants together) may mint (`POST /sdk-keys`) per hour, 1 to 1000000; default 50; `false` turns it off. */
  mintRateLimit?: number | false;
}

/** Options of `createAgentKeyRoutes`; an unknown name throws `invalid_argument`. */
export interface RouteOptions extends SelfServeOptions {
  /** Store failures; default: one `keyleash: …` line on stderr per failure. */
  onError?: OnError;
}

/**
 * `POST /signup`, `GET /sdk-keys/me`, `POST /sdk-keys`, `DELETE /sdk-keys/:id`.
 * Bodies over `MAX_BODY_BYTES` are 413; a signup or mint over a rate limit is 429 with `Retry-After`.
 */
export declare function createAgentKeyRoutes(kl: KeyLeash, options?: RouteOptions): ExpressHandler;

/** Options of `adminRouter`; an unknown name throws `invalid_argument`. */
export interface AdminRouterOptions {
  /**
   * Asked first on every request to the page (with Express's `req`); only `true`
   * (or a promise of `true`) lets it through. Without it every request gets 401.
   */
  authorize?(req: unknown): boolean | Promise<boolean>;
}

/**
 * The operators' admin page (docs/admin.md), to mount under a path:
 * `app.use("/admin", adminRouter(kl, { authorize }))`. Accounts and keys with
 * budget, used, held, period, expiry and status; spend per day charts; search;
 * revoke (CSRF-protected). A refused request gets 401 with a Basic challenge.
 */
export declare function adminRouter(kl: KeyLeash, options?: AdminRouterOptions): ExpressHandler;

declare global {
  namespace Express {
    interface Request {
      /** The validation result of the request's key and its `charge`, set by `agentKeyMiddleware`. */
      agentKey?: GrantedKey;
    }
  }
}
