#!/bin/bash
# Soak: many more power cuts than CI runs. Each cut kills the rescue's QEMU with SIGKILL at a
# random moment of a repair, then checks what the next rescue of that disk finds and leaves
# (tests/tests/power_cut.rs). Usage: bench/power-cut.sh [CUTS]   (default 25)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
cargo build --workspace --bins
bash scripts/build-agent.sh >/dev/null
export VMRESCUE_SOAK_CUTS="${1:-25}"
start=$(date +%s)
cargo test -p vmrescue-tests --test power_cut -- --nocapture --test-threads=2
echo "power-cut soak: ${VMRESCUE_SOAK_CUTS} random cuts plus the fixed ones in $(( $(date +%s) - start )) s"
