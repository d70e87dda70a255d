#!/usr/bin/env bash
# System packages and Rust targets the build and tests need: cmake and libclang (bindgen) for
# the embedded llama.cpp backend, the wasm32-wasip2 target for the WASM graders.
set -euo pipefail
. "$(dirname "$0")/common.sh"
need=()
command -v cmake >/dev/null || need+=(cmake)
# bindgen needs libclang itself (libclang.so / libclang-N.so), not libclang-cpp, which other
# packages pull in on their own.
[ -n "$(ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/*/libclang-[0-9]*.so* 2>/dev/null)" ] || need+=(libclang-dev)
command -v c++ >/dev/null || need+=(g++)
# --tests: what only the tests need. A real single-node Slurm cluster (tests/scale_out.rs starts
# munged, slurmctld and slurmd itself, no systemd).
if [ "${1:-}" = "--tests" ]; then
  [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && command -v sbatch >/dev/null || need+=(slurm-wlm)
  [ -x /usr/sbin/munged ] || need+=(munge)
  # `ipw schema` is checked with a real JSON Schema validator.
  python3 -c "import jsonschema" 2>/dev/null || need+=(python3-jsonschema)
  # `ipw report`'s page is opened in a real headless browser (tests/report.rs).
  command -v chromium >/dev/null || need+=(chromium)
  # `ipw export --format parquet` is read back with pyarrow (tests/export.rs). Debian 12 has no
  # python3-pyarrow: a venv under $IPW_CACHE (python3-venv brings ensurepip) with pyarrow from PyPI.
  python3 -c "import ensurepip, venv" 2>/dev/null || need+=(python3-venv)
fi
if [ ${#need[@]} -gt 0 ]; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}"
fi
# The live /metrics endpoint is scraped and parsed with Prometheus's own client library
# (tests/metrics.rs).
if [ "${1:-}" = "--tests" ] && ! "$IPW_CACHE/venv/bin/python3" -c "import pyarrow, prometheus_client" 2>/dev/null; then
  [ -x "$IPW_CACHE/venv/bin/pip" ] || python3 -m venv "$IPW_CACHE/venv"
  "$IPW_CACHE/venv/bin/pip" install -q --disable-pip-version-check pyarrow prometheus-client
fi
# The graders are WASM components built for wasm32-wasip2 by ipw-core's build script.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
