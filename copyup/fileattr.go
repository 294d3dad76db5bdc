package copyup

import (
	"errors"
	"unsafe"

	"github.com/layerfs/layerfs/unionfs/xattrs"
	"golang.org/x/sys/unix"
)

// Inode flags (chattr(1); linux/fs.h), which x/sys does not name.
const (
	// FlagSync is FS_SYNC_FL ('S').
	FlagSync = 0x8
	// FlagImmutable is FS_IMMUTABLE_FL ('i').
	FlagImmutable = 0x10
	// FlagAppend is FS_APPEND_FL ('a').
	FlagAppend = 0x20
	// FlagNoatime is FS_NOATIME_FL ('A').
	FlagNoatime = 0x80
)

// copiedFlags are the flags a copy takes from its source, as the kernel's ovl_copy_fileattr
// copies them (OVL_COPY_FS_FLAGS_MASK): the ones that change how the object is used.
const copiedFlags = FlagSync | FlagNoatime

// GetFlags returns the inode flags of the object open as fd (FS_IOC_GETFLAGS).
func GetFlags(fd int) (uint32, error) {
	// The kernel writes an int whatever the number says (include/uapi/linux/fs.h).
	var flags uint32
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.FS_IOC_GETFLAGS, uintptr(unsafe.Pointer(&flags)))
	if e != 0 {
		return 0, e
	}
	return flags, nil
}

// SetFlags sets the inode flags of the object open as fd (FS_IOC_SETFLAGS).
func SetFlags(fd int, flags uint32) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.FS_IOC_SETFLAGS, uintptr(unsafe.Pointer(&flags)))
	if e != 0 {
		return e
	}
	return nil
}

// ProtAttrValue is what the kernel's overlayfs writes to overlay.protattr for the immutable
// and append-only flags in flags ("" for neither).
func ProtAttrValue(flags uint32) string {
	v := ""
	if flags&FlagAppend != 0 {
		v += "a"
	}
	if flags&FlagImmutable != 0 {
		v += "i"
	}
	return v
}

// ParseProtAttr returns the flags an overlay.protattr value records; ok is false for a value
// the kernel would not take (empty, or with other letters), which it then ignores.
func ParseProtAttr(v []byte) (flags uint32, ok bool) {
	if len(v) == 0 {
		return 0, false
	}
	for _, c := range v {
		switch c {
		case 'a':
			flags |= FlagAppend
		case 'i':
			flags |= FlagImmutable
		default:
			return 0, false
		}
	}
	return flags, true
}

// sourceFlags is what reading a source's inode flags gave, where it was read.
type sourceFlags struct {
	flags uint32
	err   error
	read  bool
}

// copyFileattr gives a regular file or directory under construction its source's inode flags
// as the kernel's overlayfs does on copy-up: 'S' and 'A' on the copy itself; 'i' and 'a' in
// opt.ProtAttr, since on the copy they would keep the overlay from linking it into place,
// from setting its markers and from copying anything up beneath it. A source whose file
// system has no flags is copied without them. sf is the source's flags where the data's copy
// read them.
func copyFileattr(src Source, w int, tmp string, opt Options, sf sourceFlags) error {
	if !sf.read {
		in, err := unix.Openat(src.DirFd, src.Name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			// The kernel reads the flags without opening the object; a server that may
			// not open it copies it without them.
			return nil
		}
		sf.flags, sf.err = GetFlags(in)
		unix.Close(in)
	}
	flags, err := sf.flags, sf.err
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil
	}
	if err != nil {
		return err
	}
	if v := ProtAttrValue(flags); v != "" && opt.ProtAttr != "" {
		err := unix.Lsetxattr(xattrs.Path(w, tmp), opt.ProtAttr, []byte(v), 0)
		// Without extended attributes on the upper, the kernel copies without them too.
		if err != nil && !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EPERM) {
			return err
		}
	}
	if flags&copiedFlags == 0 {
		return nil
	}
	out, err := unix.Openat(w, tmp, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(out)
	have, err := GetFlags(out)
	if err != nil {
		return err
	}
	return SetFlags(out, have&^copiedFlags|flags&copiedFlags)
}
