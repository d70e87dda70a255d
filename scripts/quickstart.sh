#!/usr/bin/env bash
# The main job on a fresh machine: install what the build needs, fetch the test model, build
# ipw, and profile SmolLM2-135M in-process on a slice of GSM8K and MMLU (examples/quickstart.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh
./scripts/install-deps.sh
./scripts/fetch-model.sh
cargo build --release --locked --workspace   # ipw and its sampler plugins
"$CARGO_TARGET_DIR/release/ipw" profile examples/quickstart.toml "$@"
