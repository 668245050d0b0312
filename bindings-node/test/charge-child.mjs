// A Node process for the Python suite's cross-language test (test_concurrency.py):
// `node charge-child.mjs URL TABLE KEY COUNT` connects, prints READY, waits for one
// line on stdin, fires COUNT concurrent 1-cent charges at KEY and prints
// `CHILD-RESULT ok=N`.
import { createInterface } from "node:readline";
import { KeyLeash } from "../index.mjs";

const [url, tableName, key, count] = process.argv.slice(2);
const kl = await KeyLeash.connect(url, { tableName });
process.stdout.write("READY\n");
const lines = createInterface({ input: process.stdin });
await new Promise((resolve) => lines.once("line", resolve));
lines.close();
const results = await Promise.all(Array.from({ length: Number(count) }, () => kl.trackUsage(key, { costCents: 1 })));
process.stdout.write(`CHILD-RESULT ok=${results.filter((r) => r.success).length}\n`);
await kl.close();
