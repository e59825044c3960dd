package sqlstore_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
)

// The PostgreSQL tests run against a real server that the test binary starts
// once, on first use, on a free loopback port, with its data in a temporary
// folder, and stops in TestMain. Where PostgreSQL is not installed they skip,
// with one line saying so, except when CI=true or STEPUP_REQUIRE_POSTGRES=1:
// there a missing server fails the package.

// pgBinDir is the folder of initdb and postgres, or "" when none is
// installed.
var pgBinDir string

// pgShared is the server of the test binary, started on first use.
var pgShared struct {
	once sync.Once
	srv  *pgServer
	err  error
}

// findPostgres returns the bin folder of the newest PostgreSQL in Debian's
// layout (/usr/lib/postgresql/N/bin), else the folder of an initdb on PATH,
// else "".
func findPostgres() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return pgVersion(b) - pgVersion(a) })
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		d := filepath.Dir(p)
		if isExecutable(filepath.Join(d, "postgres")) {
			return d
		}
	}
	return ""
}

func pgVersion(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// requirePostgres skips t when PostgreSQL is not installed (TestMain has said
// why, once) and returns the shared server otherwise.
func requirePostgres(t testing.TB) *pgServer {
	t.Helper()
	if pgBinDir == "" {
		t.SkipNow()
	}
	pgShared.once.Do(func() { pgShared.srv, pgShared.err = startPostgres(pgBinDir) })
	if pgShared.err != nil {
		t.Fatal(pgShared.err)
	}
	return pgShared.srv
}

// pgServer is a postgres process, a child of the test binary, listening on
// 127.0.0.1 and on a Unix socket in its own folder, which it deletes when
// stopped. Authentication is trust; durability is off (fsync=off), as
// nothing outlives the tests.
type pgServer struct {
	dir    string // owned by the server's user; data in dir/data, socket in dir
	port   int
	cmd    *exec.Cmd
	exited chan struct{}
	out    *bytes.Buffer // the server's log, for failure messages
	mu     sync.Mutex    // guards out
	schema atomic.Int64  // schemas handed out so far
}

// startPostgres runs initdb into a fresh temporary folder and starts the
// server on a free port, trying another port if the chosen one is taken
// before the server binds it. As root, initdb and postgres run as the user
// postgres (neither runs as root).
func startPostgres(binDir string) (*pgServer, error) {
	start := time.Now()
	dir, err := os.MkdirTemp("", "sqlstore-pg-")
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err == nil && cred != nil {
		err = os.Chown(dir, int(cred.Uid), int(cred.Gid))
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("postgres: %w", err)
	}
	initdb := exec.Command(filepath.Join(binDir, "initdb"),
		"-D", filepath.Join(dir, "data"), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	setServerProcAttr(initdb, cred)
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("postgres: initdb: %v\n%s", err, out)
	}
	for range 3 {
		s := &pgServer{dir: dir, out: &bytes.Buffer{}}
		if s.port, err = freePort(); err != nil {
			break
		}
		if err = s.start(binDir, cred); err == nil {
			if testing.Verbose() {
				fmt.Fprintf(os.Stderr, "sqlstore: PostgreSQL (%s) ready on 127.0.0.1:%d in %v\n", binDir, s.port, time.Since(start).Round(time.Millisecond))
			}
			return s, nil
		}
	}
	os.RemoveAll(dir)
	return nil, err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs postgres and waits until it accepts a connection.
func (s *pgServer) start(binDir string, cred *serverUser) error {
	cmd := exec.Command(filepath.Join(binDir, "postgres"),
		"-D", filepath.Join(s.dir, "data"),
		"-p", strconv.Itoa(s.port),
		"-k", s.dir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200")
	cmd.Stdout, cmd.Stderr = s, s
	setServerProcAttr(cmd, cred)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("postgres: start: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited

	db, err := sql.Open("pgx", s.dsn("postgres", ""))
	if err != nil {
		s.stop()
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("postgres on port %d exited: %s", s.port, s.log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("postgres on port %d did not accept connections within 20s (%v): %s", s.port, err, s.log())
		}
	}
}

// Write collects the server's output.
func (s *pgServer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(p)
}

func (s *pgServer) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// stop asks the server for a fast shutdown (SIGINT), kills it if it takes
// more than five seconds, and waits for it to exit.
func (s *pgServer) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// close stops the server and deletes its folder.
func (s *pgServer) close() {
	s.stop()
	os.RemoveAll(s.dir)
}

// dsn is the pgx connection string for database db on s, with search_path
// set to schema unless it is "".
func (s *pgServer) dsn(db, schema string) string {
	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable&connect_timeout=5", s.port, db)
	if schema != "" {
		dsn += "&search_path=" + schema
	}
	return dsn
}

// openSchema creates a schema of t's own and returns a pool whose
// connections use it, closed when t ends. The schemas keep parallel tests
// apart without the cost of a database each.
func (s *pgServer) openSchema(t testing.TB) *sql.DB {
	t.Helper()
	name := "t" + strconv.FormatInt(s.schema.Add(1), 10)
	admin, err := sql.Open("pgx", s.dsn("postgres", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.ExecContext(t.Context(), "CREATE SCHEMA "+name); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	db, err := sql.Open("pgx", s.dsn("postgres", name))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(4)
	t.Cleanup(func() { db.Close() })
	return db
}

// pgRequired says whether a missing PostgreSQL fails the tests.
func pgRequired() bool {
	return os.Getenv("CI") == "true" || os.Getenv("STEPUP_REQUIRE_POSTGRES") == "1"
}

var errNoPostgresUser = errors.New(`running as root, and there is no user "postgres" to run the server as`)
