#!/usr/bin/env bash
# Benchmark of the profiler's own overhead against a real llama-server (remote model, so the
# profiler's CPU and memory are its own, not inference): 100 queries, then print
#   - the profiler's CPU per query (user+sys, getrusage, over the measured queries),
#   - time from process start to the first request (no model load for a remote model),
#   - peak RSS.
# Targets: <= 2 ms CPU/query, < 0.3 s to first request, < 30 MB RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh
./scripts/fetch-model.sh >/dev/null
./scripts/build-llama-server.sh >/dev/null
cargo build --release --locked -q
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$IPW_LLAMA_SERVER" -m "$IPW_TEST_MODEL" -c 4096 -t 2 --host 127.0.0.1 --port "$port" -a smollm2 >/tmp/ipw-bench-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.2; done
work=$(mktemp -d)
cat > "$work/bench.toml" <<TOML
name = "bench-profiler"
[run]
warmup_queries = 1
[generation]
max_tokens = ${BENCH_MAX_TOKENS:-16}
[[models]]
name = "smollm2-server"
backend = "openai"
base_url = "http://127.0.0.1:$port/v1"
model = "smollm2"
[[datasets]]
builtin = "gsm8k"
max_queries = ${BENCH_QUERIES:-100}
TOML
"$CARGO_TARGET_DIR/release/ipw" profile "$work/bench.toml" --out "$work/out" -q
python3 - "$work/out/smollm2-server" <<'PY'
import json, sys, os
run = sys.argv[1]
m = json.load(open(os.path.join(run, "manifest.json")))
s = json.load(open(os.path.join(run, "summary.json")))
sess = m["sessions"][-1]
print()
print(f"queries                       {s['recorded']} ({s['errors']} errors), {s['queries_per_s']:.2f} q/s, "
      f"p50 TTFT {s['ttft_s']['p50']*1000:.0f} ms, p50 decode {s['decode_tps']['p50']:.0f} tok/s")
print(f"profiler CPU per query        {sess['cpu_per_query_ms']:.3f} ms   (target <= 2 ms)")
print(f"start to first request        {sess['startup_to_first_request_s']:.3f} s    (target < 0.3 s)")
print(f"peak RSS                      {sess['peak_rss_bytes']/2**20:.1f} MiB (target < 30 MB)")
PY
rm -rf "$work"
