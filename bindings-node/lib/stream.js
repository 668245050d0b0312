// streamWithHold: streams an Express response under a hold on the request's key
// (docs/http.md#streaming), settling what was consumed however the stream ends;
// and spendRefused, the core's answer to a charge or reserve that serves no work.

const native = require("./addon.js");
const { invalid, toKeyLeashError } = require("./errors.js");
const { required, strict } = require("./options.js");
const { failed, logError, report } = require("./outage.js");
const { ABORT } = require("./spend.js");

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
    if (!native.isStoreFailure(e.code)) throw e;
    const r = failed(e, onError); // the core's 500 auth_unavailable, reported once
    res.status(r.status).json(r.body);
    return null;
  }
  res.off("close", onLeave);
  if (!spend.success) {
    if (spend.reason === "invalid_cost") throw invalid("estimateCents must be a finite number > 0");
    // The core's answer (Reply::spend_refused): 409 for a replay, 429, 422 or 401.
    const r = refusal(spend);
    if (!left && !clientGone(req, res)) {
      for (const [name, value] of Object.entries(r.headers)) res.setHeader(name, value);
      res.status(r.status).json(r.body);
    }
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

/**
 * The core's answer to a charge or reserve result that serves no work, as
 * streamWithHold answers a refused reserve: `{status, body}`, 409 `{"error":
 * "idempotency_replayed", "replayed"}` for a repeated idempotency key (`replayed`
 * set, a charge's replay included), 429 `budget_exceeded`, 422
 * `idempotency_conflict`, else 401 `{"error": reason}` (the key was revoked,
 * expired or unknown since the middleware). A result that serves work (a success
 * not replayed) is refused with `invalid_argument`.
 */
function spendRefused(result) {
  if (typeof result !== "object" || result === null || (result.success === true && !result.replayed)) {
    throw invalid("spendRefused needs a refused or replayed charge or reserve result");
  }
  return refusal(result);
}

/**
 * The core's answer to a refused or replayed result: `{status, body, headers}`,
 * `headers` holding `Retry-After` for a rate limit's refusal that waiting ends.
 */
function refusal(result) {
  const r =
    result.reason === "rate_limited"
      ? native.rateLimited(String(result.limit ?? ""), typeof result.retryAfter === "number" ? result.retryAfter : null)
      : native.spendRefused(String(result.reason ?? ""), result.replayed ?? null);
  const headers = r.retryAfter === undefined ? {} : { "Retry-After": String(r.retryAfter) };
  return { status: r.status, body: r.body, headers };
}

module.exports = { streamWithHold, spendRefused };
