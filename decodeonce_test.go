package stepup_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
)

// TestStepUpCookieDecodedOncePerRequest checks that the gate and the
// handlers decode the step-up cookie at most once per request, whatever the
// application did before: they must go through the store's per-request
// registry (store.Get), never decode on their own (store.New). The gate's
// cost rests on it, which is why it is a test and not only a benchmark.
func TestStepUpCookieDecodedOncePerRequest(t *testing.T) {
	t.Parallel()
	var counter *decodeCountingStore
	e := newBenchEnv(t, 1, func(cs *sessions.CookieStore) sessions.Store {
		counter = &decodeCountingStore{CookieStore: cs}
		return counter
	})
	fresh := e.grant(t, e.su, "")
	stale := e.grant(t, e.stale, "")

	// inner is the gated handler; it loads the session again, as an
	// application handler may.
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := counter.Get(r, stepup.DefaultSessionName); err != nil {
			t.Error(err)
		}
		if _, ok := e.su.LastReauth(r); !ok {
			t.Error("LastReauth found no grant inside the gate")
		}
	})
	gate := e.su.RequireRecentReauth(benchMaxAge)(inner)

	for _, tc := range []struct {
		name      string
		cookie    string
		preloaded bool // the application called store.Get before the gate
		want      int
	}{
		{"pass one decode", fresh, false, http.StatusOK},
		{"pass after application load one decode", fresh, true, http.StatusOK},
		{"deny one decode", stale, false, http.StatusForbidden},
		{"deny after application load one decode", stale, true, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.request(http.MethodGet, "/sensitive", nil, tc.cookie)
			before := counter.decodes.Load()
			if tc.preloaded {
				if _, err := counter.Get(r, stepup.DefaultSessionName); err != nil {
					t.Fatal(err)
				}
			}
			w := httptest.NewRecorder()
			gate.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("got %d %s, want %d", w.Code, w.Body, tc.want)
			}
			if n := counter.decodes.Load() - before; n != 1 {
				t.Fatalf("the step-up cookie was decoded %d times in one request, want 1", n)
			}
		})
	}

	t.Run("options and verify one decode each", func(t *testing.T) {
		before := counter.decodes.Load()
		opts, cookie := e.options(t, e.su, fresh)
		if n := counter.decodes.Load() - before; n != 1 {
			t.Fatalf("options decoded the cookie %d times, want 1", n)
		}
		before = counter.decodes.Load()
		serve(t, e.su.VerifyHandler(), e.request(http.MethodPost, "/api/reauth/verify", e.assertion(t, opts), cookie), http.StatusOK)
		if n := counter.decodes.Load() - before; n != 1 {
			t.Fatalf("verify decoded the cookie %d times, want 1", n)
		}
	})
}
