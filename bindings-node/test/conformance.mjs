// The Node runner of the cross-language conformance vectors (docs/conformance.md,
// tests/conformance/README.md): every vector of CONFORMANCE_DIR (default
// tests/conformance; a relative path is taken from the repository root) on a fresh
// SQLite file and on a fresh table of DATABASE_URL, through the npm package. One line
// per vector and store, then a summary; the exit status is non-zero when anything
// failed, when an op or field is unknown, or when there is no vector.
//
// Run: make conformance (all three runners), or `node test/conformance.mjs` here
// with DATABASE_URL set.

import { readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { hasScope, KeyLeash, KeyLeashError } from "../index.mjs";

const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const FOLDER = resolve(ROOT, process.env.CONFORMANCE_DIR ?? "tests/conformance");
const DEFAULT_START = "2026-01-15T12:00:00Z";
const VECTOR_FIELDS = ["name", "start", "options", "steps"];
const STEP_FIELDS = ["op", "args", "save", "expect", "expectError", "key", "rawKey", "id", "hold", "subject"];
const PARALLEL_FIELDS = ["count", "step", "expectCount"];
const CREATE_FIELDS = [
  "accountId",
  "userId",
  "scopes",
  "budgetCents",
  "budgetPeriod",
  "expiresIn",
  "expiresAt",
  "delegatedBy",
  "name",
  "metadata",
  "parentId",
  "limits",
];

/** A vector that cannot be run as written (unknown op or field, bad reference). */
class BrokenVector extends Error {}

function known(obj, fields, what) {
  for (const k of Object.keys(obj ?? {})) {
    if (!fields.includes(k)) throw new BrokenVector(`unknown ${what} field ${JSON.stringify(k)}`);
  }
}

/** A number, or one of the strings NaN, Infinity, -Infinity, which JSON cannot write. */
function number(v) {
  if (typeof v === "number") return v;
  if (v === "Infinity") return Number.POSITIVE_INFINITY;
  if (v === "-Infinity") return Number.NEGATIVE_INFINITY;
  return Number.NaN;
}

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** One field's value: "*" is any non-null value, numbers within 1e-9, nested values exactly. */
function matches(expect, actual) {
  if (expect === "*") return actual !== null && actual !== undefined;
  if (typeof expect === "number" && typeof actual === "number") return Math.abs(expect - actual) <= 1e-9;
  if (Array.isArray(expect)) {
    return Array.isArray(actual) && expect.length === actual.length && expect.every((e, i) => matches(e, actual[i]));
  }
  if (isObject(expect)) {
    if (!isObject(actual)) return false;
    const keys = Object.keys(expect);
    return (
      keys.length === Object.keys(actual).length && keys.every((k) => k in actual && matches(expect[k], actual[k]))
    );
  }
  return expect === actual;
}

/** `expect` as a subset of `actual`: null matches null or absent; a list result element by element. */
function subset(expect, actual) {
  if (isObject(expect) && isObject(actual)) {
    return Object.entries(expect).every(([k, v]) =>
      v === null ? actual[k] === null || actual[k] === undefined : k in actual && matches(v, actual[k]),
    );
  }
  if (Array.isArray(expect) && Array.isArray(actual)) {
    return expect.length === actual.length && expect.every((e, i) => subset(e, actual[i]));
  }
  return matches(expect, actual);
}

/** A result as printed in a failure, with raw keys hidden. */
function shown(result) {
  return JSON.stringify(result ?? null, (k, v) => (k === "key" && typeof v === "string" ? "<raw key>" : v));
}

class Runner {
  constructor(kl) {
    this.kl = kl;
    this.saved = new Map();
  }

  savedField(name, field) {
    const result = this.saved.get(name);
    if (result === undefined) throw new BrokenVector(`no saved result named ${JSON.stringify(name)}`);
    if (!(field in result)) throw new BrokenVector(`saved result ${JSON.stringify(name)} has no ${field}`);
    return result[field];
  }

  rawKey(step) {
    if ("rawKey" in step) return step.rawKey;
    if (!("key" in step)) throw new BrokenVector("the step needs `key` or `rawKey`");
    return this.savedField(step.key, "key");
  }

  keyId(step) {
    if (!("id" in step)) throw new BrokenVector("the step needs `id`");
    return this.savedField(step.id, "id");
  }

  holdId(step) {
    if (!("hold" in step)) throw new BrokenVector("the step needs `hold`");
    return this.savedField(step.hold, "holdId");
  }

  subject(step) {
    if (typeof step.subject !== "string") throw new BrokenVector("the step needs `subject`");
    return step.subject;
  }

  createArgs(args) {
    known(args, CREATE_FIELDS, "create args");
    const out = { ...args };
    if (typeof args.budgetCents === "string") out.budgetCents = number(args.budgetCents);
    if (args.parentId !== undefined && args.parentId !== null) out.parentId = this.savedField(args.parentId, "id");
    return out;
  }

  chargeArgs(args) {
    known(args, ["costCents", "idempotencyKey"], "charge args");
    if (!("costCents" in args)) throw new BrokenVector("a charge needs costCents");
    return { ...args, costCents: number(args.costCents) };
  }

  /** Runs one step; a BrokenVector is the vector's fault, a KeyLeashError the API's answer. */
  async run(step) {
    known(step, step.op === "parallel" ? [...STEP_FIELDS, ...PARALLEL_FIELDS] : STEP_FIELDS, "step");
    const args = step.args ?? {};
    const kl = this.kl;
    switch (step.op) {
      case "create":
        return kl.create(this.createArgs(args));
      case "ensureSubject":
        await kl.ensureSubject(this.subject(step), this.createArgs(args));
        return null;
      case "validate":
        return kl.validate(this.rawKey(step));
      case "validateBySubject":
        return kl.validateBySubject(this.subject(step));
      case "trackUsage":
        return kl.trackUsage(this.rawKey(step), this.chargeArgs(args));
      case "trackUsageBySubject":
        return kl.trackUsageBySubject(this.subject(step), this.chargeArgs(args));
      case "reserve":
        known(args, ["costCents", "ttl", "idempotencyKey"], "reserve args");
        if (!("costCents" in args)) throw new BrokenVector("a reserve needs costCents");
        return kl.reserve(this.rawKey(step), { ...args, costCents: number(args.costCents) });
      case "settle":
        known(args, ["costCents"], "settle args");
        if (!("costCents" in args)) throw new BrokenVector("a settle needs costCents");
        return kl.settle(this.holdId(step), { costCents: number(args.costCents) });
      case "release":
        known(args, [], "release args");
        return kl.release(this.holdId(step));
      case "setAccountBudget": {
        known(args, ["accountId", "budgetCents", "budgetPeriod"], "setAccountBudget args");
        if (!("accountId" in args && "budgetCents" in args))
          throw new BrokenVector("a setAccountBudget needs accountId and budgetCents");
        const cents = args.budgetCents === null ? null : number(args.budgetCents);
        await kl.setAccountBudget(args.accountId, { budgetCents: cents, budgetPeriod: args.budgetPeriod });
        return null;
      }
      case "revoke":
        known(args, ["accountId"], "revoke args");
        return kl.revoke(this.keyId(step), args.accountId);
      case "setLimits":
        known(args, ["limits", "accountId"], "setLimits args");
        return kl.setLimits(this.keyId(step), args.limits, args.accountId);
      case "hasScope":
        known(args, ["scope"], "hasScope args");
        return hasScope(await kl.validate(this.rawKey(step)), args.scope);
      case "usage":
        known(args, ["from", "to"], "usage args");
        return kl.usage(this.keyId(step), args);
      case "list":
        known(args, ["accountId"], "list args");
        return kl.list(args.accountId);
      case "advance":
        known(args, ["seconds", "minutes", "hours", "days"], "advance args");
        await kl.advance(args);
        return null;
      case "setNow":
        known(args, ["at"], "setNow args");
        await kl.setNow(args.at);
        return null;
      case "parallel": {
        const calls = Array.from({ length: step.count }, () =>
          // An element that raised is {error: code}, so expectCount can count errors too.
          this.run(step.step).catch((e) => {
            if (e instanceof KeyLeashError) return { error: e.code };
            throw e;
          }),
        );
        return Promise.all(calls);
      }
      default:
        throw new BrokenVector(`op ${JSON.stringify(step.op)} is not known to the Node runner`);
    }
  }
}

/** Compares one step's outcome with expect / expectError / expectCount; returns why not, or null. */
function check(step, outcome) {
  const { result, error } = outcome;
  if (error) {
    if (!("expectError" in step)) return `raised ${error.code}: ${error.message}`;
    return error.code === step.expectError
      ? null
      : `raised ${error.code}, expected ${step.expectError}: ${error.message}`;
  }
  if ("expectError" in step) return `expected error ${step.expectError}, got ${shown(result)}`;
  if ("expect" in step && !subset(step.expect, result)) {
    return `expected ${JSON.stringify(step.expect)}, got ${shown(result)}`;
  }
  for (const rule of step.expectCount ?? []) {
    const got = result.filter((r) => subset(rule.match, r)).length;
    if (got !== rule.count) {
      return `${got} of ${result.length} results matched ${JSON.stringify(rule.match)}, expected ${rule.count}: ${shown(result)}`;
    }
  }
  return null;
}

let seq = 0;

async function runVector(path, store) {
  const vector = JSON.parse(readFileSync(path, "utf8"));
  known(vector, VECTOR_FIELDS, "vector");
  const options = vector.options ?? {};
  known(options, ["validScopes", "keyPrefix", "tableName"], "options");
  const n = seq++;
  let url;
  if (store === "sqlite") {
    url = `sqlite://${join(tmpdir(), `keyleash_conf_js_${process.pid}_${n}.db`)}`;
  } else {
    url = process.env.DATABASE_URL;
    if (!url)
      throw new BrokenVector("DATABASE_URL is not set: run `make conformance`, which starts a private Postgres");
  }
  // Every vector gets a table of its own, so runs never see each other's rows.
  const kl = await KeyLeash.connect(url, {
    tableName: `${options.tableName ?? "conf"}_js${process.pid}_${n}`,
    keyPrefix: options.keyPrefix,
    validScopes: options.validScopes,
    manualClock: vector.start ?? DEFAULT_START,
  });
  try {
    await kl.migrate();
    const runner = new Runner(kl);
    for (const [i, step] of vector.steps.entries()) {
      let outcome;
      try {
        outcome = { result: await runner.run(step) };
      } catch (e) {
        if (!(e instanceof KeyLeashError)) throw new BrokenVector(`step ${i} (${step.op}): ${e.message}`);
        outcome = { error: e };
      }
      const why = check(step, outcome);
      if (why) return `step ${i} (${step.op}): ${why}`;
      if ("save" in step) runner.saved.set(step.save, outcome.result);
    }
    return null;
  } finally {
    await kl.close();
    if (store === "sqlite") {
      for (const suffix of ["", "-wal", "-shm"]) rmSync(`${url.slice("sqlite://".length)}${suffix}`, { force: true });
    }
  }
}

async function main() {
  let files;
  try {
    files = readdirSync(FOLDER)
      .filter((f) => f.endsWith(".json"))
      .sort()
      .map((f) => join(FOLDER, f));
  } catch (e) {
    console.log(`FAIL cannot read CONFORMANCE_DIR ${FOLDER}: ${e.message}`);
    return 1;
  }
  if (files.length === 0) {
    console.log(`FAIL no conformance vectors in ${FOLDER}`);
    return 1;
  }
  let passed = 0;
  let failed = 0;
  for (const file of files) {
    const stem = basename(file, ".json");
    for (const store of ["sqlite", "postgres"]) {
      let why;
      try {
        why = await runVector(file, store);
      } catch (e) {
        why = e.message;
      }
      if (why === null) {
        passed++;
        console.log(`ok   ${store.padEnd(8)} ${stem}`);
      } else {
        failed++;
        console.log(`FAIL ${store.padEnd(8)} ${stem}: ${why}`);
      }
    }
  }
  console.log(`conformance (node): ${files.length} vectors x 2 stores: ${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

process.exitCode = await main();
