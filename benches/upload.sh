#!/usr/bin/env bash
# Upload bench: a 4 GiB generated file streamed as an asset (4 pieces plus a
# manifest) to the mock Curio over loopback, in release mode; prints a table
# with throughput and the process's peak RSS (the target: at most 64 MiB
# whatever the size, and throughput bound by CommP, not by the plumbing).
#   benches/upload.sh [bytes]      (default 4294967296)
set -euo pipefail
cd "$(dirname "$0")/.."
UPLOAD_BENCH_BYTES="${1:-4294967296}" cargo test --release --locked --test upload_asset \
  -- --ignored --nocapture upload_4gib_asset_throughput_and_rss 2>/dev/null | grep '^|'
