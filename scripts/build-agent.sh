#!/usr/bin/env bash
# Builds the static rescue agent (musl, "statically linked") that the image packs as /init.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p vmrescue-agent --target x86_64-unknown-linux-musl "$@"
