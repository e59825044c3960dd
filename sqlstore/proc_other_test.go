//go:build !linux

package sqlstore_test

import (
	"os"
	"os/exec"
)

// serverUser is who initdb and postgres run as.
type serverUser struct{ Uid, Gid uint32 }

// serverCredential returns nil: the server runs as the user running the
// tests (which must not be root).
func serverCredential() (*serverUser, error) { return nil, nil }

// setServerProcAttr runs cmd in a folder it may read. Without a parent death
// signal, TestMain still stops the server.
func setServerProcAttr(cmd *exec.Cmd, _ *serverUser) { cmd.Dir = os.TempDir() }
