package merge

import (
	"encoding/hex"

	"github.com/layerfs/layerfs/unionfs/workdir"
	"golang.org/x/sys/unix"
)

// KernelIndex is the index the kernel's overlayfs keeps with index=on in workdir/index:
// hard-linked lower objects copied up once, by the file handle of the lower object. It maps the
// inode number in each index entry's file handle to the entry's name.
type KernelIndex map[uint64]string

// ReadKernelIndex reads work/index (work is the stack's workdir), if the kernel left one,
// and returns it with a descriptor of the directory (-1 and nil when there is none).
func ReadKernelIndex(work string) (KernelIndex, int) {
	fd, err := unix.Open(work+"/index", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, -1
	}
	names, err := workdir.ReadNames(fd)
	if err != nil {
		unix.Close(fd)
		return nil, -1
	}
	idx := KernelIndex{}
	for _, name := range names {
		if ino, ok := parseIndexName(name); ok {
			idx[ino] = name
		}
	}
	if len(idx) == 0 {
		unix.Close(fd)
		return nil, -1
	}
	return idx, fd
}

// parseIndexName decodes the inode number from an index entry name: the hex of struct ovl_fb
// (version, magic 0xfb, length, flags, handle type, 16-byte uuid, handle).
func parseIndexName(name string) (uint64, bool) {
	b, err := hex.DecodeString(name)
	if err != nil {
		return 0, false
	}
	return ParseFH(b)
}
