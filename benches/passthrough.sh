#!/usr/bin/env bash
# Pass-through overhead: the same ranged requests sent straight to an origin
# (nginx serving the piece file, with its native Range support) and through
# beam-edge in front of that origin. Prints a Markdown table.
#
#   benches/passthrough.sh [seconds-per-run]       (default 10)
#
# Needs: a release build (make release), wrk and nginx (apt-get install wrk
# nginx-light). Everything runs on loopback; all processes are stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
BIN=target/release/beam-edge
[ -x "$BIN" ] || { echo "build first: make release" >&2; exit 1; }
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "needs nginx: apt-get install nginx-light" >&2; exit 1; }

. benches/lib.sh   # WORK, PIDS, free_port
PAYER=0x00000000000000000000000000000000000000aa
SIZE=$((64 * 1024 * 1024))
head -c "$SIZE" /dev/urandom > "$WORK/piece.bin"
CID=$("$BIN" piece-cid "$WORK/piece.bin" | cut -d' ' -f1)
mkdir -p "$WORK/www/$PAYER"
mv "$WORK/piece.bin" "$WORK/www/$PAYER/$CID"
chmod -R a+rX "$WORK"   # nginx workers run as nobody

ORIGIN=$(free_port); EDGE=$(free_port); METRICS=$(free_port); ADMIN=$(free_port)
cat > "$WORK/nginx.conf" <<NGX
daemon off;
worker_processes 1;
error_log $WORK/nginx-error.log;
pid $WORK/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 100000;
  server { listen 127.0.0.1:$ORIGIN; root $WORK/www; }
}
NGX
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK" & PIDS+=($!)
cat > "$WORK/edge.yaml" <<YML
server: { listen: "127.0.0.1:$EDGE", threads: 1, grace_period: 0s }
upstream: { beam_url: "http://127.0.0.1:$ORIGIN/{payer}", payer: "$PAYER", resolve_providers: false }
admin: { listen: "127.0.0.1:$ADMIN" }
metrics: { listen: "127.0.0.1:$METRICS" }
YML
RUST_LOG=warn "$BIN" serve --config "$WORK/edge.yaml" 2>"$WORK/edge.log" & PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$EDGE/healthz" >/dev/null && break; sleep 0.1; done
for _ in $(seq 100); do curl -sf -o /dev/null -r 0-0 "http://127.0.0.1:$ORIGIN/$PAYER/$CID" && break; sleep 0.1; done
# Both paths must answer the benchmark's request with a 206 of the right length.
for url in "http://127.0.0.1:$ORIGIN/$PAYER/$CID" "http://127.0.0.1:$EDGE/piece/$CID"; do
  got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' -r 1048576-2097151 "$url")
  [ "$got" = "206 1048576" ] || { echo "sanity check failed for $url: $got" >&2; exit 1; }
done

# wrk prints latency percentiles with --latency; pull rps, p50, p99.
run() { # url range
  local out; out=$(wrk -t1 -c8 -d"${DUR}s" --latency -H "Range: bytes=$2" "$1")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  echo "$rps|$p50|$p99"
}

echo "| request | direct to origin: req/s, p50, p99 | through beam-edge: req/s, p50, p99 | req/s ratio |"
echo "|---|---|---|---|"
for range in 0-4095 1048576-2097151; do
  d=$(run "http://127.0.0.1:$ORIGIN/$PAYER/$CID" "$range")
  e=$(run "http://127.0.0.1:$EDGE/piece/$CID" "$range")
  IFS='|' read -r drps dp50 dp99 <<<"$d"
  IFS='|' read -r erps ep50 ep99 <<<"$e"
  ratio=$(python3 -c "print(f'{$erps/$drps:.2f}')")
  echo "| Range: bytes=$range | $drps, $dp50, $dp99 | $erps, $ep50, $ep99 | $ratio |"
done
