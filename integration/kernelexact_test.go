package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/unionfs/posixacl"
	"golang.org/x/sys/unix"
)

// The tests here run one script on the kernel's overlayfs and on the program under test, each
// on its own copy of one stack, and require the same answers: behaviour found to differ once
// outside what the differential harness's random operations reach often enough.

// twoMounts builds a stack with build, copies it, and mounts the kernel's overlayfs on one copy
// (with mount flags kernelFlags) and each of sides (layerfs mount modes, as mountSide names
// them; with -o opts) on one copy each. It returns the mounts by side name.
func twoMounts(t *testing.T, build func(lower, upper builder), kernelFlags uintptr, opts []string, sides ...string) map[string]string {
	t.Helper()
	root := t.TempDir()
	must(t, os.Chmod(root, 0o755))
	must(t, os.Chmod(filepath.Dir(root), 0o755))
	st := stack{Lowers: []string{root + "/base/lower"}, Upper: root + "/base/upper", Work: root + "/base/work"}
	for _, d := range []string{st.Lowers[0], st.Upper, st.Work} {
		mkdir(t, d, "")
	}
	build(builder{t, st.Lowers[0]}, builder{t, st.Upper})
	mnts := map[string]string{}
	for _, side := range append([]string{"kernel"}, sides...) {
		copyTree(t, root+"/base", root+"/"+side)
		sst := rebase(st, root+"/base", root+"/"+side)
		mnt := mkdir(t, root, "mnt-"+side)
		if side == "kernel" {
			o := sst.options()
			if err := unix.Mount("overlay", mnt, "overlay", kernelFlags, o); err != nil {
				t.Fatalf("mount -t overlay -o %s %s: %v", o, mnt, err)
			}
			t.Cleanup(func() {
				if err := syscallUnmount(mnt); err != nil {
					t.Errorf("umount %s: %v; detaching", mnt, err)
					unix.Unmount(mnt, unix.MNT_DETACH)
				}
			})
		} else {
			var extra []string
			switch side {
			case "noopen", "nopassthrough":
				extra = append(extra, "-o", side)
			}
			if len(opts) > 0 {
				extra = append(extra, "-o", strings.Join(opts, ","))
			}
			mountLayerfs(t, sst, mnt, extra...)
		}
		mnts[side] = mnt
	}
	return mnts
}

// sameAnswers runs script on every mount and fails t where an answer differs from the
// kernel's.
func sameAnswers(t *testing.T, mnts map[string]string, script func(mnt string) []string) {
	t.Helper()
	documentedAnswers(t, mnts, script, nil)
}

// documentedAnswers is sameAnswers where the README ("What differs") documents a difference:
// documented turns the kernel's answers into the ones documented for side.
func documentedAnswers(t *testing.T, mnts map[string]string, script func(mnt string) []string, documented func(side string, want []string)) {
	t.Helper()
	kernel := script(mnts["kernel"])
	for side, mnt := range mnts {
		if side == "kernel" {
			continue
		}
		want := append([]string(nil), kernel...)
		if documented != nil {
			documented(side, want)
		}
		got := script(mnt)
		for i := range max(len(want), len(got)) {
			w, g := "(none)", "(none)"
			if i < len(want) {
				w = want[i]
			}
			if i < len(got) {
				g = got[i]
			}
			if w != g {
				t.Errorf("%s: step %d:\n kernel: %s\n %s: %s", side, i, w, side, g)
			}
		}
	}
}

// attrs describes what a test compares of one object: type, mode, owner, every attribute.
// modeOnly is the permission bits of p as a statx asking for the mode alone returns them: from
// the kernel's cache, where nothing invalidated the mode.
func modeOnly(p string) string {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MODE, &stx); err != nil {
		return errName(err)
	}
	return fmt.Sprintf("mode %o", stx.Mode&07777)
}

func attrs(p string) string {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return errName(err)
	}
	x, err := xattrList(p, keepAllButPrivate)
	if err != nil {
		x = "listing attributes: " + errName(err)
	}
	return fmt.Sprintf("%s %o %d:%d nlink=%d %s", typeName(st.Mode), st.Mode&07777, st.Uid, st.Gid, st.Nlink, x)
}

// TestCapabilitiesKept: a copy-up keeps security.capability (set after the owner, which
// drops it), chown of a capability file succeeds and drops it, as chown always does, and a
// write by a non-root owner drops it with the set-uid bit.
func TestCapabilitiesKept(t *testing.T) {
	needMounts(t)
	mnts := twoMounts(t, func(lower, upper builder) {
		for _, name := range []string{"chmod", "chown", "truncate", "write", "setfattr", "utimes", "open"} {
			lower.file(name, "ping\n", 0o755)
			lower.xattr(name, "security.capability", string(capNetRaw))
		}
		lower.file("mine", "owned by the test user\n", 0o4777)
		lower.chown("mine", testUID, testGID)
		lower.chmod("mine", 0o4777)
		lower.xattr("mine", "security.capability", string(capNetRaw))
		lower.settle()
	}, 0, nil, testedName(), "nopassthrough", "noopen")
	sameAnswers(t, mnts, func(m string) []string {
		p := func(n string) string { return filepath.Join(m, n) }
		return []string{
			errName(unix.Chmod(p("chmod"), 0o700)), attrs(p("chmod")),
			errName(unix.Chown(p("chown"), testUID, testGID)), attrs(p("chown")),
			errName(unix.Truncate(p("truncate"), 2)), attrs(p("truncate")),
			errName(unix.Setxattr(p("setfattr"), "user.x", []byte("1"), 0)), attrs(p("setfattr")),
			errName(unix.UtimesNano(p("utimes"), fixedTime)), attrs(p("utimes")),
			func() string { // an open for writing copies up; no write, nothing dropped
				f, err := os.OpenFile(p("open"), os.O_WRONLY, 0)
				if err == nil {
					f.Close()
				}
				return errName(err)
			}(), attrs(p("open")),
			withFsIDs(func() string { return errName(appendLine(p("mine"), "more")) }), attrs(p("mine")),
		}
	})
}

// TestDefaultACLs: with a default ACL on the directory the umask does not apply, and a name
// re-created where a whiteout stands inherits the ACL as one made anywhere else.
func TestDefaultACLs(t *testing.T) {
	needMounts(t)
	mnts := twoMounts(t, func(lower, upper builder) {
		lower.dir("d", 0o775)
		lower.xattr("d", posixacl.DefaultXattr, string(aclValue(0o7, 1234, 0o7)))
		lower.file("d/f", "made before the default ACL", 0o644)
		lower.file("d/sub/g", "g", 0o644)
		lower.dir("plain", 0o755)
		lower.settle()
	}, 0, nil, testedName(), "noopen")
	old := unix.Umask(0o022)
	defer unix.Umask(old)
	sameAnswers(t, mnts, func(m string) []string {
		p := func(n string) string { return filepath.Join(m, n) }
		create := func(n string, mode uint32) string {
			fd, err := unix.Open(p(n), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, mode)
			if err == nil {
				unix.Close(fd)
			}
			return errName(err) + " " + attrs(p(n))
		}
		return []string{
			create("d/new", 0o666),
			errName(unix.Mkdir(p("d/newdir"), 0o777)), attrs(p("d/newdir")),
			errName(unix.Mkfifo(p("d/fifo"), 0o666)), attrs(p("d/fifo")),
			errName(unix.Unlink(p("d/f"))), create("d/f", 0o666),
			errName(os.RemoveAll(p("d/sub"))), errName(unix.Mkdir(p("d/sub"), 0o777)), attrs(p("d/sub")),
			create("d/sub/h", 0o640),
			create("plain/masked", 0o666),
			errName(unix.Mkdir(p("plain/maskeddir"), 0o777)), attrs(p("plain/maskeddir")),
			// A new file and a new directory answer for attributes they have not got from
			// memory (layerfs): what is set since must show, and a default ACL set on the
			// directory must apply to what is created in it after.
			getCap(p("plain/masked")), errName(unix.Setxattr(p("plain/masked"), "security.capability", capNetRaw, 0)), getCap(p("plain/masked")),
			errName(unix.Mkdir(p("plain/later"), 0o777)), create("plain/later/a", 0o666),
			errName(unix.Setxattr(p("plain/later"), posixacl.DefaultXattr, aclValue(0o7, 1234, 0o7), 0)),
			create("plain/later/b", 0o666),
			errName(unix.Mkdir(p("plain/later/c"), 0o777)), attrs(p("plain/later/c")),
		}
	})
}

// getCap reads path's security.capability: its error, or its size.
func getCap(path string) string {
	n, err := unix.Getxattr(path, "security.capability", make([]byte, 64))
	if err != nil {
		return errName(err)
	}
	return fmt.Sprint(n)
}

// TestACLClearsSetgid: an owner outside the object's group who sets its ACL loses the
// set-group-id bit, as with chmod.
func TestACLClearsSetgid(t *testing.T) {
	needMounts(t)
	mnts := twoMounts(t, func(lower, upper builder) {
		lower.dir("theirs", 0o2775)
		lower.chown("theirs", testUID, 5678)
		lower.file("theirs/f", "x", 0o2775)
		lower.chown("theirs/f", testUID, 5678)
		lower.chmod("theirs/f", 0o2775)
		lower.file("ours", "x", 0o2775)
		lower.chown("ours", testUID, testGID)
		lower.chmod("ours", 0o2775)
		lower.settle()
	}, 0, nil, testedName(), "noopen")
	acl := aclValue(0o7, 1234, 0o5)
	sameAnswers(t, mnts, func(m string) []string {
		var out []string
		for _, n := range []string{"theirs", "theirs/f", "ours"} {
			p := filepath.Join(m, n)
			out = append(out, withFsIDs(func() string { return errName(unix.Setxattr(p, posixacl.AccessXattr, acl, 0)) }), attrs(p))
		}
		return out
	})
}

// TestReplacedDirectoryDescriptor: a descriptor of a directory that a rename replaced still
// answers fstat, with no links left (go-fuse's posixtest RenameOpenDir).
func TestReplacedDirectoryDescriptor(t *testing.T) {
	needMounts(t)
	mnts := twoMounts(t, func(lower, upper builder) {
		lower.dir("lowerdir", 0o750)
		lower.settle()
	}, 0, nil, testedName(), "noopen")
	sameAnswers(t, mnts, func(m string) []string {
		p := func(n string) string { return filepath.Join(m, n) }
		var out []string
		must(t, os.Mkdir(p("dir1"), 0o755))
		must(t, os.Mkdir(p("dir2"), 0o700))
		must(t, os.Mkdir(p("dir3"), 0o711))
		for _, c := range [][2]string{{"dir1", "dir2"}, {"dir3", "lowerdir"}} {
			fd, err := unix.Open(p(c[1]), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			var before, after unix.Stat_t
			must(t, unix.Fstat(fd, &before))
			out = append(out, errName(unix.Rename(p(c[0]), p(c[1]))))
			err = unix.Fstat(fd, &after)
			out = append(out, fmt.Sprintf("fstat %s: %s mode %o nlink %d same ino %v", c[1], errName(err), after.Mode, after.Nlink, after.Ino == before.Ino))
			unix.Close(fd)
		}
		return out
	})
}

// TestMappedWriteTimes: a write through a shared mapping shows in stat at once, with and
// without passthrough, for an upper file and for a lower one copied up by the open.
func TestMappedWriteTimes(t *testing.T) {
	needMounts(t)
	mnts := twoMounts(t, func(lower, upper builder) {
		lower.file("lower", strings.Repeat("l", 8192), 0o644)
		upper.file("upper", strings.Repeat("u", 8192), 0o644)
		lower.settle()
		upper.settle()
	}, 0, nil, testedName(), "nopassthrough")
	// Without passthrough the mapping is FUSE's page cache: a FUSE inode takes no times in
	// the kernel (S_NOCMTIME without writeback caching), so the store moves mtime only when
	// the page is written back to layerfs (msync, munmap, writeback). README, "What differs".
	documented := func(side string, want []string) {
		if side == "nopassthrough" {
			for i := range want {
				want[i] = strings.Replace(want[i], "moved by the store true", "moved by the store false", 1)
			}
		}
	}
	documentedAnswers(t, mnts, func(m string) []string {
		var out []string
		for _, n := range []string{"upper", "lower"} {
			p := filepath.Join(m, n)
			var before unix.Stat_t
			must(t, unix.Stat(p, &before))
			fd, err := unix.Open(p, unix.O_RDWR|unix.O_CLOEXEC, 0)
			must(t, err)
			data, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			must(t, err)
			var mapped, written, during, after unix.Stat_t
			must(t, unix.Stat(p, &mapped)) // a stat the kernel may answer from its cache
			copy(data, "mapped")
			must(t, unix.Stat(p, &written))
			must(t, unix.Msync(data, unix.MS_SYNC))
			must(t, unix.Stat(p, &during))
			must(t, unix.Munmap(data))
			unix.Close(fd)
			must(t, unix.Stat(p, &after))
			out = append(out, fmt.Sprintf("%s: mtime moved by the store %v; after msync %v, ctime %v; after close %v",
				n, written.Mtim != before.Mtim, during.Mtim != before.Mtim, during.Ctim != before.Ctim, after.Mtim != before.Mtim))
			got, err := os.ReadFile(p)
			must(t, err)
			out = append(out, string(got[:8]))
		}
		return out
	}, documented)
}

// TestAtimeOptions: the access-time options mount directly as root and mean what they mean
// on the kernel's overlayfs: reads never move a lower object's atime, and move an upper one's
// as the option says.
func TestAtimeOptions(t *testing.T) {
	needMounts(t)
	for _, o := range []struct {
		opt   string
		flags uintptr
	}{
		{"", 0}, {"relatime", unix.MS_RELATIME}, {"noatime", unix.MS_NOATIME},
		{"strictatime", unix.MS_STRICTATIME}, {"nodiratime", unix.MS_NODIRATIME},
	} {
		t.Run("opt="+o.opt, func(t *testing.T) {
			var opts []string
			if o.opt != "" {
				opts = []string{o.opt}
			}
			mnts := twoMounts(t, func(lower, upper builder) {
				lower.file("lf", "lower file", 0o644)
				// 2 MiB: read by passthrough as root, through a backing file the kernel
				// opens itself (unionfs/atime.go, passthroughNoatime).
				lower.file("lbig", strings.Repeat("big lower file\n", 150000), 0o644)
				lower.file("ld/x", "x", 0o644)
				upper.file("uf", "upper file", 0o644)
				upper.file("ud/y", "y", 0o644)
				lower.settle()
				upper.settle()
				// atime before mtime: relatime updates it at the first read.
				for _, b := range []builder{lower, upper} {
					filepath.Walk(b.root, func(p string, _ os.FileInfo, _ error) error {
						ts := []unix.Timespec{unix.NsecToTimespec(old.UnixNano() - 1e9), {Nsec: unix.UTIME_OMIT}}
						return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
					})
				}
			}, o.flags, opts, testedName())
			var documented func(string, []string)
			if o.opt == "strictatime" {
				// FUSE inodes never take an atime in the kernel (S_NOATIME): a read served
				// from the page cache moves none, and one that reaches layerfs moves the
				// upper file's as the upper filesystem's own option (relatime) says.
				documented = func(_ string, want []string) {
					want[4] = strings.Replace(want[4], "moved true", "moved false", 1)
				}
			}
			documentedAnswers(t, mnts, func(m string) []string {
				out := []string{"mount options: " + atimeOption(t, m)}
				atime := func(n string) unix.Timespec {
					var st unix.Stat_t
					must(t, unix.Stat(filepath.Join(m, n), &st))
					return st.Atim
				}
				for _, n := range []string{"lf", "uf", "lf", "uf", "lbig"} {
					before := atime(n)
					// The clock must tick between two reads for strictatime to show.
					time.Sleep(10 * time.Millisecond)
					_, err := os.ReadFile(filepath.Join(m, n))
					out = append(out, fmt.Sprintf("read %s: %s atime moved %v", n, errName(err), atime(n) != before))
				}
				for _, n := range []string{"ld", "ud"} {
					before := atime(n)
					_, err := os.ReadDir(filepath.Join(m, n))
					out = append(out, fmt.Sprintf("list %s: %s atime moved %v", n, errName(err), atime(n) != before))
				}
				return out
			}, documented)
		})
	}
}

// atimeOption returns the access-time words among the mount options of the mount at mnt.
func atimeOption(t *testing.T, mnt string) string {
	e, ok := mountAt(mnt)
	if !ok {
		t.Fatalf("%s is not mounted", mnt)
	}
	var words []string
	for _, w := range strings.Split(e.Options, ",") {
		if strings.Contains(w, "atime") {
			words = append(words, w)
		}
	}
	return strings.Join(words, ",")
}

// TestSetIDDropped: writes, truncates, allocations and chgrp by a caller without CAP_FSETID
// drop set-user-id, and set-group-id where the group may execute or the caller is not in the
// group, as the kernel's VFS rule (setattr_should_drop_sgid) says; root keeps them. The mode
// is read first by a statx asking for it alone, which the kernel answers from its cache
// unless told that the mode changed: a stale set-user-id bit there is what execve would
// honour (xfstests generic/683-685 found it).
func TestSetIDDropped(t *testing.T) {
	needMounts(t)
	modes := map[string]struct {
		mode     uint32
		uid, gid int
	}{
		"sgid-noexec-other": {0o2706, 0, 5678}, "sgid-exec": {0o2777, 0, 5678},
		"sgid-noexec-member": {0o2776, 0, testGID}, "suid-root-writes": {0o4777, 0, 0},
		"suid-truncate": {0o4777, 0, 0}, "suid-allocate": {0o4777, 0, 0},
		"chgrp": {0o2750, testUID, 5678}, "cap-root-truncate": {0o755, 0, 0},
	}
	mnts := twoMounts(t, func(lower, upper builder) {
		for name, m := range modes {
			lower.file(name, "data\n", 0o644)
			lower.chown(name, m.uid, m.gid)
			lower.chmod(name, m.mode)
		}
		lower.xattr("cap-root-truncate", "security.capability", string(capNetRaw))
		lower.settle()
	}, 0, nil, testedName(), "nopassthrough", "noopen")
	sameAnswers(t, mnts, func(m string) []string {
		p := func(n string) string { return filepath.Join(m, n) }
		appendAs := func(user bool, n string) string {
			do := func() string { return errName(appendLine(p(n), "more")) }
			if user {
				return withFsIDs(do)
			}
			return do()
		}
		return []string{
			appendAs(true, "sgid-noexec-other"), modeOnly(p("sgid-noexec-other")), attrs(p("sgid-noexec-other")),
			appendAs(true, "sgid-exec"), modeOnly(p("sgid-exec")), attrs(p("sgid-exec")),
			appendAs(true, "sgid-noexec-member"), modeOnly(p("sgid-noexec-member")), attrs(p("sgid-noexec-member")),
			appendAs(false, "suid-root-writes"), modeOnly(p("suid-root-writes")), attrs(p("suid-root-writes")),
			withFsIDs(func() string { return errName(unix.Truncate(p("suid-truncate"), 1)) }), modeOnly(p("suid-truncate")), attrs(p("suid-truncate")),
			withFsIDs(func() string {
				fd, err := unix.Open(p("suid-allocate"), unix.O_WRONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					return errName(err)
				}
				defer unix.Close(fd)
				return errName(unix.Fallocate(fd, 0, 0, 8192))
			}), modeOnly(p("suid-allocate")), attrs(p("suid-allocate")),
			withFsIDs(func() string { return errName(unix.Chown(p("chgrp"), -1, testGID)) }), modeOnly(p("chgrp")), attrs(p("chgrp")),
			errName(unix.Truncate(p("cap-root-truncate"), 1)), modeOnly(p("cap-root-truncate")), attrs(p("cap-root-truncate")),
		}
	})
}

// TestHardLinkUnderLowerRedirect is TestHardLinkUnderRedirect with the redirects stored in
// lower layers, as layers that were once uppers hold them: one redirect, and a chain of two
// through two layers. A name reached only through them is linked up with the others, whether
// the kernel had looked it up before the copy-up (one node for both names) or not.
func TestHardLinkUnderLowerRedirect(t *testing.T) {
	needMounts(t)
	for _, chain := range []bool{false, true} {
		for _, lookedUp := range []bool{false, true} {
			t.Run(fmt.Sprintf("chain=%v/looked-up=%v", chain, lookedUp), func(t *testing.T) {
				root := t.TempDir()
				base := filepath.Join(root, "base")
				st := stack{Lowers: []string{mkdir(t, base, "l0"), mkdir(t, base, "l1")}, Upper: mkdir(t, base, "upper"), Work: mkdir(t, base, "work")}
				alias := "new/h"
				top, bottom := builder{t, st.Lowers[0]}, builder{t, st.Lowers[1]}
				if chain {
					// l0's a shows l1's b, whose c shows l2's d.
					st.Lowers = append(st.Lowers, mkdir(t, base, "l2"))
					mid := bottom
					bottom = builder{t, st.Lowers[2]}
					top.dir("a", 0o755)
					top.xattr("a", "trusted.overlay.redirect", "/b")
					top.whiteout("b")
					mid.dir("b/c", 0o755)
					mid.xattr("b/c", "trusted.overlay.redirect", "/d")
					mid.whiteout("d")
					mid.settle()
					bottom.file("d/h", "lower", 0o644)
					bottom.link("d/h", "h2")
					alias = "a/c/h"
				} else {
					top.dir("new", 0o755)
					top.xattr("new", "trusted.overlay.redirect", "/old")
					top.whiteout("old")
					bottom.file("old/h", "lower", 0o644)
					bottom.link("old/h", "h2")
				}
				top.settle()
				bottom.settle()
				hardLinkShownAlike(t, root, st, alias, func(p func(string) string) {
					if lookedUp {
						var st unix.Stat_t
						must(t, unix.Stat(p(alias), &st))
					}
					appendTo(t, p("h2"))
				})
			})
		}
	}
}

// TestChownNoIDs: chown(2) with -1 for both ids, which FUSE passes on as a SETATTR naming no
// attribute, copies a lower object up and moves its ctime; of a non-directory it drops the
// set-user-id bit (root's call too), the set-group-id bit where the group may execute or
// the caller is neither root nor in the group, and the capability; a directory keeps its
// bits (pjdfstest's chown/00.t shows the kernel's choices). By root, layerfs keeps the
// set-id bits (README, "What differs"). The user owns the files; a user's call on another's
// set-id file fails on the kernel and changes nothing on layerfs (README).
func TestChownNoIDs(t *testing.T) {
	needMounts(t)
	objects := map[string]struct {
		mode uint32
		gid  int
		cap  bool
	}{
		"setid-exec": {0o6755, testGID, false}, "sgid-noexec-member": {0o2745, testGID, false},
		"sgid-noexec-other": {0o2745, 5678, false}, "plain": {0o644, testGID, false},
		"cap": {0o4755, testGID, true}, "dir": {0o6755, testGID, false},
	}
	type target struct{ name, object, layer string }
	var targets []target
	for object := range objects {
		for _, layer := range []string{"lower", "upper"} {
			for _, caller := range []string{"root", "user"} {
				targets = append(targets, target{layer + "-" + caller + "-" + object, object, layer})
			}
		}
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].name < targets[j].name })
	mnts := twoMounts(t, func(lower, upper builder) {
		for _, tg := range targets {
			o, b := objects[tg.object], lower
			if tg.layer == "upper" {
				b = upper
			}
			if tg.object == "dir" {
				b.dir(tg.name, 0o755)
			} else {
				b.file(tg.name, "data\n", 0o644)
			}
			b.chown(tg.name, testUID, o.gid)
			b.chmod(tg.name, o.mode)
			if o.cap {
				b.xattr(tg.name, "security.capability", string(capNetRaw))
			}
		}
		lower.settle()
	}, 0, nil, testedName(), "noopen")
	documented := func(side string, want []string) {
		for i, tg := range targets {
			if strings.Contains(tg.name, "-root-") && tg.object != "dir" {
				// Only the set-group-id bit the group may not execute stays on the kernel.
				kept := fmt.Sprintf("reg %o ", objects[tg.object].mode&0o7777)
				want[i] = regexp.MustCompile(`reg [0-7]+ `).ReplaceAllString(want[i], kept)
			}
		}
	}
	documentedAnswers(t, mnts, func(m string) []string {
		var out []string
		ctimes := map[string]unix.Timespec{}
		var last time.Time
		for _, tg := range targets {
			var st unix.Stat_t
			must(t, unix.Lstat(filepath.Join(m, tg.name), &st))
			ctimes[tg.name] = st.Ctim
			if c := time.Unix(st.Ctim.Unix()); c.After(last) {
				last = c
			}
		}
		// Past every ctime by more than a tick of the kernel's coarse clock, so that a
		// ctime the call moves reads as moved.
		for time.Since(last) < 20*time.Millisecond {
			time.Sleep(time.Millisecond)
		}
		for _, tg := range targets {
			p := filepath.Join(m, tg.name)
			call := func() string { return errName(unix.Chown(p, -1, -1)) }
			res := ""
			if strings.Contains(tg.name, "-user-") {
				res = withFsIDs(call)
			} else {
				res = call()
			}
			var st unix.Stat_t
			must(t, unix.Lstat(p, &st))
			out = append(out, fmt.Sprintf("%s: %s, %s, ctime moved %v", tg.name, res, attrs(p), st.Ctim != ctimes[tg.name]))
		}
		return out
	}, documented)
}

// TestLinkKeepsOwner: a new name of an existing object leaves its owner, group, mode and
// ACLs alone, whoever makes it and wherever: a user linking a file it may write but does not
// own, a link into a set-group-id directory of another group over a whiteout (the name is
// built in the work directory there), a link into a directory with a default ACL.
func TestLinkKeepsOwner(t *testing.T) {
	needMounts(t)
	mnts := twoMounts(t, func(lower, upper builder) {
		lower.file("rootfile", "data\n", 0o666)
		lower.file("top", "data\n", 0o644)
		lower.dir("open", 0o777)
		lower.dir("theirs", 0o2775)
		lower.chown("theirs", testUID, 5678)
		lower.file("theirs/f", "x", 0o644)
		lower.dir("dacl", 0o777)
		lower.xattr("dacl", posixacl.DefaultXattr, string(aclValue(0o7, 1234, 0o7)))
		lower.settle()
	}, 0, nil, testedName(), "noopen")
	sameAnswers(t, mnts, func(m string) []string {
		p := func(n string) string { return filepath.Join(m, n) }
		userLink := withFsIDs(func() string { return errName(unix.Link(p("rootfile"), p("open/mine"))) })
		gone := errName(unix.Unlink(p("theirs/f")))
		sgidLink := errName(unix.Link(p("top"), p("theirs/f")))
		aclLink := errName(unix.Link(p("top"), p("dacl/t")))
		return []string{
			userLink, attrs(p("rootfile")), attrs(p("open/mine")),
			gone, sgidLink, attrs(p("top")), attrs(p("theirs/f")),
			aclLink, attrs(p("dacl/t")),
		}
	})
}

// TestSetIDAfterPassthroughOpen: a file made set-uid while an unprivileged writer already has
// it open loses the bit at that writer's next write, through passthrough too when the writer
// owns it: the kernel drops privileges on the FUSE file before it writes to the backing file,
// by a SETATTR that names no attribute (setattr.go, chownNoIDs). A writer that does not own
// the file sends the same request as a chown(-1, -1) the kernel would refuse, so layerfs
// changes nothing for it, and through passthrough the bit stays (README, "What differs").
func TestSetIDAfterPassthroughOpen(t *testing.T) {
	needMounts(t)
	mnts := twoMounts(t, func(lower, upper builder) {
		upper.file("mine", "data\n", 0o666)
		upper.chown("mine", testUID, testGID)
		upper.file("theirs", "data\n", 0o666)
		upper.chown("theirs", 2000, testGID)
		upper.settle()
	}, 0, nil, testedName(), "nopassthrough")
	documented := func(side string, want []string) {
		if side == testedName() {
			want[5] = strings.Replace(want[5], "reg 777", "reg 4777", 1)
		}
	}
	documentedAnswers(t, mnts, func(m string) []string {
		var out []string
		for _, name := range []string{"mine", "theirs"} {
			p := filepath.Join(m, name)
			var fd int
			opened := withFsIDs(func() string {
				var err error
				fd, err = unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC, 0)
				return errName(err)
			})
			if opened != "ok" {
				out = append(out, opened, "", "")
				continue
			}
			chmod := errName(unix.Chmod(p, 0o4777))
			wrote := withFsIDs(func() string {
				_, err := unix.Pwrite(fd, []byte("more"), 0)
				return errName(err)
			})
			unix.Close(fd)
			out = append(out, chmod, wrote, attrs(p))
		}
		return out
	}, documented)
}

// TestRenameOverFullUpperDir: renaming a directory over a directory of the upper alone that has
// entries fails with ENOTEMPTY, and, as on the kernel, only after the source was copied up
// (with redirect_dir=on a directory with lower parts moves, so it is): the source then shows
// the link count of a merged directory, and its parent a new mtime (not so for a directory of
// the upper alone). Without redirect_dir the move of such a directory fails with EXDEV first, and nothing
// changes.
func TestRenameOverFullUpperDir(t *testing.T) {
	needMounts(t)
	for _, redirect := range []bool{true, false} {
		t.Run(fmt.Sprintf("redirect_dir=%v", redirect), func(t *testing.T) {
			root := t.TempDir()
			base := newStack(t, filepath.Join(root, "base"))
			lower, upper := builder{t, base.Lowers[0]}, builder{t, base.Upper}
			lower.file("p/merged/f", "lower", 0o644)
			lower.file("p/lowonly/g", "lower", 0o644)
			upper.file("p/merged/u", "upper", 0o644)
			upper.file("full/x", "upper", 0o644)
			upper.dir("pureup", 0o755)
			lower.settle()
			upper.settle()
			var kopts, lopts []string
			if redirect {
				kopts, lopts = []string{"redirect_dir=on"}, []string{"-o", "redirect_dir=on"}
			}
			answers := map[string][]string{}
			for _, side := range []string{"kernel", testedName()} {
				copyTree(t, filepath.Join(root, "base"), filepath.Join(root, side))
				st := rebase(base, filepath.Join(root, "base"), filepath.Join(root, side))
				mnt := mkdir(t, root, "mnt-"+side)
				if side == "kernel" {
					mountKernel(t, st, mnt, append([]string{"index=on", "metacopy=off"}, kopts...)...)
				} else {
					mountLayerfs(t, st, mnt, lopts...)
				}
				p := func(n string) string { return filepath.Join(mnt, n) }
				var out []string
				for _, src := range []string{"p/merged", "p/lowonly", "pureup"} {
					var before, after, st unix.Stat_t
					must(t, unix.Stat(filepath.Dir(p(src)), &before))
					out = append(out, src+" over full: "+errName(unix.Rename(p(src), p("full"))))
					err := unix.Stat(p(src), &st)
					must(t, unix.Stat(filepath.Dir(p(src)), &after))
					out = append(out, fmt.Sprintf("%s: %s nlink %d, parent's mtime moved %v, atime moved %v",
						src, errName(err), st.Nlink, after.Mtim != before.Mtim, after.Atim != before.Atim))
				}
				answers[side] = out
			}
			want, got := answers["kernel"], answers[testedName()]
			for i := range max(len(want), len(got)) {
				if i >= len(want) || i >= len(got) || want[i] != got[i] {
					t.Errorf("answers differ:\n kernel: %q\n %s: %q", want, testedName(), got)
					break
				}
			}
			t.Logf("%q", want)
		})
	}
}

// TestHardLinkUnderRedirect copies up a lower hard link one of whose names is reached only
// through a redirect: its directory was renamed (redirect_dir=on), and the directory's old
// name reused and removed, so the lower path of that name is hidden by a whiteout. The
// kernel's index shows the copy under that name too; layerfs links it there at copy-up, so
// that the kernel mounting layerfs's upper shows it as well.
func TestHardLinkUnderRedirect(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	base := newStack(t, filepath.Join(root, "base"))
	lower := builder{t, base.Lowers[0]}
	lower.file("d1/g/h3", "lower", 0o644)
	lower.link("d1/g/h3", "h1")
	lower.dir("dacl", 0o755)
	lower.file("x/a", "other", 0o644)
	lower.link("x/a", "y")
	lower.settle()
	hardLinkShownAlike(t, root, base, "dacl/sub/g/h3", func(p func(string) string) {
		appendTo(t, p("y"))
		must(t, os.Rename(p("d1"), p("dacl/sub")))
		must(t, os.Mkdir(p("d1"), 0o755))
		must(t, os.Remove(p("d1")))
		appendTo(t, p("h1"))
	})
}

// hardLinkShownAlike copies the stack base (below root) for the kernel (index=on) and
// layerfs, both with redirect_dir=on, runs act on each mount (p makes a path in it), and
// requires name to show two links and "lower and more" on both, and on the kernel mounting
// layerfs's upper afterwards.
func hardLinkShownAlike(t *testing.T, root string, base stack, name string, act func(p func(string) string)) {
	t.Helper()
	shown := func(mnt string) string {
		var st unix.Stat_t
		path := filepath.Join(mnt, name)
		if err := unix.Stat(path, &st); err != nil {
			return errName(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return errName(err)
		}
		return fmt.Sprintf("nlink %d, %q", st.Nlink, data)
	}
	from := filepath.Dir(base.Work)
	answers := map[string]string{}
	for _, side := range []string{"kernel", testedName()} {
		copyTree(t, from, filepath.Join(root, side))
		st := rebase(base, from, filepath.Join(root, side))
		mnt := mkdir(t, root, "mnt-"+side)
		if side == "kernel" {
			mountKernel(t, st, mnt, "index=on", "metacopy=off", "redirect_dir=on")
		} else {
			mountLayerfs(t, st, mnt, "-o", "redirect_dir=on")
		}
		act(func(n string) string { return filepath.Join(mnt, n) })
		answers[side] = shown(mnt)
		if side != "kernel" {
			unmountFuse(t, mnt)
			again := mkdir(t, root, "kernel-on-"+side)
			mountKernel(t, st, again, "redirect_dir=on", "metacopy=off")
			answers["the kernel on "+side+"'s upper"] = shown(again)
		}
	}
	want := answers["kernel"]
	if want != `nlink 2, "lower and more"` {
		t.Fatalf("the kernel shows %s as %s; the test expects what it showed when written", name, want)
	}
	for side, got := range answers {
		if got != want {
			t.Errorf("%s: %s is %s, the kernel shows %s", side, name, got, want)
		}
	}
}

// appendTo appends " and more" to the file at path.
func appendTo(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.WriteString(" and more")
	must(t, err)
	must(t, f.Close())
}

// TestFileHandles: as on the kernel's overlayfs without nfs_export, name_to_handle_at fails
// with EOPNOTSUPP, but for the identifier fanotify asks for (AT_HANDLE_FID), which encodes;
// for a lower file, a copied-up one and a directory.
func TestFileHandles(t *testing.T) {
	needMounts(t)
	mnts := twoMounts(t, func(lower, upper builder) {
		lower.file("f", "lower data\n", 0o644)
		lower.file("d/g", "lower data\n", 0o644)
		lower.settle()
	}, 0, nil, testedName(), "noopen")
	const atHandleFID = 0x200 // AT_HANDLE_FID, which x/sys does not name
	sameAnswers(t, mnts, func(m string) []string {
		p := func(n string) string { return filepath.Join(m, n) }
		handle := func(n string, flags int) string {
			_, _, err := unix.NameToHandleAt(unix.AT_FDCWD, p(n), flags)
			return n + ": " + errName(err)
		}
		var out []string
		for _, n := range []string{"f", "d", "d/g"} {
			out = append(out, handle(n, 0), handle(n, atHandleFID))
		}
		out = append(out, errName(unix.Chmod(p("f"), 0o600)), handle("f", 0), handle("f", atHandleFID))
		return out
	})
}
