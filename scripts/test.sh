#!/usr/bin/env bash
# The test command (README, CI): set-up if anything is missing, then formatting, lints, unit
# tests and the end-to-end tests that boot the real rescue image under QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

scripts/setup.sh
scripts/services.sh
log "== building the static agent"
scripts/build-agent.sh
log "== cargo fmt --check"
cargo fmt --all --check
log "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
log "== cargo test"
# The end-to-end tests run the vmrescue binary: cargo test does not build another package's bin.
cargo build --workspace --bins
cargo test --workspace
