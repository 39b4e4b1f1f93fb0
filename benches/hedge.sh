#!/usr/bin/env bash
# Hedged window fetches (issue #18): one of three holders stalls. Beam (a
# mock, examples/bench_upstream) holds up every STALL_EVERY-th request by
# STALL (2 s on 5 % by default; deterministic, so every run stalls the same
# requests); two storage providers (the same mock) never stall. Every holder
# adds LATENCY before each response header and sends UP_RATE per connection.
# A fresh beam-edge (disk tier off, no read-ahead, no layer build: each
# request is one cold window fill, and Beam's requests are the reader's
# alone) is read window by window, N whole windows in order, once
# with upstream.hedge_after: off and once with each HEDGE given (auto and a
# fixed delay by default). Prints the machine and a Markdown table:
#
#   hedge_after | p50 | p90 | p99 | max | mean | hedges won / lost / over
#   budget | extra requests (providers ÷ Beam) | bytes exact
#
# where the latencies are each window's, as a client sees it: from the
# request to its last byte. Every body is compared with the piece's bytes.
#
#   benches/hedge.sh
#   N=400 STALL=2s STALL_EVERY=20 HEDGE="auto 150ms" benches/hedge.sh
#
# Needs: release builds of beam-edge and of the example bench_upstream
# (cargo build --release --bin beam-edge --example bench_upstream), curl,
# python3, openssl. Everything runs on loopback; every process and file is
# removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/beam-edge}
UPSTREAM_BIN=${UPSTREAM_BIN:-target/release/examples/bench_upstream}
N=${N:-400}
STALL=${STALL:-2s}
STALL_EVERY=${STALL_EVERY:-20}
LATENCY=${LATENCY:-40ms}
UP_RATE=${UP_RATE:-40MB/s}
HEDGE=${HEDGE:-auto 150ms}
BUDGET=${BUDGET:-5%}
[ -x "$BIN" ] || { echo "build first: cargo build --release --bin beam-edge (or set BIN)" >&2; exit 1; }
[ -x "$UPSTREAM_BIN" ] || { echo "build first: cargo build --release --example bench_upstream (or set UPSTREAM_BIN)" >&2; exit 1; }

. benches/lib.sh   # WORK, PIDS, free_port, wait_http, metric
PAYER=0x00000000000000000000000000000000000000aa
# 1 MiB windows (padded): 1,040,384 bytes of piece each.
RAW=1040384
SIZE=$(( N * RAW ))

piece_file "$SIZE" beam-edge-hedge-bench

holder() { # port [extra args]: a mock holder on loopback
  local port=$1; shift
  "$UPSTREAM_BIN" --dir "$WORK/pieces" --listen "127.0.0.1:$port" \
    --latency "$LATENCY" --rate "$UP_RATE" "$@" >/dev/null 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$port/__stats"
}
requests() { curl -s "http://127.0.0.1:$1/__stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])'; }

# The client: N whole windows in order over one keep-alive connection.
# Prints the latencies (ms, one per line) and then "exact/total".
cat >"$WORK/client.py" <<'EOF'
import http.client, os, sys, time
port, cid, piece, n, raw = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
fd = os.open(piece, os.O_RDONLY)
conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60)
exact = 0
for w in range(n):
    a, b = w * raw, (w + 1) * raw - 1
    t0 = time.monotonic()
    conn.request("GET", f"/piece/{cid}", headers={"Range": f"bytes={a}-{b}"})
    r = conn.getresponse()
    body = r.read()
    dt = time.monotonic() - t0
    print(f"{dt * 1000:.1f}")
    if r.status == 206 and body == os.pread(fd, raw, a):
        exact += 1
print(f"{exact}/{n}")
EOF

echo "# benches/hedge.sh: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $BIN; $N whole 1 MiB windows read in order, each a cold fill (verify.mode off: no layer build); holders: $LATENCY + $UP_RATE per connection; Beam also stalls $STALL on every ${STALL_EVERY}th request; hedge_budget $BUDGET"
echo
echo "| upstream.hedge_after | p50 | p90 | p99 | max | mean | hedges won / lost / failed / over budget | extra requests (providers ÷ Beam) | bytes exact |"
echo "|---|---|---|---|---|---|---|---|---|"
for hedge in off $HEDGE; do
  # Fresh holders per run: Beam's stall count starts again at 0.
  beam=$(free_port); pa=$(free_port); pb=$(free_port)
  holder "$beam" --stall "$STALL" --stall-every "$STALL_EVERY"
  holder "$pa"
  holder "$pb"
  port=$(free_port); mport=$(free_port); admin=$(free_port)
  cat >"$WORK/edge.yaml" <<EOF
server:
  listen: "127.0.0.1:$port"
  threads: 2
upstream:
  beam_url: "http://127.0.0.1:$beam/{payer}"
  payer: "$PAYER"
  resolve_providers: false
  providers: ["http://127.0.0.1:$pa", "http://127.0.0.1:$pb"]
  hedge_after: $hedge
  hedge_budget: $BUDGET
cache:
  memory: 64MiB
  prefetch: 0
  index_prefetch: 0
  disk:
    size: 0
verify:
  mode: off
admin:
  listen: "127.0.0.1:$admin"
metrics:
  listen: "127.0.0.1:$mport"
EOF
  start_edge "$WORK/edge.yaml" "$WORK/edge.log" "$port"
  edge=$EDGE
  python3 "$WORK/client.py" "$port" "$CID" "$PIECE" "$N" "$RAW" >"$WORK/lat.txt"
  exact=$(tail -n 1 "$WORK/lat.txt")
  stats=$(head -n -1 "$WORK/lat.txt" | python3 -c '
import statistics, sys
xs = sorted(float(l) for l in sys.stdin)
q = lambda p: xs[min(len(xs) - 1, int(round((len(xs) - 1) * p)))]
print(f"{q(.5):.0f} ms | {q(.9):.0f} ms | {q(.99):.0f} ms | {xs[-1]:.0f} ms | {statistics.mean(xs):.0f} ms")')
  h() { metric "$mport" "beam_edge_hedges_total{outcome=\"$1\"}"; }
  hedges="$(h won) / $(h lost) / $(h failed) / $(h over_budget)"
  b=$(requests "$beam"); p=$(( $(requests "$pa") + $(requests "$pb") ))
  extra=$(python3 -c "print(f'$p ÷ $b = {$p / max($b, 1) * 100:.1f} %')")
  echo "| $hedge | $stats | $hedges | $extra | $exact |"
  kill "$edge"; wait "$edge" 2>/dev/null || true
done
