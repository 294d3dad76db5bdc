package merge

import (
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/layerfs/layerfs/unionfs/xattrs"
	"github.com/layerfs/layerfs/whiteout"
	"golang.org/x/sys/unix"
)

// Identity rules: the numbers the mount answers (st_ino, d_ino) and how they survive copy-ups
// and remounts. A non-directory keeps the number it first showed: a lower object's is its own
// (with the layer's filesystem in the top bits when the layers span several, InoOf); a copy
// records it (OriginAttr), and a copy the kernel made names its origin (KernelOrigin). A
// merged directory has the number of its topmost lower part (Resolve).

// Numbering is the Identity of a stack as the layers alone decide it: Stack users add what
// needs more (the type an override attribute gives a file).
type Numbering struct {
	// SameFS is set when every layer lives on one filesystem: real inode numbers are then
	// unique across the stack and are shown unchanged, as the kernel does.
	SameFS bool
	// Prefix is where layerfs's own attributes live: trusted.overlay. or, with userxattr,
	// user.overlay.
	Prefix string
}

// fsBits is how many high bits of st_ino name the filesystem an object comes from when the
// layers span several filesystems (the kernel's "xino" scheme).
const fsBits = 6

// InoOf maps the real inode number of an object in layer l to its merged st_ino. The mapping
// depends only on the layer's filesystem and the real number, so it is stable across remounts
// of the same stack. A real number too wide for the remaining bits is folded, which can in
// theory collide; ext4, xfs and btrfs numbers fit.
func (num Numbering) InoOf(l *Layer, real uint64) uint64 {
	if num.SameFS {
		return real
	}
	const lowBits = 64 - fsBits
	const mask = uint64(1)<<lowBits - 1
	if real > mask {
		real = (real ^ real>>lowBits) & mask
	}
	ino := l.FsIdx<<lowBits | real
	if ino == ^uint64(0) { // reserved by go-fuse
		ino--
	}
	return ino
}

// OriginAttr records, on an object copied up from a lower layer, the merged inode number it
// had there, so st_ino stays the same after copy-up and across remounts. It lives below the
// overlay prefix, so neither layerfs nor the kernel shows it in a merged view.
const OriginAttr = "layerfs.ino"

// ReadOrigin returns the merged number recorded on an upper object by copy-up, if any.
func (num Numbering) ReadOrigin(dirfd int, name string) (uint64, bool) {
	var buf [24]byte
	n, err := unix.Lgetxattr(xattrs.Path(dirfd, name), num.Prefix+OriginAttr, buf[:])
	if err != nil {
		return 0, false
	}
	ino, err := strconv.ParseUint(string(buf[:n]), 10, 64)
	return ino, err == nil
}

// KernelOrigin returns the merged number of the lower object an upper object was copied up
// from by the kernel (its overlay.origin), where that number can be known: with all layers on
// one filesystem, it is the lower object's own number.
func (num Numbering) KernelOrigin(dirfd int, name string) (uint64, bool) {
	if !num.SameFS {
		return 0, false
	}
	var buf [128]byte
	p := xattrs.Path(dirfd, name)
	for _, prefix := range []string{whiteout.TrustedPrefix, whiteout.UserPrefix} {
		sz, err := unix.Lgetxattr(p, prefix+"origin", buf[:])
		if err == nil {
			return ParseFH(buf[:sz])
		}
	}
	return 0, false
}

// XattrFacts is what the listxattr OriginIno makes tells of an upper object besides its
// origin, which a node would otherwise ask again at its first change.
type XattrFacts uint8

const (
	// XattrsListed: the list was read; the other bits are known.
	XattrsListed XattrFacts = 1 << iota
	// XattrsNone: the object has no extended attributes.
	XattrsNone
	// XattrsProtAttr: the object has overlay.protattr (immutable or append-only flags).
	XattrsProtAttr
)

// OriginIno returns the merged number recorded on an upper object, by layerfs's copy-up or
// the kernel's: one listxattr tells which, if any, is there (most objects have neither), and
// what else the list says.
func (num Numbering) OriginIno(dirfd int, name string) (uint64, bool, XattrFacts) {
	var buf [1024]byte
	sz, err := unix.Llistxattr(xattrs.Path(dirfd, name), buf[:])
	if err == nil {
		names := "\x00" + string(buf[:sz])
		facts := XattrsListed
		if sz == 0 {
			facts |= XattrsNone
		}
		if strings.Contains(names, "\x00"+num.Prefix+whiteout.ProtAttr+"\x00") {
			facts |= XattrsProtAttr
		}
		var ino uint64
		var ok bool
		switch {
		case strings.Contains(names, "\x00"+num.Prefix+OriginAttr+"\x00"):
			ino, ok = num.ReadOrigin(dirfd, name)
		case strings.Contains(names, ".overlay.origin\x00"):
			ino, ok = num.KernelOrigin(dirfd, name)
		}
		return ino, ok, facts
	}
	// More attributes than the buffer holds: ask for each.
	if ino, ok := num.ReadOrigin(dirfd, name); ok {
		return ino, true, 0
	}
	ino, ok := num.KernelOrigin(dirfd, name)
	return ino, ok, 0
}

// File handle types (include/linux/exportfs.h) whose first 32-bit word is the inode number.
const (
	fileidIno32Gen       = 1
	fileidIno32GenParent = 2
)

// ParseFH decodes the inode number from a struct ovl_fb, as the kernel stores it in index
// names and in the overlay.origin attribute.
func ParseFH(b []byte) (uint64, bool) {
	if len(b) < 21+4 || b[1] != 0xfb || int(b[2]) != len(b) {
		return 0, false
	}
	switch b[4] {
	case fileidIno32Gen, fileidIno32GenParent:
		return uint64(binary.LittleEndian.Uint32(b[21:25])), true
	}
	return 0, false
}

// KernelNlink reads the kernel's overlay.nlink attribute of an indexed object: its base ('U'
// for the upper object's own count, 'L' for the lower object's), the difference to it, and the
// attribute's full name.
func KernelNlink(p string) (base byte, diff int, attr string, ok bool) {
	var buf [32]byte
	for _, prefix := range []string{whiteout.TrustedPrefix, whiteout.UserPrefix} {
		sz, err := unix.Lgetxattr(p, prefix+"nlink", buf[:])
		if err != nil {
			continue
		}
		v := string(buf[:sz])
		if len(v) < 2 || (v[0] != 'U' && v[0] != 'L') {
			return 0, 0, "", false
		}
		d, err := strconv.Atoi(strings.TrimPrefix(v[1:], "+"))
		return v[0], d, prefix + "nlink", err == nil
	}
	return 0, 0, "", false
}

// MergedNlink applies the kernel's overlay.nlink attribute of an indexed upper object: "U-1"
// says the merged count is the upper count less one (the index link), "L+N" counts from the
// lower object. Objects without it report their own count.
func (num Numbering) MergedNlink(dirfd int, name string, st *unix.Stat_t) uint64 {
	nlink := uint64(st.Nlink)
	if nlink < 2 || st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return nlink
	}
	base, d, _, ok := KernelNlink(xattrs.Path(dirfd, name))
	if !ok {
		return nlink
	}
	if base == 'L' {
		// Counted from the lower object, which we do not decode: the upper count less the
		// index link is what is left when every name has been linked up.
		d = -1
	}
	if int64(nlink)+int64(d) < 1 {
		return 1
	}
	return uint64(int64(nlink) + int64(d))
}
