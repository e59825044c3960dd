package sqlstore_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/sqlstore"
)

// The contract: every test here runs against every backend (SQLite in a
// file and in memory, and PostgreSQL), and must pass the same way on each.

var (
	alice = []byte("handle-alice")
	bob   = []byte("handle-bob")
)

// newCred returns a credential with a random ID and public key, the given
// sign count, and every field a store must keep set to something.
func newCred(count uint32) webauthn.Credential {
	return webauthn.Credential{
		ID:                []byte(rand.Text() + "\x00\xff"), // not valid UTF-8: bytes, not text
		PublicKey:         []byte(rand.Text()),
		AttestationType:   "none",
		AttestationFormat: "none",
		Transport:         []protocol.AuthenticatorTransport{protocol.Internal, protocol.Hybrid},
		Flags:             webauthn.CredentialFlags{UserPresent: true, UserVerified: true, BackupEligible: true},
		Authenticator: webauthn.Authenticator{
			AAGUID:     bytes.Repeat([]byte{0xad}, 16),
			SignCount:  count,
			Attachment: protocol.Platform,
		},
	}
}

// sameCred fails t unless got and want encode to the same JSON: every
// exported field round-tripped.
func sameCred(t testing.TB, got, want webauthn.Credential) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Errorf("credential read back differs\n got: %s\nwant: %s", g, w)
	}
}

// mustAdd stores cred for handle and fails t if it cannot.
func mustAdd(t testing.TB, s *sqlstore.Store, handle []byte, cred webauthn.Credential) {
	t.Helper()
	if err := s.AddCredential(t.Context(), handle, cred); err != nil {
		t.Fatalf("AddCredential: %v", err)
	}
}

// storedCount returns the sign count stored for id.
func storedCount(t testing.TB, s *sqlstore.Store, id []byte) uint32 {
	t.Helper()
	c, _, err := s.CredentialByID(t.Context(), id)
	if err != nil {
		t.Fatalf("CredentialByID: %v", err)
	}
	return c.Authenticator.SignCount
}

func TestSchema(t *testing.T) {
	for _, d := range []sqlstore.Dialect{sqlstore.SQLite, sqlstore.PostgreSQL} {
		s := sqlstore.Schema(d)
		for _, want := range []string{"CREATE TABLE IF NOT EXISTS webauthn_credentials", "PRIMARY KEY", "CREATE INDEX IF NOT EXISTS webauthn_credentials_user_handle", "sign_count", "credential "} {
			if !strings.Contains(s, want) {
				t.Errorf("Schema(%s) lacks %q:\n%s", d, want, s)
			}
		}
	}
	for name, f := range map[string]func(){
		"Schema of an unknown dialect": func() { sqlstore.Schema("mysql") },
		"New with an unknown dialect":  func() { sqlstore.New(openSQLiteMemory(t), "", cookieHandle) },
		"New without a database":       func() { sqlstore.New(nil, sqlstore.SQLite, cookieHandle) },
		"New without currentHandle":    func() { sqlstore.New(openSQLiteMemory(t), sqlstore.SQLite, nil) },
	} {
		func() {
			defer func() {
				if msg, _ := recover().(string); !strings.HasPrefix(msg, "sqlstore: ") {
					t.Errorf("%s: want a panic with a sqlstore: message, got %q", name, msg)
				}
			}()
			f()
		}()
	}
}

func TestCreateTablesTwicePasses(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s, _ := newStore(t, b)
		mustAdd(t, s, alice, newCred(0))
		if err := s.CreateTables(t.Context()); err != nil {
			t.Fatalf("second CreateTables: %v", err)
		}
		if creds, err := s.Credentials(t.Context(), alice); err != nil || len(creds) != 1 {
			t.Fatalf("after a second CreateTables: %d credentials, %v; want the 1 stored", len(creds), err)
		}
	})
}

func TestAddListDelete(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		s, _ := newStore(t, b)
		a1, a2, b1 := newCred(0), newCred(7), newCred(1<<32-1)
		a2.Flags.BackupState = true
		mustAdd(t, s, alice, a1)
		mustAdd(t, s, alice, a2)
		mustAdd(t, s, bob, b1)

		got, err := s.Credentials(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("alice has %d credentials, want 2", len(got))
		}
		want := []webauthn.Credential{a1, a2}
		if bytes.Compare(a1.ID, a2.ID) > 0 {
			want = []webauthn.Credential{a2, a1}
		}
		for i := range want {
			sameCred(t, got[i], want[i])
		}
		if got, _ := s.Credentials(ctx, bob); len(got) != 1 || got[0].Authenticator.SignCount != 1<<32-1 {
			t.Errorf("bob's credentials %+v, want one with sign count 2^32-1", got)
		}
		if got, err := s.Credentials(ctx, []byte("handle-nobody")); err != nil || len(got) != 0 {
			t.Errorf("a user without credentials: %d, %v; want none and no error", len(got), err)
		}

		// Deleting is per owner: bob cannot delete alice's passkey.
		if err := s.DeleteCredential(ctx, bob, a1.ID); !errors.Is(err, stepup.ErrUnknownCredential) {
			t.Errorf("bob deleting alice's credential: %v, want ErrUnknownCredential", err)
		}
		if err := s.DeleteCredential(ctx, alice, a1.ID); err != nil {
			t.Fatalf("DeleteCredential: %v", err)
		}
		if err := s.DeleteCredential(ctx, alice, a1.ID); !errors.Is(err, stepup.ErrUnknownCredential) {
			t.Errorf("deleting again: %v, want ErrUnknownCredential", err)
		}
		if got, _ := s.Credentials(ctx, alice); len(got) != 1 || !bytes.Equal(got[0].ID, a2.ID) {
			t.Errorf("after the delete alice has %d credentials, want only the second", len(got))
		}
		if _, _, err := s.CredentialByID(ctx, a1.ID); !errors.Is(err, stepup.ErrUnknownCredential) {
			t.Errorf("CredentialByID of the deleted credential: %v, want ErrUnknownCredential", err)
		}
	})
}

func TestAddInvalid(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s, _ := newStore(t, b)
		noID := newCred(0)
		noID.ID = nil
		for _, tc := range []struct {
			name   string
			handle []byte
			cred   webauthn.Credential
		}{
			{"empty handle refused", nil, newCred(0)},
			{"65-byte handle refused", bytes.Repeat([]byte{1}, 65), newCred(0)},
			{"credential without ID refused", alice, noID},
		} {
			if err := s.AddCredential(t.Context(), tc.handle, tc.cred); err == nil {
				t.Errorf("%s: AddCredential succeeded", tc.name)
			}
		}
		if err := s.AddCredential(t.Context(), bytes.Repeat([]byte{1}, 64), newCred(0)); err != nil {
			t.Errorf("64-byte handle: %v, want it stored", err)
		}
	})
}

func TestDuplicateCredentialRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		s, _ := newStore(t, b)
		c := newCred(3)
		mustAdd(t, s, alice, c)

		// The same ID again, for another user or the same one, with another key.
		for _, owner := range [][]byte{bob, alice} {
			dup := newCred(0)
			dup.ID = c.ID
			if err := s.AddCredential(ctx, owner, dup); !errors.Is(err, sqlstore.ErrDuplicateCredential) {
				t.Errorf("duplicate ID for %s: %v, want ErrDuplicateCredential", owner, err)
			}
		}
		got, owner, err := s.CredentialByID(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(owner, alice) {
			t.Errorf("owner after duplicates %q, want alice", owner)
		}
		sameCred(t, got, c)
		if creds, _ := s.Credentials(ctx, bob); len(creds) != 0 {
			t.Errorf("bob got %d credentials from a refused duplicate", len(creds))
		}
	})
}

func TestCredentialByIDAcrossUsers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		s, db := newStore(t, b)
		a, bc := newCred(1), newCred(2)
		mustAdd(t, s, alice, a)
		mustAdd(t, s, bob, bc)
		for _, tc := range []struct {
			cred  webauthn.Credential
			owner []byte
		}{{a, alice}, {bc, bob}} {
			got, owner, err := s.CredentialByID(ctx, tc.cred.ID)
			if err != nil {
				t.Fatalf("CredentialByID: %v", err)
			}
			if !bytes.Equal(owner, tc.owner) {
				t.Errorf("owner %q, want %q", owner, tc.owner)
			}
			sameCred(t, got, tc.cred)
		}

		_, owner, err := s.CredentialByID(ctx, []byte("no such credential"))
		if !errors.Is(err, stepup.ErrUnknownCredential) || owner != nil {
			t.Errorf("unknown ID: owner %q, %v; want ErrUnknownCredential", owner, err)
		}
		// A prefix of a stored ID is another ID.
		if _, _, err := s.CredentialByID(ctx, a.ID[:len(a.ID)-1]); !errors.Is(err, stepup.ErrUnknownCredential) {
			t.Errorf("prefix of an ID: %v, want ErrUnknownCredential", err)
		}

		// A database that fails is not "no such credential": stepup would
		// answer 404 and the browser could delete the user's passkey.
		db.Close()
		_, _, err = s.CredentialByID(ctx, a.ID)
		if err == nil || errors.Is(err, stepup.ErrUnknownCredential) {
			t.Errorf("closed database: CredentialByID %v, want an error that is not ErrUnknownCredential", err)
		}
		next := a
		next.Authenticator.SignCount = 9
		err = s.UpdateCredential(ctx, alice, next)
		if err == nil || errors.Is(err, stepup.ErrUnknownCredential) || errors.Is(err, sqlstore.ErrStaleSignCount) {
			t.Errorf("closed database: UpdateCredential %v, want an error that is neither ErrUnknownCredential nor ErrStaleSignCount", err)
		}
		_, err = s.CurrentUser(requestAs(t, string(alice)))
		if err == nil || errors.Is(err, stepup.ErrNoActiveSession) {
			t.Errorf("closed database: CurrentUser %v, want an error that is not ErrNoActiveSession", err)
		}
	})
}

func TestUpdateCredential(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		for _, tc := range []struct {
			name          string
			stored, next  uint32
			owner         []byte
			want          error // nil, ErrStaleSignCount or ErrUnknownCredential
			deletedBefore bool
		}{
			{name: "advancing count passes", stored: 4, next: 5, owner: alice},
			{name: "jump ahead passes", stored: 4, next: 1000, owner: alice},
			{name: "from zero passes", stored: 0, next: 1, owner: alice},
			{name: "zero to zero (synced passkey) passes", stored: 0, next: 0, owner: alice},
			{name: "up to 2^32-1 passes", stored: 1<<32 - 2, next: 1<<32 - 1, owner: alice},
			{name: "backwards refused", stored: 9, next: 5, owner: alice, want: stepup.ErrStaleSignCount}, // what verify tests for
			{name: "equal non-zero refused", stored: 5, next: 5, owner: alice, want: sqlstore.ErrStaleSignCount},
			{name: "back to zero refused", stored: 5, next: 0, owner: alice, want: sqlstore.ErrStaleSignCount},
			{name: "another owner refused", stored: 4, next: 5, owner: bob, want: stepup.ErrUnknownCredential},
			{name: "deleted credential refused", stored: 4, next: 5, owner: alice, want: stepup.ErrUnknownCredential, deletedBefore: true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx := t.Context()
				s, _ := newStore(t, b)
				c := newCred(tc.stored)
				mustAdd(t, s, alice, c)
				mustAdd(t, s, bob, newCred(0))
				if tc.deletedBefore {
					if err := s.DeleteCredential(ctx, alice, c.ID); err != nil {
						t.Fatal(err)
					}
				}

				// What go-webauthn returns after an assertion: the same
				// credential with the new count, flags as the authenticator
				// now reports them.
				next := c
				next.Authenticator.SignCount = tc.next
				next.Flags.BackupState = true
				next.Transport = []protocol.AuthenticatorTransport{protocol.Internal}
				next.Authenticator.CloneWarning = false

				err := s.UpdateCredential(ctx, tc.owner, next)
				if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
					t.Fatalf("UpdateCredential %d -> %d: %v, want %v", tc.stored, tc.next, err, tc.want)
				}
				if tc.want == sqlstore.ErrStaleSignCount && errors.Is(err, stepup.ErrUnknownCredential) ||
					tc.want == stepup.ErrUnknownCredential && errors.Is(err, sqlstore.ErrStaleSignCount) {
					t.Errorf("error %v wraps both sentinels", err)
				}
				if tc.deletedBefore {
					return
				}
				got, owner, err := s.CredentialByID(ctx, c.ID)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(owner, alice) {
					t.Errorf("owner changed to %q", owner)
				}
				if tc.want == nil {
					sameCred(t, got, next) // count, flags, transports: all written
				} else {
					sameCred(t, got, c) // nothing written
				}
			})
		}
	})
}

// TestConcurrentUpdates releases two UpdateCredential calls for one
// credential at the same moment, many times: assertions that verified
// against the same stored count (4) race to write theirs. The database must
// serialize them so that the stored count never goes down and, of two calls
// with the same count, at most one is accepted.
func TestConcurrentUpdates(t *testing.T) {
	const rounds = 40
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		s, _ := newStore(t, b)

		race := func(c webauthn.Credential, counts ...uint32) []error {
			errs := make([]error, len(counts))
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i, n := range counts {
				next := c
				next.Authenticator.SignCount = n
				wg.Go(func() {
					<-start
					errs[i] = s.UpdateCredential(ctx, alice, next)
				})
			}
			close(start)
			wg.Wait()
			return errs
		}
		for round := range rounds {
			c := newCred(4)
			mustAdd(t, s, alice, c)

			// 5 and 6 from 4: whichever lands first, 6 is what stays.
			errs := race(c, 5, 6)
			for i, err := range errs {
				if err != nil && !errors.Is(err, sqlstore.ErrStaleSignCount) {
					t.Fatalf("round %d: call %d: %v, want success or ErrStaleSignCount", round, i, err)
				}
			}
			if errs[1] != nil {
				t.Errorf("round %d: the update to 6 was refused (%v) though nothing wrote 6 or more", round, errs[1])
			}
			if got := storedCount(t, s, c.ID); got != 6 {
				t.Fatalf("round %d: stored count %d after updates to 5 and 6 (errors %v), want 6", round, got, errs)
			}

			// 7 twice from 6: exactly one may write it.
			errs = race(c, 7, 7)
			ok := 0
			for i, err := range errs {
				switch {
				case err == nil:
					ok++
				case !errors.Is(err, sqlstore.ErrStaleSignCount):
					t.Fatalf("round %d: call %d with 7: %v, want success or ErrStaleSignCount", round, i, err)
				}
			}
			if ok != 1 {
				t.Fatalf("round %d: %d of two updates with the same count 7 succeeded, want exactly 1", round, ok)
			}
			if got := storedCount(t, s, c.ID); got != 7 {
				t.Fatalf("round %d: stored count %d, want 7", round, got)
			}
		}
	})
}

func TestCurrentUser(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s, _ := newStore(t, b)
		a1, a2 := newCred(0), newCred(3)
		mustAdd(t, s, alice, a1)
		mustAdd(t, s, alice, a2)
		mustAdd(t, s, bob, newCred(0))

		u, err := s.CurrentUser(requestAs(t, string(alice)))
		if err != nil {
			t.Fatalf("CurrentUser: %v", err)
		}
		if !bytes.Equal(u.WebAuthnID(), alice) {
			t.Errorf("WebAuthnID %q, want alice", u.WebAuthnID())
		}
		creds := u.WebAuthnCredentials()
		if len(creds) != 2 {
			t.Fatalf("alice has %d credentials, want 2", len(creds))
		}
		for _, c := range creds {
			want := a1
			if bytes.Equal(c.ID, a2.ID) {
				want = a2
			}
			sameCred(t, c, want)
		}

		u, err = s.CurrentUser(requestAs(t, "handle-carol"))
		if err != nil || len(u.WebAuthnCredentials()) != 0 || string(u.WebAuthnID()) != "handle-carol" {
			t.Errorf("a user without passkeys: %v, %v; want the user with none", u, err)
		}
		if _, err := s.CurrentUser(requestAs(t, "")); !errors.Is(err, stepup.ErrNoActiveSession) {
			t.Errorf("nobody signed in: %v, want ErrNoActiveSession", err)
		}
		if _, err := s.CurrentUser(requestAs(t, "broken")); !errors.Is(err, errSessionStore) || errors.Is(err, stepup.ErrNoActiveSession) {
			t.Errorf("session store failing: %v, want its error as is", err)
		}
		if _, err := s.CurrentUser(requestAs(t, strings.Repeat("x", 65))); err == nil || errors.Is(err, stepup.ErrNoActiveSession) {
			t.Errorf("65-byte handle: %v, want an error that is not ErrNoActiveSession", err)
		}
	})
}
