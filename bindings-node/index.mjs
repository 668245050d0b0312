// ES module entry: the same objects as the CommonJS entry (index.js).
import cjs from "./index.js";

export const {
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
} = cjs;
export default cjs;
