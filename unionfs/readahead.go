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
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	dev := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == mountpoint {
			dev = fields[2] // the last mount on the path is ours
		}
	}
	if dev == "" {
		return
	}
	os.WriteFile("/sys/class/bdi/"+dev+"/read_ahead_kb", []byte(readaheadKB), 0)
}

// unescapeMountinfo undoes the octal escapes of /proc/self/mountinfo paths.
func unescapeMountinfo(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}
