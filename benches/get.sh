#!/usr/bin/env bash
# `beam-edge get` against curl and aria2c for the same cold asset. The asset
# (two pieces and a manifest) lives on the bench upstream, limited to RATE
# per connection as a real link is; each download goes through a fresh
# beam-edge (empty cache: cold) in front of it, from /asset/<id>:
#   curl         one connection
#   aria2c -x8   eight connections, eight ranges (Debian's aria2)
#   get -j 8     eight ranges at once, every piece hashed against its PieceCID
# Every result is compared with the source (cmp) outside the timing; only
# `get` checks it itself. Prints the machine and a Markdown table.
#
#   benches/get.sh [MiB]          asset size, default 256
#   RATE=20MB/s benches/get.sh    the per-connection limit (default 20MB/s)
#
# Needs: release builds of beam-edge and the example bench_upstream, curl,
# aria2c, python3, openssl. Loopback only; everything is removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

MIB=${1:-256}
RATE=${RATE:-20MB/s}
BIN=${BIN:-target/release/beam-edge}
UPSTREAM_BIN=${UPSTREAM_BIN:-target/release/examples/bench_upstream}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -x "$UPSTREAM_BIN" ] || cargo build --release --example bench_upstream >&2
command -v aria2c >/dev/null || { echo "aria2c is missing: apt-get install aria2" >&2; exit 1; }

. benches/lib.sh   # WORK, PIDS, free_port, wait_http, metric

# The file (AES-CTR keystream: incompressible), cut into two pieces, with
# their layers and a manifest: what `beam-edge upload` would publish.
mkdir -p "$WORK/pieces"
SIZE=$((MIB * 1024 * 1024))
openssl enc -aes-128-ctr -K "$(printf '%032x' 9)" -iv 0 -nosalt -in /dev/zero 2>/dev/null \
  | head -c "$SIZE" > "$WORK/file.bin" || true
[ "$(stat -c %s "$WORK/file.bin")" = "$SIZE" ] || { echo "cannot generate the file" >&2; exit 1; }
HALF=$((SIZE / 2))
head -c "$HALF" "$WORK/file.bin" > "$WORK/p1"
tail -c "+$((HALF + 1))" "$WORK/file.bin" > "$WORK/p2"
CIDS=()
for p in p1 p2; do
  cid=$("$BIN" piece-cid --layer "$WORK/$p.layer" "$WORK/$p" | cut -d' ' -f1)
  CIDS+=("$cid"); cp "$WORK/$p" "$WORK/pieces/$cid"
done
python3 - "$WORK" "${CIDS[0]}" "${CIDS[1]}" "$HALF" "$((SIZE - HALF))" <<'PY'
import json, sys
work, c1, c2, s1, s2 = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
pieces = [{"cid": c, "size": s, "layer": open(f"{work}/{p}.layer", "rb").read().hex()}
          for c, s, p in ((c1, s1, "p1"), (c2, s2, "p2"))]
m = {"format": "beam-edge-asset", "version": 1, "size": s1 + s2, "content_type": "video/mp4",
     "file_name": "bench.mp4", "window": 1 << 20, "pieces": pieces}
open(f"{work}/manifest.json", "w").write(json.dumps(m, separators=(",", ":")))
PY
ID=$("$BIN" piece-cid "$WORK/manifest.json" | cut -d' ' -f1)
mv "$WORK/manifest.json" "$WORK/pieces/$ID"
rm -f "$WORK/p1" "$WORK/p2"

UP=$(free_port)
"$UPSTREAM_BIN" --dir "$WORK/pieces" --listen "127.0.0.1:$UP" --rate "$RATE" >/dev/null & PIDS+=($!)
wait_http "http://127.0.0.1:$UP/__stats"

EDGE_PID=""
start_edge() { # a fresh edge with an empty cache; sets EDGE
  local metrics admin dir
  EDGE=$(free_port); metrics=$(free_port); admin=$(free_port); dir=$WORK/cache-$RANDOM
  cat > "$WORK/edge.yaml" <<YML
server: { listen: "127.0.0.1:$EDGE", threads: 2, grace_period: 0s }
upstream: { beam_url: "http://127.0.0.1:$UP/{payer}", payer: "0x00000000000000000000000000000000000000aa", resolve_providers: false }
cache: { window: 1MiB, memory: 256MiB, disk: { path: "$dir", size: 2GiB } }
admin: { listen: "127.0.0.1:$admin" }
metrics: { listen: "127.0.0.1:$metrics" }
YML
  RUST_LOG=warn "$BIN" serve --config "$WORK/edge.yaml" 2>>"$WORK/edge.log" & EDGE_PID=$!
  PIDS+=("$EDGE_PID")
  wait_http "http://127.0.0.1:$EDGE/healthz"
}
stop_edge() { kill "$EDGE_PID"; wait "$EDGE_PID" 2>/dev/null || true; }

# Runs one tool (a shell snippet writing $OUT) against a cold edge; prints seconds.
timed() { # name snippet
  start_edge
  rm -rf "$WORK/out"; mkdir -p "$WORK/out"
  local t0 t1; t0=$(date +%s.%N)
  OUT=$WORK/out/bench.mp4 URL="http://127.0.0.1:$EDGE/asset/$ID" bash -c "$2" >"$WORK/$1.log" 2>&1 \
    || { echo "$1 failed:"; cat "$WORK/$1.log"; exit 1; } >&2
  t1=$(date +%s.%N)
  cmp -s "$WORK/out/bench.mp4" "$WORK/file.bin" || { echo "$1: wrong bytes" >&2; exit 1; }
  stop_edge
  python3 -c "print(f'{$t1 - $t0:.2f}')"
}

CURL=$(timed curl 'curl -sf -o "$OUT" "$URL"')
ARIA=$(timed aria2c 'aria2c -q -x8 -s8 --file-allocation=none --allow-overwrite=true -d "$(dirname "$OUT")" -o bench.mp4 "$URL"')
GET=$(timed get "$PWD/$BIN"' get "$URL" -j 8 -o "$OUT"')
grep -q "verified 2 piece" "$WORK/get.log" || { echo "get did not verify:"; cat "$WORK/get.log"; exit 1; } >&2

mbs() { python3 -c "print(f'{$SIZE / $1 / 1e6:.0f}')"; }
echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "One cold download of a $MIB MiB asset (2 pieces + manifest) through a fresh beam-edge, upstream limited to $RATE per connection"
echo
echo "| tool | seconds | MB/s | checked against the PieceCIDs |"
echo "|---|---|---|---|"
echo "| curl (1 connection) | $CURL | $(mbs "$CURL") | no |"
echo "| aria2c -x8 -s8 | $ARIA | $(mbs "$ARIA") | no |"
echo "| beam-edge get -j 8 | $GET | $(mbs "$GET") | yes, each piece (streaming CommP) |"
