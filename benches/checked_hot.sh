#!/usr/bin/env bash
# Hot hits with window checks on and off: windows are hashed when they are
# filled, never when they are served again, so cached ranges should cost the
# same either way. Two fresh beam-edge processes in front of one loopback
# upstream: one checks every window (verify.mode: background, its layer built
# by a whole read, so every cached window is checked against the PieceCID),
# one checks nothing (verify.mode: off, cache.check_windows: false). Each
# reads the piece whole once (all windows cached, in memory), then wrk asks
# random 64 KiB ranges of it. Prints the machine and a Markdown table.
#
#   benches/checked_hot.sh            64 MiB piece, 10 s per run
#   DUR=5 benches/checked_hot.sh      shorter runs
#
# Needs: release builds of beam-edge and of the example bench_upstream (built
# here if missing), wrk (apt-get install wrk), curl, python3, openssl.
# Loopback only; every process and file is removed at exit. One run each.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}
MIB=64
BIN=target/release/beam-edge
UPSTREAM_BIN=target/release/examples/bench_upstream
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -x "$UPSTREAM_BIN" ] || cargo build --release --example bench_upstream >&2
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }

. benches/lib.sh   # WORK, PIDS, free_port, wait_http, metric

mkdir -p "$WORK/pieces"
openssl enc -aes-128-ctr -K "$(printf '%032x' 11)" -iv 0 -nosalt -in /dev/zero 2>/dev/null \
  | head -c "$((MIB * 1024 * 1024))" > "$WORK/piece.bin" || true
SIZE=$(stat -c %s "$WORK/piece.bin")
CID=$("$BIN" piece-cid "$WORK/piece.bin" | cut -d' ' -f1)
mv "$WORK/piece.bin" "$WORK/pieces/$CID"
UP=$(free_port)
"$UPSTREAM_BIN" --dir "$WORK/pieces" --listen "127.0.0.1:$UP" >/dev/null 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$UP/__stats"

# start_edge NAME "verify yaml" "check_windows" -> sets PORT and ADMIN
start_edge() {
  local name=$1 verify=$2 check=$3 metrics
  PORT=$(free_port); ADMIN=$(free_port); metrics=$(free_port)
  cat > "$WORK/$name.yaml" <<YML
server: { listen: "127.0.0.1:$PORT", threads: 2 }
upstream: { beam_url: "http://127.0.0.1:$UP/{payer}", payer: "0x00000000000000000000000000000000000000aa", resolve_providers: false }
cache: { window: 1MiB, memory: 256MiB, prefetch: 0, check_windows: $check }
verify: $verify
admin: { listen: "127.0.0.1:$ADMIN" }
metrics: { listen: "127.0.0.1:$metrics" }
YML
  RUST_LOG=warn "$BIN" serve --config "$WORK/$name.yaml" 2>>"$WORK/$name.log" & PIDS+=($!)
  wait_http "http://127.0.0.1:$PORT/healthz"
}

# run NAME PORT -> one table row
run() {
  local out
  out=$(wrk -t2 -c16 -d"${DUR}s" --latency -s benches/random_range.lua \
    "http://127.0.0.1:$2/piece/$CID" -- "$SIZE" 65536)
  python3 - "$1" "$out" <<'PY'
import re, sys
name, out = sys.argv[1], sys.argv[2]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
def ms(p):
    m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
print(f"| {name} | {rps:,.0f} | {ms(50):.2f} | {ms(99):.2f} |")
PY
}

start_edge on "{ mode: background, build_delay: 0s }" true
ON=$PORT; ON_ADMIN=$ADMIN
start_edge off "{ mode: off }" false
OFF=$PORT

for p in "$ON" "$OFF"; do
  curl -sf -o /dev/null "http://127.0.0.1:$p/piece/$CID"
done
# The checked edge: its layer built and every cached window swept.
until curl -sf "http://127.0.0.1:$ON_ADMIN/admin/cache/$CID" \
  | python3 -c 'import json,sys; sys.exit(0 if (json.load(sys.stdin).get("layer") or {}).get("swept") else 1)'; do
  sleep 0.1
done
checked=$(curl -s -o /dev/null -D - -H 'Range: bytes=0-0' "http://127.0.0.1:$ON/piece/$CID" \
  | tr -d '\r' | awk -F': ' 'tolower($1)=="x-beam-edge-checked" {print $2}')
unchecked=$(curl -s -o /dev/null -D - -H 'Range: bytes=0-0' "http://127.0.0.1:$OFF/piece/$CID" \
  | tr -d '\r' | awk -F': ' 'tolower($1)=="x-beam-edge-checked" {print $2}')

echo "machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p')), $(free -g | awk '/Mem:/ {print $2}') GiB, load $(cut -d' ' -f1-3 /proc/loadavg); ${DUR} s per run"
echo
echo "| cached 64 KiB ranges of a $MIB MiB piece (wrk -t2 -c16) | req/s | p50 ms | p99 ms |"
echo "|---|---:|---:|---:|"
run "checks on (X-Beam-Edge-Checked: $checked)" "$ON"
run "checks off (X-Beam-Edge-Checked: ${unchecked:-none})" "$OFF"
