package unionfs

import (
	"bufio"
	"os"
	"strings"
)

// readaheadKB is how far ahead the kernel reads files of the mount: one whole request
// (MaxWrite, 1 MiB). FUSE starts at 128 KiB, which makes a cold sequential read cost eight
// round trips per MiB.
const readaheadKB = "1024"

// raiseReadahead sets the mount's read-ahead through its backing device info in sysfs, which
// only root may write; elsewhere the kernel's default stays. The device comes from mountinfo,
// not from a stat of the mountpoint, which would be a request to this very server.
func raiseReadahead(mountpoint string) {
	m, ok := mountAt(mountpoint)
	if !ok {
		return
	}
	os.WriteFile("/sys/class/bdi/"+m.dev+"/read_ahead_kb", []byte(readaheadKB), 0)
}

// mountEntry is what layerfs reads of a line of /proc/self/mountinfo.
type mountEntry struct {
	dev     string   // "major:minor"
	options []string // the per-mount options: ro or rw, nosuid, relatime …
	typ     string
}

// mountAt returns the topmost mount on mountpoint: the last mountinfo line for it.
func mountAt(mountpoint string) (mountEntry, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return mountEntry{}, false
	}
	defer f.Close()
	var m mountEntry
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional…] - type source superoptions
		fields := strings.Fields(sc.Text())
		if len(fields) < 7 || unescapeMountinfo(fields[4]) != mountpoint {
			continue
		}
		m, found = mountEntry{dev: fields[2], options: strings.Split(fields[5], ",")}, true
		for i := 6; i+1 < len(fields); i++ {
			if fields[i] == "-" {
				m.typ = fields[i+1]
				break
			}
		}
	}
	return m, found
}

// unescapeMountinfo undoes the octal escapes of /proc/self/mountinfo paths.
func unescapeMountinfo(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}
