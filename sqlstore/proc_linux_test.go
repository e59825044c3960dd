package sqlstore_test

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
)

// serverUser is who initdb and postgres run as.
type serverUser = syscall.Credential

// serverCredential returns the user postgres when the tests run as root
// (initdb and postgres refuse to run as root), and nil otherwise: the server
// then runs as the user running the tests.
func serverCredential() (*serverUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoPostgresUser, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user postgres has uid %q, gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// setServerProcAttr runs cmd as cred (unless nil) in a folder it may read,
// and makes the kernel kill it if the test binary dies without cleaning up
// (a test timeout, say): the server is a direct child, not a daemon started
// by pg_ctl, for that reason.
func setServerProcAttr(cmd *exec.Cmd, cred *serverUser) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
	cmd.Dir = os.TempDir()
}
