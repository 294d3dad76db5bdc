package main

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// TestRemoveStaleSockets: a socket nobody listens on goes; a live one and other files stay.
func TestRemoveStaleSockets(t *testing.T) {
	dir := t.TempDir()
	live, err := net.Listen("unix", filepath.Join(dir, "live.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	dead, err := net.Listen("unix", filepath.Join(dir, "dead.sock"))
	if err != nil {
		t.Fatal(err)
	}
	dead.(*net.UnixListener).SetUnlinkOnClose(false) // as a killed server leaves it
	dead.Close()
	if err := os.WriteFile(filepath.Join(dir, "file.sock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	removeStaleSockets(dir)
	for name, want := range map[string]bool{"live.sock": true, "dead.sock": false, "file.sock": true} {
		_, err := os.Lstat(filepath.Join(dir, name))
		if got := err == nil; got != want {
			t.Errorf("%s there: %v, want %v", name, got, want)
		}
	}
}
