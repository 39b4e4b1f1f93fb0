#!/usr/bin/env bash
# TLS cost on hot 1 MiB ranges, in one run: the same memory-hot 64 MiB piece
# served by two beam-edge processes in front of one upstream, one plain
# (with server.h2c on) and one with server.tls, measured one after the other:
#   HTTP/1.1: wrk with benches/random_range.lua, http:// vs https://
#   HTTP/2:   h2load, h2c (prior knowledge) vs h2 over TLS (ALPN), a fixed
#             1 MiB range (h2load cannot vary headers per request)
# For each run it also reads the server's own CPU time (utime + stime of
# every thread, /proc/PID/stat) and prints it per MiB served: the proxy's
# cost apart from the client's, which on one machine shares the cores.
# When nginx is installed, the same runs go to nginx (Debian's, OpenSSL)
# serving the same bytes as a file (sendfile off, the copy our memory tier
# makes too; 2 workers like beam-edge's 2 threads): a reference for what
# userspace TLS costs on this machine.
# Prints the machine and Markdown tables with the TLS/plain ratios
# (target >= 0.8).
#
#   benches/tls.sh            10 s per run
#   benches/tls.sh --quick    3 s per run
#   benches/tls.sh --pin      servers on CPU 0, clients on CPU 1 (taskset),
#                             so that neither steals the other's core
#                             (combine: --quick --pin)
#
# Needs: a release build of beam-edge and of the example bench_upstream
# (built here if missing), wrk (https support: Debian's is built with
# OpenSSL), h2load (apt-get install nghttp2-client), openssl, curl, python3;
# nginx for the reference rows (optional).
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=10; PIN=""
for a in "$@"; do
  case "$a" in
    --quick) DUR=3 ;;
    --pin) PIN=1 ;;
    *) echo "usage: benches/tls.sh [--quick] [--pin]" >&2; exit 2 ;;
  esac
done
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
upstream: { beam_url: "http://127.0.0.1:$UP/{payer}", payer: "$PAYER", resolve_providers: false }
cache: { window: 1MiB, memory: 256MiB, disk: { path: "$WORK/cache-$1", size: 1GiB } }
admin: { listen: "127.0.0.1:$admin" }
metrics: { listen: "127.0.0.1:$metrics" }
YML
  RUST_LOG=warn "$BIN" serve --config "$WORK/$1.yaml" 2>>"$WORK/$1.log" & PIDS+=($!)
}
start_edge plain "h2c: true"; PLAIN=$EDGE; PLAIN_PID=${PIDS[-1]}
start_edge tls "tls: { cert: \"$WORK/tls.crt\", key: \"$WORK/tls.key\" }"; TLS=$EDGE; TLS_PID=${PIDS[-1]}
wait_http "http://127.0.0.1:$PLAIN/healthz"
for _ in $(seq 100); do curl -sf --cacert "$WORK/ca.crt" -o /dev/null "https://127.0.0.1:$TLS/healthz" && break; sleep 0.1; done
PLAIN_URL="http://127.0.0.1:$PLAIN/piece/$HOT"
TLS_URL="https://127.0.0.1:$TLS/piece/$HOT"
log "warming both (two whole reads each)"
for _ in 1 2; do
  curl -sf -o /dev/null "$PLAIN_URL"
  curl -sf --cacert "$WORK/ca.crt" -o /dev/null "$TLS_URL"
done

# The reference: nginx serving the same bytes from a file, plain HTTP/1.1,
# h2c and TLS (h2 + http/1.1), with the same test certificate.
NGINX=""
if command -v nginx >/dev/null; then
  mkdir -p "$WORK/www" "$WORK/nginx"
  cp "$WORK/pieces/$HOT" "$WORK/www/hot.bin"
  NG_H1=$(free_port); NG_H2C=$(free_port); NG_TLS=$(free_port)
  # As root, the workers would drop to nobody, who cannot read $WORK.
  NG_USER=""; [ "$(id -u)" = 0 ] && NG_USER="user root;"
  cat > "$WORK/nginx/nginx.conf" <<NGX
$NG_USER
worker_processes 2;
daemon off; pid $WORK/nginx/pid; error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off; keepalive_requests 1000000; sendfile off;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx; fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  server { listen 127.0.0.1:$NG_H1; root $WORK/www; }
  server { listen 127.0.0.1:$NG_H2C http2; root $WORK/www; }
  server { listen 127.0.0.1:$NG_TLS ssl http2; root $WORK/www;
           ssl_certificate $WORK/tls.crt; ssl_certificate_key $WORK/tls.key; }
}
NGX
  nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>>"$WORK/nginx/error.log" & PIDS+=($!)
  NGINX=$!
  wait_http "http://127.0.0.1:$NG_H1/hot.bin"
  cmp <(curl -sf --cacert "$WORK/ca.crt" "https://127.0.0.1:$NG_TLS/hot.bin") "$WORK/www/hot.bin"
fi

# Every pid of a server: the process and its children (nginx's workers).
server_pids() { echo "$1"; pgrep -P "$1" || true; }
# CPU time (utime + stime, all threads) of a server, in clock ticks.
cpu_ticks() { local t=0 p v; for p in $(server_pids "$1"); do
  v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0); t=$((t + v)); done; echo "$t"; }
TICKS=$(getconf CLK_TCK)
CLIENT=()
if [ -n "$PIN" ]; then
  CLIENT=(taskset -c 1)
  for p in "$PLAIN_PID" "$TLS_PID" ${NGINX:+"$NGINX"}; do
    for q in $(server_pids "$p"); do taskset -a -p -c 0 "$q" >/dev/null; done
  done
fi

wrk_rps() { "${CLIENT[@]}" wrk -t1 -c16 -d"${DUR}s" -s benches/random_range.lua "$1" -- "$HOT_SIZE" | awk '/Requests\/sec/ {print $2}'; }
h2load_rps() { # url -> req/s (16 streams over 4 connections)
  "${CLIENT[@]}" h2load -D "$DUR" -c4 -m4 -t1 -H "Range: bytes=$((8 * 1048576))-$((9 * 1048576 - 1))" "$1" \
    | awk '/^finished in/ {gsub(",", "", $4); print $4}'
}
# measure NAME CLIENT URL SERVER_PID: sets NAME (req/s) and NAME_MS (server
# CPU milliseconds per 1 MiB response)
measure() {
  log "$1"
  local t0 t1 rps
  t0=$(cpu_ticks "$4")
  rps=$($2 "$3")
  t1=$(cpu_ticks "$4")
  printf -v "$1" '%s' "$rps"
  printf -v "$1_MS" '%s' "$(python3 -c "print(f'{($t1 - $t0) * 1000 / $TICKS / ($rps * $DUR):.2f}')")"
}
measure H1P wrk_rps "$PLAIN_URL" "$PLAIN_PID"
measure H1T wrk_rps "$TLS_URL" "$TLS_PID"
measure H2P h2load_rps "$PLAIN_URL" "$PLAIN_PID"
measure H2T h2load_rps "$TLS_URL" "$TLS_PID"
if [ -n "$NGINX" ]; then
  measure N1P wrk_rps "http://127.0.0.1:$NG_H1/hot.bin" "$NGINX"
  measure N1T wrk_rps "https://127.0.0.1:$NG_TLS/hot.bin" "$NGINX"
  measure N2P h2load_rps "http://127.0.0.1:$NG_H2C/hot.bin" "$NGINX"
  measure N2T h2load_rps "https://127.0.0.1:$NG_TLS/hot.bin" "$NGINX"
fi

ratio() { python3 -c "print(f'{float($2)/float($1):.2f}')"; }
verdict() { python3 -c "print('pass' if float($2)/float($1) >= 0.8 else '**fail**')"; }
rps() { python3 -c "print(f'{float($1):,.0f}')"; }
row() { # label plain tls plain_ms tls_ms
  echo "| $1 | $(rps "$2") | $(rps "$3") | $(ratio "$2" "$3") | $4 | $5 | $(ratio "$5" "$4") |"
}

echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB;" \
     "load average at the end: $(uptime | sed 's/.*load average: //')"
echo "Hot 1 MiB ranges of a 64 MiB piece, ${DUR} s per run;" \
     "wrk -t1 -c16 (random ranges), h2load -c4 -m4 (one range);" \
     "$([ -n "$PIN" ] && echo "servers pinned to CPU 0, clients to CPU 1" || echo "servers and clients share both cores")"
echo "Req/s are 1 MiB responses per second (= MiB/s). ms/MiB: the server's own CPU time per response."
echo
echo "| server, protocol | plain req/s | TLS req/s | TLS / plain | plain ms/MiB | TLS ms/MiB | plain / TLS cost |"
echo "|---|---|---|---|---|---|---|"
row "beam-edge, HTTP/1.1 (wrk)" "$H1P" "$H1T" "$H1P_MS" "$H1T_MS"
row "beam-edge, HTTP/2 (h2load: h2c vs h2)" "$H2P" "$H2T" "$H2P_MS" "$H2T_MS"
if [ -n "$NGINX" ]; then
  row "nginx $(nginx -v 2>&1 | sed 's|.*/||'), HTTP/1.1 (wrk)" "$N1P" "$N1T" "$N1P_MS" "$N1T_MS"
  row "nginx, HTTP/2 (h2load)" "$N2P" "$N2T" "$N2P_MS" "$N2T_MS"
  echo
  echo "beam-edge TLS against nginx TLS: HTTP/1.1 $(ratio "$N1T" "$H1T")×, HTTP/2 $(ratio "$N2T" "$H2T")×"
fi
echo
echo "Target TLS / plain ≥ 0.8: HTTP/1.1 $(verdict "$H1P" "$H1T"), HTTP/2 $(verdict "$H2P" "$H2T")"
