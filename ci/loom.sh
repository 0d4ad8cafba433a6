#!/usr/bin/env bash
# Model-checks endio's lock-free core (crates/endio/src/task/loom_tests.rs)
# with loom: every interleaving of push / take-all / close / park / unpark
# among 2-3 threads, up to LOOM_MAX_PREEMPTIONS preemptions per execution.
#
# Settings and their cost, measured on the 2-core CI machine (release build,
# after compilation, which takes about 30 s the first time):
#   LOOM_MAX_PREEMPTIONS=3: all three models in about 3 s.
#   LOOM_MAX_PREEMPTIONS=4 (default here, what CI runs): about 10 s.
#   unbounded (LOOM_MAX_PREEMPTIONS unset): did not finish in 5 minutes, so
#   CI runs the bound of 4 instead. A lost wakeup (producer not unparking on
#   the empty->non-empty transition) is found with a bound of 1.
#
# A separate target directory keeps the loom build (--cfg loom changes every
# crate) from invalidating the normal one.
set -euo pipefail
cd "$(dirname "$0")/.."
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-4}"
echo "loom: LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS (bounded: the unbounded search takes longer than CI allows)"
RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}" \
  cargo test -p endio --lib --release --target-dir target/loom -- loom_tests
