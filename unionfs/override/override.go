// Package override reads and writes the attribute in which a layer keeps the owner, mode and
// type of an object it cannot hold itself: "uid:gid:mode[:type]", mode in octal, type one of
// file, dir, symlink, pipe, socket, char-MAJOR-MINOR, block-MAJOR-MINOR. containers/storage
// writes it when it unpacks a layer without privileges (layerfs image does too), and
// fuse-overlayfs and layerfs read it.
package override

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Attr is the attribute containers/storage writes.
const Attr = "user.containers.override_stat"

// Stat is a parsed override: the owner, mode and, for an object the layer could not
// hold, the type it stands for.
type Stat struct {
	Uid, Gid uint32
	Mode     uint32 // permission bits, with set-id and sticky bits
	Type     uint32 // S_IF* bits; 0 when not given
	Rdev     uint64
}

// Parse reads an attribute value; ok is false when it is malformed.
func Parse(v string) (o Stat, ok bool) {
	f := strings.Split(strings.TrimRight(v, "\x00\n"), ":")
	if len(f) != 3 && len(f) != 4 {
		return o, false
	}
	uid, err1 := strconv.ParseUint(f[0], 10, 32)
	gid, err2 := strconv.ParseUint(f[1], 10, 32)
	mode, err3 := strconv.ParseUint(f[2], 8, 32)
	if err1 != nil || err2 != nil || err3 != nil {
		return o, false
	}
	o = Stat{Uid: uint32(uid), Gid: uint32(gid), Mode: uint32(mode) & 0o7777}
	if len(f) == 4 {
		typ, rdev, ok := parseType(f[3])
		if !ok {
			return o, false
		}
		o.Type, o.Rdev = typ, rdev
	}
	return o, true
}

func parseType(s string) (uint32, uint64, bool) {
	switch s {
	case "file":
		return unix.S_IFREG, 0, true
	case "dir":
		return unix.S_IFDIR, 0, true
	case "symlink":
		return unix.S_IFLNK, 0, true
	case "pipe":
		return unix.S_IFIFO, 0, true
	case "socket":
		return unix.S_IFSOCK, 0, true
	}
	kind, nums, _ := strings.Cut(s, "-")
	maj, min, _ := strings.Cut(nums, "-")
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	switch kind {
	case "char":
		return unix.S_IFCHR, unix.Mkdev(uint32(ma), uint32(mi)), true
	case "block":
		return unix.S_IFBLK, unix.Mkdev(uint32(ma), uint32(mi)), true
	}
	return 0, 0, false
}

func (o Stat) String() string {
	s := fmt.Sprintf("%d:%d:%04o", o.Uid, o.Gid, o.Mode)
	switch o.Type {
	case unix.S_IFCHR:
		s += fmt.Sprintf(":char-%d-%d", unix.Major(o.Rdev), unix.Minor(o.Rdev))
	case unix.S_IFBLK:
		s += fmt.Sprintf(":block-%d-%d", unix.Major(o.Rdev), unix.Minor(o.Rdev))
	case unix.S_IFIFO:
		s += ":pipe"
	case unix.S_IFSOCK:
		s += ":socket"
	}
	return s
}

// Apply puts the override into st. A type is taken only where the real object is a regular
// file standing in for one the layer could not hold (a device, a fifo, a socket).
func (o Stat) Apply(st *unix.Stat_t) {
	st.Uid, st.Gid = o.Uid, o.Gid
	typ := st.Mode & unix.S_IFMT
	if typ == unix.S_IFREG && o.Type != 0 && o.Type != unix.S_IFREG && o.Type != unix.S_IFDIR && o.Type != unix.S_IFLNK {
		typ = o.Type
		st.Rdev = o.Rdev
		st.Size = 0
	}
	st.Mode = typ | o.Mode
}
