#!/bin/bash
# Soak: more rescues at once than CI runs (tests/tests/many_at_once.rs): every one must
# complete on its own disk with its own run directory. Usage: bench/many-rescues.sh [N] (24)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
cargo build --workspace --bins
bash scripts/build-agent.sh >/dev/null
export VMRESCUE_SOAK_RESCUES="${1:-24}"
start=$(date +%s)
cargo test -p vmrescue-tests --test many_at_once -- --nocapture
echo "many-rescues soak: ${VMRESCUE_SOAK_RESCUES} rescues at once in $(( $(date +%s) - start )) s"
