package redisstore_test

import (
	"bytes"
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/boj/redistore"
	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup/stepuptest"
)

// Applications that keep their sessions in Redis, with a server-side gorilla
// store, are covered too: there the step-up cookie holds only a session ID
// and the session itself lives in Redis.
//
// The store is github.com/boj/redistore v1.4.1 (March 2025): the
// long-standing gorilla/sessions Redis store (gin-contrib/sessions uses it),
// built against gorilla/sessions v1.4.0 and securecookie v1.1.2, the
// versions stepup uses. It talks to Redis through redigo, next to the
// registry's go-redis v9; the two clients live side by side without
// conflict. The go-redis v9 based stores were considered first, but none is
// served by the Go module proxy this project builds with:
// rbcervilla/redisstore/v9 (and its v8 and v1), ieshan/redisstore and
// joelrose/redisstore all answer "not available".

// newServerSideApp is newApp with the step-up session in Redis: each
// instance has its own redistore (and connection pool) with the shared keys
// and key prefix. It returns the prefix of the session records and the
// codecs of the session cookie.
func newServerSideApp(t *testing.T, srv *redisServer) (*app, string, []securecookie.Codec) {
	t.Helper()
	a := newApp(t, srv)
	hashKey, blockKey := securecookie.GenerateRandomKey(32), securecookie.GenerateRandomKey(32)
	recordPrefix := prefix(t) + "session_"
	a.newStore = func() sessions.Store {
		st, err := redistore.NewRediStore(4, "tcp", srv.addr, "", "", hashKey, blockKey)
		if err != nil {
			t.Fatal(err)
		}
		st.SetKeyPrefix(recordPrefix)
		t.Cleanup(func() { st.Close() })
		return st
	}
	return a, recordPrefix, securecookie.CodecsFromPairs(hashKey, blockKey)
}

func TestServerSideSessionStore(t *testing.T) {
	t.Parallel()
	srv := sharedRedis(t)
	a, recordPrefix, codecs := newServerSideApp(t, srv)
	one, two := a.instance(), a.instance()
	rdb := srv.client(t)
	ctx := t.Context()

	c := a.client("alice")
	one.expectNoGrant(c)
	as := a.sign(one.options(c))
	kept := a.stepupCookie(c)
	var id string
	if err := securecookie.DecodeMulti(defaultSessionName, kept, &id, codecs...); err != nil || id == "" {
		t.Fatalf("the step-up cookie does not hold a session ID: %q %v", id, err)
	}
	pending, err := rdb.Get(ctx, recordPrefix+id).Bytes()
	if err != nil {
		t.Fatalf("no session record in Redis for the cookie's ID: %v", err)
	}

	// The whole ceremony across instances, and the gate on both. The grant
	// is saved under a new session ID, in a record of its own.
	if r := two.verify(c, as); r.status != http.StatusOK {
		t.Fatalf("verify: %d %s", r.status, r.raw)
	}
	var granted string
	if err := securecookie.DecodeMulti(defaultSessionName, a.stepupCookie(c), &granted, codecs...); err != nil || granted == "" || granted == id {
		t.Fatalf("the grant's session ID %q (%v), want a new one, not %q", granted, err, id)
	}
	if n := rdb.Exists(ctx, recordPrefix+granted).Val(); n != 1 {
		t.Fatal("no session record in Redis for the grant's session ID")
	}
	one.expectGrant(c)
	two.expectGrant(c)
	two.revoke(c)
	one.expectNoGrant(c)

	t.Run("old cookie and same assertion reject", func(t *testing.T) {
		// The old cookie names the record from before the grant: what a
		// request that read the session before the verify saved it holds,
		// the pending challenge. Only the registry refuses it.
		if v, err := rdb.Get(ctx, recordPrefix+id).Bytes(); err != nil || !bytes.Equal(v, pending) {
			t.Fatalf("the record from before the grant changed: %v", err)
		}
		a.setStepupCookie(c, kept)
		before := a.countCause(causeReplayed)
		expectError(t, one.verify(c, as), http.StatusBadRequest, codeChallengeExpired)
		if a.countCause(causeReplayed) != before+1 {
			t.Errorf("not refused as a replay by the registry: %s", a.log)
		}
		one.expectNoGrant(c)
		two.expectNoGrant(c)
	})

	t.Run("planted session ID opens nothing reject", func(t *testing.T) {
		// An attacker plants a step-up session ID of his own in the
		// victim's browser; she steps up; with her sign-in cookie too, his
		// copy of the ID finds no grant: it was saved under a new ID.
		attacker := a.client("bob")
		one.options(attacker)
		planted := a.stepupCookie(attacker)
		victim := a.client("alice")
		a.setStepupCookie(victim, planted)
		two.reauth(victim)
		one.expectGrant(victim)
		if a.stepupCookie(victim) == planted {
			t.Fatal("the grant was saved under the planted session ID")
		}
		stolen := a.client("alice") // the victim's sign-in cookie
		a.setStepupCookie(stolen, planted)
		one.expectNoGrant(stolen)
		two.expectNoGrant(stolen)
	})

	t.Run("concurrent verifies of one session one wins", func(t *testing.T) {
		// Both instances read the same record at once; each would grant
		// without the registry.
		b := a.client("bob")
		as := a.sign(one.options(b))
		const n = 8
		var wg sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for k := range n {
			wg.Go(func() {
				_, err := stepuptest.Verify(ctx, b, []*instance{one, two}[k%2].URL+"/api/reauth/verify", as)
				var he *stepuptest.HTTPError
				switch {
				case err == nil:
					mu.Lock()
					won++
					mu.Unlock()
				case errors.As(err, &he) && (he.Code == codeChallengeExpired || he.Code == codeTooManyAttempts):
				default:
					t.Errorf("verify %d: %v", k, err)
				}
			})
		}
		wg.Wait()
		if won != 1 {
			t.Fatalf("%d of %d concurrent verifies were granted, want 1", won, n)
		}
	})

	t.Run("new ceremony after all that pass", func(t *testing.T) {
		d := a.client("alice") // a fresh browser; her two replays are under the limit
		two.reauth(d)
		one.expectGrant(d)
		two.expectGrant(d)
	})
}
