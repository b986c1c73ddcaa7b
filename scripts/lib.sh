# Shared helpers for vmrescue's shell scripts (sourced, not run).
log() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }
# The vmrescue binary a benchmark runs: $VMRESCUE_BIN, else the release build (made now).
bench_bin() {
  if [[ -n ${VMRESCUE_BIN:-} ]]; then
    printf '%s\n' "$VMRESCUE_BIN"
  else
    log "== cargo build --release -p vmrescue-companion"
    cargo build --release -p vmrescue-companion >&2
    printf '%s\n' "${CARGO_TARGET_DIR:-target}/release/vmrescue"
  fi
}
