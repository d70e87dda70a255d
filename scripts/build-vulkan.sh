#!/usr/bin/env bash
# Build ipw with llama.cpp's Vulkan backend (`--features vulkan`) and put it at
# $IPW_VULKAN_BIN, beside the default build rather than over it, for tests/gpu_offload.rs.
# On a machine without a GPU, Mesa's software Vulkan device (llvmpipe) is the device.
#
# Needs: glslc (shader compiler), the Vulkan loader and headers, SPIRV-Headers, and Mesa's
# drivers to run. Debian 12's Vulkan headers (1.3.239) predate what llama.cpp uses
# (VK_EXT_layer_settings), so when the system's are too old the newer headers are taken from
# Debian 13's packages: downloaded with apt into $IPW_CACHE/vulkan-sdk and unpacked, never
# installed (headers only; the system's loader runs them). The Vulkan backend adds ~5 minutes to
# a cold build on 2 cores; cargo keeps both builds, so later runs relink only.
set -euo pipefail
. "$(dirname "$0")/common.sh"
need=()
command -v glslc >/dev/null || need+=(glslc)
[ -e /usr/include/vulkan/vulkan.h ] || need+=(libvulkan-dev)
ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || need+=(mesa-vulkan-drivers)
if [ ${#need[@]} -gt 0 ]; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}"
fi
sdk="$IPW_CACHE/vulkan-sdk"
if grep -q LayerSettingEXT /usr/include/vulkan/vulkan_structs.hpp 2>/dev/null \
  && [ -e /usr/share/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake ]; then
  vulkan_sdk=/usr
elif [ -e "$sdk/usr/include/vulkan/vulkan_structs.hpp" ]; then
  vulkan_sdk="$sdk/usr"
else
  apt_dir="$IPW_CACHE/vulkan-sdk-apt"
  rm -rf "$apt_dir" "$sdk"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$sdk"
  echo "deb http://deb.debian.org/debian trixie main" > "$apt_dir/sources.list"
  opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=-
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
        -o APT::Sandbox::User=root)
  apt-get "${opts[@]}" update -qq
  (cd "$apt_dir" && apt-get "${opts[@]}" download -qq libvulkan-dev spirv-headers)
  for deb in "$apt_dir"/*.deb; do dpkg -x "$deb" "$sdk"; done
  rm -rf "$apt_dir"
  vulkan_sdk="$sdk/usr"
fi
# FindVulkan looks in $VULKAN_SDK/include; find_package(SPIRV-Headers) in CMAKE_PREFIX_PATH.
export VULKAN_SDK="$vulkan_sdk" CMAKE_PREFIX_PATH="$vulkan_sdk"
cargo build --release --locked -p ipw --features vulkan
# Copied at once: any later cargo build in this target dir rewrites release/ipw without Vulkan
# (a CPU-only ipw-vulkan failed the gpu_offload tests once).
mkdir -p "$(dirname "$IPW_VULKAN_BIN")"
cp "$CARGO_TARGET_DIR/release/ipw" "$IPW_VULKAN_BIN.tmp"
mv "$IPW_VULKAN_BIN.tmp" "$IPW_VULKAN_BIN"
# The code only this build compiles (the Vulkan loader queries) is linted here, over the whole
# workspace with its tests so that every crate but llama.cpp's and ipw's reuses the main lint's
# checks.
cargo clippy --release --locked --workspace --all-targets --features ipw-core/vulkan -- -D warnings
echo "ipw with Vulkan: $IPW_VULKAN_BIN"
