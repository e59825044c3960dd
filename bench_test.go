package stepup_test

// Benchmarks of the gate and the ceremony handlers against their floors:
// the unavoidable work done by hand on the same request. The sub-benchmarks
// of a benchmark run in the same go test invocation, named key=value so that
// benchstat puts them side by side. go test -count repeats each
// sub-benchmark in a row; on a shared machine, repeating the invocation
// interleaves the pairs instead:
//
//	for i in $(seq 10); do go test -run '^$' -bench . -benchmem; done > bench.txt
//	go run golang.org/x/perf/cmd/benchstat@latest -col /impl bench.txt
//
// BENCHMARKS.md has the results and what they mean.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// benchMaxAge is the gate's maxAge in the benchmarks.
const benchMaxAge = 5 * time.Minute

// nopHandler is the gated handler: it does nothing, so the gate is all that
// is measured.
var nopHandler = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})

// BenchmarkGate measures RequireRecentReauth with a real grant in a real
// CookieStore cookie. impl=pass lets the request through, impl=deny refuses
// it (a grant an hour old: 403 JSON), impl=pass-signin is pass with a
// UserStore that implements stepup.SignInIdentifier (grants bound to the
// sign-in session).
//
// load=cookie: each request is new, so the step-up session is decoded from
// the cookie (gorilla's registry lives in the request). The floor is a
// handler that only calls store.Get on the same cookie.
//
// load=preloaded: the application already called store.Get for the step-up
// session earlier in the same request; the gate must not decode it again.
// The floor is a handler that reads one value from the already-loaded
// session. impl=handwritten is not a floor but a reference: the least a
// correct gate does (ask for the user, read the clock, compare).
func BenchmarkGate(b *testing.B) {
	e := newBenchEnv(b, 1, nil)
	fresh := e.grant(b, e.su, "")          // granted now: passes
	stale := e.grant(b, e.stale, "")       // granted an hour ago: refused
	boundGrant := e.grant(b, e.signIn, "") // granted now, bound to the sign-in
	gate := e.su.RequireRecentReauth(benchMaxAge)(nopHandler)
	boundGate := e.signIn.RequireRecentReauth(benchMaxAge)(nopHandler)

	floor := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = e.cookies.Get(r, stepup.DefaultSessionName)
	})
	grantKey, _ := e.sessionValue(b, fresh, "grant")
	preloadedFloor := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, _ := e.cookies.Get(r, stepup.DefaultSessionName)
		_ = sess.Values[grantKey]
	})

	type gateCase struct {
		name   string
		h      http.Handler
		cookie string
		want   int
	}
	for _, bc := range []gateCase{
		{"floor", floor, fresh, http.StatusOK},
		{"pass", gate, fresh, http.StatusOK},
		{"deny", gate, stale, http.StatusForbidden},
		{"pass-signin", boundGate, boundGrant, http.StatusOK},
	} {
		base := e.request(http.MethodGet, "/sensitive", nil, bc.cookie)
		b.Run("load=cookie/impl="+bc.name, func(b *testing.B) {
			benchNewRequests(b, bc.h, base, bc.want)
		})
	}
	for _, bc := range []gateCase{
		{"floor", preloadedFloor, fresh, http.StatusOK},
		{"pass", gate, fresh, http.StatusOK},
		{"deny", gate, stale, http.StatusForbidden},
		{"pass-signin", boundGate, boundGrant, http.StatusOK},
		{"handwritten", handwrittenGate(e, benchMaxAge, nopHandler), fresh, http.StatusOK},
	} {
		b.Run("load=preloaded/impl="+bc.name, func(b *testing.B) {
			r := e.request(http.MethodGet, "/sensitive", nil, bc.cookie)
			sess, err := e.cookies.Get(r, stepup.DefaultSessionName) // the application's earlier load
			if err != nil {
				b.Fatal(err)
			}
			sess.Values[handwrittenKey] = handwrittenRecord(time.Now().Unix(), e.user.Handle)
			w := newBenchWriter()
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				w.reset()
				bc.h.ServeHTTP(w, r)
			}
			cpu.report(b)
			if w.status() != bc.want {
				b.Fatalf("status %d, want %d", w.status(), bc.want)
			}
		})
	}
}

// benchNewRequests serves a new copy of base per iteration, so that every
// iteration decodes the cookie once.
func benchNewRequests(b *testing.B, h http.Handler, base *http.Request, want int) {
	w := newBenchWriter()
	h.ServeHTTP(w, cloneRequest(base))
	if w.status() != want {
		b.Fatalf("status %d, want %d", w.status(), want)
	}
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, cloneRequest(base))
	}
	cpu.report(b)
}

// handwrittenKey holds the grant of handwrittenGate, in a format of its own
// (Unix seconds, then the user handle) so that the reference does not
// depend on stepup's: the benchmark adds it to the loaded session.
const handwrittenKey = "bench.grant"

func handwrittenRecord(at int64, handle []byte) []byte {
	return append(binary.BigEndian.AppendUint64(nil, uint64(at)), handle...)
}

// handwrittenGate is the least a correct gate does once the session is
// loaded: ask for the user, read the grant and the clock, compare.
func handwrittenGate(e *benchEnv, maxAge time.Duration, next http.Handler) http.Handler {
	limit := int64(maxAge / time.Second)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := e.users.CurrentUser(r)
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		sess, _ := e.cookies.Get(r, stepup.DefaultSessionName)
		raw, _ := sess.Values[handwrittenKey].([]byte)
		if len(raw) < 9 || !bytes.Equal(raw[8:], u.WebAuthnID()) {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		if age := time.Now().Unix() - int64(binary.BigEndian.Uint64(raw)); age > limit || age < -5 {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// BenchmarkGateParallel is the gate's throughput on all cores (GOMAXPROCS
// goroutines), each request new (one cookie decode each). req/s counts
// requests per second over all cores.
func BenchmarkGateParallel(b *testing.B) {
	e := newBenchEnv(b, 1, nil)
	fresh := e.grant(b, e.su, "")
	gate := e.su.RequireRecentReauth(benchMaxAge)(nopHandler)
	floor := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = e.cookies.Get(r, stepup.DefaultSessionName)
	})
	base := e.request(http.MethodGet, "/sensitive", nil, fresh)
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{{"floor", floor}, {"pass", gate}} {
		b.Run("impl="+bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w := newBenchWriter()
				for pb.Next() {
					w.reset()
					bc.h.ServeHTTP(w, cloneRequest(base))
					if w.code != 0 {
						b.Errorf("status %d", w.code)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// verifyCase is one prepared ceremony: the assertion, the challenge it
// answers, and the request carrying the assertion and the cookie that holds
// the challenge.
type verifyCase struct {
	body      []byte
	challenge string // base64url, as in the options
	req       *http.Request
}

// prepareVerify runs n options requests and signs each: n valid, distinct
// ceremonies whose sign counters increase in order. It is not timed.
func (e *benchEnv) prepareVerify(b *testing.B, n int) []verifyCase {
	cases := make([]verifyCase, n)
	for i := range cases {
		opts, cookie := e.options(b, e.su, "")
		var o struct {
			Challenge string `json:"challenge"`
		}
		if err := json.Unmarshal(opts, &o); err != nil {
			b.Fatal(err)
		}
		body := e.assertion(b, opts)
		cases[i] = verifyCase{
			body:      body,
			challenge: o.Challenge,
			req:       e.request(http.MethodPost, "/api/reauth/verify", body, cookie),
		}
	}
	return cases
}

// BenchmarkVerify measures the verify handler on a valid ES256 assertion
// against the floor: parse the assertion body, one store.Get of the same
// cookie, ValidateLogin, one store.Save of the session with a grant.
//
// Every verify consumes its challenge and must see the sign counter
// advance, so b.N ceremonies are prepared (options + signature) with the
// timer stopped, and iteration i verifies ceremony i. The timed loop holds
// only the handler (or the floor) on a ready *http.Request.
func BenchmarkVerify(b *testing.B) {
	e := newBenchEnv(b, 1, nil)

	_, withPending := e.options(b, e.su, "")
	pendingKey, _ := e.sessionValue(b, withPending, "pending")
	b.Run("impl=floor", func(b *testing.B) {
		cases := e.prepareVerify(b, b.N)
		user := &stepuptest.User{Handle: e.user.Handle, Name: e.user.Name, Credentials: []webauthn.Credential{e.user.Credentials[0]}}
		w := newBenchWriter()
		b.ReportAllocs()
		b.ResetTimer()
		cpu := startCPU()
		for i := range b.N {
			w.reset()
			c := &cases[i]
			parsed, err := protocol.ParseCredentialRequestResponseBytes(c.body)
			if err != nil {
				b.Fatal(err)
			}
			sess, _ := e.cookies.Get(c.req, stepup.DefaultSessionName)
			cred, err := e.wa.ValidateLogin(user, webauthn.SessionData{
				Challenge:        c.challenge,
				RelyingPartyID:   testRPID,
				UserID:           user.Handle,
				UserVerification: protocol.VerificationRequired,
			}, parsed)
			if err != nil {
				b.Fatal(err)
			}
			user.Credentials[0] = *cred
			sess.Values[handwrittenKey] = handwrittenRecord(time.Now().Unix(), user.Handle)
			delete(sess.Values, pendingKey)
			if err := e.cookies.Save(c.req, w, sess); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		cpu.report(b)
	})

	b.Run("impl=stepup", func(b *testing.B) {
		verify := e.newStepUp(b).VerifyHandler() // a registry that has room for b.N challenges
		cases := e.prepareVerify(b, b.N)
		w := newBenchWriter()
		b.ReportAllocs()
		b.ResetTimer()
		cpu := startCPU()
		for i := range b.N {
			w.reset()
			verify.ServeHTTP(w, cases[i].req)
			if w.code != http.StatusOK {
				b.Fatalf("verify %d: status %d", i, w.code)
			}
		}
		b.StopTimer()
		cpu.report(b)
	})
}

// BenchmarkOptions measures the options handler against the floor: one
// store.Get of the same cookie, BeginLogin (user verification required),
// one store.Save of the challenge. The floor writes no response body;
// impl=floor+json is the floor that also writes the options with
// encoding/json, as a hand-written handler must, for reference.
//
// The cookie holds a grant and two pending challenges, so the saved one
// holds a grant and three, the most stepup keeps: cookie-bytes (name=value)
// and set-cookie-bytes (the whole header) report its size.
func BenchmarkOptions(b *testing.B) {
	for _, n := range []int{1, 50} {
		e := newBenchEnv(b, n, nil)
		cookie := e.grant(b, e.su, "")
		_, cookie = e.options(b, e.su, cookie)
		_, cookie = e.options(b, e.su, cookie)
		base := e.request(http.MethodPost, "/api/reauth/options", nil, cookie)
		full := e.checkFullSession(b, cookie)

		floor := func(writeBody bool) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sess, _ := e.cookies.Get(r, stepup.DefaultSessionName)
				a, _, err := e.wa.BeginLogin(e.user, webauthn.WithUserVerification(protocol.VerificationRequired))
				if err != nil {
					b.Fatal(err)
				}
				sess.Values["bench.challenge"] = []byte(a.Response.Challenge)
				if err := e.cookies.Save(r, w, sess); err != nil {
					b.Fatal(err)
				}
				if writeBody {
					w.Header().Set("Content-Type", "application/json")
					_ = json.NewEncoder(w).Encode(a.Response)
				}
			})
		}

		for _, bc := range []struct {
			name string
			h    http.Handler
		}{{"floor", floor(false)}, {"stepup", e.su.OptionsHandler()}, {"floor+json", floor(true)}} {
			b.Run(fmt.Sprintf("passkeys=%d/impl=%s", n, bc.name), func(b *testing.B) {
				benchNewRequests(b, bc.h, base, http.StatusOK)
				if bc.name == "stepup" {
					b.ReportMetric(float64(len(full.nameValue)), "cookie-bytes")
					b.ReportMetric(float64(full.header), "set-cookie-bytes")
				}
			})
		}
	}
}

// fullSession is the step-up cookie the options handler writes for a
// session holding a grant and the most pending challenges it keeps.
type fullSession struct {
	nameValue string // name=value
	header    int    // length of the whole Set-Cookie header
}

// checkFullSession runs the options handler on cookie (a grant and two
// pending challenges) and checks, without reading stepup's record format,
// that the cookie it writes holds a grant and three pending challenges, the
// most it keeps: the pending value grew by one challenge, a further options
// call leaves its size as it is (the oldest is dropped), and the gate
// passes.
func (e *benchEnv) checkFullSession(b *testing.B, cookie string) fullSession {
	w := newBenchWriter()
	e.su.OptionsHandler().ServeHTTP(w, e.request(http.MethodPost, "/api/reauth/options", nil, cookie))
	full := fullSession{nameValue: w.stepupCookie()}
	full.header, _ = w.setCookieLen()
	_, two := e.sessionValue(b, cookie, "pending")
	_, three := e.sessionValue(b, full.nameValue, "pending")
	_, again := e.options(b, e.su, full.nameValue)
	_, four := e.sessionValue(b, again, "pending")
	if len(three) <= len(two) || len(four) != len(three) {
		b.Fatalf("pending value sizes %d, %d, %d: the session does not hold three challenges", len(two), len(three), len(four))
	}
	serve(b, e.su.RequireRecentReauth(benchMaxAge)(nopHandler), e.request(http.MethodGet, "/sensitive", nil, full.nameValue), http.StatusOK)
	return full
}
