package e2e

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup puts a browser in a process group of its own, so that
// killProcessGroup reaches its child processes too, and makes the kernel
// kill it if the test binary dies without cleaning up (a test timeout, say).
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killProcessGroup kills the started cmd and every process of its group.
func killProcessGroup(cmd *exec.Cmd) {
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}
