package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/sqlstore"
)

// User is an account of the demo bank. Its methods make it a webauthn.User.
type User struct {
	// ID is the WebAuthn user handle: 32 random bytes, never shown.
	ID       []byte
	Name     string
	Created  time.Time
	Passkeys []Passkey
	// PasswordHash is the argon2id hash of the password in the PHC string
	// format; "" when the user has no password.
	PasswordHash    string
	PasswordChanged time.Time
	// Balance is in cents.
	Balance int64
}

// Passkey is a registered credential and when it was made and last used.
type Passkey struct {
	Credential webauthn.Credential
	Created    time.Time
	LastUsed   time.Time
}

// Payment is money the user sent.
type Payment struct {
	To     string
	Amount int64 // cents
	At     time.Time
}

// WebAuthnID returns the user handle.
func (u *User) WebAuthnID() []byte { return u.ID }

// WebAuthnName returns the account name.
func (u *User) WebAuthnName() string { return u.Name }

// WebAuthnDisplayName returns the account name.
func (u *User) WebAuthnDisplayName() string { return u.Name }

// WebAuthnCredentials returns the user's passkeys.
func (u *User) WebAuthnCredentials() []webauthn.Credential {
	creds := make([]webauthn.Credential, len(u.Passkeys))
	for i, p := range u.Passkeys {
		creds[i] = p.Credential
	}
	return creds
}

// hasPassword reports whether the user can sign in and confirm with a
// password.
func (u *User) hasPassword() bool { return u.PasswordHash != "" }

var (
	errNameTaken         = errors.New("name taken")
	errNoUser            = errors.New("no such user")
	errInsufficientFunds = errors.New("insufficient funds")
)

// Users is the demo's user table in SQL: the accounts (users), their
// payments, and their passkeys in sqlstore's webauthn_credentials table.
// It is safe for concurrent use. Make it with [OpenUsers], or [NewUsers] for
// a database in memory.
type Users struct {
	db    *sql.DB
	creds *sqlstore.Store
}

// OpenUsers returns the user table in db, a SQLite database opened by
// [OpenDB], and creates its tables if they do not exist.
func OpenUsers(ctx context.Context, db *sql.DB) (*Users, error) {
	// The demo answers stepup's CurrentUser itself (accounts.CurrentUser,
	// which loads the user's row too), so the store's own is never asked who
	// is signed in.
	creds := sqlstore.New(db, sqlstore.SQLite, func(*http.Request) ([]byte, error) {
		return nil, stepup.ErrNoActiveSession
	})
	if err := createTables(ctx, db, creds); err != nil {
		return nil, err
	}
	return &Users{db: db, creds: creds}, nil
}

// NewUsers returns an empty user table in a new in-memory database, for
// tests. It panics if SQLite cannot be opened.
func NewUsers() *Users {
	db, err := OpenDB(Memory)
	if err != nil {
		panic(err)
	}
	u, err := OpenUsers(context.Background(), db)
	if err != nil {
		panic(err)
	}
	return u
}

func foldName(name string) string { return strings.ToLower(name) }

// create stores a new user with its passkeys, unless the name is taken
// (errNameTaken).
func (s *Users) create(ctx context.Context, u *User) error {
	res, err := s.db.ExecContext(ctx, `INSERT INTO users (handle, name, name_key, created, password_hash, password_changed, balance)
VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name_key) DO NOTHING`,
		u.ID, u.Name, foldName(u.Name), u.Created.Unix(), u.PasswordHash, unix(u.PasswordChanged), u.Balance)
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("create user: %w", err)
	} else if n == 0 {
		return errNameTaken
	}
	for _, p := range u.Passkeys {
		if err := s.addPasskey(ctx, u.ID, p.Credential, p.Created); err != nil {
			// Not in one transaction with the user (sqlstore writes with
			// its own statements): undo by hand.
			_, _ = s.delete(ctx, u.ID)
			return err
		}
	}
	return nil
}

func (s *Users) nameTaken(ctx context.Context, name string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE name_key = ?`, foldName(name)).Scan(&n)
	return n > 0, err
}

const userColumns = `handle, name, created, password_hash, password_changed, balance`

// get returns the user with handle id and its passkeys, or errNoUser.
func (s *Users) get(ctx context.Context, id []byte) (*User, error) {
	return s.load(ctx, s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE handle = ?`, id))
}

// byName returns the user named name (in any case), or errNoUser.
func (s *Users) byName(ctx context.Context, name string) (*User, error) {
	return s.load(ctx, s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE name_key = ?`, foldName(name)))
}

func (s *Users) load(ctx context.Context, row *sql.Row) (*User, error) {
	var (
		u                        User
		created, passwordChanged int64
	)
	err := row.Scan(&u.ID, &u.Name, &created, &u.PasswordHash, &passwordChanged, &u.Balance)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNoUser
	}
	if err != nil {
		return nil, fmt.Errorf("load user: %w", err)
	}
	u.Created, u.PasswordChanged = fromUnix(created), fromUnix(passwordChanged)
	creds, err := s.creds.Credentials(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	if len(creds) == 0 {
		return &u, nil
	}
	uses := map[string][2]int64{}
	rows, err := s.db.QueryContext(ctx, `SELECT p.credential_id, p.created, p.last_used FROM passkey_use p
JOIN webauthn_credentials c ON c.id = p.credential_id WHERE c.user_handle = ?`, u.ID)
	if err != nil {
		return nil, fmt.Errorf("load passkeys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id         []byte
			made, used int64
		)
		if err := rows.Scan(&id, &made, &used); err != nil {
			return nil, fmt.Errorf("load passkeys: %w", err)
		}
		uses[string(id)] = [2]int64{made, used}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load passkeys: %w", err)
	}
	for _, c := range creds {
		use := uses[string(c.ID)]
		u.Passkeys = append(u.Passkeys, Passkey{Credential: c, Created: fromUnix(use[0]), LastUsed: fromUnix(use[1])})
	}
	return &u, nil
}

// addPasskey stores a new passkey of the user with handle id, as
// go-webauthn's FinishRegistration returned it: its flags (backup eligible
// and state) and transports are checked against later assertions.
func (s *Users) addPasskey(ctx context.Context, id []byte, cred webauthn.Credential, now time.Time) error {
	if err := s.creds.AddCredential(ctx, id, cred); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO passkey_use (credential_id, created) VALUES (?, ?) ON CONFLICT DO NOTHING`, cred.ID, now.Unix())
	if err != nil {
		return fmt.Errorf("record passkey: %w", err)
	}
	return nil
}

// passkeyUsed records when a passkey was last used.
func (s *Users) passkeyUsed(ctx context.Context, credID []byte, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE passkey_use SET last_used = ? WHERE credential_id = ?`, now.Unix(), credID)
	return err
}

// setPassword stores a new password hash for the user with handle id.
func (s *Users) setPassword(ctx context.Context, id []byte, hash string, now time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET password_hash = ?, password_changed = ? WHERE handle = ?`, hash, now.Unix(), id)
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("set password: %w", err)
	} else if n == 0 {
		return errNoUser
	}
	return nil
}

// pay takes cents from the balance of the user with handle id and records
// the payment, in one transaction, and returns the new balance. It fails
// with errInsufficientFunds, leaving everything as it was, when the balance
// is too small: the check is part of the UPDATE, so two payments at once
// cannot both spend the same money.
func (s *Users) pay(ctx context.Context, id []byte, to string, cents int64, now time.Time) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("pay: %w", err)
	}
	defer tx.Rollback()
	var balance int64
	err = tx.QueryRowContext(ctx, `UPDATE users SET balance = balance - ? WHERE handle = ? AND balance >= ? RETURNING balance`,
		cents, id, cents).Scan(&balance)
	if errors.Is(err, sql.ErrNoRows) {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE handle = ?`, id).Scan(&n); err != nil {
			return 0, fmt.Errorf("pay: %w", err)
		}
		if n == 0 {
			return 0, errNoUser
		}
		return 0, errInsufficientFunds
	}
	if err != nil {
		return 0, fmt.Errorf("pay: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO payments (user_handle, payee, amount, at) VALUES (?, ?, ?, ?)`, id, to, cents, now.Unix()); err != nil {
		return 0, fmt.Errorf("pay: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("pay: %w", err)
	}
	return balance, nil
}

// payments returns the newest payments of the user with handle id, newest
// first; all of them for limit 0.
func (s *Users) payments(ctx context.Context, id []byte, limit int) ([]Payment, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := s.db.QueryContext(ctx, `SELECT payee, amount, at FROM payments WHERE user_handle = ? ORDER BY id DESC LIMIT ?`, id, limit)
	if err != nil {
		return nil, fmt.Errorf("payments: %w", err)
	}
	defer rows.Close()
	var ps []Payment
	for rows.Next() {
		var (
			p  Payment
			at int64
		)
		if err := rows.Scan(&p.To, &p.Amount, &at); err != nil {
			return nil, fmt.Errorf("payments: %w", err)
		}
		p.At = fromUnix(at)
		ps = append(ps, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("payments: %w", err)
	}
	return ps, nil
}

// delete removes the user with handle id, its payments and its passkeys,
// in one transaction, and reports whether there was one.
func (s *Users) delete(ctx context.Context, id []byte) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("delete user: %w", err)
	}
	defer tx.Rollback()
	// sqlstore's table: every passkey of the user (passkey_use rows go with
	// them), then the user (payments go with it).
	if _, err := tx.ExecContext(ctx, `DELETE FROM webauthn_credentials WHERE user_handle = ?`, id); err != nil {
		return false, fmt.Errorf("delete user: %w", err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM users WHERE handle = ?`, id)
	if err != nil {
		return false, fmt.Errorf("delete user: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("delete user: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("delete user: %w", err)
	}
	return n > 0, nil
}

// DeletePasskey removes the passkey with credential ID id from whichever
// account has it, as support staff would for a lost device, and reports
// whether there was one. The account stays. (The demo's own pages have no
// passkey removal; an application that has one also calls
// stepup's RevokeUser for the owner.)
func (s *Users) DeletePasskey(id []byte) bool {
	ctx := context.Background()
	_, owner, err := s.creds.CredentialByID(ctx, id)
	if err != nil {
		return false
	}
	return s.creds.DeleteCredential(ctx, owner, id) == nil
}

// accounts is the application side that stepup asks: who is signed in (the
// demo's own sign-in session, and the user's row) and which passkeys exist
// (sqlstore, through the user table).
type accounts struct {
	users  *Users
	signIn *signInSessions
	now    func() time.Time
}

var (
	_ stepup.UserStore        = accounts{}
	_ stepup.SignInIdentifier = accounts{}
)

// errSignedOut is what current returns when nobody is signed in, or the
// signed-in account no longer exists.
var errSignedOut = errors.New("nobody signed in")

// CurrentUser returns the user of the request's sign-in session: a *User
// with its passkeys, which the gates hand to the wrapped handlers
// (stepup.UserFrom) and to the password method.
func (a accounts) CurrentUser(r *http.Request) (webauthn.User, error) {
	u, err := a.current(r)
	if errors.Is(err, errSignedOut) {
		return nil, stepup.ErrNoActiveSession
	}
	if err != nil {
		return nil, err
	}
	return u, nil
}

// current returns the signed-in user; errSignedOut when nobody is signed in
// or the account no longer exists, another error when the database fails.
func (a accounts) current(r *http.Request) (*User, error) {
	id, ok := a.signIn.userID(r)
	if !ok {
		return nil, errSignedOut
	}
	u, err := a.users.get(r.Context(), id)
	if errors.Is(err, errNoUser) {
		return nil, errSignedOut
	}
	return u, err
}

// SignInID returns the identifier of the request's sign-in, so that a
// step-up grant belongs to one sign-in: after signing out and in again the
// user confirms anew.
func (a accounts) SignInID(r *http.Request) (string, error) {
	id, ok := a.signIn.signInID(r)
	if !ok {
		return "", stepup.ErrNoActiveSession
	}
	return id, nil
}

// CredentialByID finds a passkey of any user (sqlstore: only "no such row"
// is stepup.ErrUnknownCredential, never a database failure).
func (a accounts) CredentialByID(ctx context.Context, id []byte) (webauthn.Credential, []byte, error) {
	return a.users.creds.CredentialByID(ctx, id)
}

// UpdateCredential stores a passkey's new sign count and flags after use
// (sqlstore refuses a count that does not advance, in the UPDATE itself),
// then when it was used, for the account page.
func (a accounts) UpdateCredential(ctx context.Context, owner []byte, cred webauthn.Credential) error {
	if err := a.users.creds.UpdateCredential(ctx, owner, cred); err != nil {
		return err
	}
	// Only shown on the account page: a failure here is no reason to refuse
	// the step-up or the sign-in.
	_ = a.users.passkeyUsed(ctx, cred.ID, a.now())
	return nil
}

// userOf returns the signed-in user that the gate put in the request
// context of the handler it wraps.
func userOf(r *http.Request) (*User, bool) {
	u, ok := stepup.UserFrom(r.Context())
	if !ok {
		return nil, false
	}
	user, ok := u.(*User)
	return user, ok
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func fromUnix(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0)
}
