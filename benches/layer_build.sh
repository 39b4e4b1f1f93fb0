#!/usr/bin/env bash
# What building a piece's layer costs (verify.mode: background): a fresh
# beam-edge reads one byte of a piece it has no layer for, which starts a
# build (verify.build_delay: 0s here); the script waits until
# /admin/cache/<cid> shows the layer and prints the time it took, the upstream
# bytes read, and the layer's footprint (its file on disk, its roots in memory).
#
#   RATE=40MB/s benches/layer_build.sh [MiB]   piece size, default 256 (at most 1016)
#
# Needs: release builds of beam-edge and of the example bench_upstream (built
# here if missing), curl, python3, openssl. Loopback only; everything is
# removed at exit. One run.
set -euo pipefail
cd "$(dirname "$0")/.."

MIB=${1:-256}
BIN=target/release/beam-edge
UPSTREAM_BIN=target/release/examples/bench_upstream
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -x "$UPSTREAM_BIN" ] || cargo build --release --example bench_upstream >&2

. benches/lib.sh   # WORK, PIDS, free_port, wait_http, metric

mkdir -p "$WORK/pieces"
openssl enc -aes-128-ctr -K "$(printf '%032x' 9)" -iv 0 -nosalt -in /dev/zero 2>/dev/null \
  | head -c "$((MIB * 1024 * 1024))" > "$WORK/piece.bin" || true
SIZE=$(stat -c %s "$WORK/piece.bin")
CID=$("$BIN" piece-cid "$WORK/piece.bin" | cut -d' ' -f1)
mv "$WORK/piece.bin" "$WORK/pieces/$CID"

UP=$(free_port)
"$UPSTREAM_BIN" --dir "$WORK/pieces" --listen "127.0.0.1:$UP" ${RATE:+--rate "$RATE"} >/dev/null & PIDS+=($!)
wait_http "http://127.0.0.1:$UP/__stats"

edge=$(free_port); metrics=$(free_port); admin=$(free_port); dir=$WORK/cache
cat > "$WORK/edge.yaml" <<YML
server: { listen: "127.0.0.1:$edge", threads: 2, grace_period: 0s }
upstream: { beam_url: "http://127.0.0.1:$UP/{payer}", payer: "0x00000000000000000000000000000000000000aa", resolve_providers: false }
cache: { window: 1MiB, memory: 256MiB, prefetch: 0, disk: { path: "$dir", size: 2GiB } }
verify: { mode: background, build_delay: 0s }
admin: { listen: "127.0.0.1:$admin" }
metrics: { listen: "127.0.0.1:$metrics" }
YML
RUST_LOG=warn "$BIN" serve --config "$WORK/edge.yaml" 2>>"$WORK/edge.log" & PIDS+=($!)
wait_http "http://127.0.0.1:$edge/healthz"

start=$(date +%s.%N)
curl -sf -o /dev/null -H 'Range: bytes=0-0' "http://127.0.0.1:$edge/piece/$CID"
until curl -sf "http://127.0.0.1:$admin/admin/cache/$CID" | python3 -c 'import json,sys; sys.exit(0 if (json.load(sys.stdin).get("layer") or {}).get("swept") else 1)'; do
  sleep 0.05
done
end=$(date +%s.%N)
up=$(metric "$metrics" 'beam_edge_upstream_bytes_total{upstream="beam"}')
file=$(find "$dir/layers" -type f -name "$CID" -printf '%s\n')
mem=$(curl -sf "http://127.0.0.1:$admin/admin/cache" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"]["memory_bytes"])')
windows=$(( (SIZE + 1040383) / 1040384 ))
echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB"
echo "Layer build of a $MIB MiB piece ($windows windows of 1 MiB) from a loopback upstream${RATE:+ limited to $RATE}; one run"
echo
echo "| piece | seconds | upstream bytes | piece bytes | layer file (disk) | roots in memory |"
echo "|---|---|---|---|---|---|"
python3 -c "print(f'| {$MIB} MiB | {$end-$start:.1f} | {$up} | {$SIZE} | {$file} B | {$mem} B |')"
