package unionfs

import (
	"testing"

	"github.com/layerfs/layerfs/copyup"
	"golang.org/x/sys/unix"
)

// TestProtBits: each encoding of the immutable and append-only flags goes both ways, and
// leaves other bits alone.
func TestProtBits(t *testing.T) {
	for name, b := range map[string]protBits{"attrs": attrBits, "statx": statxBits, "xflags": xflagBits} {
		for _, f := range []uint32{0, copyup.FlagImmutable, copyup.FlagAppend, copyup.FlagImmutable | copyup.FlagAppend} {
			if got := b.flags(uint64(b.to(f))); got != f {
				t.Errorf("%s: %#x there and back is %#x", name, f, got)
			}
		}
		if got := b.to(copyup.FlagSync | copyup.FlagNoatime); got != 0 {
			t.Errorf("%s: other flags give bits %#x", name, got)
		}
	}
	if got := statxBits.flags(unix.STATX_ATTR_IMMUTABLE | unix.STATX_ATTR_COMPRESSED); got != copyup.FlagImmutable {
		t.Errorf("statx immutable+compressed: %#x", got)
	}
	if got := xflagBits.to(copyup.FlagAppend); got != 0x10 { // FS_XFLAG_APPEND
		t.Errorf("xflags of append-only: %#x", got)
	}
}
