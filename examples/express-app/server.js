// An "LLM proxy" protected by keyleash, on embedded SQLite by default.
//
//   POST /signup              an agent gets a key: scope proxy.chat, 50 cents a day
//   POST /v1/chat             {"prompt": "..."} with Authorization: Bearer <key>;
//                             priced per character, charged after the "model" answers
//   GET  /sdk-keys/me         the key's budget and scopes
//   POST /sdk-keys            mint a narrower child key that draws on this one
//   DELETE /sdk-keys/:id      revoke a key of your own account
//
// Run: make express-app   (or: npm install && node server.js, in this folder)
// Env: DATABASE_URL (default sqlite://keyleash-express.db), PORT (default 3000).

const express = require("express");
const { KeyLeash, agentKeyMiddleware, createAgentKeyRoutes } = require("keyleash");

/** A pretend model and price list: 0.5 cents per call plus 0.01 cents per character. */
function complete(prompt) {
  return { text: `echo: ${prompt}`, costCents: 0.5 + prompt.length * 0.01 };
}

async function main() {
  const kl = await KeyLeash.connect(process.env.DATABASE_URL ?? "sqlite://keyleash-express.db");
  await kl.migrate();

  const app = express();
  app.use(
    createAgentKeyRoutes(kl, { signupScopes: ["proxy.chat"], signupBudgetCents: 50, signupBudgetPeriod: "day" }),
  );
  app.post("/v1/chat", agentKeyMiddleware(kl, { scope: "proxy.chat" }), express.json(), async (req, res) => {
    const answer = complete(String(req.body?.prompt ?? ""));
    const rawKey = req.get("authorization").slice("Bearer ".length).trim();
    const charge = await kl
      .trackUsage(rawKey, { costCents: answer.costCents, idempotencyKey: req.get("idempotency-key") })
      .catch(() => ({ success: false, reason: "auth_unavailable" }));
    if (!charge.success) {
      return res.status(charge.reason === "budget_exceeded" ? 429 : 500).json({ error: charge.reason });
    }
    res.json({ completion: answer.text, costCents: answer.costCents, budgetRemainingCents: charge.budgetRemainingCents });
  });

  const port = Number(process.env.PORT ?? 3000);
  app.listen(port, "127.0.0.1", () => console.log(`listening on http://127.0.0.1:${port}`));
}

main().catch((e) => {
  console.error(`keyleash example failed to start: ${e.code ?? ""} ${e.message}`);
  process.exit(1);
});
