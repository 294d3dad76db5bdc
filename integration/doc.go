// Package integration holds the tests that mount real layer stacks with the built layerfs
// binary and with the kernel's overlayfs, and compare what they show. The tests need root,
// /dev/fuse and overlayfs; LAYERFS_BIN names the program under test (default: built from
// this checkout), called the fuse-overlayfs way.
package integration
