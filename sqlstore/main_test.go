package sqlstore_test

import (
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite" // driver "sqlite"

	"github.com/passkey-stepup/stepup/sqlstore"
)

func TestMain(m *testing.M) {
	pgBinDir = findPostgres()
	if pgBinDir == "" {
		if pgRequired() {
			fmt.Fprintln(os.Stderr, "sqlstore: FAIL: PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb), and CI=true or STEPUP_REQUIRE_POSTGRES=1 requires it (apt-get install postgresql)")
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "sqlstore: SKIP: PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb), so the PostgreSQL tests are skipped (apt-get install postgresql to run them)")
	}
	code := m.Run()
	if pgShared.srv != nil {
		pgShared.srv.close()
	}
	os.Exit(code)
}

// backend is a database the contract runs against: open returns a new,
// empty database of t's own, closed when t ends.
type backend struct {
	name    string
	dialect sqlstore.Dialect
	open    func(t testing.TB) *sql.DB
}

// backends are every database of the contract: SQLite embedded in the test
// process (a file, and memory), and a real PostgreSQL server.
var backends = []backend{
	{"sqlite-file", sqlstore.SQLite, openSQLiteFile},
	{"sqlite-memory", sqlstore.SQLite, openSQLiteMemory},
	{"postgres", sqlstore.PostgreSQL, openPostgres},
}

// openSQLiteFile opens a database file in t's temporary folder, with the
// settings an application should use: a busy timeout, so that concurrent
// writers wait for each other instead of failing with SQLITE_BUSY, and WAL,
// so that readers do not wait for writers.
func openSQLiteFile(t testing.TB) *sql.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "app.db")
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// openSQLiteMemory opens an in-memory database. Every connection to
// ":memory:" is a database of its own, so the pool keeps one connection.
func openSQLiteMemory(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

// openPostgres opens a schema of t's own on the shared server.
func openPostgres(t testing.TB) *sql.DB {
	t.Helper()
	return requirePostgres(t).openSchema(t)
}

// signInCookie is the test application's sign-in session: the cookie holds
// the signed-in user's handle as is. A real application reads its own
// session here.
const signInCookie = "app_user"

// errSessionStore is what cookieHandle fails with for the user "broken",
// standing for a failure of the application's session store.
var errSessionStore = errors.New("session store down")

// cookieHandle is the test application's currentHandle function.
func cookieHandle(r *http.Request) ([]byte, error) {
	c, err := r.Cookie(signInCookie)
	if err != nil {
		return nil, nil // nobody signed in
	}
	if c.Value == "broken" {
		return nil, errSessionStore
	}
	return []byte(c.Value), nil
}

// newStore returns a store over a new database of b with its tables made.
func newStore(t testing.TB, b backend) (*sqlstore.Store, *sql.DB) {
	t.Helper()
	db := b.open(t)
	s := sqlstore.New(db, b.dialect, cookieHandle)
	if err := s.CreateTables(t.Context()); err != nil {
		t.Fatalf("CreateTables: %v", err)
	}
	return s, db
}

// forEachBackend runs test against each backend as a parallel subtest.
func forEachBackend(t *testing.T, test func(t *testing.T, b backend)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			test(t, b)
		})
	}
}

// requestAs returns a request whose sign-in cookie names handle ("" for
// nobody).
func requestAs(t testing.TB, handle string) *http.Request {
	t.Helper()
	r, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if handle != "" {
		r.AddCookie(&http.Cookie{Name: signInCookie, Value: handle})
	}
	return r
}
