// Type-checked by `make check` (tsc --strict): the declarations type every method,
// narrow the validate result on `valid`, and type `req.agentKey` for Express users.
import express from "express";
import {
  adminRouter,
  agentKeyMiddleware,
  createAgentKeyRoutes,
  KeyLeash,
  KeyLeashError,
  MAX_BODY_BYTES,
  payloadTooLarge,
  type RateLimitedBody,
  type Spend,
  streamWithHold,
  type ValidateResult,
} from "../index.js";

async function main(): Promise<void> {
  const kl = await KeyLeash.connect("sqlite::memory:", { manualClock: new Date(), validScopes: ["a"] });
  await kl.migrate();
  const k = await kl.create({ accountId: "a", budgetCents: 5, budgetPeriod: "month", expiresIn: "7d" });
  const v: ValidateResult = await kl.validate(k.key);
  if (v.valid) {
    const remaining: number | null = v.budgetRemainingCents;
    void remaining;
  } else {
    const reason: "invalid" | "expired" | "revoked" | "budget_exceeded" = v.reason;
    void reason;
  }
  const charge = await kl.trackUsage(k.key, { costCents: 1, idempotencyKey: "r" });
  if (!charge.success) {
    const why: string = charge.reason;
    void why;
  }
  // @ts-expect-error a misspelt option is a type error (and an invalid_argument at run time)
  await kl.create({ accountId: "a", budgetCent: 5 });
  const limited = await kl.create({
    accountId: "a",
    limits: [
      { unit: "requests", limit: 100, period: "1m", burst: 10 },
      { unit: "concurrent", limit: 3, name: "streams" },
    ],
  });
  const paced = await kl.trackUsage(limited.key, { costCents: 1 });
  if (!paced.success && paced.reason === "rate_limited") {
    const name: string = paced.limit;
    const wait: number | null = paced.retryAfter;
    void [name, wait];
  }
  const changed: boolean = await kl.setLimits(limited.id, [{ unit: "cents", limit: 5, period: "1h" }], "a");
  void changed;
  // @ts-expect-error a unit is one of three words
  await kl.create({ accountId: "a", limits: [{ unit: "request", limit: 1, period: "1m" }] });
  try {
    await kl.create({ accountId: "a", budgetPeriod: "month" });
  } catch (e) {
    if (e instanceof KeyLeashError) {
      const code:
        | "invalid_scope"
        | "invalid_duration"
        | "invalid_period"
        | "invalid_argument"
        | "unavailable"
        | "not_migrated" = e.code;
      void code;
    }
  }
  const app = express();
  const onError = (err: KeyLeashError): void => console.error(err.code, err.message);
  app.use(createAgentKeyRoutes(kl, { signupScopes: ["a"], signupRateLimit: false, onError }));
  app.use(createAgentKeyRoutes(kl, { signupRateLimit: 5, signupRateLimitPerDomain: 2 }));
  app.use("/admin", adminRouter(kl, { authorize: (req: express.Request) => req.get("x-admin") === "yes" }));
  app.use("/admin2", adminRouter(kl, { authorize: async () => false }));
  // @ts-expect-error authorize must be a function
  adminRouter(kl, { authorize: true });
  const tooLarge = payloadTooLarge();
  const limit: number = MAX_BODY_BYTES;
  void [tooLarge.body.error === "payload_too_large", limit];
  const reply = await kl.selfServe("signup", null, null, "{}", "127.0.0.1", { signupRateLimit: 1 });
  if (reply.status === 429) {
    const seconds: number | undefined = reply.retryAfter;
    const body = reply.body as RateLimitedBody;
    void [seconds, body.retryAfter];
  }
  app.get("/x", agentKeyMiddleware(kl, { scope: "a", onError }), (req, res) => {
    res.json({ account: req.agentKey?.accountId, scopes: req.agentKey?.scopes });
  });
  app.post("/stream", agentKeyMiddleware(kl), async (req, res) => {
    const held = await req.agentKey?.reserve(5, { ttl: "2m" });
    if (held?.success) {
      const total: number = held.add(1);
      const settled = await held.settle();
      const released: boolean = await held.release();
      void [total, settled.success, released, held.state === "settled"];
    } else if (held) {
      const why:
        | "budget_exceeded"
        | "invalid_key"
        | "invalid_cost"
        | "expired"
        | "revoked"
        | "idempotency_conflict"
        | "idempotency_replayed"
        | "rate_limited" = held.reason;
      // A replay names the first hold and where it stands; no other refusal does.
      const first: number | undefined = held.replayed ? held.holdId : undefined;
      const where: "held" | "settled" | "released" | undefined = held.replayed;
      // A rate limit's refusal names the limit and when to retry.
      const wait: number | null | undefined = held.reason === "rate_limited" ? held.retryAfter : undefined;
      void [why, first, where, wait];
    }
    const spend: Spend | null = await streamWithHold(
      req,
      res,
      { estimateCents: 5, ttl: "2m", contentType: "text/plain" },
      async function* (s) {
        s.add(0.25);
        yield "word ";
      },
    );
    void spend?.consumedCents;
    // @ts-expect-error estimateCents is required
    await streamWithHold(req, res, { ttl: "2m" }, async function* () {});
  });
}
void main;
