#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time and prints a
# summary (executions, corpus size, crashes per target).
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Defaults: 60 seconds, every target (canonical_json pdu_parse redaction
# ingest xmatrix router send). Works on stable Rust: libFuzzer builds without a sanitizer
# (`--sanitizer none`, the code under test is safe Rust); set
# FUZZ_TOOLCHAIN=nightly FUZZ_SANITIZER=address to use ASan on nightly.
# FUZZ_JOBS=N runs N targets at once (default: 1). Installs cargo-fuzz
# from crates.io when missing. Exits 1 if any target found a crash; the
# crashing inputs are in fuzz/artifacts/TARGET/ (reproduce with
# `cargo fuzz run -O --sanitizer none TARGET FILE` from fuzz/).
#
# Seed corpora are made from the shared fixtures (real PDUs of every room
# version) into fuzz/corpus/TARGET/, which keeps growing across runs.
set -euo pipefail

SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(canonical_json pdu_parse redaction ingest xmatrix router send)
fi
JOBS="${FUZZ_JOBS:-1}"
SANITIZER="${FUZZ_SANITIZER:-none}"
TOOLCHAIN="${FUZZ_TOOLCHAIN:-}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$ROOT/fuzz"
# Shared fixtures: ../shared when present, else the project's copy (tests/shared/README.md).
if [ -d "$ROOT/../shared/fixtures" ]; then DEFAULT_FIXTURES="$ROOT/../shared/fixtures"; else DEFAULT_FIXTURES="$ROOT/tests/shared/fixtures"; fi
FIXTURES="${ROOMDAG_FIXTURES:-$DEFAULT_FIXTURES}"
LOGS="$FUZZ/logs"
mkdir -p "$LOGS"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

cargo_fuzz() {
  if [ -n "$TOOLCHAIN" ]; then
    cargo "+$TOOLCHAIN" fuzz "$@"
  else
    cargo fuzz "$@"
  fi
}

# --- seed corpora -----------------------------------------------------------
seed_corpus() {
  local target="$1" dir="$FUZZ/corpus/$1"
  mkdir -p "$dir"
  [ -n "$(ls -A "$dir" 2>/dev/null)" ] && return 0
  case "$target" in
    canonical_json | pdu_parse | redaction)
      # Every 25th PDU of each fixture, one file each.
      python3 - "$FIXTURES" "$dir" <<'PY'
import gzip, hashlib, json, os, sys
fixtures, out = sys.argv[1], sys.argv[2]
for name in sorted(os.listdir(fixtures)):
    if name.endswith((".expected.json", ".queries.json")) or not name.endswith(".json"):
        continue
    with open(os.path.join(fixtures, name)) as f:
        room = json.load(f)
    for i, ev in enumerate(room.get("events", [])):
        if i % 25:
            continue
        data = json.dumps(ev["pdu"], separators=(",", ":")).encode()
        with open(os.path.join(out, hashlib.sha1(data).hexdigest()), "wb") as g:
            g.write(data)
PY
      ;;
    xmatrix)
      printf '%s' 'X-Matrix origin="a.example",destination="b.example",key="ed25519:1",sig="ZHVtbXk"' >"$dir/quoted"
      printf '%s' 'X-Matrix origin=a.example,key=ed25519:a_b,sig=ZHVtbXk' >"$dir/unquoted"
      printf 'x-matrix  ORIGIN = "[::1]:8448" ,\tKey="ed25519:1", sig="ZH\\"V"' >"$dir/spaces"
      ;;
    router)
      printf '%s' 'GET /_matrix/federation/v1/state_ids/%21r%3Aa.example?event_id=%24e' >"$dir/state_ids"
      printf '%s' 'GET /_matrix/federation/v1/backfill/!r:a.example?v=$e&v=$f&limit=10' >"$dir/backfill"
      printf '%s' 'POST /_matrix/federation/v1/get_missing_events/!r:a.example' >"$dir/gme"
      printf '%s' 'PUT /_matrix/federation/v1/send/txn1' >"$dir/send"
      printf '%s' 'GET /_matrix/key/v2/server' >"$dir/keys"
      ;;
    send)
      # Transaction bodies: runs of v11-forky-2k's PDUs after the held prefix
      # (30), the other fixtures' first PDUs (create events: new rooms).
      python3 - "$FIXTURES" "$dir" <<'PY'
import hashlib, json, os, sys
fixtures, out = sys.argv[1], sys.argv[2]
def pdus(name):
    with open(os.path.join(fixtures, name + ".json")) as f:
        return [e["pdu"] for e in json.load(f)["events"]]
held = pdus("v11-forky-2k")
bodies = [held[30:30 + n] for n in (1, 5, 20, 50)] + [held[0:3], pdus("v12-forky-1k")[:20], pdus("v3-500")[:20], []]
for b in bodies:
    data = json.dumps({"origin": "a.example", "origin_server_ts": 1, "pdus": b}, separators=(",", ":")).encode()
    with open(os.path.join(out, hashlib.sha1(data).hexdigest()), "wb") as g:
        g.write(data)
PY
      ;;
    ingest)
      # Choice streams: a few byte patterns (long prefixes, many mutations).
      for i in 0 1 2 3 4 5 6 7; do
        head -c $((64 + i * 64)) /dev/urandom >"$dir/seed$i"
      done
      ;;
  esac
}

# --- build ------------------------------------------------------------------
cd "$FUZZ"
echo "fuzz.sh: building targets (sanitizer: $SANITIZER${TOOLCHAIN:+, toolchain $TOOLCHAIN})" >&2
for t in "${TARGETS[@]}"; do
  cargo_fuzz build -O --sanitizer "$SANITIZER" "$t" >&2
done

# --- run --------------------------------------------------------------------
run_one() {
  local t="$1"
  seed_corpus "$t"
  mkdir -p "$FUZZ/artifacts/$t"
  local max_len=65536
  [ "$t" = ingest ] && max_len=4096
  [ "$t" = send ] && max_len=262144
  local dict=()
  [ "$t" != ingest ] && dict=(-dict="$FUZZ/dict/json.dict")
  ROOMDAG_FIXTURES="$FIXTURES" cargo_fuzz run -O --sanitizer "$SANITIZER" "$t" "$FUZZ/corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len="$max_len" -timeout=20 -rss_limit_mb=4096 \
    -print_final_stats=1 "${dict[@]}" >"$LOGS/$t.log" 2>&1 || true
}

pids=()
for t in "${TARGETS[@]}"; do
  run_one "$t" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$JOBS" ]; then
    wait "${pids[0]}"
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p"; done

# --- summary ----------------------------------------------------------------
status=0
printf '\n%-16s %8s %12s %10s %8s %8s\n' target seconds executions exec/s corpus crashes
for t in "${TARGETS[@]}"; do
  log="$LOGS/$t.log"
  runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)
  rate=$(grep -Eo 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)
  corpus=$(find "$FUZZ/corpus/$t" -type f | wc -l)
  crashes=$(find "$FUZZ/artifacts/$t" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l)
  printf '%-16s %8s %12s %10s %8s %8s\n' "$t" "$SECONDS_PER_TARGET" "${runs:-?}" "${rate:-?}" "$corpus" "$crashes"
  if [ "$crashes" -gt 0 ]; then
    status=1
    find "$FUZZ/artifacts/$t" -type f | sed 's/^/    /'
  fi
  if grep -q "panicked at" "$log"; then
    grep -m1 -A3 "panicked at" "$log" | sed 's/^/    /'
  fi
done
echo "logs: $LOGS"
exit $status
