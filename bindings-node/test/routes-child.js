// The self-serve routes in a process of their own, for the test that a signup rate
// limit holds across processes: `node routes-child.js URL TABLE START` (the manual
// clock's start, as the parent's) prints `PORT n`.
const express = require("express");
const { KeyLeash, createAgentKeyRoutes } = require("..");

(async () => {
  const [url, tableName, manualClock] = process.argv.slice(2);
  const kl = await KeyLeash.connect(url, { tableName, manualClock });
  const app = express();
  app.use(createAgentKeyRoutes(kl, { requireEmailForSignup: false }));
  const server = app.listen(0, "127.0.0.1", () => console.log(`PORT ${server.address().port}`));
})();
