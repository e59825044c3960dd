package stepup_test

// Benchmarks of the gate and the ceremony handlers against their floors
// (benchfloor_test.go): hand-written handlers for the same job with the same
// libraries, each keeping a small session of its own. The sub-benchmarks of
// a benchmark run in the same go test invocation, named key=value so that
// benchstat puts them side by side; BenchmarkAlternating runs floor and
// stepup call by call in turn, which is what holds on a shared machine:
//
//	go test -c -o stepup.test .
//	for i in $(seq 10); do ./stepup.test -test.run '^$' -test.bench Alternating -test.benchmem; done > alt.txt
//	go run golang.org/x/perf/cmd/benchstat@latest -filter '.unit:ratio' alt.txt
//
// BENCHMARKS.md has the results and what they mean.

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
)

// benchMaxAge is the gate's maxAge in the benchmarks.
const benchMaxAge = 5 * time.Minute

// nopHandler is the gated handler: it does nothing, so the gate is all that
// is measured.
var nopHandler = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})

// benchStepUp returns a StepUp with the defaults and a fresh MemoryRegistry,
// except MaxStepUps: a benchmark starts thousands of ceremonies of one user
// a second, and the default (10 a minute) would answer the eleventh 429.
// The limit's value does not change the work: a unit is still taken on
// every options call.
func (e *benchEnv) benchStepUp(tb testing.TB) *stepup.StepUp {
	tb.Helper()
	return e.newStepUp(tb, func(c *stepup.Config) { c.MaxStepUps = math.MaxInt32 })
}

// BenchmarkGate measures RequireRecentReauth with a real grant in a real
// CookieStore cookie, against the floor's gate on the floor's own cookie
// (floor.gate: ask for the user, load the session, compare a grant record
// of its own). impl=pass lets the request through, impl=deny refuses it (a
// grant an hour old: 403 JSON), impl=pass-signin is pass with a UserStore
// that implements stepup.SignInIdentifier (grants bound to the sign-in).
// stepup's cookie is the one its verify leaves (a grant and the session's
// ID); the floor's holds its grant.
//
// load=cookie: each request is new, so each side decodes its cookie.
// load=preloaded: the application already called store.Get for the session
// earlier in the same request, so neither side decodes it again.
func BenchmarkGate(b *testing.B) {
	e := newBenchEnv(b, 1, nil)
	f := newFloor(e)
	fresh := e.grant(b, e.su, "")          // granted now: passes
	stale := e.grant(b, e.stale, "")       // granted an hour ago: refused
	boundGrant := e.grant(b, e.signIn, "") // granted now, bound to the sign-in
	gate := e.su.RequireRecentReauth(benchMaxAge)(nopHandler)
	boundGate := e.signIn.RequireRecentReauth(benchMaxAge)(nopHandler)

	type gateCase struct {
		name    string
		h       http.Handler
		session string // the cookie's name
		cookie  string
		want    int
	}
	cases := []gateCase{
		{"floor", f.gate(benchMaxAge, nopHandler), floorSession, f.grantCookie(b), http.StatusOK},
		{"pass", gate, "stepup", fresh, http.StatusOK},
		{"deny", gate, "stepup", stale, http.StatusForbidden},
		{"pass-signin", boundGate, "stepup", boundGrant, http.StatusOK},
	}
	for _, bc := range cases {
		base := e.request(http.MethodGet, "/sensitive", nil, bc.cookie)
		b.Run("load=cookie/impl="+bc.name, func(b *testing.B) {
			benchNewRequests(b, bc.h, base, bc.want)
		})
	}
	for _, bc := range cases {
		b.Run("load=preloaded/impl="+bc.name, func(b *testing.B) {
			r := e.request(http.MethodGet, "/sensitive", nil, bc.cookie)
			if _, err := e.cookies.Get(r, bc.session); err != nil { // the application's earlier load
				b.Fatal(err)
			}
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
// iteration decodes the cookie once, and checks every answer's status. It
// returns the writer as the last iteration left it.
func benchNewRequests(b *testing.B, h http.Handler, base *http.Request, want int) *benchWriter {
	w := newBenchWriter()
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, cloneRequest(base))
		if w.status() != want {
			b.Fatalf("status %d, want %d", w.status(), want)
		}
	}
	cpu.report(b)
	return w
}

// BenchmarkGateParallel is the gate's throughput on all cores (GOMAXPROCS
// goroutines), each request new (one cookie decode each), against the
// floor's gate. req/s counts requests per second over all cores.
func BenchmarkGateParallel(b *testing.B) {
	e := newBenchEnv(b, 1, nil)
	f := newFloor(e)
	for _, bc := range []struct {
		name   string
		h      http.Handler
		cookie string
	}{
		{"floor", f.gate(benchMaxAge, nopHandler), f.grantCookie(b)},
		{"pass", e.su.RequireRecentReauth(benchMaxAge)(nopHandler), e.grant(b, e.su, "")},
	} {
		base := e.request(http.MethodGet, "/sensitive", nil, bc.cookie)
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

// stepupCeremonies prepares n verify requests for su, not timed: the user
// stepped up once before (the cookie holds that grant and the session's
// ID), then each request's cookie is what su's options handler wrote on it
// (the grant, the ID and one pending challenge) and its body an assertion
// signed by the software authenticator, counters increasing in order.
func (e *benchEnv) stepupCeremonies(b *testing.B, su *stepup.StepUp, n int) []*http.Request {
	granted := e.grant(b, su, "")
	reqs := make([]*http.Request, n)
	for i := range reqs {
		opts, cookie := e.options(b, su, granted)
		reqs[i] = e.request(http.MethodPost, "/api/reauth/verify", e.assertion(b, opts), cookie)
	}
	return reqs
}

// ceremonies prepares n verify requests for the floor, as stepupCeremonies
// does for stepup: its cookie holds a grant of its own, its options handler
// adds the challenge.
func (f *floor) ceremonies(b *testing.B, n int) []*http.Request {
	granted := f.grantCookie(b)
	options := f.options(false)
	reqs := make([]*http.Request, n)
	for i := range reqs {
		w := serve(b, options, f.e.request(http.MethodPost, "/api/reauth/options", nil, granted), http.StatusOK)
		cookie := responseCookie(w, floorSession, "")
		reqs[i] = f.e.request(http.MethodPost, "/api/reauth/verify", f.e.assertion(b, w.Body.Bytes()), cookie)
	}
	return reqs
}

// BenchmarkVerify measures the verify handler on a valid ES256 assertion
// against the floor's, for a user with 1 and with 50 passkeys.
//
// Every verify claims its challenge and must see the sign counter advance,
// so b.N ceremonies are prepared (options on the same side's handler, then
// a signature) with the timer stopped, and iteration i verifies ceremony i.
// The timed loop holds only the handler on a ready *http.Request. Each run
// has a fresh StepUp (see benchStepUp) and a fresh floor, each with its own
// MemoryRegistry.
func BenchmarkVerify(b *testing.B) {
	for _, n := range []int{1, 50} {
		e := newBenchEnv(b, n, nil)
		b.Run(fmt.Sprintf("passkeys=%d/impl=floor", n), func(b *testing.B) {
			f := newFloor(e)
			benchPrepared(b, f.verify(), f.ceremonies(b, b.N))
		})
		b.Run(fmt.Sprintf("passkeys=%d/impl=stepup", n), func(b *testing.B) {
			su := e.benchStepUp(b)
			benchPrepared(b, su.VerifyHandler(), e.stepupCeremonies(b, su, b.N))
		})
	}
}

// benchPrepared serves reqs[i] in iteration i and checks for 200. It
// reports the size of the request's cookie as cookie-bytes.
func benchPrepared(b *testing.B, h http.Handler, reqs []*http.Request) {
	w := newBenchWriter()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPU()
	for i := range b.N {
		w.reset()
		h.ServeHTTP(w, reqs[i])
		if w.code != http.StatusOK {
			b.Fatalf("verify %d: status %d", i, w.code)
		}
	}
	b.StopTimer()
	cpu.report(b)
	b.ReportMetric(float64(len(reqs[0].Header.Get("Cookie"))), "cookie-bytes")
}

// BenchmarkOptions measures the options handler against the floor's, for a
// user with 1 and with 50 passkeys. The user stepped up once before: the
// request's cookie holds that grant (and for stepup the session's ID).
// impl=floor-webauthn-json is the floor writing go-webauthn's type, and
// impl=stepup-pending2 stepup on a cookie that also holds two pending
// challenges (two other tabs), so that it writes the most it keeps: both
// for reference. cookie-bytes and set-cookie-bytes are the size of the
// cookie written (name=value, the whole header); body-bytes is the length of
// the JSON answer, the same on every side.
func BenchmarkOptions(b *testing.B) {
	for _, n := range []int{1, 50} {
		e := newBenchEnv(b, n, nil)
		for _, impl := range []string{"floor", "stepup", "floor-webauthn-json", "stepup-pending2"} {
			b.Run(fmt.Sprintf("passkeys=%d/impl=%s", n, impl), func(b *testing.B) {
				var h http.Handler
				var cookie string
				switch impl {
				case "floor", "floor-webauthn-json":
					f := newFloor(e)
					h, cookie = f.options(impl != "floor"), f.grantCookie(b)
				default:
					su := e.benchStepUp(b)
					h, cookie = su.OptionsHandler(), e.grant(b, su, "")
					if impl == "stepup-pending2" {
						_, cookie = e.options(b, su, cookie)
						_, cookie = e.options(b, su, cookie)
						e.checkFullSession(b, su, cookie)
					}
				}
				w := benchNewRequests(b, h, e.request(http.MethodPost, "/api/reauth/options", nil, cookie), http.StatusOK)
				b.ReportMetric(float64(w.n), "body-bytes")
				header, nameValue := w.setCookieLen()
				b.ReportMetric(float64(nameValue), "cookie-bytes")
				b.ReportMetric(float64(header), "set-cookie-bytes")
			})
		}
	}
}

// checkFullSession runs su's options handler on cookie (a grant and two
// pending challenges) and checks, without reading stepup's record format,
// that the session it writes holds a grant and three pending challenges,
// the most it keeps: the cookie grew by about one challenge, a further
// options call leaves its size as it is (the oldest is dropped), and the
// gate passes.
func (e *benchEnv) checkFullSession(b *testing.B, su *stepup.StepUp, cookie string) {
	_, three := e.options(b, su, cookie)
	_, four := e.options(b, su, three)
	if len(three) <= len(cookie) || len(four) != len(three) {
		b.Fatalf("cookie sizes %d, %d, %d: the session does not hold three challenges", len(cookie), len(three), len(four))
	}
	serve(b, su.RequireRecentReauth(benchMaxAge)(nopHandler), e.request(http.MethodGet, "/sensitive", nil, three), http.StatusOK)
}

// BenchmarkAlternating runs a floor and stepup's handler in turn, one call
// of each per iteration (the order swapped every iteration), on the same
// requests as BenchmarkOptions, BenchmarkVerify, BenchmarkGate's
// load=cookie and BenchmarkCookie, and times every call. It
// reports the median call of each side (floor-ns, stepup-ns) and their
// ratio (stepup-ns / floor-ns). On a machine shared with other jobs both
// sides then run under the same load, call by call, and the medians leave
// out the calls during which the process was descheduled; the separate
// sub-benchmarks of BenchmarkOptions and BenchmarkVerify each see the load
// of their own second. ns/op is the pair.
func BenchmarkAlternating(b *testing.B) {
	b.Run("path=gate/load=cookie", func(b *testing.B) { alternateGate(b, newBenchEnv(b, 1, nil)) })
	b.Run("path=cookie", func(b *testing.B) {
		e := newBenchEnv(b, 1, nil)
		cs, w := cookieCases(b, e), newBenchWriter()
		alternate(b, func(int) { cs[0].serve(b, e, w) }, func(int) { cs[1].serve(b, e, w) })
	})
	for _, n := range []int{1, 50} {
		e := newBenchEnv(b, n, nil)
		b.Run(fmt.Sprintf("path=options/passkeys=%d", n), func(b *testing.B) {
			f, su := newFloor(e), e.benchStepUp(b)
			floorBase := e.request(http.MethodPost, "/api/reauth/options", nil, f.grantCookie(b))
			suBase := e.request(http.MethodPost, "/api/reauth/options", nil, e.grant(b, su, ""))
			floor, options := f.options(false), su.OptionsHandler()
			w := newBenchWriter()
			alternate(b, func(int) {
				w.reset()
				floor.ServeHTTP(w, cloneRequest(floorBase))
				if w.code != http.StatusOK {
					b.Fatalf("floor options: status %d", w.code)
				}
			}, func(int) {
				w.reset()
				options.ServeHTTP(w, cloneRequest(suBase))
				if w.code != http.StatusOK {
					b.Fatalf("options: status %d", w.code)
				}
			})
		})
		b.Run(fmt.Sprintf("path=verify/passkeys=%d", n), func(b *testing.B) {
			f, su := newFloor(e), e.benchStepUp(b)
			floorReqs := f.ceremonies(b, b.N)
			suReqs := e.stepupCeremonies(b, su, b.N)
			floor, verify := f.verify(), su.VerifyHandler()
			w := newBenchWriter()
			alternate(b, func(i int) {
				w.reset()
				floor.ServeHTTP(w, floorReqs[i])
				if w.code != http.StatusOK {
					b.Fatalf("floor verify %d: status %d", i, w.code)
				}
			}, func(i int) {
				w.reset()
				verify.ServeHTTP(w, suReqs[i])
				if w.code != http.StatusOK {
					b.Fatalf("verify %d: status %d", i, w.code)
				}
			})
		})
	}
}

// cookieCase is one side's session cookie as the options handler meets it:
// the cookie the request carries (the user stepped up once before) and the
// session options saves (that grant and one pending challenge).
type cookieCase struct {
	impl, name string
	in         *http.Request
	out        *sessions.Session
	inBytes    int
	outBytes   int
}

func cookieCases(b *testing.B, e *benchEnv) []cookieCase {
	f, su := newFloor(e), e.benchStepUp(b)
	granted := e.grant(b, su, "")
	_, pending := e.options(b, su, granted)
	w := serve(b, f.options(false), e.request(http.MethodPost, "/api/reauth/options", nil, f.grantCookie(b)), http.StatusOK)
	cases := []cookieCase{
		{impl: "floor", name: floorSession, in: e.request(http.MethodPost, "/", nil, f.grantCookie(b)), inBytes: len(f.grantCookie(b))},
		{impl: "stepup", name: "stepup", in: e.request(http.MethodPost, "/", nil, granted), inBytes: len(granted)},
	}
	for i, out := range []string{responseCookie(w, floorSession, ""), pending} {
		sess, err := e.cookies.Get(e.request(http.MethodPost, "/", nil, out), cases[i].name)
		if err != nil {
			b.Fatal(err)
		}
		cases[i].out, cases[i].outBytes = sess, len(out)
	}
	return cases
}

// serve decodes c's cookie on a new request and saves c's session.
func (c cookieCase) serve(b *testing.B, e *benchEnv, w *benchWriter) {
	w.reset()
	if _, err := e.cookies.Get(cloneRequest(c.in), c.name); err != nil {
		b.Fatal(err)
	}
	if err := e.cookies.Save(c.in, w, c.out); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCookie is the session cookie alone, as the options handler meets
// it (cookieCases): decode the cookie a request carries, save the session
// options writes; the same CookieStore on both sides. in-bytes and
// out-bytes are the two cookies' name=value lengths. Options minus this is
// what the handlers do besides the cookie.
func BenchmarkCookie(b *testing.B) {
	e := newBenchEnv(b, 1, nil)
	for _, c := range cookieCases(b, e) {
		b.Run("impl="+c.impl, func(b *testing.B) {
			w := newBenchWriter()
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				c.serve(b, e, w)
			}
			cpu.report(b)
			b.ReportMetric(float64(c.inBytes), "in-bytes")
			b.ReportMetric(float64(c.outBytes), "out-bytes")
		})
	}
}

// alternateGate is BenchmarkAlternating's gate pair: the floor's gate and
// stepup's on a new request each (each decodes its cookie), stepup's cookie
// the one its verify leaves (a grant and the session's ID), the floor's its
// grant.
func alternateGate(b *testing.B, e *benchEnv) {
	f, su := newFloor(e), e.benchStepUp(b)
	floorBase := e.request(http.MethodGet, "/sensitive", nil, f.grantCookie(b))
	suBase := e.request(http.MethodGet, "/sensitive", nil, e.grant(b, su, ""))
	floor, gate := f.gate(benchMaxAge, nopHandler), su.RequireRecentReauth(benchMaxAge)(nopHandler)
	w := newBenchWriter()
	alternate(b, func(int) {
		w.reset()
		floor.ServeHTTP(w, cloneRequest(floorBase))
		if w.status() != http.StatusOK {
			b.Fatalf("floor gate: status %d", w.status())
		}
	}, func(int) {
		w.reset()
		gate.ServeHTTP(w, cloneRequest(suBase))
		if w.status() != http.StatusOK {
			b.Fatalf("gate: status %d", w.status())
		}
	})
}

// nopRegistry is a Registry that does nothing and finds nothing. No
// StepUp may run on it (it makes challenges and grants reusable and turns
// off every limit); BenchmarkOptionsRegistryShare uses it to measure what
// the MemoryRegistry's part of the options handler costs.
type nopRegistry struct{}

func (nopRegistry) Update(context.Context, []stepup.Op, []stepup.Result) (int, error) { return -1, nil }

// BenchmarkOptionsRegistryShare is BenchmarkAlternating's options pair at 1
// passkey with stepup on nopRegistry (the floor keeps its MemoryRegistry):
// its ratio against path=options/passkeys=1 is the share of the ratio that
// the MemoryRegistry's update (five operations against the floor's one)
// takes. The keys are still built.
func BenchmarkOptionsRegistryShare(b *testing.B) {
	e := newBenchEnv(b, 1, nil)
	f := newFloor(e)
	su := e.newStepUp(b, func(c *stepup.Config) { c.MaxStepUps = math.MaxInt32; c.Registry = nopRegistry{} })
	floorBase := e.request(http.MethodPost, "/api/reauth/options", nil, f.grantCookie(b))
	suBase := e.request(http.MethodPost, "/api/reauth/options", nil, e.grant(b, e.benchStepUp(b), ""))
	floor, options := f.options(false), su.OptionsHandler()
	w := newBenchWriter()
	alternate(b, func(int) {
		w.reset()
		floor.ServeHTTP(w, cloneRequest(floorBase))
	}, func(int) {
		w.reset()
		options.ServeHTTP(w, cloneRequest(suBase))
		if w.code != http.StatusOK {
			b.Fatalf("options: status %d", w.code)
		}
	})
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
