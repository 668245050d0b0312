// A Node process for the Python suite's cross-language test (test_concurrency.py):
// `node charge-child.mjs URL TABLE KEY COUNT [reserve]` connects, prints READY, waits
// for one line on stdin, fires COUNT concurrent 1-cent charges (or 1-cent reserves)
// at KEY and prints `CHILD-RESULT ok=N`.
import { createInterface } from "node:readline";
import { KeyLeash } from "../index.mjs";

const [url, tableName, key, count, op = "charge"] = process.argv.slice(2);
const kl = await KeyLeash.connect(url, { tableName });
process.stdout.write("READY\n");
const lines = createInterface({ input: process.stdin });
await new Promise((resolve) => lines.once("line", resolve));
lines.close();
const one = () => (op === "reserve" ? kl.reserve(key, { costCents: 1 }) : kl.trackUsage(key, { costCents: 1 }));
const results = await Promise.all(Array.from({ length: Number(count) }, one));
process.stdout.write(`CHILD-RESULT ok=${results.filter((r) => r.success).length}\n`);
await kl.close();
