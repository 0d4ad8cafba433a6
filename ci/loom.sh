#!/usr/bin/env bash
# Model-checks endio's lock-free core (crates/endio/src/task/loom_tests.rs)
# with loom: every interleaving of push / take-all / close / park / unpark
# among 2-3 threads.
#
# Settings and their cost, measured on the 2-core CI machine (release build,
# after compilation, which takes about 30 s the first time):
#   unbounded (default here, what CI runs): every interleaving, about 30 s.
#   LOOM_MAX_PREEMPTIONS=4: a few seconds; =3: about 1 s.
# The unbounded search fits in CI, so CI runs it. A lost wakeup (a producer
# not unparking on the empty->non-empty transition) is found with a bound of
# 1 (LOOM_MAX_PREEMPTIONS=1).
#
# A separate target directory, ${CARGO_TARGET_DIR:-target}/loom, keeps the
# loom build (--cfg loom changes every crate) from invalidating the normal
# one (with ci/shuttle.sh's, about 540 MB together).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${LOOM_MAX_PREEMPTIONS:-}" ]; then
  echo "loom: bounded search, LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS"
else
  echo "loom: exhaustive search (no preemption bound)"
fi
RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}" \
  cargo test -p endio --lib --release --target-dir "${CARGO_TARGET_DIR:-target}/loom" -- loom_tests
