package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/unionfs"
)

func TestParseOptions(t *testing.T) {
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
		{in: "lowerdir=/a:", wantErr: "empty layer"},
		{in: "upperdir=", wantErr: "empty value"},
		{in: "lowerdir=/a,redirect_dir=on", want: unionfs.Config{Lowers: []string{"/a"}, RedirectDir: unionfs.RedirectOn}},
		{in: "lowerdir=/a,redirect_dir=nofollow", want: unionfs.Config{Lowers: []string{"/a"}, RedirectDir: unionfs.RedirectNoFollow}},
		{in: "lowerdir=/a,redirect_dir=maybe", wantErr: "redirect_dir"},
		{in: "lowerdir=/a,squash_to_root", wantErr: "not supported"},
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
