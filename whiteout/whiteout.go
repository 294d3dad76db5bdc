// Package whiteout knows the on-disk markers of overlay layers: which directory entries are
// whiteouts, which directories are opaque, and which extended attributes are private to the
// overlay. It is the only package that knows these formats (the README's "On-disk formats").
//
// Everything here works on directory file descriptors and names, never on absolute paths, so that
// callers can stay beneath a layer's root. Nothing here imports FUSE.
package whiteout

import (
	"strings"

	"golang.org/x/sys/unix"
)

// Marker names of the AUFS/OCI layer format, as containers/storage lays out layers for mount
// programs.
const (
	// Prefix starts the name of a whiteout file: ".wh.foo" hides "foo" in the layers below.
	Prefix = ".wh."
	// OpaqueFile, present in a directory, makes that directory opaque.
	OpaqueFile = ".wh..wh..opq"
)

// Xattr namespaces for overlay private attributes. The kernel uses trusted.overlay.* when
// mounted by a privileged user and user.overlay.* with the userxattr option.
const (
	TrustedPrefix = "trusted.overlay."
	UserPrefix    = "user.overlay."
)

// Names of private attributes below TrustedPrefix or UserPrefix.
const (
	// OpaqueAttr is "y" on an opaque directory; "x" says the directory holds xattr whiteouts
	// but is not opaque.
	OpaqueAttr = "opaque"
	// WhiteoutAttr on an empty regular file in a lower layer makes that file a whiteout when
	// its directory carries opaque=x.
	WhiteoutAttr = "whiteout"
	// ProtAttr records, on an upper object, the immutable ("i") and append-only ("a") inode
	// flags the merged object has, which the kernel's overlayfs keeps off the upper object.
	ProtAttr = "protattr"
)

// IsMarkerName reports whether name is an AUFS marker (".wh.*"). Such names are never shown in
// the merged view and cannot be created through it.
func IsMarkerName(name string) bool {
	return strings.HasPrefix(name, Prefix)
}

// HiddenName returns the name that an AUFS whiteout file hides: ".wh.foo" gives "foo", true.
// The opaque marker and names without the prefix give "", false.
func HiddenName(name string) (string, bool) {
	if name == OpaqueFile || !strings.HasPrefix(name, Prefix) || len(name) == len(Prefix) {
		return "", false
	}
	return name[len(Prefix):], true
}

// IsWhiteoutDev reports whether st describes the kernel's whiteout: a character device 0/0.
func IsWhiteoutDev(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// IsPrivateXattr reports whether an extended attribute belongs to the overlay itself. Private
// attributes are hidden from the merged view and cannot be set or removed through it. Both
// namespaces are private because layerfs reads markers from both.
func IsPrivateXattr(name string) bool {
	return strings.HasPrefix(name, TrustedPrefix) || strings.HasPrefix(name, UserPrefix)
}
