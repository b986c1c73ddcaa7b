# Shared helpers for vmrescue's shell scripts (sourced, not run).
log() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }
