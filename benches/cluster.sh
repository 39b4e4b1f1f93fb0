#!/usr/bin/env bash
# Cluster mode (issue 10) side by side with independent replicas. Three
# beam-edge replicas on 127.0.0.2, 127.0.0.3, 127.0.0.4 in front of one mock
# Beam, twice: as one cluster (static membership) and as three independent
# caches. Same workload both times: a full read of one piece through each
# replica, then RANGES random 1 MiB ranges spread round-robin over them
# (8 client threads, every byte compared). Prints the upstream bytes of each,
# and the requests/s of one hot 1 MiB range through its owner and through a
# non-owner (after it became a memory hit there), as a Markdown table.
#
#   benches/cluster.sh [MiB]        piece size, default 64
#   RANGES=10000 benches/cluster.sh number of random ranges (default 10000)
#   BIN=target/debug/beam-edge benches/cluster.sh   another build
#
# Needs: beam-edge and the example bench_upstream built (release by default:
# cargo build --release && cargo build --release --example bench_upstream),
# curl, wrk, python3. Loopback only; everything is removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

MIB=${1:-64}
RANGES=${RANGES:-10000}
BIN=${BIN:-target/release/beam-edge}
UPSTREAM_BIN=${UPSTREAM_BIN:-$(dirname "$BIN")/examples/bench_upstream}
[ -x "$BIN" ] || { echo "build first: cargo build --release (or set BIN)" >&2; exit 1; }
[ -x "$UPSTREAM_BIN" ] || { echo "build first: cargo build --release --example bench_upstream" >&2; exit 1; }

. benches/lib.sh   # WORK, PIDS, free_port, wait_http, metric

mkdir -p "$WORK/pieces"
openssl enc -aes-128-ctr -K "$(printf '%032x' 9)" -iv 0 -nosalt -in /dev/zero 2>/dev/null \
  | head -c "$((MIB * 1024 * 1024))" > "$WORK/piece.bin" || true
SIZE=$(stat -c %s "$WORK/piece.bin")
CID=$("$BIN" piece-cid "$WORK/piece.bin" | cut -d' ' -f1)
mv "$WORK/piece.bin" "$WORK/pieces/$CID"

UP=$(free_port)
"$UPSTREAM_BIN" --dir "$WORK/pieces" --listen "127.0.0.1:$UP" >/dev/null 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$UP/__stats"
upstream_bytes() { curl -sf "http://127.0.0.1:$UP/__stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["body_bytes"])'; }

IPS=(127.0.0.2 127.0.0.3 127.0.0.4)
declare -a PUB ADMIN PEER REPLICA_PIDS

# Starts the three replicas; $1 = cluster | independent.
start_replicas() {
  local mode=$1 i peers=""
  for i in 0 1 2; do PEER[$i]=$(free_port); done
  for i in 0 1 2; do peers+="{ name: edge-$i, addr: \"${IPS[$i]}:${PEER[$i]}\" }, "; done
  REPLICA_PIDS=()
  for i in 0 1 2; do
    PUB[$i]=$(free_port); ADMIN[$i]=$(free_port)
    local m; m=$(free_port)
    local cluster="cluster: { enabled: false }"
    [ "$mode" = cluster ] && cluster="cluster: { enabled: true, self: edge-$i, peer_listen: \"${IPS[$i]}:${PEER[$i]}\", peers: [ ${peers%, } ], refresh: 1s }"
    cat > "$WORK/edge-$mode-$i.yaml" <<YML
server: { listen: "${IPS[$i]}:${PUB[$i]}", threads: 2, grace_period: 0s }
upstream: { beam_url: "http://127.0.0.1:$UP/{payer}", payer: "0x00000000000000000000000000000000000000aa", resolve_providers: false }
cache: { window: 1MiB, memory: 256MiB, disk: { path: "$WORK/cache-$mode-$i", size: 4GiB } }
admin: { listen: "${IPS[$i]}:${ADMIN[$i]}" }
metrics: { listen: "${IPS[$i]}:$m" }
$cluster
YML
    RUST_LOG=warn "$BIN" serve --config "$WORK/edge-$mode-$i.yaml" 2>>"$WORK/edge-$mode-$i.log" &
    PIDS+=($!); REPLICA_PIDS+=($!)
  done
  for i in 0 1 2; do wait_http "http://${IPS[$i]}:${PUB[$i]}/healthz"; done
  if [ "$mode" = cluster ]; then # every replica sees three ready members
    for i in 0 1 2; do
      for _ in $(seq 300); do
        n=$(curl -sf "http://${IPS[$i]}:${ADMIN[$i]}/admin/cluster" \
          | python3 -c 'import json,sys; print(sum(m["state"]=="ready" for m in json.load(sys.stdin)["members"]))' || echo 0)
        [ "$n" = 3 ] && break; sleep 0.1
      done
      [ "$n" = 3 ] || { echo "replica $i sees $n ready members" >&2; exit 1; }
    done
  fi
}

stop_replicas() { for p in "${REPLICA_PIDS[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done; }

# The workload; prints the upstream bytes it cost.
workload() {
  local before; before=$(upstream_bytes)
  for i in 0 1 2; do
    got=$(curl -s -o "$WORK/out.bin" -w '%{http_code} %{size_download}' "http://${IPS[$i]}:${PUB[$i]}/piece/$CID")
    [ "$got" = "200 $SIZE" ] || { echo "full read through replica $i: $got" >&2; exit 1; }
    cmp -s "$WORK/out.bin" "$WORK/pieces/$CID" || { echo "full read through replica $i: wrong bytes" >&2; exit 1; }
  done
  python3 - "$WORK/pieces/$CID" "$CID" "$RANGES" "${IPS[0]}:${PUB[0]}" "${IPS[1]}:${PUB[1]}" "${IPS[2]}:${PUB[2]}" <<'PY'
import http.client, random, sys, threading
path, cid, n, hosts = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
data = open(path, "rb").read()
size, span = len(data), 1 << 20
errors = []
def worker(k):
    rnd = random.Random(k)
    conns = {}
    for j in range(k, n, 8):
        host = hosts[j % len(hosts)]
        a = rnd.randrange(0, size - span)
        b = a + span - 1
        c = conns.get(host) or http.client.HTTPConnection(host, timeout=60)
        conns[host] = c
        c.request("GET", f"/piece/{cid}", headers={"Range": f"bytes={a}-{b}"})
        r = c.getresponse()
        body = r.read()
        if r.status != 206 or body != data[a:b + 1]:
            errors.append((host, a, r.status, len(body)))
threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
for t in threads: t.start()
for t in threads: t.join()
if errors:
    sys.exit(f"{len(errors)} bad ranges, e.g. {errors[:3]}")
PY
  echo $(( $(upstream_bytes) - before ))
}

# Requests/s of one hot 1 MiB range (window $1) through replica $2.
hot_rps() {
  local a=$(( $1 * 1040384 )) b=$(( $1 * 1040384 + 1040383 ))
  wrk -t2 -c16 -d10s -H "Range: bytes=$a-$b" "http://${IPS[$2]}:${PUB[$2]}/piece/$CID" \
    | awk '/Requests\/sec/ {printf "%.0f\n", $2}'
}

echo "# cluster mode" >&2
start_replicas cluster
CLUSTER_BYTES=$(workload)
# A window replica 0 owns (on its disk), hammered through replica 1 until
# it is a memory hit there, then measured through both.
W=$(curl -sf "http://${IPS[0]}:${ADMIN[0]}/admin/cache/$CID" | python3 -c 'import json,sys; d=json.load(sys.stdin)["disk"]; print(d[len(d)//2])')
for _ in $(seq 8); do
  curl -sf -o /dev/null -H "Range: bytes=$(( W * 1040384 ))-$(( W * 1040384 + 1040383 ))" "http://${IPS[1]}:${PUB[1]}/piece/$CID"
done
OWNER_RPS=$(hot_rps "$W" 0)
NON_OWNER_RPS=$(hot_rps "$W" 1)
stop_replicas

echo "# independent replicas" >&2
start_replicas independent
INDEPENDENT_BYTES=$(workload)
stop_replicas

echo
echo "Machine: $(nproc) cores ($(uptime | sed 's/.*load average: /load /')), $(basename "$BIN") at $BIN"
echo "Workload: a ${MIB} MiB piece read whole through each of 3 replicas, then $RANGES random 1 MiB ranges spread over them."
echo
echo "| figure | 3 independent replicas | cluster of 3 |"
echo "|---|---|---|"
python3 - "$SIZE" "$INDEPENDENT_BYTES" "$CLUSTER_BYTES" "$OWNER_RPS" "$NON_OWNER_RPS" <<'PY'
import sys
size, ind, clu, own, non = map(int, sys.argv[1:])
print(f"| upstream bytes | {ind:,} ({ind/size:.2f}× the piece) | {clu:,} ({clu/size:.2f}× the piece) |")
print(f"| hot 1 MiB range, req/s through the owner | | {own} |")
print(f"| hot 1 MiB range, req/s through a non-owner | | {non} ({non/max(own,1):.2f}× the owner) |")
PY
