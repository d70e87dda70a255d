#!/usr/bin/env bash
# Device check: proves ipw's NVIDIA GPU path end to end on a real GPU, or (--dry) the same
# steps on this machine against the fake NVML library (tests/fixtures/fake-nvml).
#
#   scripts/device-check.sh [--dry] [OUT_DIR]      (OUT_DIR default: device-check-out)
#
# Steps, each into its own file in OUT_DIR, then summary.txt (exit 1 if any step failed):
#   1 doctor.txt   ipw doctor (dry: libnvidia-ml.so.1 is the fake, through LD_LIBRARY_PATH)
#   2 check.txt    ipw sampler check nvml (the conformance check of the real plugin)
#   3 bench.txt    ipw bench sampler --plugin nvml at 20 and 100 Hz
#   4 profile.txt  ipw profile of a managed OpenAI-compatible workload server
#                  (scripts/device-check/workload_server.py: N ms of bf16 matmuls per query on
#                  the GPU with torch, a CPU busy loop in the dry run) into OUT_DIR/run; the
#                  server logs its own NVML counter around each query's compute (server.jsonl)
#   5 compare.txt/compare.json  ipw's per-query energy vs the instant-power integral over the
#                  same window and vs the server's own counter delta (scripts/device-check/compare.py)
#
# Needs: bash, python3 (+ torch with CUDA and the NVIDIA driver for the real run), coreutils
# `timeout`, and an ipw binary with its plugin libraries beside it: $IPW, else
# $CARGO_TARGET_DIR/release/ipw, else ~/.cache/ipw/target/release/ipw, else `ipw` on PATH.
# The dry run also needs libfake_nvml.so beside that binary (cargo build --workspace builds it).
# No network. The real run takes ~2 minutes.
set -uo pipefail

DRY=0
OUT=""
for a in "$@"; do
  case "$a" in
    --dry) DRY=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) echo "device-check: unknown option $a" >&2; exit 2 ;;
    *) [ -z "$OUT" ] || { echo "device-check: one OUT_DIR only" >&2; exit 2; }; OUT="$a" ;;
  esac
done
OUT="${OUT:-device-check-out}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/device-check"

# The ipw binary.
if [ -z "${IPW:-}" ]; then
  for c in "${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/release/ipw}" "${IPW_CACHE:-$HOME/.cache/ipw}/target/release/ipw"; do
    if [ -n "$c" ] && [ -x "$c" ]; then IPW="$c"; break; fi
  done
  [ -n "${IPW:-}" ] || IPW="$(command -v ipw || true)"
fi
if [ -z "${IPW:-}" ] || [ ! -x "$IPW" ]; then
  echo "device-check: no ipw binary (set IPW=/path/to/ipw)" >&2
  exit 2
fi
IPW="$(cd "$(dirname "$IPW")" && pwd)/$(basename "$IPW")"
BIN_DIR="$(dirname "$IPW")"

# OUT_DIR: new, empty, or one this script wrote before (then cleared).
mkdir -p "$OUT" || exit 2
OUT="$(cd "$OUT" && pwd)"
if [ -n "$(ls -A "$OUT")" ]; then
  if [ ! -f "$OUT/.device-check" ]; then
    echo "device-check: $OUT is not empty and was not written by device-check; choose another OUT_DIR" >&2
    exit 2
  fi
  find "$OUT" -mindepth 1 -delete
fi
touch "$OUT/.device-check"

export RUST_LOG="${RUST_LOG:-warn}" PYTHONDONTWRITEBYTECODE=1
unset HTTP_PROXY http_proxy HTTPS_PROXY https_proxy ALL_PROXY all_proxy

if [ "$DRY" = 1 ]; then
  MODE=dry
  FAKE="$BIN_DIR/libfake_nvml.so"
  if [ ! -f "$FAKE" ]; then
    echo "device-check: --dry needs $FAKE (beside ipw; cargo build --workspace builds it)" >&2
    exit 2
  fi
  NVML_LIB="$FAKE"
  # One fake GPU drawing a constant 150 W: its counter is the exact integral of that.
  DRY_WATTS=150
  cat >"$OUT/fake-nvml.json" <<EOF
{"devices": [{"uuid": "GPU-00000000-dry0-0000-0000-000000000000", "name": "Fake NVIDIA GPU (dry run, ${DRY_WATTS} W)",
  "power_w": [[0, ${DRY_WATTS}]], "temperature_c": [[0, 50]]}]}
EOF
  export IPW_FAKE_NVML_SCRIPT="$OUT/fake-nvml.json"
  unset CUDA_VISIBLE_DEVICES CUDA_DEVICE_ORDER
  CONFIG_JSON="$(python3 -c 'import json,sys; print(json.dumps({"lib_path": sys.argv[1]}))' "$FAKE")"
  # `ipw doctor` opens every plugin with no settings, so it looks for libnvidia-ml.so.1: let
  # that name be the fake for it.
  mkdir -p "$OUT/fake-driver"
  ln -s "$FAKE" "$OUT/fake-driver/libnvidia-ml.so.1"
  DOCTOR_ENV=(env "LD_LIBRARY_PATH=$OUT/fake-driver${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  SERVER_DEVICE=cpu
else
  MODE=hardware
  NVML_LIB="libnvidia-ml.so.1"
  CONFIG_JSON='{}'
  DOCTOR_ENV=()
  # DEVICE_CHECK_SERVER_DEVICE=cpu: the hardware flow with the server's CPU busy loop (to try
  # the script out against a fake libnvidia-ml.so.1 on LD_LIBRARY_PATH).
  SERVER_DEVICE="${DEVICE_CHECK_SERVER_DEVICE:-cuda}"
fi

declare -a STEPS=()
FAILED=0
# step NAME FILE TIMEOUT_S CMD...: run CMD (stdout+stderr into OUT/FILE), record pass/fail.
step() {
  local name="$1" file="$2" limit="$3"
  shift 3
  local t0 t1 rc
  t0=$(date +%s.%N)
  { printf '$'; printf ' %q' "$@"; printf '\n\n'; } >"$OUT/$file"
  timeout --kill-after=10 "$limit" "$@" >>"$OUT/$file" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  local secs
  secs=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
  if [ "$rc" = 0 ]; then
    STEPS+=("PASS  $name ($file, ${secs} s)")
  else
    [ "$rc" = 124 ] && echo "device-check: timed out after ${limit} s" >>"$OUT/$file"
    STEPS+=("FAIL  $name ($file, exit $rc, ${secs} s)")
    FAILED=1
  fi
  echo "[$MODE] ${STEPS[-1]}"
  return "$rc"
}

# 0. What GPU and driver (NVML through ctypes, the same library everything else uses).
step "gpu info (NVML via ctypes)" gpu.txt 60 python3 "$HERE/nvml_info.py" "$NVML_LIB"
if [ "$MODE" = hardware ]; then
  { echo; command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=index,name,uuid,driver_version,power.limit --format=csv; } >>"$OUT/gpu.txt" 2>&1
  [ "$SERVER_DEVICE" = cuda ] && step "torch sees CUDA" torch.txt 120 python3 -c \
    'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda); assert torch.cuda.is_available(), "torch.cuda.is_available() is False"; print("device 0:", torch.cuda.get_device_name(0))'
fi

# 1. doctor: the nvml plugin must open on this machine.
step "ipw doctor" doctor.txt 120 "${DOCTOR_ENV[@]}" "$IPW" doctor
if ! grep -qE '^nvml \(' "$OUT/doctor.txt" || ! grep -qE '^  gpu[0-9]+ ' "$OUT/doctor.txt"; then
  echo "device-check: doctor did not open the nvml plugin" >>"$OUT/doctor.txt"
  STEPS[-1]="FAIL  ipw doctor (doctor.txt: nvml not usable)"
  FAILED=1
fi

# 2. conformance check of the real nvml plugin.
step "ipw sampler check nvml" check.txt 120 "$IPW" sampler check nvml --config "$CONFIG_JSON" --seconds 3

# 3. sampler host overhead at 20 and 100 Hz.
step "ipw bench sampler nvml 20,100 Hz" bench.txt 120 "$IPW" bench sampler --plugin nvml --config "$CONFIG_JSON" --rates 20,100 --seconds 5

# 4. end to end: a managed workload server, 12 queries of known work.
toml_str() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
WORK_MS=(400 600 800 1000 1200 1500 500 700 900 1100 1300 1400)
: >"$OUT/prompts.jsonl"
for i in "${!WORK_MS[@]}"; do
  id=$(printf 'q%02d' $((i + 1)))
  echo "{\"id\": \"$id\", \"prompt\": \"work ${WORK_MS[$i]} ms ($id)\"}" >>"$OUT/prompts.jsonl"
done
if [ "$MODE" = dry ]; then
  SAMPLER_CONFIG="config = { lib_path = $(toml_str "$NVML_LIB") }"
else
  SAMPLER_CONFIG=""
fi
cat >"$OUT/exp.toml" <<EOF
# Written by scripts/device-check.sh ($MODE).
name = "device-check"

[run]
warmup_queries = 0
query_timeout_s = 60

[generation]
max_tokens = 8

[energy]
baseline_s = 2

[energy.settle]
max_wait_s = 20

[[models]]
name = "workload"
backend = "openai"
[models.server]
kind = "command"
program = "python3"
args = [$(toml_str "$HERE/workload_server.py"), "--port", "{port}", "--log", $(toml_str "$OUT/server.jsonl"), "--nvml-lib", $(toml_str "$NVML_LIB"), "--device", "$SERVER_DEVICE"]
ready_timeout_s = 240
stop_grace_s = 5

[[samplers]]
plugin = "nvml"
$SAMPLER_CONFIG

[[datasets]]
path = "prompts.jsonl"
name = "work"
fields = { id = "id", prompt = "prompt" }
EOF
step "ipw profile (managed workload server, ${#WORK_MS[@]} queries)" profile.txt 420 "$IPW" profile "$OUT/exp.toml" --out "$OUT/run" -q

# 5. per-query comparison.
DRY_FLAG=()
[ "$MODE" = dry ] && DRY_FLAG=(--dry)
step "compare ipw vs power integral vs server counter" compare.txt 60 python3 "$HERE/compare.py" "${DRY_FLAG[@]}" \
  --run "$OUT/run" --server-log "$OUT/server.jsonl" --out-txt "$OUT/compare.run.txt" --out-json "$OUT/compare.json" \
  --expect-queries "${#WORK_MS[@]}"
# compare.txt holds the command and its output; compare.run.txt the report alone.
rm -f "$OUT/compare.run.txt"

# 6. summary.
{
  if [ "$MODE" = dry ]; then
    echo "ipw device check: DRY RUN (fake NVML $NVML_LIB at a constant ${DRY_WATTS} W; no GPU; workload: CPU busy loop)"
  else
    echo "ipw device check: HARDWARE (NVML from $NVML_LIB; workload: $SERVER_DEVICE)"
  fi
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(hostname)"
  echo "ipw: $IPW ($("$IPW" --version 2>&1 | head -1))"
  python3 - "$OUT/gpu.txt" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
try:
    j = json.loads(text[text.index("{"):text.rindex("}") + 1])
    for g in j["gpus"]:
        print(f"gpu{g['index']}: {g['name']} {g['uuid']}, driver {j['driver']}")
except Exception as e:
    print(f"gpu: unknown ({e}); see gpu.txt")
PY
  echo "doctor (nvml):"
  sed -n '/^nvml (/,/^[^ ]/p' "$OUT/doctor.txt" | grep -E '^(nvml \(|  gpu[0-9]+ )' | sed 's/^/  /'
  [ -f "$OUT/torch.txt" ] && grep -E '^(torch|device 0)' "$OUT/torch.txt" | sed 's/^/  /'
  count() { grep -cE "^ *$1 " "$2" 2>/dev/null; true; }
  echo "check: $(count PASS "$OUT/check.txt") PASS, $(count WARN "$OUT/check.txt") WARN, $(count FAIL "$OUT/check.txt") FAIL ($(grep -E '^verdict' "$OUT/check.txt"))"
  echo "bench (sampler host overhead):"
  grep -E '^(plugin|\(floor\)|nvml|  above floor)' "$OUT/bench.txt" | sed 's/^/  /'
  echo "compare:"
  grep -E '^(worst_|total_|min_span|queries:|RESULT)' "$OUT/compare.txt" | sed 's/^/  /'
  echo "steps:"
  for s in "${STEPS[@]}"; do echo "  $s"; done
  if [ "$FAILED" = 0 ]; then echo "RESULT: PASS"; else echo "RESULT: FAIL"; fi
} >"$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"
exit "$FAILED"
