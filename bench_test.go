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
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/securecookie"

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
// pass minus the handwritten gate is what stepup's own checks, keys and the
// MemoryRegistry's read cost.
func BenchmarkGate(b *testing.B) {
	e := newBenchEnv(b, 1, nil)
	fresh := e.grant(b, e.su, "")          // granted now: passes
	stale := e.grant(b, e.stale, "")       // granted an hour ago: refused
	boundGrant := e.grant(b, e.signIn, "") // granted now, bound to the sign-in
	gate := e.su.RequireRecentReauth(benchMaxAge)(nopHandler)
	boundGate := e.signIn.RequireRecentReauth(benchMaxAge)(nopHandler)

	floor := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = e.cookies.Get(r, "stepup")
	})
	grantKey, _ := e.sessionValue(b, fresh, "grant")
	preloadedFloor := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, _ := e.cookies.Get(r, "stepup")
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
			sess, err := e.cookies.Get(r, "stepup") // the application's earlier load
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
// iteration decodes the cookie once. It returns the writer as the last
// iteration left it.
func benchNewRequests(b *testing.B, h http.Handler, base *http.Request, want int) *benchWriter {
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
	return w
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
		sess, _ := e.cookies.Get(r, "stepup")
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
		_, _ = e.cookies.Get(r, "stepup")
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

// verifyCase is one prepared ceremony: the request carrying the assertion
// and the cookie that holds its challenge.
type verifyCase struct {
	req *http.Request
}

// prepareVerify runs n options requests on stepup's handler and signs each:
// n valid, distinct ceremonies whose sign counters increase in order. With
// floor set, each cookie holds the floor's own pending record
// (floorPendingKey) in place of stepup's. It is not timed.
func (e *benchEnv) prepareVerify(b *testing.B, n int, floor bool) []verifyCase {
	cases := make([]verifyCase, n)
	for i := range cases {
		opts, cookie := e.options(b, e.su, "")
		body := e.assertion(b, opts)
		if floor {
			cookie = e.floorVerifyCookie(b, opts, cookie)
		}
		cases[i] = verifyCase{req: e.request(http.MethodPost, "/api/reauth/verify", body, cookie)}
	}
	return cases
}

// floorPendingKey holds the floor's pending ceremony in the session: the
// raw challenge (32 bytes), its expiry (Unix seconds, 8 bytes) and the user
// handle, in a format of its own.
const floorPendingKey = "bench.pending"

// floorVerifyCookie returns cookie with stepup's pending record replaced by
// the floor's for the challenge of opts: the same session otherwise, made
// by the same CookieStore.
func (e *benchEnv) floorVerifyCookie(b *testing.B, opts []byte, cookie string) string {
	var o struct {
		Challenge string `json:"challenge"`
	}
	if err := json.Unmarshal(opts, &o); err != nil {
		b.Fatal(err)
	}
	challenge, err := base64.RawURLEncoding.DecodeString(o.Challenge)
	if err != nil || len(challenge) != 32 {
		b.Fatalf("challenge %q: %v", o.Challenge, err)
	}
	values := e.sessionValues(b, cookie)
	key, _ := e.sessionValue(b, cookie, "pending")
	delete(values, key)
	rec := binary.BigEndian.AppendUint64(challenge, uint64(time.Now().Add((2 * time.Minute)).Unix()))
	values[floorPendingKey] = append(rec, e.user.Handle...)
	encoded, err := securecookie.EncodeMulti("stepup", values, e.cookies.Codecs...)
	if err != nil {
		b.Fatal(err)
	}
	return "stepup" + "=" + encoded
}

// floorVerifyOK is the floor's answer to a verify that succeeded.
var floorVerifyOK = []byte(`{"status":"ok"}` + "\n")

// floorVerify is the least a correct verify handler does, written by hand:
// read the body (at most 16 KiB, as stepup), parse the assertion, load the
// session, match the challenge against the session's pending one (same
// user, unexpired), consume it in a MemoryRegistry (single use even for a
// replayed older cookie), verify with go-webauthn (user verification
// required), refuse a counter that did not advance, keep the updated
// credential, save the session with a grant and without the challenge, and
// answer 200 with a small JSON body. It finds the credential among the
// user's own (user.Credentials); stepup asks the UserStore.
func floorVerify(b *testing.B, e *benchEnv, reg *stepup.MemoryRegistry, user *stepuptest.User) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<10))
		if err != nil {
			b.Fatal(err)
		}
		parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
		if err != nil {
			b.Fatal(err)
		}
		sess, _ := e.cookies.Get(r, "stepup")
		rec, _ := sess.Values[floorPendingKey].([]byte)
		challenge, err := base64.RawURLEncoding.Strict().DecodeString(parsed.Response.CollectedClientData.Challenge)
		now := time.Now().Unix()
		if err != nil || len(rec) < 40 || subtle.ConstantTimeCompare(rec[:32], challenge) != 1 ||
			!bytes.Equal(rec[40:], user.Handle) || int64(binary.BigEndian.Uint64(rec[32:40])) < now {
			b.Fatal("challenge does not match")
		}
		ttl := time.Duration(int64(binary.BigEndian.Uint64(rec[32:40]))-now+1) * time.Second
		var res [1]stepup.Result
		consume := []stepup.Op{{Kind: stepup.OpSwap, Key: string(rec[:32]), New: 1, TTL: ttl}}
		if failed, err := reg.Update(r.Context(), consume, res[:]); err != nil || failed >= 0 {
			b.Fatalf("consume: %v %v", failed, err)
		}
		cred, err := e.wa.ValidateLogin(user, webauthn.SessionData{
			Challenge:        parsed.Response.CollectedClientData.Challenge,
			RelyingPartyID:   testRPID,
			UserID:           user.Handle,
			UserVerification: protocol.VerificationRequired,
		}, parsed)
		if err != nil {
			b.Fatal(err)
		}
		i := slices.IndexFunc(user.Credentials, func(c webauthn.Credential) bool { return bytes.Equal(c.ID, cred.ID) })
		if got := parsed.Response.AuthenticatorData.Counter; got <= user.Credentials[i].Authenticator.SignCount {
			b.Fatal("sign counter did not advance")
		}
		user.Credentials[i] = *cred
		sess.Values[handwrittenKey] = handwrittenRecord(now, user.Handle)
		delete(sess.Values, floorPendingKey)
		if err := e.cookies.Save(r, w, sess); err != nil {
			b.Fatal(err)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(floorVerifyOK)
	})
}

// BenchmarkVerify measures the verify handler on a valid ES256 assertion
// against floorVerify, for a user with 1 and with 50 passkeys.
//
// Every verify consumes its challenge and must see the sign counter
// advance, so b.N ceremonies are prepared (options + signature) with the
// timer stopped, and iteration i verifies ceremony i. The timed loop holds
// only the handler (or the floor) on a ready *http.Request. Each run has a
// fresh MemoryRegistry on both sides; stepup's MaxStepUps is raised so that
// one user may verify b.N times in a minute (the default, 10 a minute,
// would refuse the eleventh with 429): the limit's value does not change
// the work, stepup still takes a unit of it on every verify.
func BenchmarkVerify(b *testing.B) {
	for _, n := range []int{1, 50} {
		e := newBenchEnv(b, n, nil)
		b.Run(fmt.Sprintf("passkeys=%d/impl=floor", n), func(b *testing.B) {
			cases := e.prepareVerify(b, b.N, true)
			user := &stepuptest.User{Handle: e.user.Handle, Name: e.user.Name, Credentials: slices.Clone(e.user.Credentials)}
			h := floorVerify(b, e, stepup.NewMemoryRegistry(stepup.DefaultRegistrySize, nil), user)
			benchPrepared(b, h, cases)
		})
		b.Run(fmt.Sprintf("passkeys=%d/impl=stepup", n), func(b *testing.B) {
			verify := e.newStepUp(b, func(c *stepup.Config) { c.MaxStepUps = math.MaxInt32 }).VerifyHandler()
			benchPrepared(b, verify, e.prepareVerify(b, b.N, false))
		})
	}
}

// benchPrepared serves cases[i] in iteration i and checks for 200. It
// reports the size of the request's cookie as cookie-bytes, to show that
// the two sides decode sessions of the same size.
func benchPrepared(b *testing.B, h http.Handler, cases []verifyCase) {
	w := newBenchWriter()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPU()
	for i := range b.N {
		w.reset()
		h.ServeHTTP(w, cases[i].req)
		if w.code != http.StatusOK {
			b.Fatalf("verify %d: status %d", i, w.code)
		}
	}
	b.StopTimer()
	cpu.report(b)
	b.ReportMetric(float64(len(cases[0].req.Header.Get("Cookie"))), "cookie-bytes")
}

// floorOptionsJSON is the PublicKeyCredentialRequestOptionsJSON a
// hand-written options handler writes: the fields BeginLogin fills, the
// binary ones base64url-encoded first, so that encoding/json writes plain
// strings.
type floorOptionsJSON struct {
	Challenge        string                               `json:"challenge"`
	Timeout          int                                  `json:"timeout,omitempty"`
	RPID             string                               `json:"rpId,omitempty"`
	AllowCredentials []floorDescriptorJSON                `json:"allowCredentials,omitempty"`
	UserVerification protocol.UserVerificationRequirement `json:"userVerification,omitempty"`
}

type floorDescriptorJSON struct {
	Type       protocol.CredentialType           `json:"type"`
	ID         string                            `json:"id"`
	Transports []protocol.AuthenticatorTransport `json:"transports,omitempty"`
}

func newFloorOptionsJSON(o *protocol.PublicKeyCredentialRequestOptions) floorOptionsJSON {
	out := floorOptionsJSON{
		Challenge:        base64.RawURLEncoding.EncodeToString(o.Challenge),
		Timeout:          o.Timeout,
		RPID:             o.RelyingPartyID,
		UserVerification: o.UserVerification,
		AllowCredentials: make([]floorDescriptorJSON, len(o.AllowedCredentials)),
	}
	for i, d := range o.AllowedCredentials {
		out.AllowCredentials[i] = floorDescriptorJSON{Type: d.Type, ID: base64.RawURLEncoding.EncodeToString(d.CredentialID), Transports: d.Transport}
	}
	return out
}

// floorOptions is the least a correct options handler does, written by
// hand: load the session, BeginLogin with user verification required, keep
// the challenge in the session, save it, and write the options JSON
// (Content-Type, Cache-Control: no-store, encoding/json). With webauthnJSON
// it encodes go-webauthn's own type instead, a common hand-written choice,
// for reference.
func floorOptions(b *testing.B, e *benchEnv, webauthnJSON bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, _ := e.cookies.Get(r, "stepup")
		a, _, err := e.wa.BeginLogin(e.user, webauthn.WithUserVerification(protocol.VerificationRequired))
		if err != nil {
			b.Fatal(err)
		}
		sess.Values["bench.challenge"] = []byte(a.Response.Challenge)
		if err := e.cookies.Save(r, w, sess); err != nil {
			b.Fatal(err)
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		if webauthnJSON {
			_ = json.NewEncoder(w).Encode(a.Response)
		} else {
			_ = json.NewEncoder(w).Encode(newFloorOptionsJSON(&a.Response))
		}
	})
}

// BenchmarkOptions measures the options handler against floorOptions, for
// a user with 1 and with 50 passkeys. impl=floor-webauthn-json is the floor
// writing go-webauthn's type, for reference.
//
// The cookie holds a grant and two pending challenges, so the saved one
// holds a grant and three, the most stepup keeps: cookie-bytes (name=value)
// and set-cookie-bytes (the whole header) report its size. body-bytes is
// the length of the JSON answer, the same on every side.
func BenchmarkOptions(b *testing.B) {
	for _, n := range []int{1, 50} {
		e := newBenchEnv(b, n, nil)
		cookie := e.grant(b, e.su, "")
		_, cookie = e.options(b, e.su, cookie)
		_, cookie = e.options(b, e.su, cookie)
		base := e.request(http.MethodPost, "/api/reauth/options", nil, cookie)
		full := e.checkFullSession(b, cookie)

		for _, bc := range []struct {
			name string
			h    http.Handler
		}{
			{"floor", floorOptions(b, e, false)},
			{"stepup", e.su.OptionsHandler()},
			{"floor-webauthn-json", floorOptions(b, e, true)},
		} {
			b.Run(fmt.Sprintf("passkeys=%d/impl=%s", n, bc.name), func(b *testing.B) {
				w := benchNewRequests(b, bc.h, base, http.StatusOK)
				b.ReportMetric(float64(w.n), "body-bytes")
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

// BenchmarkAlternating runs a floor and stepup's handler in turn, one call
// of each per iteration (the order swapped every iteration), on the same
// requests as BenchmarkOptions and BenchmarkVerify, and times every call. It
// reports the median call of each side (floor-ns, stepup-ns) and their
// ratio (stepup-ns / floor-ns). On a machine shared with other jobs both
// sides then run under the same load, call by call, and the medians leave
// out the calls during which the process was descheduled; the separate
// sub-benchmarks of BenchmarkOptions and BenchmarkVerify each see the load
// of their own second. ns/op is the pair.
func BenchmarkAlternating(b *testing.B) {
	for _, n := range []int{1, 50} {
		e := newBenchEnv(b, n, nil)
		cookie := e.grant(b, e.su, "")
		_, cookie = e.options(b, e.su, cookie)
		_, cookie = e.options(b, e.su, cookie)
		base := e.request(http.MethodPost, "/api/reauth/options", nil, cookie)
		b.Run(fmt.Sprintf("path=options/passkeys=%d", n), func(b *testing.B) {
			floor, su := floorOptions(b, e, false), e.su.OptionsHandler()
			w := newBenchWriter()
			alternate(b, func(int) {
				w.reset()
				floor.ServeHTTP(w, cloneRequest(base))
			}, func(int) {
				w.reset()
				su.ServeHTTP(w, cloneRequest(base))
				if w.code != http.StatusOK {
					b.Fatalf("options: status %d", w.code)
				}
			})
		})
		b.Run(fmt.Sprintf("path=verify/passkeys=%d", n), func(b *testing.B) {
			floorCases := e.prepareVerify(b, b.N, true)
			suCases := e.prepareVerify(b, b.N, false)
			user := &stepuptest.User{Handle: e.user.Handle, Name: e.user.Name, Credentials: slices.Clone(e.user.Credentials)}
			floor := floorVerify(b, e, stepup.NewMemoryRegistry(stepup.DefaultRegistrySize, nil), user)
			su := e.newStepUp(b, func(c *stepup.Config) { c.MaxStepUps = math.MaxInt32 }).VerifyHandler()
			w := newBenchWriter()
			alternate(b, func(i int) {
				w.reset()
				floor.ServeHTTP(w, floorCases[i].req)
			}, func(i int) {
				w.reset()
				su.ServeHTTP(w, suCases[i].req)
				if w.code != http.StatusOK {
					b.Fatalf("verify %d: status %d", i, w.code)
				}
			})
		})
	}
}

// alternate calls floor(i) and stepup(i) in iteration i of b.N, in turn,
// timing each call, and reports the medians and their ratio.
func alternate(b *testing.B, floor, stepup func(i int)) {
	tf, ts := make([]time.Duration, b.N), make([]time.Duration, b.N)
	timed := func(f func(int), i int) time.Duration {
		t := time.Now()
		f(i)
		return time.Since(t)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			tf[i] = timed(floor, i)
			ts[i] = timed(stepup, i)
		} else {
			ts[i] = timed(stepup, i)
			tf[i] = timed(floor, i)
		}
	}
	b.StopTimer()
	mf, ms := median(tf), median(ts)
	b.ReportMetric(float64(mf), "floor-ns")
	b.ReportMetric(float64(ms), "stepup-ns")
	b.ReportMetric(float64(ms)/float64(mf), "ratio")
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
