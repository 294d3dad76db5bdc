package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// faultNode is a loopback node that fails chosen operations by the object's name: a lower
// layer whose disk returns errors.
//
//	eio-open      open fails with EIO
//	eacces        open fails with EACCES
//	eio-read      opens, but reads and copies fail with EIO
//	eio-lookup    its lookup fails with EIO (it is still listed)
//	eio-dir       a directory whose opening fails with EIO
//	eio-xattr     a directory whose extended attributes fail with EIO
type faultNode struct {
	*fs.LoopbackNode
}

var (
	_ fs.NodeWrapChilder    = (*faultNode)(nil)
	_ fs.NodeOpener         = (*faultNode)(nil)
	_ fs.NodeLookuper       = (*faultNode)(nil)
	_ fs.NodeOpendirHandler = (*faultNode)(nil)
	_ fs.NodeGetxattrer     = (*faultNode)(nil)
	_ fs.NodeListxattrer    = (*faultNode)(nil)
	_ fs.NodeCopyFileRanger = (*faultNode)(nil)
)

func (n *faultNode) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &faultNode{ops.(*fs.LoopbackNode)}
}

func (n *faultNode) name() string { return filepath.Base(n.EmbeddedInode().Path(nil)) }

func (n *faultNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	switch n.name() {
	case "eio-open":
		return nil, 0, syscall.EIO
	case "eacces":
		return nil, 0, syscall.EACCES
	}
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	if errno == 0 && n.name() == "eio-read" {
		fh = &eioReadFile{fh.(*fs.LoopbackFile)}
	}
	return fh, fl, errno
}

func (n *faultNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if name == "eio-lookup" {
		return nil, syscall.EIO
	}
	return n.LoopbackNode.Lookup(ctx, name, out)
}

func (n *faultNode) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if n.name() == "eio-dir" {
		return nil, 0, syscall.EIO
	}
	return n.LoopbackNode.OpendirHandle(ctx, flags)
}

func (n *faultNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if n.name() == "eio-xattr" {
		return 0, syscall.EIO
	}
	return n.LoopbackNode.Getxattr(ctx, attr, dest)
}

func (n *faultNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	if n.name() == "eio-xattr" {
		return 0, syscall.EIO
	}
	return 0, 0 // the test's lower files carry no extended attributes
}

func (n *faultNode) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	if _, ok := fhIn.(*eioReadFile); ok {
		return 0, syscall.EIO
	}
	return n.LoopbackNode.CopyFileRange(ctx, fhIn, offIn, out, fhOut, offOut, length, flags)
}

// eioReadFile is an open file whose data cannot be read. It offers no passthrough, so every
// read reaches Read.
type eioReadFile struct{ f *fs.LoopbackFile }

func (f *eioReadFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return nil, syscall.EIO
}
func (f *eioReadFile) Release(ctx context.Context) syscall.Errno { return f.f.Release(ctx) }
func (f *eioReadFile) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return f.f.Getattr(ctx, out)
}

// mountFaulty serves dir through a faultNode tree on mnt from this process until the test ends.
func mountFaulty(t *testing.T, dir, mnt string) {
	t.Helper()
	lb, err := fs.NewLoopbackRoot(dir)
	must(t, err)
	root := &faultNode{lb.(*fs.LoopbackNode)}
	srv, err := fs.Mount(mnt, root, &fs.Options{MountOptions: fuse.MountOptions{
		DirectMount: true, FsName: "faulty", Name: "faulty",
	}})
	must(t, err)
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount the faulty layer: %v", err)
		}
	})
}

// TestLayerErrors: errors from a failing lower layer reach the caller as the kernel's
// overlayfs passes them on (EIO, EACCES), a copy-up that cannot read leaves nothing in the upper,
// and the server lives on.
func TestLayerErrors(t *testing.T) {
	needMounts(t)
	root := t.TempDir()
	src := mkdir(t, root, "src")
	b := builder{t, src}
	for _, f := range []string{"ok", "eio-open", "eacces", "eio-read", "eio-lookup", "eio-dir/x", "eio-xattr/x"} {
		b.file(f, "data of "+f+"\n", 0o644)
	}
	b.settle()
	bottom := mkdir(t, root, "bottom")
	builder{t, bottom}.file("eio-xattr/y", "y\n", 0o644)
	faulty := mkdir(t, root, "faulty")
	mountFaulty(t, src, faulty)

	// Each step is a shell command; its output (stdout and the error line) is compared.
	steps := []string{
		"cat ok",
		"cat eio-open",
		"cat eacces",
		"cat eio-read",
		"stat -c %n eio-lookup",
		"ls",
		"ls eio-dir",
		"cat eio-dir/x",
		"ls eio-xattr",
		"cat eio-xattr/x",
		"echo more >> eio-read",
		"chmod 600 eio-read",
		"echo more >> eacces",
		"echo more >> eio-open",
		"rm eio-read && ls",
		"mv eio-open moved",
		"echo new > ok && cat ok",
		"cat eio-read",
	}
	results := map[string][]string{}
	for _, side := range []string{"kernel", testedName()} {
		st := stack{Lowers: []string{faulty, bottom}, Upper: mkdir(t, root, side+"-upper"), Work: mkdir(t, root, side+"-work")}
		mnt := mkdir(t, root, side)
		if side == "kernel" {
			mountKernel(t, st, mnt)
		} else {
			mountLayerfs(t, st, mnt)
		}
		for _, step := range steps {
			cmd := execIn(mnt, step)
			results[side] = append(results[side], cmd)
		}
		if side != "kernel" {
			if !strings.HasPrefix(mountType(t, mnt), "fuse") || len(serverPids(mnt)) != 1 {
				t.Fatalf("the server is gone after the errors")
			}
		}
		if ents, _ := os.ReadDir(filepath.Join(st.Work, "work")); len(ents) != 0 && side != "kernel" {
			t.Errorf("%s: %d objects left in the work directory", side, len(ents))
		}
		for _, name := range []string{"eio-open", "eacces"} {
			if _, err := os.Lstat(filepath.Join(st.Upper, name)); !os.IsNotExist(err) {
				t.Errorf("%s: %s is in the upper after a failed copy-up (%v)", side, name, err)
			}
		}
	}
	k, l := results["kernel"], results[testedName()]
	for i, step := range steps {
		t.Logf("%-28s kernel: %-40q %s: %q", step, k[i], testedName(), l[i])
		// A directory that cannot be opened fails opendir on the kernel and the first
		// getdents on layerfs, which lists a directory when it is first read: same errno.
		if k[i] != l[i] && failure(k[i]) != failure(l[i]) || failure(k[i]) == "" && k[i] != l[i] {
			t.Errorf("%s: kernel %q, %s %q", step, k[i], testedName(), l[i])
		}
	}
	for i, want := range map[int]string{1: "Input/output error", 2: "Permission denied", 3: "Input/output error", 10: "Input/output error"} {
		if !strings.Contains(l[i], want) {
			t.Errorf("%s: %q, want %s", steps[i], l[i], want)
		}
	}
}

// failure is the errno text and exit status of a failed step's output, "" if it succeeded.
func failure(out string) string {
	i := strings.LastIndex(out, ": ")
	if i < 0 || !strings.HasSuffix(out, "]") {
		return ""
	}
	return out[i+2:]
}

// execIn runs a shell command in dir and returns its output and, on failure, its exit status.
func execIn(dir, command string) string {
	cmd := exec.Command("sh", "-c", command)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		s += " [" + err.Error() + "]"
	}
	return s
}
