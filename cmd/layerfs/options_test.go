package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/layerfs/layerfs/unionfs"
)

func TestParseOptions(t *testing.T) {
	seven, eight := uint32(7), uint32(8)
	cases := []struct {
		in      string
		want    unionfs.Config
		warns   int
		wantErr string
	}{
		{in: "lowerdir=/a:/b,upperdir=/u,workdir=/w", want: unionfs.Config{Lowers: []string{"/a", "/b"}, Upper: "/u", Work: "/w"}},
		{in: "lowerdir=/a,,upperdir=/u,,workdir=/w,", want: unionfs.Config{Lowers: []string{"/a"}, Upper: "/u", Work: "/w"}},
		{in: `lowerdir=/a\:b:/c\,d,upperdir=/u\,v`, want: unionfs.Config{Lowers: []string{"/a:b", "/c,d"}, Upper: "/u,v"}},
		{in: "lowerdir=/a,volatile,userxattr,nodev,nosuid", want: unionfs.Config{Lowers: []string{"/a"}, Volatile: true, UserXattr: true, MountOptions: []string{"nodev", "nosuid"}}},
		{in: "lowerdir=/a,frob=1,index=off,xino=auto", want: unionfs.Config{Lowers: []string{"/a"}}, warns: 1},
		{in: "lowerdir=", wantErr: "empty value"},
		{in: "lowerdir", wantErr: "empty value"},
		{in: "lowerdir=/a::/b", wantErr: "empty layer"},
		{in: "lowerdir=/a,gomaxprocs=0", wantErr: "gomaxprocs"},
		{in: "lowerdir=/a,gomaxprocs=many", wantErr: "gomaxprocs"},
		{in: "lowerdir=/a:", wantErr: "empty layer"},
		{in: "upperdir=", wantErr: "empty value"},
		{in: "lowerdir=/a,redirect_dir=on", want: unionfs.Config{Lowers: []string{"/a"}, RedirectDir: unionfs.RedirectOn}},
		{in: "lowerdir=/a,redirect_dir=nofollow", want: unionfs.Config{Lowers: []string{"/a"}, RedirectDir: unionfs.RedirectNoFollow}},
		{in: "lowerdir=/a,redirect_dir=maybe", wantErr: "redirect_dir"},
		{in: "lowerdir=/a,squash_to_root", want: unionfs.Config{Lowers: []string{"/a"}, IDs: unionfs.IDs{SquashToRoot: true}}},
		{in: "lowerdir=/a,squash_to_uid=7,squash_to_gid=8", want: unionfs.Config{Lowers: []string{"/a"}, IDs: unionfs.IDs{SquashUID: &seven, SquashGID: &eight}}},
		{in: "lowerdir=/a,uidmapping=0:1000:1:1:100000:65536,gidmapping=0:1000:1", want: unionfs.Config{Lowers: []string{"/a"}, IDs: unionfs.IDs{
			UIDMap: []unionfs.IDMap{{Disk: 0, Shown: 1000, Len: 1}, {Disk: 1, Shown: 100000, Len: 65536}},
			GIDMap: []unionfs.IDMap{{Disk: 0, Shown: 1000, Len: 1}}}}},
		{in: "lowerdir=/a,uidmapping=:0:1:1002:1002:0:1", want: unionfs.Config{Lowers: []string{"/a"}, IDs: unionfs.IDs{ // as podman writes it
			UIDMap: []unionfs.IDMap{{Disk: 0, Shown: 1, Len: 1002}, {Disk: 1002, Shown: 0, Len: 1}}}}},
		{in: "lowerdir=/a,xattr_permissions=2", want: unionfs.Config{Lowers: []string{"/a"}, XattrPermissions: 2}},
		{in: "lowerdir=/a,uidmapping=0:1000", wantErr: "triples"},
		{in: "lowerdir=/a,uidmapping=0:x:1", wantErr: "not an id"},
		{in: "lowerdir=/a,gidmapping=0:1:0", wantErr: "empty"},
		{in: "lowerdir=/a,uidmapping=4294967295:0:2", wantErr: "too long"},
		{in: "lowerdir=/a,squash_to_uid=-1", wantErr: "numeric id"},
		{in: "lowerdir=/a,xattr_permissions=3", wantErr: "want 0, 1 or 2"},
		{in: "lowerdir=/a,lowerdir=/b", wantErr: "lowerdir given twice"},
		{in: "lowerdir=/a,io_uring=off", want: unionfs.Config{Lowers: []string{"/a"}, IOUring: unionfs.IOUringOff}},
		{in: "lowerdir=/a,io_uring=on", want: unionfs.Config{Lowers: []string{"/a"}, IOUring: unionfs.IOUringOn}},
		{in: "lowerdir=/a,gomaxprocs=4", want: unionfs.Config{Lowers: []string{"/a"}, Procs: 4}},
		{in: "lowerdir=/a,subtype=mine,fsname=src", want: unionfs.Config{Lowers: []string{"/a"}, Subtype: "mine", FsName: "src"}},
		{in: "lowerdir=/a,log=/var/log/l", want: unionfs.Config{Lowers: []string{"/a"}}},
		{in: "lowerdir=/a,io_uring=maybe", wantErr: "io_uring"},
		{in: "lowerdir=/a,idle_prune=300", want: unionfs.Config{Lowers: []string{"/a"}, IdlePrune: 300 * time.Second}},
		{in: "lowerdir=/a,idle_prune=0", want: unionfs.Config{Lowers: []string{"/a"}, IdlePrune: -1}},
		{in: "lowerdir=/a,idle_prune=-5", wantErr: "idle_prune"},
		{in: "lowerdir=/a,idle_prune=1m", wantErr: "idle_prune"},
		// What mount(8) hands back on "mount -o remount,ro": no warning for FUSE's own options.
		{in: "ro,relatime,remount,user_id=0,group_id=0,default_permissions,allow_other,max_read=1048576,dev,suid", want: unionfs.Config{MountOptions: []string{"ro", "relatime", "dev", "suid"}}},
	}
	for _, c := range cases {
		var cfg unionfs.Config
		warns := 0
		err := parseOptions(c.in, &cfg, func(string) { warns++ })
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q: error %v, want one mentioning %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(cfg, c.want) {
			t.Errorf("%q:\n got  %+v\n want %+v", c.in, cfg, c.want)
		}
		if warns != c.warns {
			t.Errorf("%q: %d warnings, want %d", c.in, warns, c.warns)
		}
	}
}

// FuzzParseOptions: any option string either parses or gives an error; it never panics, and
// no layer comes out empty.
func FuzzParseOptions(f *testing.F) {
	for _, s := range []string{
		"lowerdir=/a:/b,upperdir=/u,workdir=/w",
		`lowerdir=/a\:b:/c\,d,,volatile`,
		"lowerdir=a::b", "", ",,,", `\`, `lowerdir=\\:x`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var cfg unionfs.Config
		if err := parseOptions(s, &cfg, func(string) {}); err != nil {
			return
		}
		for _, l := range cfg.Lowers {
			if l == "" {
				t.Errorf("%q gave an empty lower", s)
			}
		}
	})
}

func TestSplitEscaped(t *testing.T) {
	got := splitEscaped(`a\,b,c\\,d\:e`, ',')
	want := []string{"a,b", `c\\`, `d\:e`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q want %q", got, want)
	}
	if u := unescape(`c\\`); u != `c\` {
		t.Errorf("unescape: %q", u)
	}
}

// TestWrap: explanations break between words, within the width, continuation lines indented.
func TestWrap(t *testing.T) {
	got := wrap("  why: f2 lives in the read-only lower layer, so it cannot really go", 30, "       ")
	want := "  why: f2 lives in the\n       read-only lower layer,\n       so it cannot really go"
	if got != want {
		t.Errorf("wrap:\n%s\nwant\n%s", got, want)
	}
	for _, l := range strings.Split(got, "\n") {
		if len(l) > 30 {
			t.Errorf("line %q longer than 30", l)
		}
	}
	if s := "short"; wrap(s, 0, "") != s || wrap(s, 80, "") != s {
		t.Error("wrap changed text it should leave alone")
	}
}
