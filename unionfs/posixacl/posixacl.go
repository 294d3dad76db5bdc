// Package posixacl reads and writes POSIX ACLs in their extended-attribute form
// (system.posix_acl_access, system.posix_acl_default) and computes what a new object inherits
// from its directory's default ACL, as the kernel's posix_acl_create does. layerfs needs that
// where it builds an object away from its directory (in the work directory, to replace a
// whiteout) and where it decides whether the caller's umask applies (FUSE_DONT_MASK).
// Nothing here imports FUSE.
package posixacl

import (
	"encoding/binary"
	"errors"
)

// The attribute names.
const (
	AccessXattr  = "system.posix_acl_access"
	DefaultXattr = "system.posix_acl_default"
)

// Entry tags, as in <linux/posix_acl.h>.
const (
	TagUserObj  = 0x01
	TagUser     = 0x02
	TagGroupObj = 0x04
	TagGroup    = 0x08
	TagMask     = 0x10
	TagOther    = 0x20
)

// version is the only xattr format version Linux writes and accepts.
const version = 2

// Entry is one ACL entry: a tag, rwx permission bits and, for TagUser and TagGroup, an id.
type Entry struct {
	Tag  uint16
	Perm uint16
	ID   uint32
}

// ErrFormat is returned for a value that is not a POSIX ACL in xattr form.
var ErrFormat = errors.New("malformed POSIX ACL attribute")

// Parse decodes an attribute value.
func Parse(b []byte) ([]Entry, error) {
	if len(b) < 4 || (len(b)-4)%8 != 0 || binary.LittleEndian.Uint32(b) != version {
		return nil, ErrFormat
	}
	out := make([]Entry, 0, (len(b)-4)/8)
	for p := b[4:]; len(p) > 0; p = p[8:] {
		out = append(out, Entry{
			Tag:  binary.LittleEndian.Uint16(p),
			Perm: binary.LittleEndian.Uint16(p[2:]),
			ID:   binary.LittleEndian.Uint32(p[4:]),
		})
	}
	return out, nil
}

// Marshal encodes entries as an attribute value.
func Marshal(acl []Entry) []byte {
	b := make([]byte, 4+8*len(acl))
	binary.LittleEndian.PutUint32(b, version)
	for i, e := range acl {
		p := b[4+8*i:]
		binary.LittleEndian.PutUint16(p, e.Tag)
		binary.LittleEndian.PutUint16(p[2:], e.Perm)
		binary.LittleEndian.PutUint32(p[4:], e.ID)
	}
	return b
}

// Inherit computes what an object created with mode in a directory whose default ACL is def
// gets, as the kernel's posix_acl_create (and posix_acl_create_masq) does: the mode masked by
// the ACL, the access ACL to set (nil when the mode says it all), and whether a directory
// also takes def as its own default ACL (always, for a directory). The umask does not apply
// when a default ACL exists.
func Inherit(def []byte, mode uint32) (newMode uint32, access []byte, err error) {
	acl, err := Parse(def)
	if err != nil {
		return mode, nil, err
	}
	m := mode
	notEquiv := false
	var groupObj, maskObj *Entry
	for i := range acl {
		e := &acl[i]
		switch e.Tag {
		case TagUserObj:
			e.Perm &= uint16(m>>6) & 7
			m &= uint32(e.Perm)<<6 | ^uint32(0o700)
		case TagUser, TagGroup:
			notEquiv = true
		case TagGroupObj:
			groupObj = e
		case TagOther:
			e.Perm &= uint16(m) & 7
			m &= uint32(e.Perm) | ^uint32(0o007)
		case TagMask:
			maskObj = e
			notEquiv = true
		default:
			return mode, nil, ErrFormat
		}
	}
	switch {
	case maskObj != nil:
		maskObj.Perm &= uint16(m>>3) & 7
		m &= uint32(maskObj.Perm)<<3 | ^uint32(0o070)
	case groupObj != nil:
		groupObj.Perm &= uint16(m>>3) & 7
		m &= uint32(groupObj.Perm)<<3 | ^uint32(0o070)
	default:
		return mode, nil, ErrFormat
	}
	newMode = mode&^0o777 | m&0o777
	if notEquiv {
		access = Marshal(acl)
	}
	return newMode, access, nil
}
