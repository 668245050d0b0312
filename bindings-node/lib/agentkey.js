// The agentkey drop-in: agentkey's class AgentKey, a KeyLeash connected from a `pg`
// Pool's settings, so code written for agentkey runs unchanged.

const native = require("./addon.js");
const { invalid, call } = require("./errors.js");
const { strict } = require("./options.js");
const { KeyLeash } = require("./client.js");

/** A postgres:// URL from a `pg` Pool's settings (and pg's PG* defaults). */
function urlFromPool(pool) {
  const o = pool?.options ?? {};
  if (o.connectionString) return o.connectionString;
  const env = process.env;
  const user = o.user ?? env.PGUSER ?? env.USER ?? "postgres";
  const password = o.password ?? env.PGPASSWORD;
  const host = o.host ?? env.PGHOST ?? "localhost";
  const port = o.port ?? env.PGPORT ?? 5432;
  const database = o.database ?? env.PGDATABASE ?? user;
  const auth = encodeURIComponent(user) + (password ? `:${encodeURIComponent(password)}` : "");
  const ssl = o.ssl ? "?sslmode=require" : "";
  return `postgres://${auth}@${host}:${port}/${encodeURIComponent(database)}${ssl}`;
}

/**
 * agentkey's class, backed by keyleash: `new AgentKey({ pool, tableName, keyPrefix,
 * validScopes })` (and any option of `KeyLeash.connect`). It reads the `pg` Pool's
 * connection settings and opens its own pool; the first call waits for the
 * connection. A misspelt option throws at once.
 */
class AgentKey extends KeyLeash {
  constructor(opts) {
    const { pool, url, ...o } = strict(opts, "AgentKey");
    const ready = (async () => {
      const target = url ?? (pool ? urlFromPool(pool) : undefined);
      if (!target) throw invalid("AgentKey needs a pg Pool (pool) or a url");
      if (o.poolSize === undefined && pool?.options?.max) o.poolSize = pool.options.max;
      return call(() => native.NativeKeyLeash.connect(target, o));
    })();
    ready.catch(() => {}); // reported by the first call instead
    super(ready);
  }
}

module.exports = { AgentKey };
