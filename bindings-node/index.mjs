// ES module entry: the same objects as the CommonJS entry (index.js).
import cjs from "./index.js";

export const { KeyLeash, KeyLeashError, AgentKey, agentKeyMiddleware, createAgentKeyRoutes, hasScope } = cjs;
export default cjs;
