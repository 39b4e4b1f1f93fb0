#!/usr/bin/env bash
# The window cache, measured side by side with nginx and against its targets:
# hot random 1 MiB ranges (beam-edge from memory, beam-edge from disk, nginx
# 1.22 with `slice 1m` + `proxy_cache`, all in front of the same upstream),
# single-flight under 20 concurrent cold requests, upstream bytes of a full
# cold read, a kill -9 and restart on the same disk cache, peak RSS while
# streaming a 1.5 GB piece, and stalls of a player reading at a fixed bitrate
# from a slow upstream. Prints the machine and a Markdown table.
#
#   benches/compare.sh            full run (64 MiB / 100 MiB / 1.5 GB pieces, 10 s wrk runs)
#   benches/compare.sh --quick    small pieces, 3 s wrk runs
#   benches/compare.sh --hot      only the hot-ranges rows (full sizes)
#
# Needs: release builds of beam-edge and of the examples bench_upstream and
# playback_client (built here if missing), wrk, nginx with the slice module
# (apt-get install wrk nginx-light), curl, python3. Everything runs on
# loopback; every process and file is removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0; HOT_ONLY=0
[ "${1:-}" = "--quick" ] && QUICK=1
[ "${1:-}" = "--hot" ] && HOT_ONLY=1
if [ $QUICK = 1 ]; then
  HOT_MIB=16; PLAY_MIB=24; BIG_MIB=256; DUR=3; ROUNDS=1; DISK_MEM=4MiB
else
  HOT_MIB=64; PLAY_MIB=100; BIG_MIB=1536; DUR=10; ROUNDS=3; DISK_MEM=8MiB
fi

BIN=target/release/beam-edge
UPSTREAM_BIN=target/release/examples/bench_upstream
PLAYER_BIN=target/release/examples/playback_client
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
if [ ! -x "$UPSTREAM_BIN" ] || [ ! -x "$PLAYER_BIN" ]; then
  cargo build --release --example bench_upstream --example playback_client >&2
fi
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "needs nginx: apt-get install nginx-light" >&2; exit 1; }
"$NGINX" -V 2>&1 | grep -q http_slice_module || { echo "nginx lacks the slice module" >&2; exit 1; }

. benches/lib.sh   # WORK, PIDS, free_port, wait_http, metric
chmod 755 "$WORK"   # nginx workers run as nobody

log() { echo "# $*" >&2; }
calc() { python3 -c "print($1)"; }
PAYER=0x00000000000000000000000000000000000000aa
WINDOW=1040384   # raw bytes of a 1 MiB (padded) window

# Pieces: deterministic bytes (AES-CTR keystream; /dev/urandom without openssl).
mkdir -p "$WORK/pieces"
make_piece() { # MiB seed -> prints the CID; the file is $WORK/pieces/<cid>
  local f="$WORK/pieces/new.bin"
  if command -v openssl >/dev/null; then
    openssl enc -aes-128-ctr -K "$(printf '%032x' "$2")" -iv 0 -nosalt -in /dev/zero 2>/dev/null \
      | head -c "$(($1 * 1024 * 1024))" > "$f" || true
  else
    head -c "$(($1 * 1024 * 1024))" /dev/urandom > "$f"
  fi
  [ "$(stat -c %s "$f")" = "$(($1 * 1024 * 1024))" ] || { echo "cannot generate a $1 MiB piece" >&2; exit 1; }
  local cid; cid=$("$BIN" piece-cid "$f" | cut -d' ' -f1)
  mv "$f" "$WORK/pieces/$cid"
  echo "$cid"
}
log "generating pieces (${HOT_MIB}, ${PLAY_MIB}, ${BIG_MIB} MiB)"
HOT=$(make_piece "$HOT_MIB" 1); HOT_SIZE=$((HOT_MIB * 1024 * 1024))
PLAY=$(make_piece "$PLAY_MIB" 2); PLAY_SIZE=$((PLAY_MIB * 1024 * 1024))
if [ $HOT_ONLY = 0 ]; then BIG=$(make_piece "$BIG_MIB" 3); fi; BIG_SIZE=$((BIG_MIB * 1024 * 1024))
chmod -R a+rX "$WORK"


# The upstreams: one fast, one like a distant CDN (for the playback test).
UP=$(free_port)
"$UPSTREAM_BIN" --dir "$WORK/pieces" --listen "127.0.0.1:$UP" >/dev/null & PIDS+=($!)
SLOW=$(free_port)
"$UPSTREAM_BIN" --dir "$WORK/pieces" --listen "127.0.0.1:$SLOW" --latency 80ms --rate 40MB/s >/dev/null & PIDS+=($!)
wait_http "http://127.0.0.1:$UP/__stats"
wait_http "http://127.0.0.1:$SLOW/__stats"

# beam-edge instances. start_edge NAME UPSTREAM_PORT CACHE_YAML [CACHE_DIR]
# sets EDGE_PID, EDGE (public port), METRICS.
EDGE_PID=; EDGE=; METRICS=
start_edge() {
  local name=$1 up=$2 cache=$3 dir=${4:-$WORK/cache-$1}
  EDGE=$(free_port); METRICS=$(free_port); local admin; admin=$(free_port)
  cat > "$WORK/$name.yaml" <<YML
server: { listen: "127.0.0.1:$EDGE", threads: 2, grace_period: 0s }
upstream: { beam_url: "http://127.0.0.1:$up/{payer}", payer: "$PAYER", resolve_providers: false }
cache: { window: 1MiB, $cache, disk: { path: "$dir", size: ${DISK_SIZE:-4GiB} } }
admin: { listen: "127.0.0.1:$admin" }
metrics: { listen: "127.0.0.1:$METRICS" }
YML
  RUST_LOG=warn "$BIN" serve --config "$WORK/$name.yaml" 2>>"$WORK/$name.log" & EDGE_PID=$!
  PIDS+=("$EDGE_PID")
  wait_http "http://127.0.0.1:$EDGE/healthz"
}
stop_edge() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
upstream_bytes() { metric "$1" 'beam_edge_upstream_bytes_total{upstream="beam"}'; }
full_read() { # port cid out -> "status bytes"
  curl -s --max-time 300 -o "$3" -w '%{http_code} %{size_download}' "http://127.0.0.1:$1/piece/$2"
}

ROWS=()
row() { ROWS+=("| $1 | $2 | $3 | $4 |"); log "$2 -> $4"; }
verdict() { if python3 -c "import sys; sys.exit(0 if ($1) else 1)"; then echo pass; else echo "**fail**"; fi; }
report() {
echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB;" \
     "load average at the end: $(uptime | sed 's/.*load average: //')"
echo "Mode: $([ $QUICK = 1 ] && echo quick || { [ $HOT_ONLY = 1 ] && echo "hot ranges only" || echo full; }); wrk -t1 -c16 -d${DUR}s, beam-edge 2 threads, window 1MiB"
echo
echo "| what | figure | target | result |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
}

# ---------------------------------------------------------------- hot ranges
NGX=$(free_port)
mkdir -p "$WORK/nginx-cache"
cat > "$WORK/nginx.conf" <<NGXCONF
daemon off;
worker_processes 2;
error_log $WORK/nginx-error.log;
pid $WORK/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 100000;
  proxy_cache_path $WORK/nginx-cache levels=1:2 keys_zone=pieces:16m max_size=8g inactive=1d use_temp_path=off;
  upstream beam { server 127.0.0.1:$UP; keepalive 16; }
  server {
    listen 127.0.0.1:$NGX;
    location / {
      slice 1m;
      proxy_cache pieces;
      proxy_cache_key \$uri\$is_args\$args\$slice_range;
      proxy_set_header Range \$slice_range;
      proxy_cache_valid 200 206 1d;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://beam;
      add_header X-Cache-Status \$upstream_cache_status;
    }
  }
}
NGXCONF
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK" -e "$WORK/nginx-error.log" & PIDS+=($!)
wait_http "http://127.0.0.1:$NGX/__stats"

wrk_run() { # url -> "rps|p50|p99|errors"
  local out; out=$(wrk -t1 -c16 -d"${DUR}s" --latency -s benches/random_range.lua "$1" -- "$HOT_SIZE")
  local rps p50 p99 errs
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errs=$(awk '/Non-2xx/ {n+=$NF} /Socket errors/ {for (i=4;i<=NF;i+=2) n+=$i} END {print n+0}' <<<"$out" | tr -d ,)
  echo "$rps|$p50|$p99|$errs|$(cut -d' ' -f1 /proc/loadavg)"
}
to_us() { # wrk latency (547.00us, 2.08ms, 1.20s) -> microseconds
  python3 -c "
s='$1'
for u,f in (('us',1),('ms',1e3),('s',1e6)):
    if s.endswith(u): print(float(s[:-len(u)])*f); break"
}
warm() { # url: read the whole piece twice; the second read must be served from cache
  local got; got=$(curl -s --max-time 120 -o "$WORK/warm.out" -w '%{http_code} %{size_download}' "$1")
  [ "$got" = "200 $HOT_SIZE" ] || { echo "warm-up of $1 failed: $got" >&2; exit 1; }
  cmp -s "$WORK/warm.out" "$WORK/pieces/$HOT" || { echo "warm-up of $1: bytes differ" >&2; exit 1; }
}

upstream_body() { curl -s "http://127.0.0.1:$1/__stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["body_bytes"])'; }
served() { # port -> "memory disk upstream" bytes served so far
  local m; m=$(curl -sf "http://127.0.0.1:$1/metrics")
  for src in memory disk upstream; do
    awk -v k="beam_edge_served_bytes_total{source=\"$src\"}" '$1==k {v=$2} END {printf "%.0f ", v+0}' <<<"$m"
  done
}

# All three servers stay up and are measured in interleaved rounds (nginx,
# memory, disk, nginx, ...): the machine is shared, and a load swing between
# back-to-back runs would otherwise decide the ratio. Each server's row
# gives the median over its rounds of req/s, of p50 and of p99 (each taken
# on its own: one noisy round moves none of them).
log "hot ranges: warming nginx"
NGX_URL="http://127.0.0.1:$NGX/$PAYER/$HOT"
warm "$NGX_URL"
before=$(upstream_body "$UP")
warm "$NGX_URL"
after=$(upstream_body "$UP")
[ "$before" = "$after" ] || log "warning: nginx's second warm-up read went upstream ($before -> $after bytes)"
declare -A URL PORT
HOTPIDS=()
URL[nginx]=$NGX_URL
for name in mem disk; do
  if [ $name = mem ]; then cache="memory: 256MiB"; else cache="memory: $DISK_MEM"; fi
  log "hot ranges: warming beam-edge ($name)"
  start_edge "hot-$name" "$UP" "$cache"
  URL[$name]="http://127.0.0.1:$EDGE/piece/$HOT"; PORT[$name]=$METRICS; HOTPIDS+=("$EDGE_PID")
  warm "${URL[$name]}"
  # Disk writes run in the background: give them a moment (bounded) to land.
  want=$(( (HOT_SIZE + WINDOW - 1) / WINDOW ))
  for _ in $(seq 50); do
    [ "$(metric "$METRICS" 'beam_edge_cache_entries{tier="disk"}')" -ge "$want" ] && break; sleep 0.1
  done
  warm "${URL[$name]}"
done
declare -A RUNS
for round in $(seq "$ROUNDS"); do
  for name in nginx mem disk; do
    if [ $name != nginx ]; then s0=$(served "${PORT[$name]}"); fi
    r=$(wrk_run "${URL[$name]}")
    if [ $name != nginx ]; then
      s1=$(served "${PORT[$name]}")
      r="$r|$(python3 -c "a='$s0'.split(); b='$s1'.split(); d=[int(y)-int(x) for x,y in zip(a,b)]; t=max(1,sum(d)); print(f'{100*d[0]/t:.0f}% memory, {100*d[1]/t:.0f}% disk, {d[2]} B upstream')")"
    fi
    log "round $round $name: $r"
    RUNS[$name]="${RUNS[$name]:-}$r"$'\n'
  done
done
median() { # name -> "rps|p50|p99|errors|load|sources": the median of each of
  # req/s, p50 and p99 over the rounds (each on its own), errors summed, load
  # and sources from the round with the median req/s
  printf '%s' "${RUNS[$1]}" | python3 -c '
import sys
runs = [l.split("|") for l in sys.stdin.read().splitlines() if l]
def us(s):
    for u, f in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if s.endswith(u):
            return float(s[: -len(u)]) * f
def med(col, key):
    return sorted(runs, key=lambda r: key(r[col]))[(len(runs) - 1) // 2][col]
mid = sorted(runs, key=lambda r: float(r[0]))[(len(runs) - 1) // 2]
out = [med(0, float), med(1, us), med(2, us), str(sum(int(r[3]) for r in runs)), mid[4]] + mid[5:]
print("|".join(out))'
}
IFS='|' read -r n_rps n_p50 n_p99 n_err n_load <<<"$(median nginx)"
row "hot random 1 MiB ranges, ${HOT_MIB} MiB piece: nginx 1.22 slice 1m + proxy_cache, 2 workers" \
    "$n_rps req/s, p50 $n_p50, p99 $n_p99 (load $n_load)$([ "$n_err" = 0 ] || echo ", $n_err errors")" "baseline" "—"
for name in mem disk; do
  IFS='|' read -r rps p50 p99 err load from <<<"$(median $name)"
  if [ $name = mem ]; then label="memory tier (memory 256MiB)"; target=1.5; else label="disk tier (memory $DISK_MEM < piece)"; target=1.0; fi
  ratio=$(calc "f'{$rps/$n_rps:.2f}'")
  p99us=$(to_us "$p99"); np99us=$(to_us "$n_p99")
  row "hot random 1 MiB ranges: beam-edge, $label" \
      "$rps req/s (**${ratio}×** nginx), p50 $p50, p99 $p99 ($from; load $load)$([ "$err" = 0 ] || echo ", $err errors")" \
      "≥ $target× nginx req/s, p99 ≤ nginx" \
      "$(verdict "$rps >= $target * $n_rps and $p99us <= $np99us and $err == 0")"
done
kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
for p in "${HOTPIDS[@]}"; do stop_edge "$p"; done

[ $HOT_ONLY = 1 ] && { report; exit 0; }

# ------------------------------------------------- 20 concurrent cold requests
cold20() { # name cache-yaml label
  log "20 concurrent cold requests: $3"
  start_edge "$1" "$UP" "$2"
  local a=$((3 * 1024 * 1024 + 12345)) len=$((1024 * 1024))
  local b=$((a + len - 1))
  dd if="$WORK/pieces/$HOT" of="$WORK/expected.part" iflag=skip_bytes,count_bytes skip="$a" count="$len" status=none
  local cpids=() i
  for i in $(seq 20); do
    curl -s --max-time 60 -o "$WORK/cold.$i" -r "$a-$b" "http://127.0.0.1:$EDGE/piece/$HOT" & cpids+=($!)
  done
  wait "${cpids[@]}" || true
  local bad=0
  for i in $(seq 20); do cmp -s "$WORK/cold.$i" "$WORK/expected.part" || bad=$((bad + 1)); done
  sleep 0.5   # let read-ahead that is still running land in the counter
  local up; up=$(upstream_bytes "$METRICS")
  local windows; windows=$(calc "f'{$up/$WINDOW:.2f}'")
  row "20 concurrent cold requests for one 1 MiB range ($3)" \
      "$up upstream bytes = $windows windows$([ $bad = 0 ] && echo ", 20/20 byte-exact" || echo ", **$bad/20 wrong**")" \
      "≤ 2 windows ($((2 * WINDOW)) B) + 512 B type probe$( [ "$3" != "${3#default}" ] && echo " + 4 read-ahead windows")" \
      "$(verdict "$up <= ($( [ "$3" != "${3#default}" ] && echo 6 || echo 2)) * $WINDOW + 512 and $bad == 0")"
  stop_edge "$EDGE_PID"
}
cold20 cold20 "memory: 256MiB" "default read-ahead, prefetch 4"
cold20 cold20p0 "memory: 256MiB, prefetch: 0" "read-ahead off, prefetch 0"

# ------------------------------------------------ full cold read, then kill -9
log "full cold read, kill -9, restart"
start_edge full "$UP" "memory: 256MiB"
got=$(full_read "$EDGE" "$HOT" "$WORK/full.out")
exact=$(cmp -s "$WORK/full.out" "$WORK/pieces/$HOT" && echo yes || echo no)
up=$(upstream_bytes "$METRICS")
ratio=$(calc "f'{$up/$HOT_SIZE:.3f}'")
row "full cold read of the ${HOT_MIB} MiB piece" \
    "$up upstream bytes = **${ratio}×** piece ($got, byte-exact: $exact)" "≤ 1.05× piece" \
    "$(verdict "$up <= 1.05 * $HOT_SIZE and '$exact' == 'yes' and '$got' == '200 $HOT_SIZE'")"
want=$(( (HOT_SIZE + WINDOW - 1) / WINDOW ))
on_disk=0
for _ in $(seq 100); do   # up to 10 s for the background disk writes
  on_disk=$(metric "$METRICS" 'beam_edge_cache_entries{tier="disk"}')
  [ "$on_disk" -ge "$want" ] && break; sleep 0.1
done
kill -9 "$EDGE_PID"; wait "$EDGE_PID" 2>/dev/null || true
start_edge full2 "$UP" "memory: 256MiB" "$WORK/cache-full"
got=$(full_read "$EDGE" "$HOT" "$WORK/full2.out")
exact=$(cmp -s "$WORK/full2.out" "$WORK/pieces/$HOT" && echo yes || echo no)
up=$(upstream_bytes "$METRICS")
row "kill -9 after the full read ($on_disk/$want windows on disk), restart on the same cache dir, full read" \
    "$up upstream bytes, $got, byte-exact: $exact" "0 upstream bytes, cmp equal" \
    "$(verdict "$up == 0 and '$exact' == 'yes' and '$got' == '200 $HOT_SIZE'")"
stop_edge "$EDGE_PID"
rm -rf "$WORK/cache-full" "$WORK"/*.out "$WORK"/cold.*

# ------------------------------------------------------- streaming a big piece
log "streaming the ${BIG_MIB} MiB piece"
DISK_SIZE=$(( BIG_SIZE * 2 )) start_edge big "$UP" "memory: 256MiB"
idle_kib=$(awk '/VmRSS/ {print $2}' "/proc/$EDGE_PID/status")
got=$(curl -s --max-time 300 -o /dev/null -w '%{http_code} %{size_download} %{speed_download}' "http://127.0.0.1:$EDGE/piece/$BIG")
hwm_kib=$(awk '/VmHWM/ {print $2}' "/proc/$EDGE_PID/status")
read -r code bytes speed <<<"$got"
limit_kib=$(( (256 + 96) * 1024 ))
row "peak RSS (VmHWM) streaming the $(calc "f'{$BIG_SIZE/1e9:.2f}'") GB piece once (memory 256MiB)" \
    "$((hwm_kib / 1024)) MiB (idle $((idle_kib / 1024)) MiB; $code, $bytes B at $(calc "f'{$speed/1e6:.0f}'") MB/s)" "≤ 256 + 96 = 352 MiB" \
    "$(verdict "$hwm_kib <= $limit_kib and '$code $bytes' == '200 $BIG_SIZE'")"
sleep 0.5   # read-ahead past the client's end lands in the counter
up=$(upstream_bytes "$METRICS")
issued=$(metric "$METRICS" 'beam_edge_prefetch_total{result="issued"}')
used=$(metric "$METRICS" 'beam_edge_prefetch_total{result="used"}')
row "upstream bytes of that cold read (memory 256MiB, disk tier on)" \
    "$up B = **$(calc "f'{$up/$BIG_SIZE:.3f}'")×** piece (read-ahead: $issued windows issued, $used used)" "≤ 1.05× piece" \
    "$(verdict "$up <= 1.05 * $BIG_SIZE")"
stop_edge "$EDGE_PID"
rm -rf "$WORK/cache-big" "$WORK/pieces/$BIG"

# ------------------------------------------------------- sequential playback
log "playback at 8 MB/s from an upstream with 80 ms latency, 40 MB/s per connection"
start_edge play "$SLOW" "memory: 256MiB"
play=$("$PLAYER_BIN" --url "http://127.0.0.1:$EDGE/piece/$PLAY" --bitrate 8MB/s --chunk 1MiB \
        --verify "$WORK/pieces/$PLAY" --timeout 120s 2>"$WORK/play.err") || { cat "$WORK/play.err" >&2; exit 1; }
sed 's/^/# /' "$WORK/play.err" >&2
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['$1'])" "$play"; }
row "sequential playback of the ${PLAY_MIB} MiB piece at 8 MB/s, 1 MiB ranges (upstream 80 ms, 40 MB/s)" \
    "$(field stalls)/$(field judged) reads stalled ($(field not_hit) not HIT, $(field slow_ttfb) TTFB > 20 ms; $(field late) late; TTFB p50 $(field ttfb_p50_ms) ms, max $(field ttfb_max_ms) ms)" \
    "0 stalls after the first window" "$(verdict "$(field stalls) == 0")"
stop_edge "$EDGE_PID"

# --------------------------------------------------------------------- report
report
