package app

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	_ "modernc.org/sqlite" // the "sqlite" driver: pure Go, no cgo

	"github.com/passkey-stepup/stepup/sqlstore"
)

// Memory is the path that [OpenDB] takes for a database that lives in memory
// as long as the *sql.DB.
const Memory = ":memory:"

// OpenDB opens (and creates, if need be) the SQLite database file at path,
// or an in-memory database for [Memory]. Foreign keys are on; a file
// database is in WAL mode, waits up to 10 seconds for a concurrent writer
// instead of failing with SQLITE_BUSY, and starts every transaction as a
// writer (BEGIN IMMEDIATE), so that a transaction that reads then writes
// never fails half-way for want of the write lock. An in-memory database
// is one per connection, so its pool has exactly one connection, kept open
// for the life of the *sql.DB.
//
// It does not create the tables: [New] and [OpenUsers] do.
func OpenDB(path string) (*sql.DB, error) {
	if path == "" {
		return nil, fmt.Errorf("app: no database path")
	}
	if path == Memory {
		db, err := sql.Open("sqlite", Memory+"?_pragma=foreign_keys(1)")
		if err != nil {
			return nil, fmt.Errorf("app: open database: %w", err)
		}
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
		return db, nil
	}
	// A URI file name: SQLite decodes %XX in its path, so these three are
	// the characters that must not be taken literally.
	escaped := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	db, err := sql.Open("sqlite", "file:"+escaped+
		"?_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("app: open database %s: %w", path, err)
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("app: open database %s: %w", path, err)
	}
	return db, nil
}

// schema is the demo's own tables, beside sqlstore's webauthn_credentials
// (the passkeys). Times are Unix seconds; money is in cents.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS users (
    handle           BLOB    NOT NULL PRIMARY KEY,  -- WebAuthn user handle: 32 random bytes
    name             TEXT    NOT NULL,
    name_key         TEXT    NOT NULL UNIQUE,       -- the name folded, for sign-in and uniqueness
    created          INTEGER NOT NULL,
    password_hash    TEXT    NOT NULL DEFAULT '',   -- argon2id, PHC string format; '' when none
    password_changed INTEGER NOT NULL DEFAULT 0,
    balance          INTEGER NOT NULL CHECK (balance >= 0)
)`,
	`CREATE TABLE IF NOT EXISTS payments (
    id          INTEGER PRIMARY KEY,
    user_handle BLOB    NOT NULL REFERENCES users (handle) ON DELETE CASCADE,
    payee       TEXT    NOT NULL,
    amount      INTEGER NOT NULL CHECK (amount > 0),
    at          INTEGER NOT NULL
)`,
	`CREATE INDEX IF NOT EXISTS payments_user ON payments (user_handle, id)`,
	// The subject (sub) at the SSO provider of a user who signed in with
	// it: what the provider must sign in again for the user to confirm.
	`CREATE TABLE IF NOT EXISTS sso_links (
    subject     TEXT NOT NULL PRIMARY KEY,
    user_handle BLOB NOT NULL UNIQUE REFERENCES users (handle) ON DELETE CASCADE
)`,
	// When each passkey was added and last used, for the account page. A
	// row goes with its passkey.
	`CREATE TABLE IF NOT EXISTS passkey_use (
    credential_id BLOB    NOT NULL PRIMARY KEY REFERENCES webauthn_credentials (id) ON DELETE CASCADE,
    created       INTEGER NOT NULL,
    last_used     INTEGER NOT NULL DEFAULT 0
)`,
}

// createTables creates sqlstore's table and the demo's, if they do not
// exist.
func createTables(ctx context.Context, db *sql.DB, creds *sqlstore.Store) error {
	if err := creds.CreateTables(ctx); err != nil {
		return fmt.Errorf("app: %w", err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("app: create tables: %w", err)
	}
	defer tx.Rollback()
	for _, stmt := range schema {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("app: create tables: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("app: create tables: %w", err)
	}
	return nil
}
