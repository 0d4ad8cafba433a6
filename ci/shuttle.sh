#!/usr/bin/env bash
# Randomized schedule tests of the per-CPU lifecycle with shuttle
# (crates/endio/src/task/shuttle_tests.rs): the real Completer, its workers,
# producers on two CPUs, a rescue and online / down_prep / dead / rolled-back
# offline steps, interleaved by shuttle's random scheduler.
#
# Settings:
#   ENDIO_SHUTTLE_ITERATIONS  schedules per test (default here 20000; three
#                             tests). Each schedule is one execution of a few
#                             hundred scheduling steps; 20000 take about 8 s
#                             on the 2-core CI machine.
#   ENDIO_SHUTTLE_SEED        the seed; printed first by every test. A failure
#                             also prints shuttle's own schedule string, which
#                             shuttle::replay replays step by step.
# Capacities are small on purpose (3 bios per producer, a 2-handler run
# budget): interleavings that break a protocol need two or three bios per CPU.
#
# The build goes to ${CARGO_TARGET_DIR:-target}/shuttle (--cfg shuttle
# changes every crate; see ci/loom.sh). The tests make a fake sysfs under the
# temporary directory; it is a fresh one of this run's, removed at the end,
# also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
run_tmp="$(mktemp -d "${TMPDIR:-/tmp}/endio-shuttle.XXXXXX")"
trap 'rm -rf "$run_tmp"' EXIT
trap 'exit 130' INT TERM
export ENDIO_SHUTTLE_ITERATIONS="${ENDIO_SHUTTLE_ITERATIONS:-20000}"
echo "shuttle: ENDIO_SHUTTLE_ITERATIONS=$ENDIO_SHUTTLE_ITERATIONS ENDIO_SHUTTLE_SEED=${ENDIO_SHUTTLE_SEED:-random}"
RUSTFLAGS="--cfg shuttle ${RUSTFLAGS:-}" TMPDIR="$run_tmp" \
  cargo test -p endio --lib --release --target-dir "${CARGO_TARGET_DIR:-target}/shuttle" -- shuttle_tests --nocapture --test-threads=1
