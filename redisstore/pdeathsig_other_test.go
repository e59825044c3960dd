//go:build !linux

package redisstore_test

import "os/exec"

// setParentDeathSignal does nothing where the kernel has no parent death
// signal; t.Cleanup and TestMain still stop the servers.
func setParentDeathSignal(*exec.Cmd) {}
