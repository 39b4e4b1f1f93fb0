#!/usr/bin/env bash
# Memory under a burst of slow cold readers (issue #21): for each N, a fresh
# edge (disk tier off, so every read is a cold fill) and N concurrent
# readers, each a slow client (RATE bytes/s through a 64 KiB receive
# buffer) reading LEN bytes of its own region of one SIZE-byte piece, from a
# WAN-like local upstream (examples/bench_upstream: LATENCY before each
# answer, UP_RATE per connection). Prints the machine and a Markdown table:
#
#   N | peak RSS (VmHWM) | RSS 5 s after | memory + inflight + 96 MiB |
#   throughput | upstream ÷ served | 503s | queued | bytes exact | wall
#
# "RSS 5 s after" is VmRSS 5 s after the last reader finished. Every body is
# hashed and compared with the piece file's bytes.
#
#   benches/memory.sh                 N = 10 100 500
#   benches/memory.sh 10 100          chosen N
#   MEMORY=64MiB INFLIGHT=128MiB RATE=4000000 LEN=9000000 benches/memory.sh
#   RUN_WINDOWS=8 benches/memory.sh 1000   a cache.run_windows other than the default
#   INFLIGHT=off BIN=old/beam-edge benches/memory.sh 10   a build from before
#                                     the budget (no cache.inflight key)
#   BIN=target/debug/beam-edge UPSTREAM_BIN=target/debug/examples/bench_upstream \
#     benches/memory.sh               a debug build (say so when quoting it)
#
# Needs: beam-edge and the example bench_upstream (release by default:
# cargo build --release --bin beam-edge --example bench_upstream), curl,
# python3, openssl (a fast generator for the piece's bytes). Writes one
# SIZE-byte file to a temporary directory (1.5 GB by default); everything
# runs on loopback; every process and file is removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/beam-edge}
UPSTREAM_BIN=${UPSTREAM_BIN:-target/release/examples/bench_upstream}
MEMORY=${MEMORY:-64MiB}
INFLIGHT=${INFLIGHT:-128MiB}
RATE=${RATE:-4000000}
LEN=${LEN:-9000000}
SIZE=${SIZE:-1500000000}
LATENCY=${LATENCY:-40ms}
UP_RATE=${UP_RATE:-40MB/s}
[ -x "$BIN" ] || { echo "build first: cargo build --release --bin beam-edge (or set BIN)" >&2; exit 1; }
[ -x "$UPSTREAM_BIN" ] || { echo "build first: cargo build --release --example bench_upstream (or set UPSTREAM_BIN)" >&2; exit 1; }
if [ $# -eq 0 ]; then set -- 10 100 500; fi

. benches/lib.sh   # WORK, PIDS, free_port, wait_http, metric
PAYER=0x00000000000000000000000000000000000000aa

mib() { python3 -c "import re,sys; s=sys.argv[1]; n,u=re.fullmatch(r'(\d+)(MiB|GiB)',s).groups(); print(int(n)*(1024 if u=='GiB' else 1))" "$1"; }
# INFLIGHT=off: no cache.inflight line (a build from before the budget).
if [ "$INFLIGHT" = off ]; then
  INFLIGHT_LINE="" ; BOUND=$(( $(mib "$MEMORY") + 256 + 96 ))
else
  INFLIGHT_LINE="  inflight: $INFLIGHT" ; BOUND=$(( $(mib "$MEMORY") + $(mib "$INFLIGHT") + 96 ))
fi

# The piece: SIZE pseudo-random bytes, named by its CID.
piece_file "$SIZE" beam-edge-memory-bench
UP_PORT=$(free_port)
"$UPSTREAM_BIN" --dir "$WORK/pieces" --listen "127.0.0.1:$UP_PORT" \
  --latency "$LATENCY" --rate "$UP_RATE" >/dev/null 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$UP_PORT/__stats"

# The readers: N slow clients, one process (asyncio). Prints
# "ok503 bad bytes seconds" on stdout.
cat >"$WORK/readers.py" <<'EOF'
import asyncio, hashlib, os, socket, sys, time
port, cid, piece, n, rate, length, size = sys.argv[1:8]
port, n, rate, length, size = int(port), int(n), int(rate), int(length), int(size)
fd = os.open(piece, os.O_RDONLY)
first = 1_000_000
stride = max(1, (size - length - first) // n)

async def read_one(i):
    start = first + i * stride
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    r, w = await asyncio.open_connection(sock=sock, limit=64 << 10)
    w.write(f"GET /piece/{cid} HTTP/1.1\r\nHost: edge\r\nRange: bytes={start}-{start + length - 1}\r\nConnection: close\r\n\r\n".encode())
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    h, got, t0 = hashlib.sha256(), 0, time.monotonic()
    while True:
        due = t0 + got / rate
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
        chunk = await r.read(16 << 10)
        if not chunk:
            break
        h.update(chunk)
        got += len(chunk)
    w.close()
    if status != 206:
        return status, False, got
    want = hashlib.sha256(os.pread(fd, length, start)).digest()
    return status, got == length and h.digest() == want, got

async def main():
    t0 = time.monotonic()
    res = await asyncio.gather(*(read_one(i) for i in range(n)), return_exceptions=True)
    dt = time.monotonic() - t0
    busy = sum(1 for x in res if not isinstance(x, BaseException) and x[0] == 503)
    bad = sum(1 for x in res if isinstance(x, BaseException) or (x[0] != 503 and not x[1]))
    nbytes = sum(x[2] for x in res if not isinstance(x, BaseException))
    print(busy, bad, nbytes, f"{dt:.1f}")

asyncio.run(main())
EOF

upstream_bytes() { curl -s "http://127.0.0.1:$UP_PORT/__stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["body_bytes"])'; }
status_kib() { awk -v k="$2:" '$1==k {print int($2/1024)}' "/proc/$1/status"; }

echo "# benches/memory.sh: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $BIN; cache.memory $MEMORY, cache.inflight $INFLIGHT, disk tier off; readers at $RATE B/s, $LEN bytes each of a $SIZE-byte piece; upstream $LATENCY + $UP_RATE per connection"
echo
echo "| N | peak RSS (VmHWM) | RSS 5 s after | memory + inflight + 96 MiB | throughput | upstream ÷ served | 503s | queued | bytes exact | wall |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for n in "$@"; do
  port=$(free_port); mport=$(free_port); admin=$(free_port)
  cat >"$WORK/edge-$n.yaml" <<EOF
server:
  listen: "127.0.0.1:$port"
  threads: 2
upstream:
  beam_url: "http://127.0.0.1:$UP_PORT/{payer}"
  payer: "$PAYER"
  resolve_providers: false
cache:
  memory: $MEMORY
$INFLIGHT_LINE
${RUN_WINDOWS:+  run_windows: $RUN_WINDOWS}
  disk:
    size: 0
admin:
  listen: "127.0.0.1:$admin"
metrics:
  listen: "127.0.0.1:$mport"
EOF
  start_edge "$WORK/edge-$n.yaml" "$WORK/edge-$n.log" "$port"
  edge=$EDGE
  up0=$(upstream_bytes)
  read -r busy bad nbytes wall < <(python3 "$WORK/readers.py" "$port" "$CID" "$PIECE" "$n" "$RATE" "$LEN" "$SIZE")
  up1=$(upstream_bytes)
  peak=$(status_kib "$edge" VmHWM)
  sleep 5
  after=$(status_kib "$edge" VmRSS)
  queued=$(metric "$mport" 'beam_edge_inflight_events_total{event="queued"}')
  served=$(( n - busy ))
  tput=$(python3 -c "print(f'{$nbytes / $wall / 1e6:.1f} MB/s')")
  exact="$(( served - bad ))/$served"
  ratio=$(python3 -c "print(f'{($up1 - $up0) / max($nbytes, 1):.3f}×')")
  echo "| $n | $peak MiB | $after MiB | $BOUND MiB | $tput | $ratio | $busy | $queued | $exact | ${wall} s |"
  kill "$edge"; wait "$edge" 2>/dev/null || true
done
