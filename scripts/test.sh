#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: installs what the tests need first.
# A tool that is missing and cannot be installed stops the run here with an error: no test
# skips for want of a tool.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/tools.sh

# Incremental caches only help repeated edits; a one-off run does not need their gigabytes.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo build --workspace --all-targets
cargo test --workspace --all-targets
cargo test --workspace --doc
