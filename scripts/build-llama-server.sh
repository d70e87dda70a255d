#!/usr/bin/env bash
# Build upstream llama.cpp's `llama-server` from the llama.cpp source vendored in the
# `llama-cpp-python` sdist on PyPI (no prebuilt binary is reachable from these machines).
# ~5 minutes cold on 2 cores; cached in $IPW_CACHE afterwards.
set -euo pipefail
. "$(dirname "$0")/common.sh"
if [ -x "$IPW_LLAMA_SERVER" ]; then echo "llama-server: $IPW_LLAMA_SERVER (cached)"; exit 0; fi
work="$IPW_CACHE/llama-server-src"
rm -rf "$work"; mkdir -p "$work"
python3 -m pip download --no-deps --no-binary :all: --quiet 'llama-cpp-python==0.3.36' -d "$work"
tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
src=$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF > "$work/cmake.log"
cmake --build "$work/build" --target llama-server -j"$(nproc)" > "$work/build.log"
mkdir -p "$(dirname "$IPW_LLAMA_SERVER")"
cp "$work/build/bin/llama-server" "$IPW_LLAMA_SERVER"
rm -rf "$work"
echo "llama-server: $IPW_LLAMA_SERVER"
