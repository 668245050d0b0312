// Loading the native addon (the Rust core compiled by napi-rs; its generated loader
// is ../native.js). Every other module takes the addon from here, so a missing
// addon is reported once, by this error, whichever module is loaded first.

/**
 * The native addon (../native.js finds it: the package folder's own build, else
 * the platform package keyleash-<platform>). When there is none, an error naming
 * this platform, the platforms with prebuilt packages, and how to get an addon,
 * instead of the generated loader's advice about an npm bug.
 */
function loadNative() {
  try {
    return require("../native.js");
  } catch (e) {
    if (!/^(Cannot find|Failed to load) native binding/.test(e?.message ?? "")) throw e;
    const libc =
      process.platform === "linux"
        ? process.report?.getReport?.().header?.glibcVersionRuntime
          ? "-gnu"
          : "-musl"
        : process.platform === "win32"
          ? "-msvc"
          : "";
    const platform = `${process.platform}-${process.arch}${libc}`;
    const prebuilt = Object.keys(require("../package.json").optionalDependencies ?? {});
    const names = prebuilt.map((name) => name.replace(/^keyleash-/, "")).join(", ");
    const fix = prebuilt.includes(`keyleash-${platform}`)
      ? `its package keyleash-${platform} is not installed: it is an optional dependency of keyleash, so reinstall without --omit=optional or --no-optional`
      : `prebuilt addons exist for ${names} only. Build one from source (Rust 1.82 or later): clone ` +
        "https://github.com/keyleash/keyleash, run `make node`, and set NAPI_RS_NATIVE_LIBRARY_PATH to the " +
        `bindings-node/keyleash.${platform}.node it builds (https://github.com/keyleash/keyleash/blob/main/docs/releasing.md#building-from-source)`;
    const error = new Error(`keyleash: no native addon for ${platform}: ${fix}`);
    error.cause = e;
    throw error;
  }
}

module.exports = loadNative();
