#!/usr/bin/env bash
# Long fuzz runs: every fuzz target (the `fuzz_` unit tests of the crates below) in a release
# build, FUZZ_ITERS generated inputs each (default 10 000 000), two targets at a time. Prints one
# line per target: inputs, seconds, inputs per second. Usage: scripts/fuzz.sh [ITERS] [FILTER]
set -euo pipefail
cd "$(dirname "$0")/.."
export FUZZ_ITERS="${1:-10000000}"
filter="${2:-fuzz_}"
export CARGO_INCREMENTAL=0
# The durable-log target writes a file per input: keep it in memory.
if [ -d /dev/shm ]; then export TMPDIR=/dev/shm; fi
status=0
for crate in runtime broker registry proxy-ctl chassis; do
  set +e
  cargo test --release -p "$crate" --lib "$filter" -- --nocapture --test-threads 2 2>&1 \
    | grep -E '^fuzz |^test .*(ok|FAILED)$|panicked|BOLERO_RANDOM_SEED|^test result'
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -ne 0 ]; then status=$rc; fi
done
exit $status
