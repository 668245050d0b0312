const express = require("express");
const { KeyLeash, agentKeyMiddleware, createAgentKeyRoutes } = require("keyleash");

(async () => {
  const kl = await KeyLeash.connect(process.env.DATABASE_URL ?? "sqlite://keyleash.db");
  await kl.migrate();
  const app = express();
  app.use(createAgentKeyRoutes(kl, { signupScopes: ["proxy.chat"], signupBudgetCents: 50 }));
  app.post("/chat", agentKeyMiddleware(kl, { scope: "proxy.chat" }), async (req, res) => {
    const charge = await req.agentKey.charge(5); // the key the middleware granted
    if (!charge.success) return res.status(429).json({ error: charge.reason });
    res.json({ reply: "hello", budgetRemainingCents: charge.budgetRemainingCents });
  });
  app.listen(Number(process.env.PORT ?? 3000), "127.0.0.1", () => console.log("listening"));
})();
