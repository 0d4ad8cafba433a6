#!/usr/bin/env bash
# Runs each of the library's examples once, small: the callback form
# (copy_roundtrip), the blocking form (blocking_dontcache) and the async form
# on tokio (tokio_copy). The C API's example is compiled and run by the
# endio-capi tests. Each example checks what it read back and exits
# non-zero otherwise. Files go to a temporary directory on a disk
# filesystem, removed at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d /var/tmp/endio-examples-XXXXXX)
trap 'rm -rf "$dir"' EXIT
run() {
  echo "== example $*"
  cargo run --release -q -p endio --example "$@"
}
run copy_roundtrip -- "$dir/callback" --size 16
run blocking_dontcache -- "$dir/blocking"
run tokio_copy
