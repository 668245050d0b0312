// The same declarations through `require` (CommonJS).
import keyleash = require("../index.js");

async function main(): Promise<void> {
  const ak = new keyleash.AgentKey({ pool: { options: {} }, tableName: "sdk_api_keys" });
  const v = await ak.validate("ak_x");
  const ok: boolean = ak.hasScope(v, "x") && keyleash.hasScope(v, "y");
  void ok;
}
void main;
