#!/usr/bin/env bash
# Runs every test of the workspace: unit, integration and doc tests, then the
# loom model checks of the lock-free core and the shuttle randomized schedule
# tests of the lifecycle. Needs nothing but the Rust toolchain; tests that need root
# or a kernel feature say why they skip.
set -euo pipefail
cd "$(dirname "$0")/.."
# The C API's tests link the C programs with libendio.a and libendio.so,
# which `cargo test` does not build (it links the Rust tests without them).
cargo build --release -p endio-capi
cargo test --workspace --release
bash ci/loom.sh
bash ci/shuttle.sh
bash ci/examples.sh
