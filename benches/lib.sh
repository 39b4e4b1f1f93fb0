# Shared start-up of the bench scripts (sourced, not run): a work directory
# and a list of background processes, both removed at exit, and the helpers
# every script uses to reach its servers on loopback.
#   WORK   a fresh temporary directory
#   PIDS   append the pid of each background process: killed at exit
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url: up to 10 s
  for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "no answer from $1" >&2; exit 1
}
piece_file() { # size seed: SIZE pseudo-random bytes (AES-CTR of zeros) in
  # $WORK/pieces/<its PieceCID>, as "$BIN piece-cid" names it; sets CID, PIECE
  mkdir -p "$WORK/pieces"
  # (openssl ends on SIGPIPE once head has its bytes: not an error here.)
  { openssl enc -aes-128-ctr -nosalt -pass "pass:$2" -pbkdf2 </dev/zero 2>/dev/null || true; } |
    head -c "$1" >"$WORK/piece"
  CID=$("$BIN" piece-cid "$WORK/piece" | awk '{print $1}')
  PIECE="$WORK/pieces/$CID"
  mv "$WORK/piece" "$PIECE"
}
start_edge() { # config log port: "$BIN serve" in the background (pid in EDGE), up
  RUST_LOG=warn "$BIN" serve --config "$1" 2>"$2" &
  EDGE=$!
  PIDS+=($EDGE)
  wait_http "http://127.0.0.1:$3/healthz"
}
metric() { # port 'name{labels}' -> value (0 when absent)
  curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1==m {v=$2} END {printf "%.0f\n", v+0}'
}
