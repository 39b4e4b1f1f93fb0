#!/usr/bin/env bash
# What checking windows against the PieceCID costs on a cold read. One piece
# is read whole, cold, through a fresh beam-edge twice over: as /piece/<cid>
# (no layer known: windows checked by length only) and as /asset/<id>, whose
# manifest carries the piece's layer (every window hashed and compared).
# Prints the machine and a Markdown table of the median of each figure.
#
#   benches/checked.sh [MiB]      piece size, default 512 (at most 1016)
#   RATE=200MB/s benches/checked.sh   the upstream limited to RATE (as a real link is)
#
# Needs: release builds of beam-edge and of the example bench_upstream (built
# here if missing), curl, python3. Loopback only; everything is removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

MIB=${1:-512}
ROUNDS=3
BIN=target/release/beam-edge
UPSTREAM_BIN=target/release/examples/bench_upstream
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -x "$UPSTREAM_BIN" ] || cargo build --release --example bench_upstream >&2

. benches/lib.sh   # WORK, PIDS, free_port, wait_http, metric

# The piece (AES-CTR keystream: incompressible, deterministic), its layer of
# 1 MiB windows, and a manifest naming it.
mkdir -p "$WORK/pieces"
openssl enc -aes-128-ctr -K "$(printf '%032x' 7)" -iv 0 -nosalt -in /dev/zero 2>/dev/null \
  | head -c "$((MIB * 1024 * 1024))" > "$WORK/piece.bin" || true
SIZE=$(stat -c %s "$WORK/piece.bin")
[ "$SIZE" = "$((MIB * 1024 * 1024))" ] || { echo "cannot generate the piece" >&2; exit 1; }
CID=$("$BIN" piece-cid --layer "$WORK/layer.bin" "$WORK/piece.bin" | cut -d' ' -f1)
mv "$WORK/piece.bin" "$WORK/pieces/$CID"
python3 - "$WORK" "$CID" "$SIZE" <<'PY'
import json, sys
work, cid, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
layer = open(f"{work}/layer.bin", "rb").read().hex()
m = {"format": "beam-edge-asset", "version": 1, "size": size, "content_type": "video/mp4",
     "file_name": "bench.mp4", "window": 1 << 20,
     "pieces": [{"cid": cid, "size": size, "layer": layer}]}
open(f"{work}/manifest.json", "w").write(json.dumps(m, separators=(",", ":")))
PY
ID=$("$BIN" piece-cid "$WORK/manifest.json" | cut -d' ' -f1)
mv "$WORK/manifest.json" "$WORK/pieces/$ID"

UP=$(free_port)
"$UPSTREAM_BIN" --dir "$WORK/pieces" --listen "127.0.0.1:$UP" ${RATE:+--rate "$RATE"} >/dev/null & PIDS+=($!)
wait_http "http://127.0.0.1:$UP/__stats"

# One cold read through a fresh edge (empty cache); prints "MB/s checks".
cold_read() { # path
  local edge metrics admin dir
  edge=$(free_port); metrics=$(free_port); admin=$(free_port); dir=$WORK/cache-$RANDOM
  cat > "$WORK/edge.yaml" <<YML
server: { listen: "127.0.0.1:$edge", threads: 2, grace_period: 0s }
upstream: { beam_url: "http://127.0.0.1:$UP/{payer}", payer: "0x00000000000000000000000000000000000000aa", resolve_providers: false }
cache: { window: 1MiB, memory: 256MiB, disk: { path: "$dir", size: 2GiB } }
admin: { listen: "127.0.0.1:$admin" }
metrics: { listen: "127.0.0.1:$metrics" }
YML
  RUST_LOG=warn "$BIN" serve --config "$WORK/edge.yaml" 2>>"$WORK/edge.log" & local pid=$!
  PIDS+=("$pid")
  wait_http "http://127.0.0.1:$edge/healthz"
  # The manifest first (not timed), so the layer is known before the read.
  [ "${1%%/*}" = asset ] && curl -sf -o /dev/null -I "http://127.0.0.1:$edge/$1"
  local got; got=$(curl -s --max-time 300 -o "$WORK/out.bin" -w '%{http_code} %{size_download} %{speed_download}' "http://127.0.0.1:$edge/$1")
  read -r code bytes speed <<<"$got"
  [ "$code $bytes" = "200 $SIZE" ] || { echo "read of $1 failed: $got" >&2; exit 1; }
  cmp -s "$WORK/out.bin" "$WORK/pieces/$CID" || { echo "read of $1: wrong bytes" >&2; exit 1; }
  local ok; ok=$(metric "$metrics" 'beam_edge_window_checks_total{result="ok"}')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  python3 -c "print(f'{$speed/1e6:.0f} $ok')"
}

declare -a PLAIN CHECKED
for r in $(seq $ROUNDS); do
  PLAIN+=("$(cold_read "piece/$CID")"); echo "# round $r /piece: ${PLAIN[-1]}" >&2
  CHECKED+=("$(cold_read "asset/$ID")"); echo "# round $r /asset: ${CHECKED[-1]}" >&2
done
median() { printf '%s\n' "$@" | cut -d' ' -f1 | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
windows=$(( (SIZE + 1040383) / 1040384 ))
echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB"
echo "Cold read of a $MIB MiB piece ($windows windows of 1 MiB) from a loopback upstream${RATE:+ limited to $RATE}, memory 256MiB + disk tier; median of $ROUNDS fresh processes each (the asset count includes its one-window manifest)"
echo
echo "| read | windows checked | MB/s (each round) | median MB/s |"
echo "|---|---|---|---|"
echo "| /piece (no layer: length checks only) | ${PLAIN[0]#* } | $(printf '%s ' "${PLAIN[@]%% *}")| $(median "${PLAIN[@]}") |"
echo "| /asset (layer: every window hashed) | ${CHECKED[0]#* } | $(printf '%s ' "${CHECKED[@]%% *}")| $(median "${CHECKED[@]}") |"
