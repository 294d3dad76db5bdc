package unionfs

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/unionfs/merge"
)

// mergedEntries lists the merged directory whose layer directories are parts (the rules:
// merge.Stack.Entries), as FUSE entries. With limit > 0 it stops after that many entries.
func (u *unionFS) mergedEntries(parts []merge.Part, limit int) ([]fuse.DirEntry, syscall.Errno) {
	out, _, errno := u.mergedEntriesFrom(parts, limit)
	return out, errno
}

// mergedEntriesFrom is mergedEntries that also says, for each entry, which of parts holds
// its topmost object.
func (u *unionFS) mergedEntriesFrom(parts []merge.Part, limit int) ([]fuse.DirEntry, []int, syscall.Errno) {
	ents, from, errno := u.Entries(parts, limit)
	if errno != 0 {
		return nil, nil, errno
	}
	out := make([]fuse.DirEntry, len(ents))
	for i, e := range ents {
		out[i] = fuse.DirEntry{Name: e.Name, Mode: e.Mode, Ino: e.Ino}
	}
	return out, from, 0
}
