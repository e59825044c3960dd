package sqlstore

import (
	"strconv"
	"strings"
)

// Dialect names the SQL flavour of the database: its column types and its
// placeholders. The store writes every query with ? placeholders and
// rewrites them once, in [New], for dialects that number them.
type Dialect string

// The supported dialects. The store imports no driver: the application
// imports the one it uses and opens the *sql.DB itself.
const (
	// SQLite is SQLite 3.24 or later, as the pure-Go driver
	// modernc.org/sqlite (driver name "sqlite") provides it. Placeholders
	// are ?.
	SQLite Dialect = "sqlite"
	// PostgreSQL is PostgreSQL 9.5 or later through any database/sql driver,
	// such as github.com/jackc/pgx/v5/stdlib (driver name "pgx").
	// Placeholders are $1, $2, ...
	PostgreSQL Dialect = "postgres"
)

// schemas holds each dialect's schema, one statement per element, each
// idempotent. Schema joins them; CreateTables runs them in order.
var schemas = map[Dialect][]string{
	SQLite: {
		`CREATE TABLE IF NOT EXISTS webauthn_credentials (
    id          BLOB    NOT NULL PRIMARY KEY, -- raw credential ID
    user_handle BLOB    NOT NULL,             -- owner's WebAuthn user handle
    sign_count  INTEGER NOT NULL DEFAULT 0 CHECK (sign_count BETWEEN 0 AND 4294967295),
    credential  TEXT    NOT NULL              -- JSON of go-webauthn's webauthn.Credential
)`,
		`CREATE INDEX IF NOT EXISTS webauthn_credentials_user_handle ON webauthn_credentials (user_handle)`,
	},
	PostgreSQL: {
		`CREATE TABLE IF NOT EXISTS webauthn_credentials (
    id          BYTEA  NOT NULL PRIMARY KEY, -- raw credential ID
    user_handle BYTEA  NOT NULL,             -- owner's WebAuthn user handle
    sign_count  BIGINT NOT NULL DEFAULT 0 CHECK (sign_count BETWEEN 0 AND 4294967295),
    credential  JSONB  NOT NULL              -- JSON of go-webauthn's webauthn.Credential
)`,
		`CREATE INDEX IF NOT EXISTS webauthn_credentials_user_handle ON webauthn_credentials (user_handle)`,
	},
}

// Schema returns the SQL that creates the store's table and index in dialect
// d, as statements ending in semicolons: one row per credential in
// webauthn_credentials, keyed by the raw credential ID, indexed by the
// owner's user handle, with the sign count in a column of its own and the
// rest of the credential as JSON. Every statement is idempotent (IF NOT
// EXISTS). Run it with your migration tool, or call [Store.CreateTables]. It
// panics if d is not [SQLite] or [PostgreSQL].
func Schema(d Dialect) string {
	stmts := d.schema()
	var b strings.Builder
	for _, s := range stmts {
		b.WriteString(s)
		b.WriteString(";\n")
	}
	return b.String()
}

func (d Dialect) schema() []string {
	s, ok := schemas[d]
	if !ok {
		panic("sqlstore: unknown dialect " + strconv.Quote(string(d)) + ", want sqlstore.SQLite or sqlstore.PostgreSQL")
	}
	return s
}

// bind rewrites the ? placeholders of query for d. The store's queries hold
// no ? inside literals or identifiers, so every ? is a placeholder.
func (d Dialect) bind(query string) string {
	if d != PostgreSQL {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r != '?' {
			b.WriteRune(r)
			continue
		}
		n++
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}
