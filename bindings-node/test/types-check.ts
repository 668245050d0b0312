// Type-checked by `make check` (tsc --strict): the declarations type every method,
// narrow the validate result on `valid`, and type `req.agentKey` for Express users.
import express from "express";
import { agentKeyMiddleware, createAgentKeyRoutes, KeyLeash, KeyLeashError, type ValidateResult } from "../index.js";

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
  try {
    await kl.create({ accountId: "a", budgetPeriod: "month" });
  } catch (e) {
    if (e instanceof KeyLeashError) {
      const code: "invalid_scope" | "invalid_duration" | "invalid_period" | "invalid_argument" | "unavailable" = e.code;
      void code;
    }
  }
  const app = express();
  app.use(createAgentKeyRoutes(kl, { signupScopes: ["a"] }));
  app.get("/x", agentKeyMiddleware(kl, { scope: "a" }), (req, res) => {
    res.json({ account: req.agentKey?.accountId, scopes: req.agentKey?.scopes });
  });
}
void main;
