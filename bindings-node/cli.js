#!/usr/bin/env node
// `npx keyleash …`: the operators' command line (docs/cli.md). The same code as
// the Rust binary and the Python package's `keyleash`, run in this process
// through the addon; it blocks until the command ends and exits with its status.

// index.js first: when the addon is missing, its error says why and what to do.
require("./index.js");
process.exitCode = require("./native.js").runCli(process.argv.slice(2));
