#!/usr/bin/env bash
# with-transport.sh uring|devfuse COMMAND...: runs COMMAND with the kernel's FUSE over io_uring
# switched on (uring, layerfs then uses it) or off (devfuse), and puts the switch back as it
# was, whatever COMMAND does. Needs root and a kernel with the switch (Linux 6.14+); without
# one there is only /dev/fuse, and the uring pass says so and runs nothing.
set -u
want=$1
shift
param=/sys/module/fuse/parameters/enable_uring
if [ ! -w "$param" ]; then
	if [ "$want" = uring ]; then
		echo "with-transport: $param missing or not writable (needs root, Linux 6.14+): no io_uring pass"
		exit 0
	fi
	exec "$@"
fi
old=$(cat "$param")
trap 'echo "$old" > "$param"' EXIT
# layerfs uses io_uring only when asked (README, Performance): this pass asks for every mount.
if [ "$want" = uring ]; then echo Y > "$param"; export LAYERFS_IO_URING=on; else echo N > "$param"; fi
echo "with-transport: enable_uring=$(cat "$param") for: $*"
"$@"
