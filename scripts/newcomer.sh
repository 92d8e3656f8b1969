#!/usr/bin/env bash
# A newcomer's first run, reproduced: the README's two commands on a fresh
# clone of this repository (what is committed), in a temp directory with no
# ../shared beside it, with a fresh CARGO_INSTALL_ROOT (so no wasm-bindgen),
# no node_modules and no target/ — timed.
#
#   1. bash scripts/setup.sh && npm start   (until the Worker serves the demo
#      room and the visualizer's first screen; then it is stopped)
#   2. bash scripts/setup.sh && npm test
#
# Usage: bash scripts/newcomer.sh [--keep] [--start-only]
#   --keep        leave the temp directory (it is removed on success otherwise)
#   --start-only  run the first command only
# Chromium and Python are the machine's (setup.sh installs Chromium with apt
# when it is missing; npm test installs Synapse from PyPI itself).
set -euo pipefail
keep=0
start_only=0
for a in "$@"; do
  case "$a" in
    --keep) keep=1 ;;
    --start-only) start_only=1 ;;
    *) echo "usage: bash scripts/newcomer.sh [--keep] [--start-only]" >&2; exit 2 ;;
  esac
done
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/roomdag-newcomer.XXXXXX)
say() { printf '\n== newcomer: %s\n' "$*"; }
cleanup() {
  [ -n "${start_pid:-}" ] && kill -INT -- "-$start_pid" 2>/dev/null && sleep 3 && kill -KILL -- "-$start_pid" 2>/dev/null || true
  if [ "$keep" = 0 ] && [ "${ok:-0}" = 1 ]; then rm -rf "$work"; else echo "kept: $work"; fi
}
trap cleanup EXIT

say "cloning $(git -C "$src" rev-parse --short HEAD) into $work/roomdag (no ../shared beside it)"
git clone -q "$src" "$work/roomdag"
cd "$work/roomdag"
[ ! -e ../shared ] || { echo "newcomer: $work/shared exists" >&2; exit 1; }
export CARGO_INSTALL_ROOT="$work/cargo-install"
export PATH="$CARGO_INSTALL_ROOT/bin:$PATH"
unset ROOMDAG_ORACLE_PYTHON ROOMDAG_SYNAPSE_PYTHON ROOMDAG_SHARED ROOMDAG_FIXTURES ROOMDAG_TEST_ONLY
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

t0=$(date +%s)
say "1/2: bash scripts/setup.sh && npm start (port $port)"
bash scripts/setup.sh
t_setup=$(date +%s)
set -m
ROOMDAG_PORT=$port npm start > "$work/start.log" 2>&1 &
start_pid=$!
set +m
deadline=$(( $(date +%s) + 1800 ))
# (curl's output is captured before grep reads it: `curl | grep -q` fails
# under pipefail when grep stops reading early.)
until [[ "$(curl -sf "http://127.0.0.1:$port/_roomdag/rooms" || true)" =~ \"eventCount\":[1-9] ]]; do
  if ! kill -0 "$start_pid" 2>/dev/null; then tail -40 "$work/start.log"; echo "newcomer: npm start exited" >&2; exit 1; fi
  [ "$(date +%s)" -lt "$deadline" ] || { tail -40 "$work/start.log"; echo "newcomer: npm start not ready in 30 min" >&2; exit 1; }
  sleep 2
done
page=$(curl -sf "http://127.0.0.1:$port/" || true)
[[ "$page" == *"<html"* ]] || { echo "newcomer: / is not the visualizer" >&2; exit 1; }
t_start=$(date +%s)
echo "npm start: ready, demo room imported: $(curl -s "http://127.0.0.1:$port/_roomdag/rooms")"
# Ctrl-C as a user would: to npm start's whole process group (npm itself
# does not pass a SIGINT on when it is not from a terminal).
kill -INT -- "-$start_pid"
wait "$start_pid" 2>/dev/null || true
start_pid=

if [ "$start_only" = 0 ]; then
  say "2/2: bash scripts/setup.sh && npm test"
  bash scripts/setup.sh
  npm test
fi
t_end=$(date +%s)
ok=1
say "done: setup $((t_setup - t0)) s, npm start until ready $((t_start - t_setup)) s, npm test $((t_end - t_start)) s, total $((t_end - t0)) s"
