#!/usr/bin/env bash
# bench.sh — layerfs, the kernel's overlayfs and (when installed) fuse-overlayfs on one stack,
# side by side in one run. Prints each workload's time per operation and its ratio to the
# kernel's (lower is better; 1.00 is the kernel's speed). Needs root.
#
#   integration/bench.sh                     # every workload, 3 rounds each
#   BENCH='StatWalk|BigDir' ROUNDS=10 integration/bench.sh
#   LAYERFS_BIN=/usr/local/bin/layerfs integration/bench.sh   # an installed build
#   IMAGE_GB=4 integration/bench.sh          # stack and uppers on a private ext4 image
#
# Write figures (storms, copy-ups) need IMAGE_GB where the host filesystem discards or is
# shared: there a file create alone can take from 40 to 250 µs from one minute to the next.
#
# The stack (two lowers of 10k small files each with whiteouts and an opaque directory, a 10k
# entry merged directory, a 256 MiB file) is built once under LAYERFS_BENCH_DATA (default
# /tmp/layerfs-bench-data) and reused. Machines are shared and noisy: compare ratios from one run.
set -euo pipefail
cd "$(dirname "$0")"
bench=${BENCH:-.}
rounds=${ROUNDS:-3}
raw=$(mktemp)
cleanup() { rm -f "$raw"; }
if [ -n "${IMAGE_GB:-}" ]; then
	img=$(mktemp /var/tmp/layerfs-bench.XXXXXX.img)
	dir=$(mktemp -d)
	truncate -s "${IMAGE_GB}G" "$img"
	mkfs.ext4 -q -F "$img"
	mount -o loop "$img" "$dir"
	cleanup() { rm -f "$raw"; umount "$dir"; rmdir "$dir"; rm -f "$img"; }
	export TMPDIR=$dir LAYERFS_BENCH_DATA=$dir/data
fi
# The io_uring column (layerfs -o io_uring=on) needs the kernel's switch: on for this run.
param=/sys/module/fuse/parameters/enable_uring
if [ -w "$param" ]; then
	old_uring=$(cat "$param")
	echo Y > "$param"
	eval "restore_uring() { echo $old_uring > $param; }"
else
	restore_uring() { :; }
fi
trap 'cleanup; restore_uring' EXIT
go test -run '^$' -bench "$bench" -benchtime "${rounds}x" -timeout 60m . | tee "$raw" >&2
awk '
/^Benchmark/ && index($1, "/") {
	split($1, p, "/"); name = substr(p[1], 10); impl = p[2]; sub(/-[0-9]+$/, "", impl)
	for (i = 2; i <= NF; i++) if ($(i+1) == "ns/op") ns[name, impl] = $i
	if (!(name in seen)) { seen[name] = 1; order[++n] = name }
	if (!(impl in iseen)) { iseen[impl] = 1; impls[++m] = impl }
}
END {
	printf "%-16s", "workload"
	for (j = 1; j <= m; j++) printf " %22s", impls[j]
	printf "\n"
	for (i = 1; i <= n; i++) {
		w = order[i]; printf "%-16s", w
		for (j = 1; j <= m; j++) {
			t = ns[w, impls[j]]; k = ns[w, "kernel"]
			if (t == "") { printf " %22s", "-"; continue }
			cell = sprintf("%.1fms", t / 1e6)
			if (k != "" && impls[j] != "kernel") cell = cell sprintf(" (%.2fx)", t / k)
			printf " %22s", cell
		}
		printf "\n"
	}
}' "$raw"
