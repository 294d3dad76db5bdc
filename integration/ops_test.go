package integration

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"

	"github.com/layerfs/layerfs/copyup"
	"github.com/layerfs/layerfs/unionfs/posixacl"
	"golang.org/x/sys/unix"
)

// op is one step of a differential run: the same op is applied to every mount under test,
// and what it returns (an errno, or data read) must be the same.
type op struct {
	Kind string
	A, B string // paths relative to the mount root
	Off  int64
	Data []byte
	Mode uint32
	N    int
}

func (o op) String() string {
	s := o.Kind + " " + o.A
	if o.B != "" {
		s += " -> " + o.B
	}
	switch o.Kind {
	case "write", "pwrite-trunc", "append":
		s += fmt.Sprintf(" (%d bytes at %d)", len(o.Data), o.Off)
	case "truncate":
		s += fmt.Sprintf(" (to %d)", o.Off)
	case "chmod", "create", "mkdir":
		s += fmt.Sprintf(" (mode %o)", o.Mode)
	case "chown":
		s += fmt.Sprintf(" (%d:%d)", o.N, o.Off)
	case "setxattr", "setfacl", "setfacl-default", "user-setfacl":
		s += fmt.Sprintf(" (%s=%q)", o.B, o.Data)
	}
	return s
}

// testUID and testGID are who the user-* operations run as: not root, not in the groups of
// the stack's objects but its own (1000:1000 owns some of them).
const testUID, testGID = 1000, 1000

// withFsIDs runs fn on an OS thread of its own whose filesystem ids are testUID and testGID.
// Linux credentials are per thread, and a change of the fsuid away from 0 drops the
// filesystem capabilities (CAP_FOWNER, CAP_FSETID, CAP_CHOWN, ...): fn's calls are checked,
// and reach FUSE servers, as that user's. The thread is never unlocked, so Go ends it with
// the goroutine instead of reusing it.
func withFsIDs(fn func() string) string {
	ch := make(chan string)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setfsgid(testGID); err != nil {
			ch <- "setfsgid: " + err.Error()
			return
		}
		if err := unix.Setfsuid(testUID); err != nil {
			ch <- "setfsuid: " + err.Error()
			return
		}
		ch <- fn()
	}()
	return <-ch
}

// errName names an error by its errno, "ok" for none.
func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e)
	}
	return err.Error()
}

// fixedTime is what utimes ops set, so that changed times compare exactly.
var fixedTime = []unix.Timespec{unix.NsecToTimespec(1234567890123456789), unix.NsecToTimespec(1111111111222222222)}

// apply runs o on the mount at root and returns what a program would see. A "user-" kind runs
// the kind after the prefix as an unprivileged user (withFsIDs).
func (o op) apply(root string) string {
	if inner, ok := strings.CutPrefix(o.Kind, "user-"); ok {
		o.Kind = inner
		return withFsIDs(func() string { return o.apply(root) })
	}
	p := func(rel string) string { return filepath.Join(root, rel) }
	// Writes never follow a symlink out of the tree: O_NOFOLLOW everywhere.
	const wflags = unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	switch o.Kind {
	case "write", "append", "pwrite-trunc":
		flags := unix.O_WRONLY | wflags
		if o.Kind == "append" {
			flags |= unix.O_APPEND
		}
		if o.Kind == "pwrite-trunc" {
			flags |= unix.O_TRUNC
		}
		fd, err := unix.Open(p(o.A), flags, 0)
		if err != nil {
			return errName(err)
		}
		defer unix.Close(fd)
		if o.Kind == "append" {
			_, err = unix.Write(fd, o.Data)
		} else {
			_, err = unix.Pwrite(fd, o.Data, o.Off)
		}
		return errName(err)
	case "truncate":
		return errName(unix.Truncate(p(o.A), o.Off))
	case "create":
		fd, err := unix.Open(p(o.A), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|wflags, o.Mode)
		if err != nil {
			return errName(err)
		}
		_, err = unix.Write(fd, o.Data)
		unix.Close(fd)
		return errName(err)
	case "mkdir":
		return errName(unix.Mkdir(p(o.A), o.Mode))
	case "mkfifo":
		return errName(unix.Mkfifo(p(o.A), 0o644))
	case "unlink":
		return errName(unix.Unlink(p(o.A)))
	case "rmdir":
		return errName(unix.Rmdir(p(o.A)))
	case "rm-rf":
		return errName(removeAll(p(o.A)))
	case "rm-rf-mkdir":
		if err := removeAll(p(o.A)); err != nil {
			return errName(err)
		}
		return errName(unix.Mkdir(p(o.A), 0o755))
	case "rename":
		return errName(unix.Rename(p(o.A), p(o.B)))
	case "rename-noreplace":
		return errName(unix.Renameat2(unix.AT_FDCWD, p(o.A), unix.AT_FDCWD, p(o.B), unix.RENAME_NOREPLACE))
	case "rename-exchange":
		return errName(unix.Renameat2(unix.AT_FDCWD, p(o.A), unix.AT_FDCWD, p(o.B), unix.RENAME_EXCHANGE))
	case "link":
		return errName(unix.Link(p(o.A), p(o.B)))
	case "symlink":
		return errName(unix.Symlink(o.B, p(o.A)))
	case "chmod":
		return errName(unix.Fchmodat(unix.AT_FDCWD, p(o.A), o.Mode, 0))
	case "chown":
		return errName(unix.Lchown(p(o.A), o.N, int(o.Off)))
	case "utimes":
		return errName(unix.UtimesNanoAt(unix.AT_FDCWD, p(o.A), fixedTime, unix.AT_SYMLINK_NOFOLLOW))
	case "chattr":
		// Regular files and directories only: opening a device of the stack is no test of it.
		var st unix.Stat_t
		if err := unix.Lstat(p(o.A), &st); err != nil {
			return errName(err)
		}
		if t := st.Mode & unix.S_IFMT; t != unix.S_IFREG && t != unix.S_IFDIR {
			return "not a file or directory"
		}
		flags, err := flagsAt(p(o.A))
		if err != nil {
			return errName(err)
		}
		return errName(setFlagsAt(p(o.A), flags^uint32(o.Off), false))
	case "setxattr":
		return errName(unix.Lsetxattr(p(o.A), o.B, o.Data, 0))
	case "removexattr":
		return errName(unix.Lremovexattr(p(o.A), o.B))
	case "setcap":
		return errName(unix.Lsetxattr(p(o.A), "security.capability", capNetRaw, 0))
	case "setfacl":
		return errName(unix.Lsetxattr(p(o.A), posixacl.AccessXattr, o.Data, 0))
	case "setfacl-default":
		return errName(unix.Lsetxattr(p(o.A), posixacl.DefaultXattr, o.Data, 0))
	case "chgrp":
		return errName(unix.Lchown(p(o.A), -1, int(o.Off)))
	case "chown-noids":
		return errName(unix.Lchown(p(o.A), -1, -1))
	case "setxattr-private":
		return errName(unix.Lsetxattr(p(o.A), "trusted.overlay.opaque", []byte("y"), 0))
	case "create-marker":
		fd, err := unix.Open(p(o.A), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|wflags, 0o644)
		if err == nil {
			unix.Close(fd)
		}
		return errName(err)
	case "read":
		// O_NONBLOCK: a fifo must not wait for a writer.
		data, err := readNonblock(p(o.A))
		if err != nil {
			return errName(err)
		}
		return fmt.Sprintf("ok %q", shorten(data))
	case "readdir":
		fd, err := unix.Open(p(o.A), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return errName(err)
		}
		unix.Close(fd)
		ents, err := os.ReadDir(p(o.A))
		if err != nil {
			return errName(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		return "ok " + strings.Join(names, ",")
	case "stat":
		var st unix.Stat_t
		if err := unix.Lstat(p(o.A), &st); err != nil {
			return errName(err)
		}
		return fmt.Sprintf("ok %s %o %d:%d", typeName(st.Mode), st.Mode&07777, st.Uid, st.Gid)
	}
	panic("unknown op " + o.Kind)
}

func readNonblock(p string) ([]byte, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, buf[:n]...)
	}
}

func shorten(b []byte) []byte {
	if len(b) > 64 {
		return append(append([]byte{}, b[:32]...), b[len(b)-32:]...)
	}
	return b
}

// removeAll is rm -rf: depth first, unlinkat/rmdir, the first error kept.
func removeAll(p string) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unix.Unlink(p)
	}
	ents, err := os.ReadDir(p)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := removeAll(filepath.Join(p, e.Name())); err != nil {
			return err
		}
	}
	return unix.Rmdir(p)
}

// opGen makes a reproducible random sequence of operations over the names of a tree.
type opGen struct {
	rnd   *rand.Rand
	names []string // existing paths, sorted
	dirs  []string // existing directories (with "" for the root)
	owned []string // existing paths testUID owns, for the user-* kinds
	fresh int
}

func (g *opGen) update(tr tree) {
	g.names = g.names[:0]
	g.dirs = append(g.dirs[:0], "")
	g.owned = g.owned[:0]
	for p, e := range tr {
		g.names = append(g.names, p)
		if e.Type == "dir" {
			g.dirs = append(g.dirs, p)
		}
		if e.Uid == testUID {
			g.owned = append(g.owned, p)
		}
	}
	sort.Strings(g.names)
	sort.Strings(g.dirs)
	sort.Strings(g.owned)
}

func (g *opGen) existing() string {
	if len(g.names) == 0 || g.rnd.Intn(10) == 0 {
		return g.newName()
	}
	return g.names[g.rnd.Intn(len(g.names))]
}

func (g *opGen) newName() string {
	g.fresh++
	dir := g.dirs[g.rnd.Intn(len(g.dirs))]
	return filepath.Join(dir, fmt.Sprintf("n%d", g.fresh))
}

// target is an existing name most of the time, otherwise a new one.
func (g *opGen) target() string {
	if g.rnd.Intn(3) == 0 {
		return g.newName()
	}
	return g.existing()
}

func (g *opGen) data() []byte {
	n := g.rnd.Intn(6000)
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + g.rnd.Intn(26))
	}
	return b
}

// opKinds lists every kind with its weight.
var opKinds = []struct {
	kind   string
	weight int
}{
	{"write", 8}, {"append", 5}, {"pwrite-trunc", 3}, {"truncate", 4}, {"create", 8},
	{"mkdir", 5}, {"mkfifo", 2}, {"unlink", 6}, {"rmdir", 4}, {"rm-rf", 3}, {"rm-rf-mkdir", 3},
	{"rename", 8}, {"rename-noreplace", 3}, {"rename-exchange", 3}, {"link", 4}, {"symlink", 3},
	{"chmod", 4}, {"chown", 3}, {"utimes", 3}, {"setxattr", 4}, {"removexattr", 3},
	{"read", 6}, {"readdir", 4}, {"stat", 4},
	{"setxattr-private", 1}, {"create-marker", 1}, {"chattr", 2},
	{"setcap", 2}, {"setfacl", 2}, {"setfacl-default", 2},
	{"user-append", 3}, {"user-truncate", 2}, {"user-create", 2}, {"user-chmod", 2},
	{"user-chgrp", 1}, {"user-chown-noids", 1}, {"user-link", 1}, {"user-setfacl", 2}, {"user-setcap", 1}, {"user-mkdir", 1},
}

// documented lists the kinds where layerfs differs from the kernel on purpose (README, "What
// differs"): they run on layerfs only, and its answer is checked against what the README
// promises, given what the kernel's view shows at that moment.
var documented = map[string]func(o op, kernelRoot string) string{
	// Private attributes cannot be set through the mount (the kernel escapes them instead).
	"setxattr-private": func(o op, k string) string {
		if err := unix.Lstat(filepath.Join(k, o.A), new(unix.Stat_t)); err != nil {
			return errName(err)
		}
		return "EPERM"
	},
	// ".wh.*" names are layer markers and cannot be created (the kernel allows them).
	"create-marker": func(o op, k string) string {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(k, filepath.Dir(o.A)), &st); err != nil {
			return errName(err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return "ENOTDIR"
		}
		return "EINVAL"
	},
}

func (g *opGen) next() (o op) {
	total := 0
	for _, k := range opKinds {
		total += k.weight
	}
	r := g.rnd.Intn(total)
	kind := ""
	for _, k := range opKinds {
		if r < k.weight {
			kind = k.kind
			break
		}
		r -= k.weight
	}
	o = op{Kind: kind}
	user := false
	if inner, ok := strings.CutPrefix(kind, "user-"); ok {
		kind, user = inner, true
	}
	defer func() {
		// An unprivileged user can change little but what it owns: aim there half the time.
		if user && len(g.owned) > 0 && g.rnd.Intn(2) == 0 && kind != "create" && kind != "mkdir" && kind != "chown-noids" {
			o.A = g.owned[g.rnd.Intn(len(g.owned))]
		}
	}()
	switch kind {
	case "write", "pwrite-trunc":
		o.A, o.Off, o.Data = g.existing(), int64(g.rnd.Intn(20000)), g.data()
	case "append":
		o.A, o.Data = g.existing(), g.data()
	case "truncate":
		o.A, o.Off = g.existing(), int64(g.rnd.Intn(30000))
	case "create":
		o.A, o.Mode, o.Data = g.target(), uint32(0o600+g.rnd.Intn(0o200)), g.data()
	case "mkdir":
		o.A, o.Mode = g.target(), uint32(0o700+g.rnd.Intn(0o77))
	case "mkfifo", "unlink", "rmdir", "rm-rf", "rm-rf-mkdir", "read", "readdir", "stat", "utimes":
		o.A = g.existing()
		if kind == "mkfifo" {
			o.A = g.target()
		}
	case "rename", "rename-noreplace", "rename-exchange", "link":
		o.A, o.B = g.existing(), g.target()
	case "symlink":
		o.A, o.B = g.target(), filepath.Base(g.existing())
	case "setxattr-private", "setcap":
		o.A = g.existing()
	case "setfacl", "setfacl-default":
		o.A = g.existing()
		o.Data = aclValue(uint16(g.rnd.Intn(8)), uint32(1234+g.rnd.Intn(2)), uint16(g.rnd.Intn(8)))
		if kind == "setfacl" {
			o.B = posixacl.AccessXattr
		} else {
			o.B = posixacl.DefaultXattr
		}
	case "chgrp":
		o.A, o.Off = g.existing(), int64([]int{0, testGID, 5678}[g.rnd.Intn(3)])
	case "chown-noids":
		// Directories only: of another's set-id file the kernel refuses it with EPERM where
		// layerfs changes nothing and succeeds (README), and who owns a file can change
		// between the checkpoints that update g.owned. TestChownNoIDs covers files.
		o.A = g.dirs[g.rnd.Intn(len(g.dirs))]
	case "create-marker":
		o.A = filepath.Join(g.dirs[g.rnd.Intn(len(g.dirs))], ".wh.marker")
	case "chmod":
		o.A, o.Mode = g.existing(), uint32(g.rnd.Intn(0o7777))
	case "chattr":
		// Turns one flag on or off: no-atime, no-dump or sync. Not immutable or append-only:
		// where an operation on such an object is also refused for another reason, the
		// kernel's FUSE answers that reason's errno before layerfs can answer EPERM (README,
		// "What differs"); TestImmutableAppend covers them.
		o.A, o.Off = g.existing(), int64([]uint32{copyup.FlagNoatime, 0x40, copyup.FlagSync}[g.rnd.Intn(3)])
	case "chown":
		o.A, o.N, o.Off = g.existing(), g.rnd.Intn(3)*1000, int64(g.rnd.Intn(3)*1000)
	case "setxattr":
		o.A, o.B, o.Data = g.existing(), fmt.Sprintf("user.k%d", g.rnd.Intn(3)), []byte(fmt.Sprint(g.rnd.Intn(100)))
	case "removexattr":
		o.A, o.B = g.existing(), fmt.Sprintf("user.k%d", g.rnd.Intn(3))
		switch g.rnd.Intn(6) {
		case 0, 1:
			o.B = "user.color"
		case 2:
			o.B = "security.capability"
		case 3:
			o.B = posixacl.AccessXattr
		case 4:
			o.B = posixacl.DefaultXattr
		}
	}
	return o
}
