package redisstore_test

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/redisstore"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// Two instances behind a load balancer: the same session keys, one Redis
// registry. Each test's instances have a cookie session store unless it says
// otherwise.

const causeReplayed = "challenge already used or expired (replayed session)"

// backends are the Redis deployments the scenarios of several instances run
// on: a single server, and the three-master cluster.
var backends = []struct {
	name   string
	newApp func(t *testing.T) *app
}{
	{"redis", func(t *testing.T) *app { return newApp(t, sharedRedis(t)) }},
	{"cluster", newClusterApp},
}

// newClusterApp is newApp with its registry on the shared cluster, through
// a cluster client of each instance's own.
func newClusterApp(t *testing.T) *app {
	t.Helper()
	c, p := sharedCluster(t), prefix(t)
	a := newApp(t, nil)
	a.newReg = func() stepup.Registry {
		return redisstore.New(c.client(t), redisstore.WithKeyPrefix(p))
	}
	return a
}

func TestAcrossInstancesOptionsOnOneVerifyOnOtherPass(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			a := b.newApp(t)
			one, two := a.instance(), a.instance()
			c := a.client("alice")
			one.expectNoGrant(c)
			two.expectNoGrant(c)

			as := a.sign(one.options(c))
			if r := two.verify(c, as); r.status != http.StatusOK {
				t.Fatalf("verify on the other instance: %d %s", r.status, r.raw)
			}
			one.expectGrant(c)
			two.expectGrant(c)
		})
	}
}

func TestReplayOnSecondInstanceReject(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			a := b.newApp(t)
			one, two := a.instance(), a.instance()
			c := a.client("alice")
			as := a.sign(one.options(c))
			kept := a.stepupCookie(c) // the challenge pending, no grant
			if r := one.verify(c, as); r.status != http.StatusOK {
				t.Fatalf("verify: %d %s", r.status, r.raw)
			}
			// The kept cookie and the same assertion, on either instance.
			for _, i := range []*instance{two, one} {
				a.setStepupCookie(c, kept)
				expectError(t, i.verify(c, as), http.StatusBadRequest, codeChallengeExpired)
				one.expectNoGrant(c)
				two.expectNoGrant(c)
			}
			if n := a.countCause(causeReplayed); n != 2 {
				t.Errorf("%d replays logged as %q, want 2: %s", n, causeReplayed, a.log)
			}
		})
	}
}

func TestStaleCookieCannotReviveAnyTabAcrossInstancesReject(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			a := b.newApp(t)
			insts := []*instance{a.instance(), a.instance()}
			c := a.client("alice")
			// Three tabs start a ceremony each, on alternating instances.
			var tabs [][]byte
			for k := range 3 {
				tabs = append(tabs, a.sign(insts[k%2].options(c)))
			}
			stale := a.stepupCookie(c) // all three pending
			for k, as := range tabs {  // each tab finishes on the other instance
				if _, err := stepuptest.Verify(t.Context(), c, insts[(k+1)%2].URL+"/api/reauth/verify", as); err != nil {
					t.Fatalf("tab %d: %v", k, err)
				}
			}
			// Each replay is a failed attempt: three stay under the limit of five.
			for k, as := range tabs {
				a.setStepupCookie(c, stale)
				expectError(t, insts[k%2].verify(c, as), http.StatusBadRequest, codeChallengeExpired)
				insts[0].expectNoGrant(c)
				insts[1].expectNoGrant(c)
			}
			if n := a.countCause(causeReplayed); n != 3 {
				t.Errorf("%d replays logged as %q, want 3", n, causeReplayed)
			}
		})
	}
}

func TestConcurrentVerifyOfOneAssertionOneWins(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			a := b.newApp(t)
			insts := []*instance{a.instance(), a.instance()}
			c := a.client("alice")
			as := a.sign(insts[0].options(c))
			// Many copies of the same browser state post the same assertion at once.
			const n = 16
			copies := make([]*http.Client, n)
			for k := range copies {
				copies[k] = a.copyClient(c)
			}
			statuses := make([]int, n)
			var wg sync.WaitGroup
			for k := range n {
				wg.Go(func() {
					_, err := stepuptest.Verify(t.Context(), copies[k], insts[k%2].URL+"/api/reauth/verify", as)
					var he *stepuptest.HTTPError
					switch {
					case err == nil:
						statuses[k] = http.StatusOK
					case errors.As(err, &he) && (he.Code == codeChallengeExpired || he.Code == codeTooManyAttempts):
						// Each attempt takes a unit of the user's limits
						// before anything is checked, and a replay keeps
						// its failure: past the limits the rest are
						// refused, with 429.
						statuses[k] = he.Status
					default:
						t.Errorf("copy %d: %v", k, err)
					}
				})
			}
			wg.Wait()
			won, checked := 0, 0
			for k, s := range statuses {
				if s != http.StatusTooManyRequests {
					checked++
				}
				if s == http.StatusOK {
					won++
					insts[(k+1)%2].expectGrant(copies[k])
				} else {
					insts[k%2].expectNoGrant(copies[k])
				}
			}
			if won != 1 {
				t.Fatalf("%d of %d concurrent verifies of one assertion were granted, want 1: %v", won, n, statuses)
			}
			// The step-up limit is never given back here: of the 16, at
			// most 10 got a unit and were checked, on both instances
			// together.
			if checked > defaultMaxStepUps {
				t.Fatalf("%d of %d concurrent verifies were checked, over the step-up limit of %d: %v", checked, n, defaultMaxStepUps, statuses)
			}
		})
	}
}

func TestRateLimitSharedAcrossInstances(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			a := b.newApp(t)
			insts := []*instance{a.instance(), a.instance()}
			c := a.client("alice")
			fail := func(i *instance) {
				t.Helper()
				r := i.verify(c, a.sign(i.options(c), stepuptest.WithBadSignature()))
				expectError(t, r, http.StatusBadRequest, codeVerificationFailed)
			}

			// A success resets the count: four failures, a success, four more.
			for k := range 4 {
				fail(insts[k%2])
			}
			insts[1].reauth(c)
			insts[0].revoke(c)
			for k := range 4 {
				fail(insts[k%2])
			}
			// The fifth since the success, split over both instances: now both refuse.
			fail(insts[0])
			var retry []int
			for _, i := range insts {
				r := i.post(c, "/api/reauth/options", nil)
				expectError(t, r, http.StatusTooManyRequests, codeTooManyAttempts)
				if len(r.header.Values("Set-Cookie")) != 0 {
					t.Errorf("a refused options call started a ceremony: %q", r.header.Values("Set-Cookie"))
				}
				secs, err := strconv.Atoi(r.header.Get("Retry-After"))
				if err != nil || secs < 1 || secs > int(defaultFailureWindow.Seconds()) {
					t.Fatalf("Retry-After %q, want 1 to 900 seconds", r.header.Get("Retry-After"))
				}
				retry = append(retry, secs)
				r = i.verify(c, []byte(`{}`))
				expectError(t, r, http.StatusTooManyRequests, codeTooManyAttempts)
				if r.header.Get("Retry-After") == "" {
					t.Error("verify's 429 has no Retry-After")
				}
				i.expectNoGrant(c)
			}
			if d := retry[0] - retry[1]; d < 0 || d > 1 {
				t.Errorf("Retry-After %v: the instances do not share one window", retry)
			}
			if evs := a.events(stepup.EventRateLimited); len(evs) != 4 {
				t.Errorf("%d rate_limited events, want 4", len(evs))
			} else {
				for _, ev := range evs {
					if ev["limit"] != "failures" {
						t.Errorf("rate_limited by %v, want the failure limit", ev["limit"])
					}
				}
			}
			// Bob is not affected.
			bob := a.client("bob")
			insts[0].reauth(bob)
			insts[1].expectGrant(bob)
		})
	}
}

func TestStepUpLimitSharedAcrossInstances(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			a := b.newApp(t)
			insts := []*instance{a.instance(), a.instance()}
			c := a.client("alice")
			// Every ceremony takes a unit of the step-up limit when its
			// options are issued, whichever instance issues them.
			for k := range defaultMaxStepUps - 1 {
				insts[k%2].reauth(c)
			}
			last := a.sign(insts[1].options(c)) // the tenth unit
			for _, i := range insts {
				r := i.post(c, "/api/reauth/options", nil)
				expectError(t, r, http.StatusTooManyRequests, codeTooManyAttempts)
				secs, err := strconv.Atoi(r.header.Get("Retry-After"))
				if err != nil || secs < 1 || secs > int(defaultStepUpWindow.Seconds()) {
					t.Fatalf("Retry-After %q, want 1 to 60 seconds", r.header.Get("Retry-After"))
				}
			}
			// The ceremony that holds the last unit still finishes.
			if r := insts[0].verify(c, last); r.status != http.StatusOK {
				t.Fatalf("verify of the ceremony holding the last unit: %d %s", r.status, r.raw)
			}
			for _, ev := range a.events(stepup.EventRateLimited) {
				if ev["limit"] != "step-ups" {
					t.Errorf("rate_limited by %v, want the step-up limit", ev["limit"])
				}
			}
			insts[0].expectGrant(c) // the grants made stay
			bob := a.client("bob")
			insts[1].reauth(bob)
			insts[0].expectGrant(bob)
		})
	}
}

func TestRevokeAcrossInstances(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			a := b.newApp(t)
			one, two := a.instance(), a.instance()
			c := a.client("alice")
			one.reauth(c)
			older := a.copyClient(c) // a copy of the cookie with the grant
			two.expectGrant(older)
			two.revoke(c)
			// The older copy opens no gate, on either instance: the
			// session's revocation state in the shared registry was replaced.
			one.expectNoGrant(older)
			two.expectNoGrant(older)

			// RevokeUser on one instance ends every grant of the user,
			// in every browser, on every instance.
			d := a.client("alice")
			two.reauth(c)
			one.reauth(d)
			bob := a.client("bob")
			one.reauth(bob)
			if err := one.su.RevokeUser(t.Context(), []byte("handle-alice")); err != nil {
				t.Fatal(err)
			}
			for _, i := range []*instance{one, two} {
				i.expectNoGrant(c)
				i.expectNoGrant(d)
				i.expectGrant(bob)
			}
		})
	}
}

func TestOnceGateAcrossInstancesOneWins(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			a := b.newApp(t)
			insts := []*instance{a.instance(), a.instance()}
			c := a.client("alice")
			insts[0].reauth(c)
			// Copies of the granted cookie hit the single-use gate at once, on both
			// instances: the registry lets exactly one through.
			const n = 8
			copies := make([]*http.Client, n)
			for k := range copies {
				copies[k] = a.copyClient(c)
			}
			before := a.handled.Load()
			statuses := make([]int, n)
			var wg sync.WaitGroup
			for k := range n {
				wg.Go(func() { statuses[k] = insts[k%2].post(copies[k], "/once", nil).status })
			}
			wg.Wait()
			passed := 0
			for _, s := range statuses {
				switch s {
				case http.StatusOK:
					passed++
				case http.StatusForbidden:
				default:
					t.Errorf("single-use gate answered %d", s)
				}
			}
			if passed != 1 || a.handled.Load() != before+1 {
				t.Fatalf("%d of %d requests passed the single-use gate (%d handled), want 1: %v", passed, n, a.handled.Load()-before, statuses)
			}
		})
	}
}

func TestRedisDownFailsClosedAndRecovers(t *testing.T) {
	t.Parallel()
	srv := newRedis(t)
	a := newApp(t, srv)
	one, two := a.instance(), a.instance()
	c := a.client("alice")
	one.reauth(c)
	as := a.sign(one.options(c)) // a second ceremony, under way
	d := a.client("alice")       // another browser of hers
	asD := a.sign(two.options(d))

	srv.stop()
	expectError(t, two.verify(c, as), http.StatusServiceUnavailable, codeServiceUnavailable)
	expectError(t, one.post(c, "/api/reauth/options", nil), http.StatusServiceUnavailable, codeServiceUnavailable)
	// Every gate reads the registry (is the grant recorded, and its
	// revocation states unchanged?), so the plain gate fails closed too,
	// and the single-use gate cannot record the use.
	before := a.handled.Load()
	for _, i := range []*instance{one, two} {
		expectError(t, i.post(c, "/sensitive", nil), http.StatusServiceUnavailable, codeServiceUnavailable)
		expectError(t, i.post(c, "/once", nil), http.StatusServiceUnavailable, codeServiceUnavailable)
	}
	if a.handled.Load() != before {
		t.Fatal("a gate ran its handler without Redis")
	}
	if n := storeFailures(a, "registry"); n < 6 {
		t.Errorf("%d store_failed events for the registry, want one for each of the 6 refusals: %s", n, a.log)
	}

	if err := srv.start(); err != nil {
		t.Fatal(err)
	}
	// The server came back empty (no persistence). What it forgot fails
	// closed: the grant made before opens no gate (its record is gone),
	// and a challenge issued before cannot be answered.
	one.expectNoGrant(c)
	two.expectNoGrant(c)
	expectError(t, one.verify(d, asD), http.StatusBadRequest, codeChallengeExpired)
	if n := a.countCause(causeReplayed); n != 1 {
		t.Errorf("%d verifies refused for a challenge the registry does not hold, want 1", n)
	}
	// A new ceremony works, and so does the single-use gate.
	one.reauth(c)
	two.expectGrant(c)
	if r := one.post(c, "/once", nil); r.status != http.StatusOK {
		t.Fatalf("single-use gate after Redis is back: %d %s", r.status, r.raw)
	}
	two.expectNoGrant(c) // the single-use gate took the grant
	one.reauth(c)
	two.expectGrant(c)
}

func TestRedisDownBeforeAnyGrantFailsClosed(t *testing.T) {
	t.Parallel()
	a := newApp(t, sharedRedis(t))
	a.newReg = func() stepup.Registry { return redisstore.New(newClient(t, deadAddr(t))) }
	one := a.instance()
	c := a.client("alice")
	expectError(t, one.post(c, "/api/reauth/options", nil), http.StatusServiceUnavailable, codeServiceUnavailable)
	// The gate still answers, with a refusal, not a 500.
	one.expectNoGrant(c)
}

func TestRedisRefusingWritesFailsClosed(t *testing.T) {
	t.Parallel()
	srv := newRedis(t)
	admin := srv.client(t)
	ctx := t.Context()
	setUser := func(rules ...any) {
		t.Helper()
		setACLUser(t, admin, append([]any{"app", "on", ">app-secret", "resetkeys", "+@all"}, rules...)...)
	}
	// The application's Redis user may write every key but the grants':
	// options and the claim of the challenge work, and recording the grant
	// fails, after the signature was checked.
	setUser("~*:fail", "~*:stepups", "~*:epoch", "~*:session:*", "~*:challenge:*", "~*:counter:*")
	a := newApp(t, srv)
	a.newReg = func() stepup.Registry {
		return redisstore.New(newClient(t, srv.addr, func(o *redis.Options) {
			o.Username, o.Password = "app", "app-secret"
		}))
	}
	one, two := a.instance(), a.instance()
	c := a.client("alice")
	fail, stepups := "stepup:{"+b64("handle-alice")+"}:fail", "stepup:{"+b64("handle-alice")+"}:stepups"
	as := a.sign(one.options(c))
	expectError(t, two.verify(c, as), http.StatusServiceUnavailable, codeServiceUnavailable)
	one.expectNoGrant(c)
	two.expectNoGrant(c)
	if n := storeFailures(a, "registry"); n != 1 {
		t.Errorf("%d store_failed events for the registry, want 1: %s", n, a.log)
	}
	// A fault of ours does not count against the user: the unit of the
	// failure limit the claim took is given back.
	if n := admin.Get(ctx, fail).Val(); n != "0" {
		t.Errorf("failure count %q after a fault of ours, want it given back to 0", n)
	}

	// A user who may write nothing: options fail before they take
	// anything (an update is applied whole or not at all).
	setUser("%R~*")
	expectError(t, one.post(c, "/api/reauth/options", nil), http.StatusServiceUnavailable, codeServiceUnavailable)
	if n := admin.Get(ctx, stepups).Val(); n != "1" {
		t.Errorf("step-up count %q after refused options, want the 1 of the first ceremony", n)
	}
	if n := storeFailures(a, "registry"); n != 2 {
		t.Errorf("%d store_failed events for the registry, want 2: %s", n, a.log)
	}

	setUser("~*")
	// Four failures of hers and she may still try: with the unit of our
	// fault kept, the fifth attempt would be refused.
	for k := range 4 {
		i := []*instance{one, two}[k%2]
		r := i.verify(c, a.sign(i.options(c), stepuptest.WithBadSignature()))
		expectError(t, r, http.StatusBadRequest, codeVerificationFailed)
	}
	one.reauth(c)
	two.expectGrant(c)
	// A gate only reads, and fails closed all the same for a user who may
	// only read: Redis checks a script's keys for reading and writing.
	setUser("%R~*")
	before := a.handled.Load()
	expectError(t, two.post(c, "/sensitive", nil), http.StatusServiceUnavailable, codeServiceUnavailable)
	if a.handled.Load() != before {
		t.Fatal("the gate ran its handler")
	}
	setUser("~*")
	one.expectGrant(c)
}

// storeFailures counts the store_failed events of the given store.
func storeFailures(a *app, store string) int {
	n := 0
	for _, ev := range a.events(stepup.EventStoreFailed) {
		if ev["store"] == store {
			n++
		}
	}
	return n
}

// TestLeastPrivilegeRedisUser: the Redis user that docs/several-instances.md
// gives the registry (scripts, the five commands the script calls, keys
// under the application's prefix, nothing else) does everything stepup
// does: step-ups on two instances, plain and single-use gates, Revoke,
// RevokeUser, and a script cache flushed under it. A command fewer, and a
// step fails closed.
func TestLeastPrivilegeRedisUser(t *testing.T) {
	t.Parallel()
	srv := newRedis(t)
	admin := srv.client(t)
	ctx := t.Context()
	setUser := func(commands ...any) {
		t.Helper()
		setACLUser(t, admin, append([]any{"stepup", "reset", "on", ">stepup-secret", "~myapp:stepup:*", "resetchannels", "-@all"}, commands...)...)
	}
	setUser("+evalsha", "+eval", "+get", "+set", "+del", "+pttl", "+pexpire")
	a := newApp(t, srv)
	a.newReg = func() stepup.Registry {
		return redisstore.New(newClient(t, srv.addr, func(o *redis.Options) {
			o.Username, o.Password = "stepup", "stepup-secret"
		}), redisstore.WithKeyPrefix("myapp:"))
	}
	one, two := a.instance(), a.instance()
	c, d := a.client("alice"), a.client("alice")
	one.reauth(c)
	two.expectGrant(c)
	if r := two.post(c, "/once", nil); r.status != http.StatusOK {
		t.Fatalf("once gate: %d %s", r.status, r.raw)
	}
	if r := one.post(c, "/once", nil); r.status != http.StatusForbidden {
		t.Fatalf("once gate a second time: %d %s, want 403", r.status, r.raw)
	}
	if err := admin.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	two.reauth(d)
	one.revoke(c)
	one.expectNoGrant(c)
	two.expectGrant(d)
	if err := two.su.RevokeUser(ctx, []byte("handle-alice")); err != nil {
		t.Fatal(err)
	}
	one.expectNoGrant(d)
	if n := storeFailures(a, "registry"); n != 0 {
		t.Fatalf("%d store_failed events for the registry, want none: %s", n, a.log)
	}
	// Without DEL (a claimed challenge is deleted), a step-up fails
	// closed, and grants nothing.
	setUser("+evalsha", "+eval", "+get", "+set", "+pttl", "+pexpire")
	e := a.client("alice")
	as := a.sign(one.options(e))
	expectError(t, two.verify(e, as), http.StatusServiceUnavailable, codeServiceUnavailable)
	one.expectNoGrant(e)
}

// setACLUser runs ACL SETUSER with args on admin's server.
func setACLUser(t *testing.T, admin *redis.Client, args ...any) {
	t.Helper()
	if err := admin.Do(t.Context(), append([]any{"ACL", "SETUSER"}, args...)...).Err(); err != nil {
		t.Fatal(err)
	}
}
