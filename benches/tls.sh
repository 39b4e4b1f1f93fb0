#!/usr/bin/env bash
# TLS cost on hot 1 MiB ranges, in one run: the same memory-hot 64 MiB piece
# served by two beam-edge processes in front of one upstream, one plain
# (with server.h2c on) and one with server.tls, measured one after the other:
#   HTTP/1.1: wrk with benches/random_range.lua, http:// vs https://
#   HTTP/2:   h2load, h2c (prior knowledge) vs h2 over TLS (ALPN), a fixed
#             1 MiB range (h2load cannot vary headers per request)
# Prints the machine and a Markdown table with the TLS/plain ratios
# (target >= 0.8).
#
#   benches/tls.sh            10 s per run
#   benches/tls.sh --quick    3 s per run
#
# Needs: a release build of beam-edge and of the example bench_upstream
# (built here if missing), wrk (https support: Debian's is built with
# OpenSSL), h2load (apt-get install nghttp2-client), openssl, curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=10; [ "${1:-}" = "--quick" ] && DUR=3
HOT_MIB=64; HOT_SIZE=$((HOT_MIB * 1024 * 1024))
BIN=target/release/beam-edge
UPSTREAM_BIN=target/release/examples/bench_upstream
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -x "$UPSTREAM_BIN" ] || cargo build --release --example bench_upstream >&2
for t in wrk h2load openssl; do
  command -v $t >/dev/null || { echo "needs $t (apt-get install wrk nghttp2-client openssl)" >&2; exit 1; }
done

. benches/lib.sh   # WORK, PIDS, free_port, wait_http, metric
log() { echo "# $*" >&2; }
PAYER=0x00000000000000000000000000000000000000aa

# A test CA and a P-256 server certificate for 127.0.0.1.
( cd "$WORK"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bench CA" -keyout ca.key -out ca.crt 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout tls.key -out tls.csr 2>/dev/null
  echo "subjectAltName=DNS:localhost,IP:127.0.0.1" > ext
  openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -set_serial 1 -days 2 \
    -extfile ext -out tls.crt 2>/dev/null )

mkdir -p "$WORK/pieces"
openssl enc -aes-128-ctr -K "$(printf '%032x' 1)" -iv 0 -nosalt -in /dev/zero 2>/dev/null \
  | head -c "$HOT_SIZE" > "$WORK/pieces/new.bin" || true
HOT=$("$BIN" piece-cid "$WORK/pieces/new.bin" | cut -d' ' -f1)
mv "$WORK/pieces/new.bin" "$WORK/pieces/$HOT"

UP=$(free_port)
"$UPSTREAM_BIN" --dir "$WORK/pieces" --listen "127.0.0.1:$UP" >/dev/null & PIDS+=($!)
wait_http "http://127.0.0.1:$UP/__stats"

start_edge() { # name server-extra -> EDGE (public port)
  EDGE=$(free_port); local metrics admin; metrics=$(free_port); admin=$(free_port)
  cat > "$WORK/$1.yaml" <<YML
server: { listen: "127.0.0.1:$EDGE", threads: 2, grace_period: 0s, $2 }
upstream: { beam_url: "http://127.0.0.1:$UP/{payer}", payer: "$PAYER" }
cache: { window: 1MiB, memory: 256MiB, disk: { path: "$WORK/cache-$1", size: 1GiB } }
admin: { listen: "127.0.0.1:$admin" }
metrics: { listen: "127.0.0.1:$metrics" }
YML
  RUST_LOG=warn "$BIN" serve --config "$WORK/$1.yaml" 2>>"$WORK/$1.log" & PIDS+=($!)
}
start_edge plain "h2c: true"; PLAIN=$EDGE
start_edge tls "tls: { cert: \"$WORK/tls.crt\", key: \"$WORK/tls.key\" }"; TLS=$EDGE
wait_http "http://127.0.0.1:$PLAIN/healthz"
for _ in $(seq 100); do curl -sf --cacert "$WORK/ca.crt" -o /dev/null "https://127.0.0.1:$TLS/healthz" && break; sleep 0.1; done
PLAIN_URL="http://127.0.0.1:$PLAIN/piece/$HOT"
TLS_URL="https://127.0.0.1:$TLS/piece/$HOT"
log "warming both (two whole reads each)"
for _ in 1 2; do
  curl -sf -o /dev/null "$PLAIN_URL"
  curl -sf --cacert "$WORK/ca.crt" -o /dev/null "$TLS_URL"
done

wrk_rps() { wrk -t1 -c16 -d"${DUR}s" -s benches/random_range.lua "$1" -- "$HOT_SIZE" | awk '/Requests\/sec/ {print $2}'; }
h2load_rps() { # url -> req/s (16 streams over 4 connections)
  h2load -D "$DUR" -c4 -m4 -t1 -H "Range: bytes=$((8 * 1048576))-$((9 * 1048576 - 1))" "$1" \
    | awk '/^finished in/ {gsub(",", "", $4); print $4}'
}
log "HTTP/1.1 plain"; H1P=$(wrk_rps "$PLAIN_URL")
log "HTTP/1.1 TLS";   H1T=$(wrk_rps "$TLS_URL")
log "HTTP/2 h2c";     H2P=$(h2load_rps "$PLAIN_URL")
log "HTTP/2 TLS";     H2T=$(h2load_rps "$TLS_URL")
ratio() { python3 -c "print(f'{float($2)/float($1):.2f}')"; }
verdict() { python3 -c "print('pass' if float($2)/float($1) >= 0.8 else '**fail**')"; }
mibs() { python3 -c "print(f'{float($1):.0f} req/s ({float($1):.0f} MiB/s)')"; }

echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB;" \
     "load average at the end: $(uptime | sed 's/.*load average: //')"
echo "Hot 1 MiB ranges of a 64 MiB piece from the memory tier, beam-edge 2 threads, ${DUR} s per run;" \
     "wrk -t1 -c16 (random ranges), h2load -c4 -m4 (one range)"
echo
echo "| protocol | plain | TLS | TLS / plain | target ≥ 0.8 |"
echo "|---|---|---|---|---|"
echo "| HTTP/1.1 (wrk) | $(mibs "$H1P") | $(mibs "$H1T") | $(ratio "$H1P" "$H1T") | $(verdict "$H1P" "$H1T") |"
echo "| HTTP/2 (h2load: h2c vs h2) | $(mibs "$H2P") | $(mibs "$H2T") | $(ratio "$H2P" "$H2T") | $(verdict "$H2P" "$H2T") |"
