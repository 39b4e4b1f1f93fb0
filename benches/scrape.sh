#!/usr/bin/env bash
# What one Prometheus scrape costs: the time of GET /metrics (curl's
# time_total, 50 scrapes) on an idle beam-edge, and while wrk reads random
# 1 MiB ranges of a hot piece through it (16 connections), plus the size
# of the answer. Prints the machine and a Markdown table.
#
#   benches/scrape.sh
#
# Needs: release builds of beam-edge and the example bench_upstream, curl,
# wrk, python3. Loopback only; everything is removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/beam-edge}
UPSTREAM_BIN=${UPSTREAM_BIN:-target/release/examples/bench_upstream}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -x "$UPSTREAM_BIN" ] || cargo build --release --example bench_upstream >&2

. benches/lib.sh   # WORK, PIDS, free_port, wait_http, metric

mkdir -p "$WORK/pieces"
SIZE=$((64 * 1024 * 1024))
head -c "$SIZE" /dev/urandom > "$WORK/piece.bin"
CID=$("$BIN" piece-cid "$WORK/piece.bin" | cut -d' ' -f1)
mv "$WORK/piece.bin" "$WORK/pieces/$CID"
UP=$(free_port); EDGE=$(free_port); METRICS=$(free_port); ADMIN=$(free_port)
"$UPSTREAM_BIN" --dir "$WORK/pieces" --listen "127.0.0.1:$UP" >/dev/null & PIDS+=($!)
wait_http "http://127.0.0.1:$UP/__stats"
cat > "$WORK/edge.yaml" <<YML
server: { listen: "127.0.0.1:$EDGE", threads: 2, grace_period: 0s }
upstream: { beam_url: "http://127.0.0.1:$UP/{payer}", payer: "0x00000000000000000000000000000000000000aa", resolve_providers: false }
cache: { window: 1MiB, memory: 256MiB, disk: { path: "$WORK/cache", size: 2GiB } }
admin: { listen: "127.0.0.1:$ADMIN" }
metrics: { listen: "127.0.0.1:$METRICS" }
YML
RUST_LOG=warn "$BIN" serve --config "$WORK/edge.yaml" 2>>"$WORK/edge.log" & PIDS+=($!)
wait_http "http://127.0.0.1:$EDGE/healthz"
curl -sf -o /dev/null "http://127.0.0.1:$EDGE/piece/$CID"   # warm: every window in memory

scrapes() { # -> "p50 p99 max" in ms over 50 scrapes, one every 100 ms
  for _ in $(seq 50); do
    curl -sf -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$METRICS/metrics"; sleep 0.1
  done | python3 -c '
import sys
t = sorted(float(l) * 1000 for l in sys.stdin)
print(f"{t[len(t)//2]:.2f} {t[int(len(t)*0.99)-1]:.2f} {t[-1]:.2f}")'
}
BYTES=$(curl -sf "http://127.0.0.1:$METRICS/metrics" | wc -c)
SERIES=$(curl -sf "http://127.0.0.1:$METRICS/metrics" | grep -vc '^#')
IDLE=$(scrapes)
wrk -t1 -c16 -d12s -s benches/random_range.lua "http://127.0.0.1:$EDGE/piece/$CID" -- "$SIZE" >"$WORK/wrk.txt" &
WRK=$!; PIDS+=("$WRK")
sleep 1
LOADED=$(scrapes)
wait "$WRK" || true
RPS=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")

echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "GET /metrics: $BYTES bytes, $SERIES samples; 50 scrapes each (curl time_total)"
echo
echo "| edge | p50 ms | p99 ms | max ms |"
echo "|---|---|---|---|"
read -r a b c <<<"$IDLE";   echo "| idle | $a | $b | $c |"
read -r a b c <<<"$LOADED"; echo "| serving random 1 MiB hits, wrk -c16 ($RPS req/s) | $a | $b | $c |"
