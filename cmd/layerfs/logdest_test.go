package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSyslogWriter: each write is one datagram in syslog(3)'s form (daemon.err, a timestamp,
// the tag and pid); a socket that appears later is found, a missing one drops the message.
func TestSyslogWriter(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	w := &syslogWriter{path: sock, tag: "layerfs"}
	if n, err := w.Write([]byte("lost\n")); n != 5 || err != nil {
		t.Fatalf("write without a log daemon: %d %v, want the whole write accepted", n, err)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w.Write([]byte("copy-up of /a failed: no space left on device\n"))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^<27>\w{3} [ \d]\d \d\d:\d\d:\d\d layerfs\[\d+\]: copy-up of /a failed: no space left on device$`)
	if !re.Match(buf[:n]) {
		t.Errorf("message %q", buf[:n])
	}
}

// TestProblemLogDestinations: log=FILE appends prefixed lines, log=stderr writes to the
// terminal, an unwritable file is refused at once.
func TestProblemLogDestinations(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.log")
	w, closeLog, err := openProblemLog(file, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("one\n"))
	w.Write([]byte("two"))
	closeLog()
	data, _ := os.ReadFile(file)
	if !regexp.MustCompile(`^\S+ layerfs\[\d+\]: one\n\S+ layerfs\[\d+\]: two\n$`).Match(data) {
		t.Errorf("log file %q", data)
	}
	var stderr bytes.Buffer
	w, _, err = openProblemLog("", true, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("three\n"))
	if stderr.String() != "layerfs: three\n" {
		t.Errorf("foreground default wrote %q", stderr.String())
	}
	if w, _, _ := openProblemLog("", false, nil); w == nil {
		t.Error("background default: no writer")
	} else if _, ok := w.(*syslogWriter); !ok {
		t.Errorf("background default is %T, want the system log", w)
	}
	if _, _, err := openProblemLog(filepath.Join(dir, "no/such/dir/log"), false, nil); err == nil || !strings.Contains(err.Error(), "log=") {
		t.Errorf("unopenable log file: %v", err)
	}
}

// TestSourceVersion: an -X version wins; otherwise the build info names the source.
func TestSourceVersion(t *testing.T) {
	if v := sourceVersion("v1.2.3"); v != "v1.2.3" {
		t.Errorf("set version: %q", v)
	}
	if v := sourceVersion(""); v == "" || strings.Contains(v, "0.1.0-dev") {
		t.Errorf("build-info version %q", v)
	}
}
