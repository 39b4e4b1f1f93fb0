#!/usr/bin/env bash
# Start-up of a video, as a viewer sees it (issue #18): time to first frame
# and to the first frame after a seek to 75 %, in headless Chromium playing a
# bare <video> (none of the project's code on the page; tests/player/ttff.mjs),
# one clip in three layouts (MP4 with its moov at the end, ffmpeg's default;
# faststart MP4; WebM), from a WAN-like mock Beam (examples/bench_upstream)
# in two profiles (80 ms per request at 40 MB/s per connection, and 200 ms at
# 10 MB/s), by four routes:
#   origin          the mock Beam directly
#   edge cold       a fresh beam-edge with an empty cache dir, first play
#   edge warm       the same beam-edge, second play (a new browser)
#   nginx cold      nginx slice 1m + proxy_cache, fresh cache (when nginx with
#                   the slice module is installed; skipped with a note if not)
#   loopback floor  the same mock with no delay and no rate limit (first
#                   profile only): what the browser itself takes on this
#                   machine, the floor under every warm figure
# beam-edge cold with cache.critical_first 0 (a seek's window fetched from
# its first byte), beam-edge cold with upstream.beam_assume_warm (the tail
# guess goes beside the head, before Beam's first answer), and, for the tail-moov MP4 in the 80 ms profile,
# beam-edge cold with cache.tail_guess off and with cache.index_prefetch 0.
# Every play is in a fresh Chromium with its HTTP cache disabled. Prints the
# machine, the load average and a Markdown table: medians over the runs (min
# and max beside), the ratio of each cold route to the origin, and the bytes
# the origin sent per play (its /__stats).
#
#   benches/ttff.sh [--runs N] [--profile 80ms|200ms|both]
#
# Needs: release builds of beam-edge and of the example bench_upstream (built
# here if missing), ffmpeg with libx264 and libvpx (the clips are encoded once
# into target/ttff-media/ and reused), Chromium at /usr/bin/chromium (or
# $CHROMIUM), node with tests/player's playwright-core (`npm ci --prefix
# tests/player`), curl, python3. Everything runs on loopback; every process
# and temporary file is removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=3; PROFILE=both
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    *) echo "usage: benches/ttff.sh [--runs N] [--profile 80ms|200ms|both]" >&2; exit 2 ;;
  esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "--runs wants a positive integer, not $RUNS" >&2; exit 2; }
case "$PROFILE" in
  80ms) PROFILES=("80ms 40MB/s") ;;
  200ms) PROFILES=("200ms 10MB/s") ;;
  both) PROFILES=("80ms 40MB/s" "200ms 10MB/s") ;;
  *) echo "--profile wants 80ms, 200ms or both, not $PROFILE" >&2; exit 2 ;;
esac

# $BIN and $UPSTREAM_BIN override the binaries (e.g. a debug build for a
# quick check of the script; figures come from release builds).
BIN=${BIN:-target/release/beam-edge}
UPSTREAM_BIN=${UPSTREAM_BIN:-target/release/examples/bench_upstream}
[ -x "$BIN" ] || { echo "build first: cargo build --release --locked --bin beam-edge" >&2; exit 1; }
[ -x "$UPSTREAM_BIN" ] || cargo build --release --locked --example bench_upstream >&2
command -v ffmpeg >/dev/null || { echo "needs ffmpeg: apt-get install ffmpeg" >&2; exit 1; }
command -v node >/dev/null || { echo "needs node: apt-get install nodejs npm" >&2; exit 1; }
[ -d tests/player/node_modules/playwright-core ] || npm ci --prefix tests/player >&2
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "needs Chromium: apt-get install chromium" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ -x "$NGINX" ] && "$NGINX" -V 2>&1 | grep -q http_slice_module; then HAVE_NGINX=1; else HAVE_NGINX=0; fi

. benches/lib.sh   # WORK, PIDS, free_port, wait_http
chmod 755 "$WORK"   # nginx workers run as nobody
log() { echo "# $*" >&2; }
PAYER=0x00000000000000000000000000000000000000aa

# ------------------------------------------------------------------ the clips
# One clip, 30 s of 1280x720 testsrc2 at 15 fps and 12 Mbit/s (about 45 MB),
# in three layouts. The H.264 stream is constant-rate (nal-hrd=cbr pads the
# simple test pattern to the full rate, so the file is as big as a real
# 45 MB video); libvpx has no padding, so the WebM is what VP8 makes of the
# same rate. The frame rate is low only to keep the VP8 encode short on a
# busy 2-core machine; start-up does not depend on it.
MEDIA=target/ttff-media
mkdir -p "$MEDIA"
SRC="testsrc2=size=1280x720:rate=15"
encode() { # out args...: encodes to a temporary name, then renames (a killed run leaves no half file)
  local out=$1; shift
  [ -s "$MEDIA/$out" ] && return 0
  log "encoding $out (once; kept in $MEDIA)"
  ffmpeg -hide_banner -loglevel error -y "$@" "$MEDIA/tmp.$out"
  mv "$MEDIA/tmp.$out" "$MEDIA/$out"
}
encode tail.mp4 -f lavfi -i "$SRC" -t 30 -c:v libx264 -preset veryfast -b:v 12M -minrate 12M -maxrate 12M \
  -bufsize 12M -x264-params nal-hrd=cbr -pix_fmt yuv420p -g 30
encode faststart.mp4 -i "$MEDIA/tail.mp4" -c copy -movflags +faststart
encode video.webm -f lavfi -i "$SRC" -t 30 -c:v libvpx -deadline realtime -cpu-used 16 -threads 2 \
  -b:v 12M -minrate 12M -maxrate 12M -g 30

mkdir -p "$WORK/pieces"
declare -A CID SIZE
for layout in tail.mp4 faststart.mp4 video.webm; do
  cid=$("$BIN" piece-cid "$MEDIA/$layout" | cut -d' ' -f1)
  ln "$MEDIA/$layout" "$WORK/pieces/$cid" 2>/dev/null || cp "$MEDIA/$layout" "$WORK/pieces/$cid"
  CID[$layout]=$cid; SIZE[$layout]=$(stat -c %s "$MEDIA/$layout")
done
chmod -R a+rX "$WORK"

# ------------------------------------------------------------------- helpers
origin_bytes() { curl -sf "http://127.0.0.1:$1/__stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["body_bytes"])'; }
play() { node tests/player/ttff.mjs "$@"; }   # URL... -> one JSON line per play
# The origin's byte count once it stops moving (a cold edge's read-ahead can
# outlive the browser that asked for it): polled until two reads 0.5 s apart
# agree, at most 15 s.
settled_bytes() {
  local a b; a=$(origin_bytes "$1")
  for _ in $(seq 30); do sleep 0.5; b=$(origin_bytes "$1"); [ "$a" = "$b" ] && break; a=$b; done
  echo "$b"
}

EDGE_PID=; EDGE=
start_edge() { # name origin-port extra-cache-yaml [extra-upstream-yaml]
  EDGE=$(free_port); local metrics admin; metrics=$(free_port); admin=$(free_port)
  rm -rf "$WORK/cache-$1"
  cat > "$WORK/$1.yaml" <<YML
server: { listen: "127.0.0.1:$EDGE", threads: 2, grace_period: 0s }
upstream: { beam_url: "http://127.0.0.1:$2/{payer}", payer: "$PAYER", resolve_providers: false${4:-} }
cache: { disk: { path: "$WORK/cache-$1", size: 1GiB }$3 }
admin: { listen: "127.0.0.1:$admin" }
metrics: { listen: "127.0.0.1:$metrics" }
YML
  RUST_LOG=warn "$BIN" serve --config "$WORK/$1.yaml" 2>>"$WORK/$1.log" & EDGE_PID=$!
  PIDS+=("$EDGE_PID")
  wait_http "http://127.0.0.1:$EDGE/healthz"
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

NGX_PID=; NGX=
start_nginx() { # origin-port
  NGX=$(free_port)
  rm -rf "$WORK/nginx-cache"; mkdir -p "$WORK/nginx-cache"
  cat > "$WORK/nginx.conf" <<NGXCONF
daemon off;
worker_processes 2;
error_log $WORK/nginx-error.log;
pid $WORK/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  proxy_cache_path $WORK/nginx-cache levels=1:2 keys_zone=pieces:16m max_size=8g inactive=1d use_temp_path=off;
  upstream beam { server 127.0.0.1:$1; keepalive 16; }
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
    }
  }
}
NGXCONF
  "$NGINX" -c "$WORK/nginx.conf" -p "$WORK" -e "$WORK/nginx-error.log" & NGX_PID=$!
  PIDS+=("$NGX_PID")
  wait_http "http://127.0.0.1:$NGX/__stats"
}

# Results: one line per play, "key<TAB>json<TAB>origin bytes", key =
# layout|profile|route.
RESULTS="$WORK/results.tsv"; : > "$RESULTS"
record() { # key json bytes
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$RESULTS"
  log "$1: $2, origin sent $3 B"
}

# Plays through a fresh route per run: origin, nginx cold, edge cold + warm.
measure_edge() { # layout profile origin-port route-label extra-cache-yaml with-warm [extra-upstream-yaml]
  local layout=$1 prof=$2 up=$3 label=$4 extra=$5 warm=$6 upextra=${7:-} run b0 b1 b2 out
  for run in $(seq "$RUNS"); do
    start_edge edge "$up" "$extra" "$upextra"
    local url="http://127.0.0.1:$EDGE/piece/${CID[$layout]}"
    b0=$(origin_bytes "$up")
    out=$(play "$url")
    b1=$(settled_bytes "$up")
    record "$layout|$prof|$label" "$out" $((b1 - b0))
    if [ "$warm" = 1 ]; then
      out=$(play "$url")
      b2=$(origin_bytes "$up")
      record "$layout|$prof|edge warm" "$out" $((b2 - b1))
    fi
    stop_pid "$EDGE_PID"
  done
}

FLOOR=$(free_port)
"$UPSTREAM_BIN" --dir "$WORK/pieces" --listen "127.0.0.1:$FLOOR" 2>>"$WORK/upstream.log" >/dev/null & PIDS+=($!)
wait_http "http://127.0.0.1:$FLOOR/__stats"
for profile in "${PROFILES[@]}"; do
  read -r latency rate <<<"$profile"
  prof="$latency, $rate"
  UP=$(free_port)
  "$UPSTREAM_BIN" --dir "$WORK/pieces" --listen "127.0.0.1:$UP" --latency "$latency" --rate "$rate" \
    2>>"$WORK/upstream.log" >/dev/null & UP_PID=$!
  PIDS+=("$UP_PID")
  wait_http "http://127.0.0.1:$UP/__stats"
  for layout in tail.mp4 faststart.mp4 video.webm; do
    cid=${CID[$layout]}
    for run in $(seq "$RUNS"); do
      b0=$(origin_bytes "$UP")
      out=$(play "http://127.0.0.1:$UP/$PAYER/$cid")
      record "$layout|$prof|origin" "$out" $(( $(origin_bytes "$UP") - b0 ))
    done
    if [ $HAVE_NGINX = 1 ]; then
      for run in $(seq "$RUNS"); do
        start_nginx "$UP"
        b0=$(origin_bytes "$UP")
        out=$(play "http://127.0.0.1:$NGX/$PAYER/$cid")
        record "$layout|$prof|nginx slice cold" "$out" $(( $(origin_bytes "$UP") - b0 ))
        stop_pid "$NGX_PID"
      done
    fi
    measure_edge "$layout" "$prof" "$UP" "edge cold" "" 1
    measure_edge "$layout" "$prof" "$UP" "edge cold, critical_first: 0" ", critical_first: 0" 0
    measure_edge "$layout" "$prof" "$UP" "edge cold, beam_assume_warm" "" 0 ", beam_assume_warm: true"
    if [ "$profile" = "${PROFILES[0]}" ]; then
      for run in $(seq "$RUNS"); do
        b0=$(origin_bytes "$FLOOR")
        out=$(play "http://127.0.0.1:$FLOOR/$PAYER/$cid")
        record "$layout|no delay|loopback floor" "$out" $(( $(origin_bytes "$FLOOR") - b0 ))
      done
    fi
    if [ "$layout" = tail.mp4 ] && [ "$latency" = 80ms ]; then
      measure_edge "$layout" "$prof" "$UP" "edge cold, tail_guess: false" ", tail_guess: false" 0
      measure_edge "$layout" "$prof" "$UP" "edge cold, index_prefetch: 0" ", index_prefetch: 0" 0
    fi
  done
  stop_pid "$UP_PID"
done

# -------------------------------------------------------------------- report
echo "Binaries: $BIN, $UPSTREAM_BIN (built $(date -r "$BIN" +%FT%T); worktree at git $(git rev-parse --short HEAD))"
echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB;" \
     "load average at the end: $(uptime | sed 's/.*load average: //')"
echo "Clip: 30 s of 1280x720 testsrc2 at 15 fps, 12 Mbit/s;" \
     "$(for l in tail.mp4 faststart.mp4 video.webm; do printf '%s %s B (%s); ' "$l" "${SIZE[$l]}" "${CID[$l]}"; done)"
echo "Runs: $RUNS per route (median, [min–max]); every play in a fresh Chromium, HTTP cache off;" \
     "nginx: $([ $HAVE_NGINX = 1 ] && "$NGINX" -v 2>&1 | sed 's/.*: //' || echo "not installed, route skipped")"
echo
python3 - "$RESULTS" <<'PY'
import json, sys
from collections import OrderedDict
rows = OrderedDict()
for line in open(sys.argv[1]):
    key, js, sent = line.rstrip("\n").split("\t")
    rows.setdefault(key, []).append((json.loads(js), int(sent)))
def med(xs):
    xs = sorted(xs)
    return xs[(len(xs) - 1) // 2] if xs else None
def fig(plays, k):
    xs = [p[k] for p, _ in plays if p.get(k) is not None]
    if not xs:
        return None, "—"
    m = med(xs)
    return m, f"{m} [{min(xs)}–{max(xs)}]" if len(xs) > 1 else f"{m}"
print("| layout | profile | route | first frame ms | × origin | seek 75% ms | × origin | origin bytes sent per play | failed |")
print("|---|---|---|---|---|---|---|---|---|")
for key, plays in rows.items():
    layout, prof, route = key.split("|")
    base = rows.get(f"{layout}|{prof}|origin", [])
    f, ftxt = fig(plays, "first_ms"); s, stxt = fig(plays, "seek_ms")
    bf, _ = fig(base, "first_ms"); bs, _ = fig(base, "seek_ms")
    ratio = lambda a, b: f"{a / b:.2f}×" if route != "origin" and a is not None and b else "—"
    sent = med([b for _, b in plays])
    errors = [p["error"] for p, _ in plays if p.get("error")]
    failed = f"{len(errors)}: {errors[0]}" if errors else "0"
    print(f"| {layout} | {prof} | {route} | {ftxt} | {ratio(f, bf)} | {stxt} | {ratio(s, bs)} | {sent:,} | {failed} |")
PY
