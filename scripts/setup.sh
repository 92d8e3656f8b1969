#!/usr/bin/env bash
# Installs what roomdag's build and tests need on a fresh Debian machine:
# the wasm32 Rust target, wasm-bindgen-cli (pinned to the crate's
# wasm-bindgen), the npm packages, Debian's Chromium (for browser tests) and
# the Synapse oracle venv (for differential tests). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\n== setup: %s\n' "$*"; }

log "rust target wasm32-unknown-unknown"
rustup target add wasm32-unknown-unknown >/dev/null

WB_VERSION=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' Cargo.toml)
if ! command -v wasm-bindgen >/dev/null || [ "$(wasm-bindgen --version | awk '{print $2}')" != "$WB_VERSION" ]; then
  log "wasm-bindgen-cli $WB_VERSION"
  cargo install wasm-bindgen-cli --version "=$WB_VERSION" --locked
fi

# `npm install`, not `npm ci`: the registry mirror here serves only the
# Linux builds of workerd, and `npm ci` refuses a lock file that lacks the
# other platforms' optional packages.
if [ ! -d node_modules ] || [ package.json -nt node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm install"
  npm install --no-audit --no-fund
fi

if ! command -v chromium >/dev/null; then
  log "chromium (Debian)"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q chromium >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null; }
fi
log "done"
