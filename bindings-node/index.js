// The npm package `keyleash` (CommonJS entry; index.mjs is the ES module entry,
// index.d.ts the types). Every rule lives in the Rust core, loaded as a native
// addon; the JavaScript half only adapts calling conventions. This file loads the
// addon and exports the package's names from the modules that hold them:
//
//   lib/addon.js       loading the native addon (an error saying why when it is missing)
//   lib/errors.js      KeyLeashError and the one conversion of a native error into it
//   lib/options.js     the option schema: strict checking, the closest-name suggestion
//   lib/client.js      KeyLeash, the client: every operation; hasScope
//   lib/agentkey.js    AgentKey, the agentkey drop-in (a KeyLeash from a pg Pool)
//   lib/middleware.js  agentKeyMiddleware: req.agentKey with charge and reserve
//   lib/spend.js       Spend: a hold and what is consumed under it
//   lib/stream.js      streamWithHold: an Express response streamed under a hold;
//                      spendRefused, the answer to a charge or reserve serving no work
//   lib/routes.js      createAgentKeyRoutes, the self-serve routes; their body limit
//   lib/admin.js       adminRouter, the operators' admin page
//   lib/outage.js      a key store failure in Express: 500 auth_unavailable, onError;
//                      storeFailed, that answer for an app's own routes
//
// The modules import one another downwards only (addon, errors, options, then the
// client, then the Express layer): no import circle.

require("./lib/addon.js"); // first: when the addon is missing, its error says why
const { KeyLeashError } = require("./lib/errors.js");
const { KeyLeash, hasScope } = require("./lib/client.js");
const { AgentKey } = require("./lib/agentkey.js");
const { agentKeyMiddleware } = require("./lib/middleware.js");
const { Spend } = require("./lib/spend.js");
const { streamWithHold, spendRefused } = require("./lib/stream.js");
const { storeFailed } = require("./lib/outage.js");
const { createAgentKeyRoutes, MAX_BODY_BYTES, payloadTooLarge } = require("./lib/routes.js");
const { adminRouter } = require("./lib/admin.js");

module.exports = {
  KeyLeash,
  adminRouter,
  KeyLeashError,
  AgentKey,
  agentKeyMiddleware,
  createAgentKeyRoutes,
  streamWithHold,
  Spend,
  hasScope,
  payloadTooLarge,
  spendRefused,
  storeFailed,
  MAX_BODY_BYTES,
};
