package unionfs

import "fmt"

// logf reports a problem that reaches the caller only as an errno.
func (u *unionFS) logf(format string, args ...any) {
	if u.cfg.DebugLog != nil {
		fmt.Fprintf(u.cfg.DebugLog, "layerfs: "+format+"\n", args...)
	}
}
