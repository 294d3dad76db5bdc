package unionfs

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// overflowID is what an id outside every mapping range becomes, as the kernel shows ids
// its user namespace does not map.
const overflowID = 65534

// IDMap is one range of an id mapping: ids Disk..Disk+Len-1 as stored in the layers are
// shown as Shown..Shown+Len-1, and the other way round for ids written (fuse-overlayfs's
// uidmapping=DISK:SHOWN:LEN).
type IDMap struct {
	Disk, Shown, Len uint32
}

// ParseIDMaps reads fuse-overlayfs's mapping syntax: triples DISK:SHOWN:LEN joined by ":".
// Empty fields are skipped, as fuse-overlayfs skips them: containers/storage writes the list
// with a leading ":".
func ParseIDMaps(s string) ([]IDMap, error) {
	var f []string
	for _, x := range strings.Split(s, ":") {
		if x != "" {
			f = append(f, x)
		}
	}
	if len(f)%3 != 0 || len(f) == 0 {
		return nil, fmt.Errorf("%q is not a list of id:mapped-id:length triples", s)
	}
	var out []IDMap
	for i := 0; i < len(f); i += 3 {
		var v [3]uint32
		for j := range v {
			n, err := strconv.ParseUint(f[i+j], 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%q: %q is not an id", s, f[i+j])
			}
			v[j] = uint32(n)
		}
		if v[2] == 0 || uint64(v[0])+uint64(v[2]) > 1<<32 || uint64(v[1])+uint64(v[2]) > 1<<32 {
			return nil, fmt.Errorf("%q: range %d:%d:%d is empty or too long", s, v[0], v[1], v[2])
		}
		out = append(out, IDMap{Disk: v[0], Shown: v[1], Len: v[2]})
	}
	return out, nil
}

// mapID maps id through ranges in one direction; without ranges ids are unchanged.
func mapID(ranges []IDMap, id uint32, toShown bool) uint32 {
	if len(ranges) == 0 {
		return id
	}
	for _, r := range ranges {
		from, to := r.Disk, r.Shown
		if !toShown {
			from, to = r.Shown, r.Disk
		}
		if id >= from && id-from < r.Len {
			return to + (id - from)
		}
	}
	return overflowID
}

// IDs says how owners are shown and stored: id mappings and squashing, as fuse-overlayfs's
// uidmapping=, gidmapping=, squash_to_root, squash_to_uid= and squash_to_gid= options.
type IDs struct {
	UIDMap, GIDMap []IDMap
	// SquashToRoot shows every object as owned by 0:0.
	SquashToRoot bool
	// SquashUID and SquashGID, when set, show every object as owned by that id; they take
	// precedence over SquashToRoot.
	SquashUID, SquashGID *uint32
}

// shownOwner turns a stored owner into the one reported.
func (c *IDs) shownOwner(uid, gid uint32) (uint32, uint32) {
	uid, gid = mapID(c.UIDMap, uid, true), mapID(c.GIDMap, gid, true)
	if c.SquashToRoot {
		uid, gid = 0, 0
	}
	if c.SquashUID != nil {
		uid = *c.SquashUID
	}
	if c.SquashGID != nil {
		gid = *c.SquashGID
	}
	return uid, gid
}

// diskUID and diskGID turn an id from a request (a chown, the caller making an object) into
// the one stored.
func (c *IDs) diskUID(uid uint32) uint32 { return mapID(c.UIDMap, uid, false) }
func (c *IDs) diskGID(gid uint32) uint32 { return mapID(c.GIDMap, gid, false) }

// identity reports whether owners pass unchanged.
func (c *IDs) identity() bool {
	return len(c.UIDMap) == 0 && len(c.GIDMap) == 0 && !c.SquashToRoot && c.SquashUID == nil && c.SquashGID == nil
}

// showOwner rewrites the owner in out as it is reported.
func (u *unionFS) showOwner(out *fuse.Attr) {
	if !u.cfg.IDs.identity() {
		out.Uid, out.Gid = u.cfg.IDs.shownOwner(out.Uid, out.Gid)
	}
}
