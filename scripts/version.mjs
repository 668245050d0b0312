// One version for every package. Cargo.toml's [workspace.package] version is the
// source for the Rust crates and the Python package (maturin reads it); the npm
// packages carry it in package.json, where npm and napi-rs read it. This script checks
// that they agree, or sets them all.
//
//   node scripts/version.mjs           check: exit 1 naming every file that differs
//   node scripts/version.mjs 0.2.0     set every manifest to 0.2.0 (then `make node`
//                                      regenerates native.js, which embeds it)
import fs from "node:fs";
import path from "node:path";

const root = path.join(path.dirname(new URL(import.meta.url).pathname), "..");
const read = (file) => fs.readFileSync(path.join(root, file), "utf8");
const CARGO = /(\[workspace\.package\]\n(?:[^[\n].*\n)*?version = ")([^"]+)(")/;
const npmDirs = fs.readdirSync(path.join(root, "bindings-node/npm")).map((d) => `bindings-node/npm/${d}/package.json`);

/** Every place a version is written: [file, what, current value, setter]. */
function places() {
  const cargo = read("Cargo.toml");
  const json = (file) => JSON.parse(read(file));
  const main = json("bindings-node/package.json");
  const lock = json("bindings-node/package-lock.json");
  const nativeJs = /expected ([^ ]+) but got/.exec(read("bindings-node/native.js"));
  return [
    ["Cargo.toml", "[workspace.package] version", CARGO.exec(cargo)?.[2]],
    ["bindings-node/package.json", "version", main.version],
    ...Object.entries(main.optionalDependencies ?? {}).map(([name, v]) => [
      "bindings-node/package.json",
      `optionalDependencies.${name}`,
      v,
    ]),
    ...npmDirs.map((file) => [file, "version", json(file).version]),
    ["bindings-node/package-lock.json", "version", lock.version],
    ["bindings-node/package-lock.json", 'packages[""].version', lock.packages?.[""]?.version],
    ["bindings-node/native.js", "the version it expects of its platform package", nativeJs?.[1]],
  ];
}

const wanted = process.argv[2];
if (wanted === undefined) {
  const all = places();
  const source = all[0][2];
  const wrong = all.filter(([, , v]) => v !== source);
  for (const [file, what, v] of wrong) console.error(`version: ${file} ${what} is ${v}, Cargo.toml says ${source}`);
  if (wrong.length > 0) process.exit(1);
  console.log(`version: ${source} everywhere (${all.length} places)`);
} else {
  if (!/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(wanted)) {
    console.error(`version: ${wanted} is not a version like 1.2.3 or 1.2.3-rc.1`);
    process.exit(2);
  }
  const write = (file, text) => fs.writeFileSync(path.join(root, file), text);
  write("Cargo.toml", read("Cargo.toml").replace(CARGO, `$1${wanted}$3`));
  const edit = (file, change) => {
    const value = JSON.parse(read(file));
    change(value);
    write(file, `${JSON.stringify(value, null, 2)}\n`);
  };
  edit("bindings-node/package.json", (p) => {
    p.version = wanted;
    for (const name of Object.keys(p.optionalDependencies ?? {})) p.optionalDependencies[name] = wanted;
  });
  for (const file of npmDirs) edit(file, (p) => (p.version = wanted));
  edit("bindings-node/package-lock.json", (p) => {
    p.version = wanted;
    p.packages[""].version = wanted;
  });
  console.log(`version: set to ${wanted}; now run \`make node\` (native.js embeds it) and \`cargo update -w\``);
}
