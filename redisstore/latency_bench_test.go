package redisstore_test

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/redisstore"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// This file uses only what the registry's versions share (stepup.New, the
// handlers, redisstore.New, the stepuptest authenticator), so that the same
// file measures the code before and after the registry's change:
//
//	go -C redisstore test -run '^$' -bench StepUpLatency -benchtime 2000x -count 5 .

// BenchmarkStepUpLatency measures one full passkey step-up, the options
// request and then the verify request, over loopback HTTP to one instance
// whose registry is a real redis-server on loopback. Each sample is the
// time of the two requests; the software authenticator's signing between
// them is left out. It reports the median and 99th percentile in
// microseconds, the Redis commands the instance sent per step-up, counted
// by a go-redis hook (a script or pipeline counts as one), and the time the
// instance spent waiting for Redis per step-up (the hook's calls, timed).
func BenchmarkStepUpLatency(b *testing.B) {
	srv := sharedRedis(b)
	const rpID, origin = "app.example", "https://app.example"
	users := stepuptest.NewUsers()
	auth := stepuptest.New(origin)
	u := users.Add("alice")
	users.AddCredential("alice", auth.Register(rpID, u.Handle))
	wa, err := webauthn.New(&webauthn.Config{RPID: rpID, RPDisplayName: "Bench", RPOrigins: []string{origin}})
	if err != nil {
		b.Fatal(err)
	}
	rdb := srv.client(b)
	var cmds, waited atomic.Int64
	rdb.AddHook(countingHook{n: &cmds, ns: &waited})
	su, err := stepup.New(stepup.Config{
		WebAuthn:   wa,
		Store:      sessions.NewCookieStore(securecookie.GenerateRandomKey(32), securecookie.GenerateRandomKey(32)),
		Users:      users,
		Registry:   redisstore.New(rdb, redisstore.WithKeyPrefix(prefix(b))),
		MaxStepUps: 1 << 30, // the benchmark steps up far more often than a person
	})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /api/reauth/options", su.OptionsHandler())
	mux.Handle("POST /api/reauth/verify", su.VerifyHandler())
	hs := httptest.NewServer(mux)
	defer hs.Close()

	jar, err := cookiejar.New(nil)
	if err != nil {
		b.Fatal(err)
	}
	base, _ := url.Parse(hs.URL)
	jar.SetCookies(base, []*http.Cookie{{Name: stepuptest.SignInCookie, Value: "alice", Path: "/"}})
	c := &http.Client{Jar: jar, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	ctx := context.Background()
	stepUp := func() time.Duration {
		start := time.Now()
		opts, err := stepuptest.Options(ctx, c, hs.URL+"/api/reauth/options")
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		as, err := auth.Get(opts)
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		if _, err := stepuptest.Verify(ctx, c, hs.URL+"/api/reauth/verify", as); err != nil {
			b.Fatal(err)
		}
		return took + time.Since(start)
	}
	for range 20 { // warm the connections, the script cache and the code
		stepUp()
	}

	samples := make([]time.Duration, 0, 4096)
	before, waitedBefore := cmds.Load(), waited.Load()
	for b.Loop() {
		samples = append(samples, stepUp())
	}
	n := len(samples)
	slices.Sort(samples)
	pct := func(p int) float64 { return float64(samples[(n*p+99)/100-1].Microseconds()) }
	b.ReportMetric(pct(50), "p50-µs")
	b.ReportMetric(pct(99), "p99-µs")
	b.ReportMetric(float64(cmds.Load()-before)/float64(n), "redis-cmds/op")
	b.ReportMetric(float64(waited.Load()-waitedBefore)/1e3/float64(n), "redis-µs/op")
}

// countingHook counts the commands a go-redis client sends: each command,
// and each pipeline (or MULTI/EXEC transaction) as one; and, if ns is not
// nil, adds up the nanoseconds they took.
type countingHook struct{ n, ns *atomic.Int64 }

func (h countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		start := time.Now()
		err := next(ctx, cmd)
		if h.ns != nil {
			h.ns.Add(int64(time.Since(start)))
		}
		return err
	}
}

func (h countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		start := time.Now()
		err := next(ctx, cmds)
		if h.ns != nil {
			h.ns.Add(int64(time.Since(start)))
		}
		return err
	}
}
