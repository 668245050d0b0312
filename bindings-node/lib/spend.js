// Spend: a hold placed by `req.agentKey.reserve` and what has been consumed under
// it. Every rule (the running total, the first of settle and release deciding,
// what each repeat answers) is the core's hold handle (core/src/ops/hold.rs); this
// class adds what belongs to JavaScript: the AbortSignal, typed errors, and one
// promise (one result object) shared by the first ending and its repeats.

const { invalid, call, toKeyLeashError } = require("./errors.js");
const { required } = require("./options.js");

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
  /** The core's handle of the hold (NativeHold). */
  #hold;
  /** The first ending's promise, which every repeat of it returns. */
  #ending = null;
  #abort = new AbortController();

  /** @internal Made by `req.agentKey.reserve` from the native hold handle. */
  constructor(hold) {
    this.#hold = hold;
    /** Always true: a refused reserve is `{success: false, reason}`, not a Spend. */
    this.success = true;
    /** The hold's id, as `kl.settle` and `kl.release` take it. */
    this.holdId = hold.holdId;
    /** When the hold stops counting by itself (ISO 8601). */
    this.expiresAt = hold.expiresAt;
    /** What could still be spent after the hold; null when uncapped. */
    this.budgetRemainingCents = hold.budgetRemainingCents;
    /** The estimate held, in cents. */
    this.estimateCents = hold.estimateCents;
  }

  /** The cost added so far, in cents. */
  get consumedCents() {
    return this.#hold.consumedCents;
  }

  /** `"held"` until the first settle or release, then `"settled"` or `"released"`. */
  get state() {
    return this.#hold.state;
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
    const total = this.#hold.add(required(cents, "cents", "number"));
    if (typeof total === "string") throw invalid(total);
    return total;
  }

  /**
   * Charges `costCents` (default: `consumedCents`) in full, even above the
   * estimate, and frees the hold: the result of `kl.settle`. Exactly once: a
   * repeat returns the first result.
   */
  settle(costCents) {
    let pending;
    try {
      pending = this.#hold.settle(costCents === undefined ? undefined : required(costCents, "costCents", "number"));
    } catch (e) {
      return Promise.reject(toKeyLeashError(e));
    }
    return this.#answer(pending, JSON.parse);
  }

  /** Frees the hold uncharged; whether it freed anything (false after a settle). */
  release() {
    return this.#answer(this.#hold.release(), (freed) => freed);
  }

  /**
   * How a stream that did not end normally ends: what was consumed is settled,
   * and a hold with nothing consumed is released.
   */
  cutShort() {
    return this.#answer(this.#hold.cutShort(), (r) => (typeof r === "string" ? JSON.parse(r) : r));
  }

  /**
   * The caller's promise of a native ending: `pending` converted, or, when the
   * core says the call repeats the first ending (null), that ending's promise.
   * The first ending is always the first call that gets one.
   */
  #answer(pending, convert) {
    if (pending === null) return this.#ending;
    const answer = call(async () => convert(await pending));
    this.#ending ??= answer;
    return answer;
  }

  /** @internal */
  [ABORT]() {
    this.#abort.abort();
  }
}

module.exports = { Spend, ABORT };
