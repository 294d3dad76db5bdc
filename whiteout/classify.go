package whiteout

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Kind is what one layer's entry of a name is to the merge.
type Kind int

const (
	// Absent: the layer holds nothing under the name; the layers below decide.
	Absent Kind = iota
	// Object: a real object, which Entry.Stat describes.
	Object
	// Whiteout: the name is deleted here; the layers below are not consulted for it.
	Whiteout
)

// Format says which of the whiteout formats a Whiteout is in.
type Format int

const (
	// NoFormat is the format of an Absent or Object entry.
	NoFormat Format = iota
	// Device: a character device 0/0 under the name (the kernel's own whiteout).
	Device
	// Aufs: a ".wh.NAME" file beside an absent name (the AUFS/OCI layout containers/storage
	// writes for mount programs).
	Aufs
	// Xattr: an empty regular file carrying the overlay whiteout attribute (lower layers).
	Xattr
)

// Rule says which formats count where. The kernel reads a layer's entry one way when it looks
// a name up (ovl_lookup) and another when it lists a directory (ovl_iterate), and layerfs
// keeps both:
//
//   - Device whiteouts count everywhere.
//   - Xattr whiteouts count only in lower layers; at lookup in any lower directory, in a
//     listing only in a directory marked overlay.opaque=x. Elsewhere a listing shows such a
//     file by its name although a lookup of it finds nothing, as on the kernel.
//   - Aufs whiteouts are layerfs's and fuse-overlayfs's, not the kernel's: a ".wh.NAME" file
//     deletes NAME below, in every layer, except where no layer below is left to hide (the
//     caller says so).
//
// LookupRule and ListingRule make the two rules.
type Rule struct {
	// Aufs: an absent name with ".wh.NAME" beside it is a Whiteout.
	Aufs bool
	// Xattr: an empty regular file with the whiteout attribute is a Whiteout.
	Xattr bool
}

// LookupRule is the rule for looking name up in one layer: upper says the layer is the
// upper, below that layers below it may hold the name.
func LookupRule(upper, below bool) Rule { return Rule{Aufs: below, Xattr: !upper} }

// ListingRule is the rule for an entry met listing a directory of one layer: upper says the
// layer is the upper, xwhiteouts that the directory carries overlay.opaque=x. Listings read
// AUFS markers by their own names (HiddenName), so the rule does not look for them.
func ListingRule(upper, xwhiteouts bool) Rule { return Rule{Xattr: !upper && xwhiteouts} }

// Entry is a classified entry.
type Entry struct {
	Kind   Kind
	Format Format
	// Stat is the entry's own stat (not for Absent, nor for an Aufs whiteout).
	Stat unix.Stat_t
	// Attrs are its statx attributes (Lstat) where Classify stat'ed it.
	Attrs uint64
}

// Classify stats entry name of the directory open as dirfd and tells what it is under r. A
// name that is not there (ENOENT, or ENOTDIR when a directory of the layer became a file) is
// Absent, or an Aufs Whiteout. Other errors are returned.
func Classify(dirfd int, name string, r Rule) (Entry, error) {
	var e Entry
	attrs, err := Lstat(dirfd, name, &e.Stat)
	switch {
	case err == nil:
		e, err := ClassifyStat(dirfd, name, &e.Stat, r)
		e.Attrs = attrs
		return e, err
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		if r.Aufs {
			wh, err := HasAufsWhiteout(dirfd, name)
			if err != nil {
				return Entry{}, err
			}
			if wh {
				return Entry{Kind: Whiteout, Format: Aufs}, nil
			}
		}
		return Entry{}, nil
	default:
		return Entry{}, err
	}
}

// ClassifyStat tells what entry name of dirfd is under r, given its stat st (listings stat
// only the entries whose type asks for it).
func ClassifyStat(dirfd int, name string, st *unix.Stat_t, r Rule) (Entry, error) {
	e := Entry{Kind: Object, Stat: *st}
	if IsWhiteoutDev(st) {
		e.Kind, e.Format = Whiteout, Device
		return e, nil
	}
	if r.Xattr && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == 0 {
		wh, err := IsXWhiteout(dirfd, name, st)
		if err != nil {
			return Entry{}, err
		}
		if wh {
			e.Kind, e.Format = Whiteout, Xattr
		}
	}
	return e, nil
}
