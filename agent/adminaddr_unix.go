//go:build unix

package agent

import (
	"fmt"
	"os"
	"syscall"
)

// checkSocketDir refuses a socket directory that another user could use to
// replace the socket: one owned by another user (say, a /tmp/mesh-UID
// created first by someone else), or writable by others without the
// sticky bit that stops them renaming what is not theirs.
func checkSocketDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if owner := int(sys.Uid); owner != os.Geteuid() && owner != 0 {
		return fmt.Errorf("directory %s belongs to uid %d, not this user (%d), who could then replace the socket; remove it or choose another --admin", dir, owner, os.Geteuid())
	}
	if st.Mode().Perm()&0o022 != 0 && st.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("directory %s is writable by other users (mode %v) without the sticky bit, so they could replace the socket; chmod it go-w or choose another --admin", dir, st.Mode().Perm())
	}
	return nil
}
