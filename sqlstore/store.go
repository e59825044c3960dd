package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/passkey-stepup/stepup"
)

// ErrStaleSignCount is wrapped by the error of [Store.UpdateCredential] when
// the stored sign count is not below the new one (and they are not both
// zero): a concurrent update got there first with the same or a higher
// count, or an older copy of the credential is being written back. Nothing
// was written.
var ErrStaleSignCount = fmt.Errorf("sqlstore: %w", stepup.ErrStaleSignCount)

// ErrDuplicateCredential is wrapped by the error of [Store.AddCredential]
// when a credential with the same ID is already stored, for any user.
var ErrDuplicateCredential = errors.New("sqlstore: credential ID already registered")

// MaxHandleLen is the longest user handle the store accepts, in bytes, as
// WebAuthn allows (and stepup requires).
const MaxHandleLen = 64

// Store is a [stepup.UserStore] over database/sql: users' passkeys in the
// table of [Schema], and the signed-in user from the application's own
// sign-in session. It is safe for concurrent use. Create it with [New].
type Store struct {
	db      *sql.DB
	dialect Dialect
	handle  func(*http.Request) ([]byte, error)
	q       queries
}

// queries are the store's statements, bound for its dialect in New.
type queries struct {
	insert, list, del, byID, update, count string
}

// New returns a store of the credentials in db, a database of dialect d
// (whose driver the application imports and opens), that asks currentHandle
// who is signed in on a request.
//
// currentHandle reads the application's sign-in session and returns the
// signed-in user's WebAuthn user handle (1 to 64 bytes, the value given to
// [Store.AddCredential]). When nobody is signed in it returns a nil handle
// and a nil error, or an error wrapping [stepup.ErrNoActiveSession]; any other
// error is returned by [Store.CurrentUser] as is, and stepup answers 500.
//
// New panics when db or currentHandle is nil or d is not a known [Dialect]:
// those are wiring mistakes. It does not touch the database; see
// [Store.CreateTables].
func New(db *sql.DB, d Dialect, currentHandle func(r *http.Request) (handle []byte, err error)) *Store {
	if db == nil {
		panic("sqlstore: New needs a *sql.DB")
	}
	if currentHandle == nil {
		panic("sqlstore: New needs a currentHandle function")
	}
	d.schema() // panics on an unknown dialect
	return &Store{
		db:      db,
		dialect: d,
		handle:  currentHandle,
		q: queries{
			insert: d.bind(`INSERT INTO webauthn_credentials (id, user_handle, sign_count, credential) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`),
			list:   d.bind(`SELECT id, sign_count, credential FROM webauthn_credentials WHERE user_handle = ? ORDER BY id`),
			del:    d.bind(`DELETE FROM webauthn_credentials WHERE id = ? AND user_handle = ?`),
			byID:   d.bind(`SELECT user_handle, sign_count, credential FROM webauthn_credentials WHERE id = ?`),
			// The sign count check is part of the UPDATE, so that of two
			// concurrent updates the database lets through only one that
			// advances the count: see UpdateCredential. The CAST is for
			// PostgreSQL, which would type a bare "? = 0" as a 32-bit
			// integer and refuse counts above 2^31-1.
			update: d.bind(`UPDATE webauthn_credentials SET sign_count = ?, credential = ?
WHERE id = ? AND user_handle = ? AND (sign_count < ? OR (sign_count = 0 AND CAST(? AS BIGINT) = 0))`),
			count: d.bind(`SELECT sign_count FROM webauthn_credentials WHERE id = ? AND user_handle = ?`),
		},
	}
}

// CreateTables creates the table and index of [Schema] if they do not exist,
// in one transaction. It does not change a table that exists. Run it once at
// start-up or deployment; two instances running it at the same moment may
// make one of them fail on PostgreSQL (IF NOT EXISTS is not a lock).
func (s *Store) CreateTables(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore: create tables: %w", err)
	}
	defer tx.Rollback()
	for _, stmt := range s.dialect.schema() {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("sqlstore: create tables: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlstore: create tables: %w", err)
	}
	return nil
}

// AddCredential stores cred, as go-webauthn's FinishRegistration returns it,
// as a passkey of the user with the given handle. Its sign count goes into
// the sign_count column and the whole credential, flags and transports
// included, into credential as JSON. It returns an error wrapping
// [ErrDuplicateCredential] when a credential with the same ID is stored
// already, for this user or another (WebAuthn §7.1 step 22: a relying party
// must refuse a credential ID registered to anyone).
func (s *Store) AddCredential(ctx context.Context, handle []byte, cred webauthn.Credential) error {
	if err := checkHandle(handle); err != nil {
		return err
	}
	if len(cred.ID) == 0 {
		return errors.New("sqlstore: credential has no ID")
	}
	js, err := json.Marshal(cred)
	if err != nil {
		return fmt.Errorf("sqlstore: encode credential: %w", err)
	}
	res, err := s.db.ExecContext(ctx, s.q.insert, cred.ID, handle, int64(cred.Authenticator.SignCount), string(js))
	if err != nil {
		return fmt.Errorf("sqlstore: add credential: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlstore: add credential: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %x", ErrDuplicateCredential, cred.ID)
	}
	return nil
}

// Credentials returns the passkeys of the user with the given handle,
// ordered by credential ID; none is an empty result, not an error.
func (s *Store) Credentials(ctx context.Context, handle []byte) ([]webauthn.Credential, error) {
	rows, err := s.db.QueryContext(ctx, s.q.list, handle)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list credentials: %w", err)
	}
	defer rows.Close()
	var creds []webauthn.Credential
	for rows.Next() {
		var (
			id    []byte
			count int64
			js    []byte
		)
		if err := rows.Scan(&id, &count, &js); err != nil {
			return nil, fmt.Errorf("sqlstore: list credentials: %w", err)
		}
		cred, err := decode(id, count, js)
		if err != nil {
			return nil, err
		}
		creds = append(creds, cred)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: list credentials: %w", err)
	}
	return creds, nil
}

// DeleteCredential deletes the passkey with the given ID if it belongs to
// the user with the given handle. It returns an error wrapping
// [stepup.ErrUnknownCredential] when that user has no such passkey
// (another user's is left alone).
func (s *Store) DeleteCredential(ctx context.Context, handle, id []byte) error {
	res, err := s.db.ExecContext(ctx, s.q.del, id, handle)
	if err != nil {
		return fmt.Errorf("sqlstore: delete credential: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlstore: delete credential: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("sqlstore: delete credential %x: %w", id, stepup.ErrUnknownCredential)
	}
	return nil
}

// decode makes a credential of a row: the JSON, with the ID and the sign
// count of their own columns, which are authoritative.
func decode(id []byte, count int64, js []byte) (webauthn.Credential, error) {
	var cred webauthn.Credential
	if err := json.Unmarshal(js, &cred); err != nil {
		return webauthn.Credential{}, fmt.Errorf("sqlstore: decode credential %x: %w", id, err)
	}
	if count < 0 || count > 1<<32-1 {
		return webauthn.Credential{}, fmt.Errorf("sqlstore: credential %x: sign count %d out of range", id, count)
	}
	cred.ID = id
	cred.Authenticator.SignCount = uint32(count)
	return cred, nil
}

func checkHandle(handle []byte) error {
	if len(handle) == 0 || len(handle) > MaxHandleLen {
		return fmt.Errorf("sqlstore: user handle must be 1 to %d bytes, got %d", MaxHandleLen, len(handle))
	}
	return nil
}
