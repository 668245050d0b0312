// Spend: a hold placed by `req.agentKey.reserve` and what has been consumed under
// it; the first of settle and release decides, as the core would answer a repeat.

const { invalid } = require("./errors.js");
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

module.exports = { Spend, ABORT };
