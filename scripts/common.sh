# Shared paths for ipw's scripts. Everything cached lives outside the clone so that a fresh
# clone (CI) reuses what an earlier run on the same machine already built or fetched.
IPW_CACHE="${IPW_CACHE:-$HOME/.cache/ipw}"
# This checkout; core/build.rs reruns when it changes (checkouts share the cached target dir).
IPW_SOURCE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export IPW_SOURCE_ROOT
export IPW_CACHE
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$IPW_CACHE/target}"
export IPW_MODELS_DIR="${IPW_MODELS_DIR:-$IPW_CACHE/models}"
export IPW_TEST_MODEL="${IPW_TEST_MODEL:-$IPW_MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf}"
export IPW_LLAMA_SERVER="${IPW_LLAMA_SERVER:-$IPW_CACHE/llama-server/bin/llama-server}"
# ipw built with llama.cpp's Vulkan backend (scripts/build-vulkan.sh), for tests/gpu_offload.rs.
export IPW_VULKAN_BIN="${IPW_VULKAN_BIN:-$IPW_CACHE/bin/ipw-vulkan}"
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$IPW_CACHE/pip}"

# Run a command as root when we are not root (CI machines run as root; laptops do not).
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
