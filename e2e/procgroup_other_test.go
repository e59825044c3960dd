//go:build !linux

package e2e

import "os/exec"

// ownProcessGroup does nothing where the kernel has no parent death
// signal; TestBrowser's cleanup still kills the browser.
func ownProcessGroup(*exec.Cmd) {}

// killProcessGroup kills the started cmd; its children end with it.
func killProcessGroup(cmd *exec.Cmd) { cmd.Process.Kill() }
