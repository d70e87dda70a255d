#!/usr/bin/env bash
# The test suite on a fresh machine: install what the build and tests need (apt packages, the
# test model, upstream llama-server built from source), then run every test in release mode
# (the embedded llama.cpp is unusably slow unoptimised). Cached under $IPW_CACHE.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh
./scripts/install-deps.sh --tests
./scripts/fetch-model.sh
./scripts/build-llama-server.sh
cargo fmt --all -- --check
cargo clippy --release --locked --workspace --all-targets -- -D warnings
# ureq in place of the direct HTTP client exists only to rerun the README's comparison; lint it
# so that the comparison stays runnable.
# Linted over the whole workspace with its tests, as above, so that every other crate resolves
# to the features it had there and is not checked a second time.
cargo clippy --release --locked --workspace --all-targets --features ipw-core/ureq-transport -- -D warnings
# The embedded backend on a GPU is tested on Mesa's software Vulkan device with a second ipw
# built with the Vulkan backend (tests/gpu_offload.rs). Built first: the default build below
# then puts the default binary back in place.
./scripts/build-vulkan.sh
# The sampler plugins and test fixtures are cdylibs the tests load from beside the binary.
cargo build --release --locked --workspace
# As root, install-deps.sh has installed Slurm and munge, so the real-Slurm test must run: it
# fails instead of skipping when it cannot.
if [ "$(id -u)" -eq 0 ]; then export IPW_REQUIRE_SLURM=1; fi
cargo test --release --locked --workspace -- --test-threads=1 "$@"
# The third-party sampler example is its own crate outside the workspace: checked, built and
# tested on its own, in the same target dir (its own lockfile).
wallmeter=examples/sampler-wallmeter/Cargo.toml
cargo fmt --manifest-path "$wallmeter" -- --check
cargo clippy --release --locked --manifest-path "$wallmeter" --all-targets -- -D warnings
cargo test --release --locked --manifest-path "$wallmeter"
# The WASM graders' and classifiers' own unit tests (verdict parsing, placeholders, keyword
# matching), run on the host.
cargo test --release --locked --manifest-path plugins/graders/Cargo.toml --workspace
cargo test --release --locked --manifest-path plugins/classifiers/Cargo.toml --workspace
# The Apple Silicon sampler's IOReport code compiles only for macOS: type-check and lint it
# for that target (no linking, so no macOS SDK needed) so it cannot rot unseen on Linux CI.
if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-apple-darwin; then
  rustup target add aarch64-apple-darwin
fi
cargo clippy --release --locked --target aarch64-apple-darwin -p ipw-sampler-apple -- -D warnings
