#!/usr/bin/env bash
# Benchmark (not a test): copy a large sparse deleted file that a process still holds open, once
# with `vmrescue salvage` and once with `cp /proc/PID/fd/N`, in the same run; prints both times
# and the ratio.
#
# Usage: bench/salvage.sh [APPARENT_GIB [DATA_MIB]]   (default 4 GiB with 256 MiB of data)
# Env:   VMRESCUE_BIN  use this vmrescue binary instead of building the release one
#        BENCH_DIR     where to make the scratch directory (default: $TMPDIR or /var/tmp)
#
# Both copies read the same page-cached data. salvage also syncs its copy and verifies it by
# hashing both files; `cp` does neither, so the cp time is shown alone and with an fsync.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

gib=${1:-4}
data_mib=${2:-256}
chunk_mib=4
[[ $gib =~ ^[0-9]+$ && $data_mib =~ ^[0-9]+$ ]] || die "usage: $0 [APPARENT_GIB [DATA_MIB]]"
chunks=$((data_mib / chunk_mib))
((chunks >= 1)) || die "DATA_MIB must be at least $chunk_mib"
((chunks * chunk_mib <= gib * 1024)) || die "more data than the file's size"
stride=$((gib * 1024 / chunks / chunk_mib)) # in chunks

bin=$(bench_bin)
[[ -x $bin ]] || die "no vmrescue binary at $bin"

work=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/var/tmp}}/bench-salvage.XXXXXX")
holder=
cleanup() {
    if [[ -n $holder ]]; then
        kill "$holder" 2>/dev/null || true
        wait "$holder" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

uuid=0b5e1c3a-1111-2222-3333-444455556666
disk=$work/instances/$uuid/disk
mkdir -p "$work/instances/$uuid" "$work/dest"
log "== making $disk: $gib GiB apparent, $chunks chunks of $chunk_mib MiB of data"
for ((i = 0; i < chunks; i++)); do
    dd if=/dev/urandom of="$disk" bs=${chunk_mib}M count=1 seek=$((i * stride)) conv=notrunc \
        status=none
done
truncate -s "${gib}G" "$disk"

# A process holding the file on fd 3; then the file is deleted.
sh -c 'exec 3<"$1"; exec sleep 3600' sh "$disk" &
holder=$!
for _ in $(seq 200); do
    [[ $(readlink "/proc/$holder/fd/3" 2>/dev/null) == "$disk" ]] && break
    sleep 0.05
done
[[ $(readlink "/proc/$holder/fd/3") == "$disk" ]] || die "the holder did not open $disk"
rm -f "$disk"
log "== pid $holder holds $(readlink "/proc/$holder/fd/3")"

now_ns() { date +%s%N; }
ms() { echo $((($2 - $1) / 1000000)); }

t0=$(now_ns)
"$bin" salvage --instances-dir "$work/instances" --dest "$work/dest" >"$work/salvage.out"
t1=$(now_ns)
cp "/proc/$holder/fd/3" "$work/cp-copy"
t2=$(now_ns)
sync "$work/cp-copy"
t3=$(now_ns)

salvage_ms=$(ms "$t0" "$t1")
cp_ms=$(ms "$t1" "$t2")
cp_sync_ms=$(ms "$t1" "$t3")
out=$work/dest/$uuid/disk
[[ -f $out ]] || {
    cat "$work/salvage.out" >&2
    die "salvage did not write $out"
}
cmp "$out" "$work/cp-copy" || die "the two copies differ"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }'; }
echo "file:          $gib GiB apparent, $((chunks * chunk_mib)) MiB data, deleted, held by pid $holder"
echo "salvage:       ${salvage_ms} ms (sparse copy + fsync + sha256 verification of both sides)"
echo "cp:            ${cp_ms} ms ($(cp --version | head -n1))"
echo "cp + fsync:    ${cp_sync_ms} ms"
echo "allocated:     salvage $(du -k "$out" | cut -f1) KiB, cp $(du -k "$work/cp-copy" | cut -f1) KiB"
echo "ratio salvage/cp:         $(ratio "$salvage_ms" "$cp_ms")"
echo "ratio salvage/(cp+fsync): $(ratio "$salvage_ms" "$cp_sync_ms")"
