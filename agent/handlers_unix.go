//go:build unix

package agent

import (
	"os/exec"
	"syscall"
)

// killGroup makes the handler a process group leader and its kill (on
// timeout) a kill of the whole group: a script's `sleep` would otherwise
// outlive it and hold its output open.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
