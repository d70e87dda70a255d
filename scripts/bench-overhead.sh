#!/usr/bin/env bash
# The harness's own cost: CPU per query of ipw against a real llama-server, beside `curl -N` on
# the same requests (one process for all, `--next`: the floor) and a minimal Python streaming
# client, alternating 3 rounds in one run; prints min/median and the ratios to curl.
# Target: ipw within 1.1x of curl. BENCH_QUERIES (50), BENCH_ROUNDS (3), BENCH_MAX_TOKENS (128).
# BENCH_UREQ=1 also measures the same ipw with ureq in place of its own HTTP/1.1 client.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh
./scripts/fetch-model.sh >/dev/null
./scripts/build-llama-server.sh >/dev/null
if [ "${BENCH_UREQ:-}" = 1 ]; then
  cargo build --release --locked -q --features ureq-transport
  export IPW_UREQ="$CARGO_TARGET_DIR/ipw-ureq"
  cp "$CARGO_TARGET_DIR/release/ipw" "$IPW_UREQ"
fi
cargo build --release --locked -q
IPW="$CARGO_TARGET_DIR/release/ipw" exec python3 scripts/bench.py overhead
