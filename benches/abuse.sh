#!/usr/bin/env bash
# Normal requests with and without abuse, and the proxy's RSS: runs the
# abuse test of tests/abuse.rs (2,000 idle connections, 50 slow-header
# connections, a 64 KiB and a 2 MiB header, 10,000 pipelined ranges, a client
# reading 1 byte/s) ROUNDS times and prints the machine and its tables:
# latency p50/p99 of byte-exact 1-64 KiB range requests of a cached piece
# (fresh connection each) on a quiet proxy and under the abuse, and RSS.
#
#   benches/abuse.sh                   debug build (the one `make test` runs)
#   PROFILE=release benches/abuse.sh   release build (builds the test deps too)
#   ROUNDS=5 benches/abuse.sh
#
# Loopback only; the test removes everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
args=()
[ "${PROFILE:-debug}" = release ] && args=(--release)
echo "machine: $(nproc) cores, $(awk '{print "load " $1 " " $2 " " $3}' /proc/loadavg), profile ${PROFILE:-debug}"
cargo test "${args[@]}" --test abuse --no-run >/dev/null 2>&1 || cargo test "${args[@]}" --test abuse --no-run
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  cargo test "${args[@]}" --test abuse proxy_keeps_serving_under_abuse -- --nocapture 2>&1 \
    | sed -n '/^abuse report/,/^abuse:/p'
done
