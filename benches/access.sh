#!/usr/bin/env bash
# Access control on the hot path, and what per-client pacing buys the other
# clients. Prints the machine and two Markdown tables:
#
# 1. cost: req/s and latency of cached 1 KiB ranges (wrk, fresh keep-alive
#    connections) on an edge with no access control, and on one with every
#    check on (signed URL required and checked, request and byte limits,
#    an egress budget, X-Forwarded-For from a trusted proxy);
# 2. fairness: 10 normal clients (each its own X-Forwarded-For address, a
#    64 KiB cached range every 50 ms, like a player topping up its buffer)
#    alone, then beside one greedy client pulling a cached 16 MiB piece over
#    4 connections as fast as it can, with access.limits.bytes_per_second
#    off and on. The normal clients' p50 should stay within 20% of the
#    unloaded run with the limit on.
#
#   benches/access.sh              10 s per run
#   DUR=3 benches/access.sh        shorter runs
#
# Needs: release builds of beam-edge and of the example bench_upstream
# (built here if missing), wrk (apt-get install wrk), curl, python3.
# Everything runs on loopback; every process and file is removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}
BIN=target/release/beam-edge
UPSTREAM_BIN=target/release/examples/bench_upstream
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -x "$UPSTREAM_BIN" ] || cargo build --release --example bench_upstream >&2
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }

. benches/lib.sh   # WORK, PIDS, free_port, wait_http, metric
PAYER=0x00000000000000000000000000000000000000aa
SECRET=bench-secret-0123456789abcdef0123456789abcdef

mkdir -p "$WORK/pieces"
head -c $((16 << 20)) /dev/urandom > "$WORK/piece"
CID=$("$BIN" piece-cid "$WORK/piece" | awk '{print $1}')
mv "$WORK/piece" "$WORK/pieces/$CID"
UP_PORT=$(free_port)
"$UPSTREAM_BIN" --dir "$WORK/pieces" --listen "127.0.0.1:$UP_PORT" 2>/dev/null &
PIDS+=($!)
wait_http "http://127.0.0.1:$UP_PORT/__stats"

# start_edge NAME "access yaml" → sets PORT_<NAME>
start_edge() {
  local name=$1 access=$2 port admin mport
  port=$(free_port); admin=$(free_port); mport=$(free_port)
  cat > "$WORK/$name.yaml" <<EOF
server:
  listen: "127.0.0.1:$port"
  threads: 2
  trusted_proxies: ["127.0.0.1"]
upstream:
  beam_url: "http://127.0.0.1:$UP_PORT/{payer}"
  payer: "$PAYER"
  resolve_providers: false
cache:
  disk:
    path: "$WORK/$name-cache"
admin:
  listen: "127.0.0.1:$admin"
metrics:
  listen: "127.0.0.1:$mport"
$access
EOF
  RUST_LOG=warn "$BIN" serve --config "$WORK/$name.yaml" 2>"$WORK/$name.log" &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$port/healthz"
  # Warm the whole piece into memory.
  curl -sf -o /dev/null "http://127.0.0.1:$port$(link "$name" "/piece/$CID")"
  printf -v "PORT_$name" %s "$port"
}
# link NAME PATH: PATH, signed when NAME's edge requires it
link() {
  if grep -q "required: true" "$WORK/$1.yaml"; then
    "$BIN" sign "$2" --ttl 1h -c "$WORK/$1.yaml"
  else
    echo "$2"
  fi
}

start_edge plain ""
start_edge all "access:
  signed_urls:
    required: true
    keys: [{ id: k1, secret: \"$SECRET\" }]
  limits:
    requests_per_second: 1000000
    bytes_per_second: 100GiB
  egress_budget:
    per_hour: 1TiB
    per_day: 10TiB"
start_edge paced "access:
  limits:
    bytes_per_second: 8MiB"

cat > "$WORK/range.lua" <<'EOF'
wrk.headers["Range"] = "bytes=0-1023"
wrk.headers["X-Forwarded-For"] = "203.0.113.7"
EOF
# A normal client per thread: its own address, 64 KiB every 50 ms.
cat > "$WORK/normal.lua" <<'EOF'
local n = 0
function setup(thread) n = n + 1; thread:set("ip", "10.0.0." .. n) end
function init(args) wrk.headers["X-Forwarded-For"] = ip; wrk.headers["Range"] = "bytes=1048576-1114111" end
function delay() return 50 end
EOF
cat > "$WORK/greedy.lua" <<'EOF'
wrk.headers["X-Forwarded-For"] = "10.0.0.99"
EOF

# wrk_stats OUTFILE → "req/s p50 p99 transfer/s"
wrk_stats() {
  python3 - "$1" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
rps = re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)
p50 = ms(re.search(r"\s50%\s+(\S+)", t).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", t).group(1))
tr = re.search(r"Transfer/sec:\s+(\S+)", t).group(1)
print(f"{float(rps):.0f} {p50:.2f} {p99:.2f} {tr}")
EOF
}

echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, load $(cut -d' ' -f1-3 /proc/loadavg); ${DUR} s per run"
echo
echo "| edge (cached 1 KiB ranges, wrk -t2 -c16) | req/s | p50 ms | p99 ms |"
echo "|---|---:|---:|---:|"
for name in plain all; do
  port_var=PORT_$name
  path=$(link "$name" "/piece/$CID")
  wrk -t2 -c16 -d"${DUR}s" --latency -s "$WORK/range.lua" "http://127.0.0.1:${!port_var}$path" > "$WORK/wrk-$name.txt"
  read -r rps p50 p99 _ < <(wrk_stats "$WORK/wrk-$name.txt")
  label=$([ "$name" = plain ] && echo "no access control" || echo "signed URL + limits + budget + trusted proxy")
  echo "| $label | $rps | $p50 | $p99 |"
done
echo

# fairness NAME WITH_GREEDY → a table row
fairness() {
  local name=$1 greedy=$2 port_var=PORT_$1 gpid=""
  local base="http://127.0.0.1:${!port_var}/piece/$CID"
  if [ "$greedy" = yes ]; then
    wrk -t1 -c4 -d"$((DUR + 2))s" -s "$WORK/greedy.lua" "$base" > "$WORK/greedy-$name.txt" &
    gpid=$!
    sleep 1
  fi
  wrk -t10 -c10 -d"${DUR}s" --latency -s "$WORK/normal.lua" "$base" > "$WORK/normal-$name-$greedy.txt"
  [ -n "$gpid" ] && wait "$gpid"
  read -r rps p50 p99 _ < <(wrk_stats "$WORK/normal-$name-$greedy.txt")
  local gtr="-"
  [ -n "$gpid" ] && gtr=$(awk '/Transfer\/sec/ {print $2}' "$WORK/greedy-$name.txt")
  echo "$p50 $p99 $rps $gtr"
}
echo "| 10 normal clients (64 KiB every 50 ms each) | normal p50 ms | normal p99 ms | normal req/s | greedy client's transfer/s |"
echo "|---|---:|---:|---:|---:|"
read -r base_p50 base_p99 base_rps _ < <(fairness paced no)
echo "| alone (bytes_per_second: 8MiB) | $base_p50 | $base_p99 | $base_rps | - |"
read -r p50 p99 rps gtr < <(fairness plain yes)
echo "| + greedy client, no limit | $p50 ($(python3 -c "print(f'{$p50/$base_p50:.2f}')")×) | $p99 | $rps | $gtr |"
read -r p50 p99 rps gtr < <(fairness paced yes)
echo "| + greedy client, bytes_per_second: 8MiB | $p50 ($(python3 -c "print(f'{$p50/$base_p50:.2f}')")×) | $p99 | $rps | $gtr |"
