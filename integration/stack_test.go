package integration

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/layerfs/layerfs/unionfs/posixacl"
	"golang.org/x/sys/unix"
)

// builder writes layer contents with fixed metadata, failing the test on any error.
type builder struct {
	t    testing.TB
	root string
}

// old is the fixed timestamp every object gets, so that views can be compared to the nanosecond.
var old = time.Date(2001, 2, 3, 4, 5, 6, 789000000, time.UTC)

func (b builder) p(rel string) string { return filepath.Join(b.root, rel) }

func (b builder) check(err error) {
	b.t.Helper()
	if err != nil {
		b.t.Fatal(err)
	}
}

func (b builder) dir(rel string, mode os.FileMode) {
	b.t.Helper()
	b.check(os.MkdirAll(b.p(rel), 0o755))
	b.check(unix.Chmod(b.p(rel), unixMode(mode)))
}

func (b builder) file(rel, data string, mode os.FileMode) {
	b.t.Helper()
	b.check(os.MkdirAll(filepath.Dir(b.p(rel)), 0o755))
	b.check(os.WriteFile(b.p(rel), []byte(data), 0o600))
	b.check(unix.Chmod(b.p(rel), unixMode(mode)))
}

// unixMode turns a mode written as the kernel's octal (0o4755) into chmod(2)'s bits: os.Chmod
// would drop the set-id and sticky bits, which os.FileMode keeps elsewhere.
func unixMode(mode os.FileMode) uint32 {
	m := uint32(mode) & 07777
	if mode&os.ModeSetuid != 0 {
		m |= unix.S_ISUID
	}
	if mode&os.ModeSetgid != 0 {
		m |= unix.S_ISGID
	}
	if mode&os.ModeSticky != 0 {
		m |= unix.S_ISVTX
	}
	return m
}

func (b builder) symlink(target, rel string) {
	b.t.Helper()
	b.check(os.Symlink(target, b.p(rel)))
}

func (b builder) link(oldRel, newRel string) {
	b.t.Helper()
	b.check(os.Link(b.p(oldRel), b.p(newRel)))
}

func (b builder) fifo(rel string) {
	b.t.Helper()
	b.check(unix.Mkfifo(b.p(rel), 0o640))
}

// whiteout makes the kernel's whiteout, a character device 0/0.
func (b builder) whiteout(rel string) {
	b.t.Helper()
	b.check(unix.Mknod(b.p(rel), unix.S_IFCHR|0o000, 0))
}

func (b builder) xattr(rel, name, value string) {
	b.t.Helper()
	b.check(unix.Lsetxattr(b.p(rel), name, []byte(value), 0))
}

func (b builder) chown(rel string, uid, gid int) {
	b.t.Helper()
	b.check(os.Lchown(b.p(rel), uid, gid))
}

// chmod sets the mode bits, set-id bits included (chown clears those of a file).
func (b builder) chmod(rel string, mode uint32) {
	b.t.Helper()
	b.check(unix.Chmod(b.p(rel), mode))
}

// settle gives every object below root the fixed timestamp, deepest first so that setting a
// child's time does not disturb its directory's.
func (b builder) settle() {
	b.t.Helper()
	var paths []string
	b.check(filepath.Walk(b.root, func(p string, _ os.FileInfo, err error) error {
		paths = append(paths, p)
		return err
	}))
	ts := []unix.Timespec{unix.NsecToTimespec(old.UnixNano()), unix.NsecToTimespec(old.UnixNano())}
	for i := len(paths) - 1; i >= 0; i-- {
		b.check(unix.UtimesNanoAt(unix.AT_FDCWD, paths[i], ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// buildReadStack lays out a stack that exercises every marker format the kernel reads in its
// default (trusted.overlay) mode: three lowers and an empty one, an upper, char 0/0 whiteouts,
// opaque directories nested in each other, xattr whiteouts under opaque=x, a file replacing a
// directory and the reverse, symlinks, hard links, fifos, user xattrs, odd modes and owners.
// It returns the stack's directories below root.
func buildReadStack(t testing.TB, root string) stack {
	st := stack{
		Lowers: []string{root + "/l1", root + "/empty", root + "/l2", root + "/l3"},
		Upper:  root + "/upper",
		Work:   root + "/work",
	}
	for _, d := range append(append([]string{}, st.Lowers...), st.Upper, st.Work) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l3 := builder{t, root + "/l3"} // bottom
	l3.file("a", "a from l3\n", 0o644)
	l3.file("b", "b from l3\n", 0o644)
	l3.file("c", "c from l3\n", 0o600)
	l3.file("odd", "setuid, owned by 1234:5678\n", 0o4751)
	l3.chown("odd", 1234, 5678)
	l3.dir("sgid", 0o2775)
	l3.file("sgid/in", "x", 0o644)
	l3.file("d1/x", "d1/x from l3\n", 0o644)
	l3.file("d1/y", "d1/y from l3\n", 0o644)
	l3.file("d2/p", "p", 0o644)
	l3.file("d2/q", "q", 0o644)
	l3.file("opq/old1", "hidden by opaque l2/opq", 0o644)
	l3.file("opq/keep/deep", "hidden too", 0o644)
	l3.file("f2d", "a file in l3, a directory in l2", 0o644)
	l3.file("d2f/child", "a directory in l3, a file in l2", 0o644)
	l3.file("nested/n1/n2/bottom", "hidden by opaque n1 in l2", 0o644)
	l3.file("nested/n1/sib", "hidden by opaque n1 in l2", 0o644)
	l3.file("nested/top", "visible", 0o644)
	l3.file("xw/k1", "hidden by an xattr whiteout in l2", 0o644)
	l3.file("xw/k2", "visible", 0o644)
	l3.symlink("a", "s")
	l3.symlink("/nonexistent/target", "dangling")
	l3.file("h1", "hard linked\n", 0o644)
	l3.link("h1", "h2")
	l3.link("h1", "d1/h3")
	l3.fifo("ff")
	l3.file("attrs", "with user xattrs", 0o644)
	l3.xattr("attrs", "user.color", "blue")
	l3.xattr("attrs", "user.empty", "")
	l3.dir("emptydir", 0o700)

	l2 := builder{t, root + "/l2"}
	l2.whiteout("b")
	l2.dir("d1", 0o755)
	l2.file("d1/z", "d1/z from l2\n", 0o644)
	l2.whiteout("d1/x")
	l2.file("opq/new1", "from l2", 0o644)
	l2.xattr("opq", "trusted.overlay.opaque", "y")
	l2.file("f2d/inside", "l2 made f2d a directory", 0o644)
	l2.file("d2f", "l2 made d2f a file", 0o644)
	l2.file("nested/n1/n2/mid", "from l2", 0o644)
	l2.xattr("nested/n1", "trusted.overlay.opaque", "y")
	l2.file("xw/k1", "", 0o644)
	l2.xattr("xw/k1", "trusted.overlay.whiteout", "")
	l2.file("xw/k3", "new in l2", 0o644)
	l2.xattr("xw", "trusted.overlay.opaque", "x")
	l2.file("attrs2", "x", 0o644)
	l2.xattr("attrs2", "user.layer", "l2")

	l1 := builder{t, root + "/l1"} // top lower
	l1.file("a", "a from l1\n", 0o644)
	l1.whiteout("d2")
	l1.file("nested/n1/n2/deep2", "from l1", 0o644)
	l1.xattr("nested/n1/n2", "trusted.overlay.opaque", "y")
	l1.file("nested/n1/extra", "from l1, merged with l2's opaque n1", 0o644)
	l1.symlink("d1", "sdir")
	l1.file("d1/y", "d1/y from l1\n", 0o640)
	l1.chown("d1/y", 42, 43)

	up := builder{t, root + "/upper"}
	up.file("c", "c from upper\n", 0o644)
	up.file("u1", "only in upper\n", 0o644)
	up.whiteout("ff")
	up.dir("d1", 0o750)
	up.file("d1/fromupper", "x", 0o644)
	up.file("opq2/fresh", "upper opaque dir", 0o644)
	up.xattr("opq2", "trusted.overlay.opaque", "y")
	up.file("f2d", "upper makes f2d a file again", 0o644)
	up.xattr("u1", "user.who", "upper")
	l3.dir("opq2", 0o755)
	l3.file("opq2/stale", "hidden by upper opaque opq2", 0o644)

	// Attributes beyond user.*: a file capability (ping, as Debian's iputils ships it), a
	// set-uid file with one owned by someone else, access and default ACLs, trusted.*. A
	// copy-up must keep them all, in the kernel's order (owner first, which drops
	// capabilities); a chown or a write by a non-root owner drops them.
	l3.file("ping", "ping\n", 0o755)
	l3.xattr("ping", "security.capability", string(capNetRaw))
	l3.file("capsuid", "owned by 1000, set-uid, with a capability", 0o4775)
	l3.chown("capsuid", 1000, 1000)
	l3.chmod("capsuid", 0o4775)
	l3.xattr("capsuid", "security.capability", string(capNetRaw))
	l3.file("acl", "with an access ACL", 0o640)
	l3.xattr("acl", posixacl.AccessXattr, string(aclValue(0o6, 1234, 0o4)))
	l3.file("trusted", "with a trusted.* attribute", 0o644)
	l3.xattr("trusted", "trusted.colour", "red")
	l3.dir("dacl", 0o775)
	l3.xattr("dacl", posixacl.DefaultXattr, string(aclValue(0o7, 1234, 0o7)))
	l3.file("dacl/f", "inherited nothing: made before the default ACL", 0o644)
	l3.dir("dacl/sub", 0o755)
	l3.file("dacl/sub/g", "g", 0o644)
	l2.file("dacl/l2f", "from l2", 0o644)
	l3.dir("theirs", 0o2775) // a non-root owner outside the group: setfacl clears set-gid
	l3.chown("theirs", 1000, 5678)
	l3.file("theirs/f", "set-gid, owned by 1000:5678", 0o2775)
	l3.chown("theirs/f", 1000, 5678)
	l3.chmod("theirs/f", 0o2775)
	up.dir("udacl", 0o755)
	up.xattr("udacl", posixacl.DefaultXattr, string(aclValue(0o7, 99, 0o5)))

	for _, b := range []builder{l3, l2, l1, up} {
		b.settle()
	}
	builder{t, root + "/empty"}.settle()
	return st
}

// capNetRaw is a version-2 security.capability value: cap_net_raw, permitted and effective.
var capNetRaw = []byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

// aclValue is a POSIX ACL in attribute form: the owner with perm, user uid with uperm, group
// r-x, a mask of rwx, others r--.
func aclValue(perm uint16, uid uint32, uperm uint16) []byte {
	const none = 0xffffffff
	return posixacl.Marshal([]posixacl.Entry{
		{Tag: posixacl.TagUserObj, Perm: perm, ID: none},
		{Tag: posixacl.TagUser, Perm: uperm, ID: uid},
		{Tag: posixacl.TagGroupObj, Perm: 5, ID: none},
		{Tag: posixacl.TagMask, Perm: 7, ID: none},
		{Tag: posixacl.TagOther, Perm: 4, ID: none},
	})
}
