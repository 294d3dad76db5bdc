package unionfs

import (
	"fmt"
	"log"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/layerfs/layerfs/unionfs/merge"
	"golang.org/x/sys/unix"
)

// cacheTimeout is how long the kernel may keep entries, attributes and negative lookups.
const cacheTimeout = time.Hour

// Server is a live layerfs mount.
type Server struct {
	*fuse.Server
	u          *unionFS
	raw        *hookedFS
	mountpoint string
	// root is the mount's root node.
	root *node
	// done is closed once the mount is gone (Wait).
	done chan struct{}
}

// Mount validates cfg, opens the layers and mounts the merged view on mountpoint. It returns
// once the kernel serves the mount; Wait blocks until it is unmounted. It sets the process
// umask to 0: the modes the kernel sends are final.
func Mount(mountpoint string, cfg Config) (*Server, error) {
	if err := cfg.Validate(mountpoint); err != nil {
		return nil, err
	}
	mnt, err := checkDir("mountpoint", mountpoint)
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		if err := checkUnprivileged(); err != nil {
			return nil, err
		}
	}
	// The kernel applies the caller's umask before it sends a mode; ours must not apply again.
	unix.Umask(0)
	// trusted.* attributes are root's: an unprivileged server writes user.overlay.*, as the
	// kernel does in a user namespace (userxattr).
	priv := detectPrivilege(&cfg)
	cfg.UserXattr = !priv.trusted
	u, err := newUnionFS(cfg)
	if err != nil {
		return nil, err
	}
	if err := u.initOverrides(); err != nil {
		u.close()
		return nil, err
	}
	// With noopen the kernel opens files itself, and it allows no such open of an inode
	// beside a passthrough file (passthrough.go).
	u.pt.off.Store(cfg.NoPassthrough || cfg.NoOpen || os.Geteuid() != 0 || !inInitialUserNS())
	if cfg.Debug && cfg.DebugLog != nil {
		fmt.Fprintln(cfg.DebugLog, u.formats(priv))
	}
	root := &node{u: u}
	for i := range u.Layers {
		root.where = append(root.where, merge.Part{Layer: i})
	}
	var rst unix.Stat_t
	if err := unix.Fstat(u.Layers[0].FD, &rst); err != nil {
		u.close()
		return nil, err
	}
	root.dev, root.ino = rst.Dev, rst.Ino
	rootIno, err := u.rootIno()
	if err != nil {
		u.close()
		return nil, err
	}

	// Word options (noatime, nosuid, ...) are mount(2) flags when we mount directly, and
	// fusermount3's business otherwise. With any of them a direct mount that fails is an
	// error, not a fall-back to fusermount3, which would drop them silently.
	direct := os.Geteuid() == 0
	mflags, options := splitMountFlags(cfg.MountOptions, directMountFlags(cfg))
	if mflags == 0 {
		// go-fuse takes 0 for "nosuid,nodev"; the old magic number means no flags (and
		// cannot go with others: it shares bits with MS_RELATIME and MS_STRICTATIME).
		mflags = unix.MS_MGC_VAL
	}
	if !direct {
		if options, err = fusermountOptions(cfg.MountOptions); err != nil {
			u.close()
			return nil, err
		}
	}
	u.setAtimePolicy()
	if u.pt.enabled() {
		if err := u.passthroughNoatime(); err != nil {
			// Reads then go through the server, which opens lower files with O_NOATIME.
			u.logf("passthrough: off (%v)", err)
			u.pt.off.Store(true)
		}
	}
	uringCap, noUring := uringCapability(cfg)

	// Objects change only through this mount (lowers are read-only and the upper is ours, as
	// with the kernel), and every change it makes reaches the kernel in the reply to the
	// operation or by a notification (copyup.go), so the kernel may cache what it is told.
	timeout := cacheTimeout
	opts := &fs.Options{
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		NullPermissions: true,
		RootStableAttr:  &fs.StableAttr{Ino: rootIno},
		MountOptions: fuse.MountOptions{
			FsName: fsName(cfg),
			Name:   subtype(cfg),
			// The kernel checks permissions against the attributes we report, as overlayfs
			// checks them against the merged inode.
			Options:           append([]string{"default_permissions"}, options...),
			AllowOther:        direct,
			DirectMount:       direct,
			DirectMountStrict: direct && len(options) < len(cfg.MountOptions),
			MaxWrite:          1 << 20,
			// The kernel checks POSIX ACLs itself, as overlayfs does, and caches them per inode:
			// ls -l no longer sends two ACL reads per file every time.
			EnableAcl: true,
			// DONT_MASK: the umask applies only where the directory has no default ACL,
			// which the server knows (reqextras.go); SETXATTR_EXT: setting an ACL says when
			// the set-group-id bit must go;
			// HANDLE_KILLPRIV_V2: set-id bits and capabilities are dropped here, with the
			// kernel's rule, instead of a capability GETXATTR per write (killpriv.go).
			// OVER_IO_URING: the transport (transport.go), where the kernel offers it.
			// NO_EXPORT_SUPPORT: name_to_handle_at fails with EOPNOTSUPP but for a
			// fanotify FID (AT_HANDLE_FID), as on the kernel's overlayfs without nfs_export:
			// a handle FUSE gave would stop opening once the kernel forgot the inode.
			ExtraCapabilities: fuse.CAP_DONT_MASK | fuse.CAP_SETXATTR_EXT | fuse.CAP_HANDLE_KILLPRIV_V2 | fuse.CAP_NO_EXPORT_SUPPORT | uringCap,
			Debug:             cfg.Debug,
			DirectMountFlags:  mflags,
		},
	}
	if cfg.Debug && cfg.DebugLog != nil {
		opts.MountOptions.Logger = log.New(cfg.DebugLog, "", log.Lmicroseconds)
	}
	srv, raw, err := serve(mnt, root, opts, uringCap != 0)
	if err != nil {
		u.close()
		return nil, err
	}
	transport := raw.transport
	if transport == "" {
		transport = "/dev/fuse (io_uring: " + noUring + ")"
	}
	if cfg.Debug && cfg.DebugLog != nil {
		fmt.Fprintln(cfg.DebugLog, "layerfs: transport: "+transport)
	}
	if os.Geteuid() == 0 {
		raiseReadahead(mnt)
	}
	return &Server{Server: srv, u: u, raw: raw, mountpoint: mnt, root: root, done: make(chan struct{})}, nil
}

// serve mounts the node tree as fs.Mount does, with backingHooks between go-fuse's bridge and
// the server (passthrough.go).
// With uring set INIT asks for FUSE over io_uring.
func serve(mnt string, root *node, opts *fs.Options, uring bool) (*fuse.Server, *hookedFS, error) {
	hooks := &backingHooks{pt: &root.u.pt, logf: root.u.logf}
	opts.ServerCallbacks = hooks
	raw := &hookedFS{RawFileSystem: fs.NewNodeFS(root, opts), hooks: hooks, extras: &root.u.extras, births: &root.u.births, noStatx: root.u.cfg.NoBirthTime, logf: root.u.logf,
		load: load{wake: make(chan struct{}, 1)}}
	if uring {
		raw.mountOpts = &opts.MountOptions
	}
	srv, err := fuse.NewServer(raw, mnt, &opts.MountOptions)
	if err != nil {
		return nil, nil, err
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		// As fs.Mount: the serve loop ends by itself when the mount did not happen.
		return nil, nil, err
	}
	return srv, raw, nil
}

// Wait blocks until the mount is gone, then releases the layers.
func (s *Server) Wait() {
	s.Server.Wait()
	close(s.done)
	s.raw.waitTransport()
	s.u.close()
}

// Mountpoint is the absolute path the view is mounted on.
func (s *Server) Mountpoint() string { return s.mountpoint }

// OverIOUring says whether requests come over FUSE over io_uring (else over /dev/fuse).
func (s *Server) OverIOUring() bool { return strings.HasPrefix(s.raw.transport, "io_uring") }

// subtype is what follows "fuse." in the mount's type.
func subtype(cfg Config) string {
	if cfg.Subtype != "" {
		return cfg.Subtype
	}
	return "layerfs"
}

func fsName(cfg Config) string {
	if cfg.FsName != "" {
		return cfg.FsName
	}
	return "layerfs"
}

// directMountFlags are the mount(2) flags when mounting directly as root: none by default, as
// for a kernel overlay mount, so set-uid programs and device nodes in an image work; read-only
// without an upper layer so every write fails with EROFS in the kernel already.
func directMountFlags(cfg Config) uintptr {
	flags := uintptr(0)
	if cfg.ReadOnly() {
		flags |= unix.MS_RDONLY
	}
	return flags
}

// rootIno gives the merged root the number the lookup rules give any merged directory: its
// topmost lower part's.
func (u *unionFS) rootIno() (uint64, error) {
	for _, l := range u.Layers {
		if l.Upper {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstat(l.FD, &st); err != nil {
			return 0, err
		}
		return u.InoOf(l, st.Ino), nil
	}
	return 1, nil
}

// checkUnprivileged names what an unprivileged mount lacks, before fusermount3 fails with
// an exit code only.
func checkUnprivileged() error {
	if err := unix.Access("/dev/fuse", unix.R_OK|unix.W_OK); err != nil {
		return fmt.Errorf("%w: cannot open /dev/fuse (%v): an unprivileged user needs read and write access to it", ErrConfig, err)
	}
	for _, name := range []string{"fusermount3", "fusermount"} {
		if _, err := exec.LookPath(name); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: fusermount3 not found: an unprivileged mount needs it (Debian/Ubuntu package fuse3)", ErrConfig)
}
