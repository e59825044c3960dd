// Package sqlstore is a reference [stepup.UserStore] over database/sql, for
// SQLite and PostgreSQL: the application's passkey table, and the
// application's sign-in session plugged in as a function. Use it as is, or
// copy its two source files into your application and adapt them; it is
// small on purpose.
//
// # Schema
//
// One table, webauthn_credentials, one row per passkey ([Schema] has the
// SQL of each dialect):
//
//   - id: the raw credential ID (bytes), the primary key, so it is unique
//     across all users and found by one index lookup, which is what stepup
//     does with every assertion ([Store.CredentialByID]);
//   - user_handle: the owner's WebAuthn user handle (bytes, 1 to 64),
//     indexed, to list a user's passkeys ([Store.Credentials],
//     [Store.CurrentUser]);
//   - sign_count: the signature counter, in a column of its own so that the
//     UPDATE can compare it (see below);
//   - credential: the rest of go-webauthn's webauthn.Credential as JSON
//     (TEXT in SQLite, JSONB in PostgreSQL): public key, flags including
//     backup eligibility and state, transports, attestation. On reading,
//     the id and sign_count columns win over the JSON.
//
// There is no users table: the application has one, and the assertion
// ceremony needs only the user handle. Add columns of your own (a nickname,
// created and last-used times) with defaults; the store reads and writes
// only its four.
//
// # The sign count
//
// stepup refuses an assertion whose sign count does not exceed the stored
// one, but it compares with the count it read before verifying. Two
// assertions verified at the same moment (a cloned authenticator, or a
// replay racing the original) both pass that check against the same stored
// count. [Store.UpdateCredential] therefore writes with
//
//	UPDATE webauthn_credentials SET sign_count = ?, credential = ?
//	WHERE id = ? AND user_handle = ?
//	  AND (sign_count < ? OR (sign_count = 0 AND CAST(? AS BIGINT) = 0))
//
// and the database serializes the two updates of the row: the second is
// checked against what the first wrote. The stored count never goes down,
// and of two updates with the same non-zero count one fails with an error
// wrapping [ErrStaleSignCount]. Both zero passes: authenticators without a
// counter (synced passkeys) always send zero. A separate SELECT, then
// UPDATE, would let both through. stepup answers a failed update with 500
// and grants nothing.
//
// # The signed-in user
//
// [New] takes a function that reads the application's sign-in session and
// returns the signed-in user's handle (nil when nobody is). [Store.CurrentUser]
// calls it and loads that user's passkeys in one query; stepup calls it for
// every ceremony and every gated request. If the application identifies its
// sign-in sessions, [Store.WithSignInID] adds [stepup.SignInIdentifier], so
// that a grant does not outlive the sign-in it was made under.
//
// # Errors
//
// Only "no such credential" wraps [stepup.ErrUnknownCredential]: stepup
// answers it with 404, which tells the browser it may delete the passkey.
// Every database failure is returned as another error (stepup answers 500),
// so an outage never makes a browser forget a user's passkey.
//
// # Drivers
//
// The package imports no driver. For SQLite, import modernc.org/sqlite
// (pure Go, driver name "sqlite") and open the file with a busy timeout and
// WAL, so that concurrent writers wait for each other instead of failing
// with SQLITE_BUSY:
//
//	db, err := sql.Open("sqlite", "app.db?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
//
// Every connection to ":memory:" is a database of its own: give such a pool
// one connection (db.SetMaxOpenConns(1)). For PostgreSQL, import
// github.com/jackc/pgx/v5/stdlib (driver name "pgx"). [Dialect] tells the
// store which placeholders and column types to use.
package sqlstore
