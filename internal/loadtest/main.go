// Command loadtest drives a stepup-protected server on the loopback interface
// with concurrent clients for a bounded time, then prints requests per second
// and p50/p99 latency for each route, gated and ungated.
//
//	go run ./internal/loadtest -duration 10s -clients 8
//
// It starts its own minimal application in process: an in-memory user table
// with one passkey per client on a software authenticator
// (stepuptest.Authenticator), sign-in sessions in memory, and stepup on a
// gorilla CookieStore with its defaults (the MemoryRegistry included) except
// MaxStepUps, raised so that one user may step up without pause. Each
// client repeats, until the time is up: sign in, an ungated request, the
// gated request (403), the step-up ceremony (options, then verify), and the
// gated request again (200).
//
// Clients and server share the machine: the clients' signing and HTTP work
// takes CPU from the server, so the figures are a lower bound for the server
// alone. Only 127.0.0.1 is used.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"runtime"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

func main() {
	duration := flag.Duration("duration", 10*time.Second, "how long to drive the server")
	clients := flag.Int("clients", 8, "number of concurrent clients")
	flag.Parse()
	if *duration <= 0 || *clients < 1 {
		fmt.Fprintln(os.Stderr, "loadtest: -duration must be positive and -clients at least 1")
		os.Exit(2)
	}
	if err := run(*duration, *clients); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// The steps of a client's cycle, in order; each is timed on its own.
const (
	stepSignIn = iota
	stepUngated
	stepGatedDenied
	stepOptions
	stepVerify
	stepGatedPassed
	numSteps
)

var stepNames = [numSteps]string{
	stepSignIn:      "sign-in     POST /login",
	stepUngated:     "ungated     GET  /api/profile",
	stepGatedDenied: "gated 403   POST /api/transfer",
	stepOptions:     "ceremony    POST /api/reauth/options",
	stepVerify:      "ceremony    POST /api/reauth/verify",
	stepGatedPassed: "gated 200   POST /api/transfer",
}

var wantStatus = [numSteps]int{
	stepSignIn:      http.StatusNoContent,
	stepUngated:     http.StatusOK,
	stepGatedDenied: http.StatusForbidden,
	stepOptions:     http.StatusOK,
	stepVerify:      http.StatusOK,
	stepGatedPassed: http.StatusOK,
}

// result is what one client measured.
type result struct {
	latencies [numSteps][]time.Duration
	errors    [numSteps]int
	firstErr  error
	cycles    int
}

func run(duration time.Duration, clients int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	origin := "http://localhost:" + fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)

	a, err := newApp(origin)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	transport := &http.Transport{
		MaxIdleConns:        clients,
		MaxIdleConnsPerHost: clients,
		DisableCompression:  true,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	defer transport.CloseIdleConnections()

	fmt.Printf("stepup load test: %d client(s) for %v against %s (GOMAXPROCS %d; clients share the CPUs with the server)\n",
		clients, duration, base, runtime.GOMAXPROCS(0))

	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	results := make([]result, clients)
	var wg sync.WaitGroup
	start := time.Now()
	cs := make([]*client, clients)
	for i := range cs {
		cs[i] = &client{
			name:   fmt.Sprintf("user-%d", i),
			base:   base,
			auth:   a.authenticators[i%len(a.authenticators)],
			http:   &http.Client{Transport: transport, Timeout: 10 * time.Second},
			result: &results[i],
		}
		a.addUser(cs[i].name, cs[i].auth)
	}
	for _, c := range cs {
		wg.Go(func() { c.loop(ctx) })
	}
	wg.Wait()
	elapsed := time.Since(start)

	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return report(os.Stdout, results, elapsed)
}

// client is one browser: its own cookie jar, its own user and passkey.
type client struct {
	name   string
	base   string
	auth   *stepuptest.Authenticator
	http   *http.Client
	result *result
}

// loop runs cycles until ctx ends. A request cut short by the end of the
// run is not counted. The cookie jar lives as long as the client, so from
// the second cycle on the gated request that is refused carries the
// step-up cookie of the previous sign-in, whose grant the new sign-in does
// not inherit (the application implements stepup.SignInIdentifier).
func (c *client) loop(ctx context.Context) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		c.fail(stepSignIn, err)
		return
	}
	c.http.Jar = jar
	for ctx.Err() == nil {
		if c.cycle(ctx) {
			c.result.cycles++
		}
	}
}

// cycle runs one sign-in to step-up cycle and reports whether it completed.
func (c *client) cycle(ctx context.Context) bool {
	if !c.do(ctx, stepSignIn, http.MethodPost, "/login?user="+c.name, nil) ||
		!c.do(ctx, stepUngated, http.MethodGet, "/api/profile", nil) ||
		!c.do(ctx, stepGatedDenied, http.MethodPost, "/api/transfer", nil) {
		return false
	}
	t := time.Now()
	options, err := stepuptest.Options(ctx, c.http, c.base+"/api/reauth/options")
	if !c.record(ctx, stepOptions, t, err) {
		return false
	}
	assertion, err := c.auth.Get(options) // the authenticator's work is not timed
	if err != nil {
		c.fail(stepVerify, err)
		return false
	}
	t = time.Now()
	_, err = stepuptest.Verify(ctx, c.http, c.base+"/api/reauth/verify", assertion)
	if !c.record(ctx, stepVerify, t, err) {
		return false
	}
	return c.do(ctx, stepGatedPassed, http.MethodPost, "/api/transfer", nil)
}

// do sends one request and records its latency and whether the status was
// the expected one.
func (c *client) do(ctx context.Context, step int, method, path string, body []byte) bool {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		c.fail(step, err)
		return false
	}
	t := time.Now()
	resp, err := c.http.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != wantStatus[step] {
			err = fmt.Errorf("%s: status %d, want %d", stepNames[step], resp.StatusCode, wantStatus[step])
		}
	}
	return c.record(ctx, step, t, err)
}

func (c *client) record(ctx context.Context, step int, start time.Time, err error) bool {
	d := time.Since(start)
	if ctx.Err() != nil {
		return false // cut short by the end of the run
	}
	if err != nil {
		c.fail(step, err)
		return false
	}
	c.result.latencies[step] = append(c.result.latencies[step], d)
	return true
}

func (c *client) fail(step int, err error) {
	c.result.errors[step]++
	if c.result.firstErr == nil {
		c.result.firstErr = err
	}
}

func report(out io.Writer, results []result, elapsed time.Duration) error {
	var (
		all    [numSteps][]time.Duration
		errs   [numSteps]int
		cycles int
		first  error
	)
	for _, r := range results {
		for s := range numSteps {
			all[s] = append(all[s], r.latencies[s]...)
			errs[s] += r.errors[s]
		}
		cycles += r.cycles
		if first == nil {
			first = r.firstErr
		}
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-36s\trequests\treq/s\tp50\tp99\terrors\t\n", "route")
	total := 0
	line := func(name string, ds []time.Duration, nerr int) {
		slices.Sort(ds)
		fmt.Fprintf(tw, "%-36s\t%d\t%.0f\t%v\t%v\t%d\t\n", name, len(ds), float64(len(ds))/elapsed.Seconds(),
			percentile(ds, 0.50), percentile(ds, 0.99), nerr)
	}
	for s := range numSteps {
		line(stepNames[s], all[s], errs[s])
		total += len(all[s])
	}
	gated := append(slices.Clone(all[stepGatedDenied]), all[stepGatedPassed]...)
	line("gated all   POST /api/transfer", gated, errs[stepGatedDenied]+errs[stepGatedPassed])
	fmt.Fprintf(tw, "%-36s\t%d\t%.0f\t\t\t\t\n", "all requests", total, float64(total)/elapsed.Seconds())
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d complete cycles in %v\n", cycles, elapsed.Round(time.Millisecond))
	if first != nil {
		return fmt.Errorf("unexpected answers; the first: %w", first)
	}
	return nil
}

// percentile returns the q-quantile of sorted ds (nearest rank).
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(q*float64(len(ds))+0.5) - 1
	i = max(0, min(i, len(ds)-1))
	return ds[i].Round(time.Microsecond)
}

// app is the minimal application: users with passkeys, sign-in sessions in
// memory (cookie "sid"), and stepup in front of /api/transfer.
type app struct {
	su             *stepup.StepUp
	authenticators []*stepuptest.Authenticator
	rpID           string

	mu       sync.RWMutex
	users    map[string]*user // by name
	signIns  map[string]*user // by sign-in session ID
	credUser map[string]*user // by credential ID
}

type user struct {
	handle []byte
	name   string
	creds  []webauthn.Credential
}

func (u *user) WebAuthnID() []byte                         { return u.handle }
func (u *user) WebAuthnName() string                       { return u.name }
func (u *user) WebAuthnDisplayName() string                { return u.name }
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }

func newApp(origin string) (*app, error) {
	const rpID = "localhost"
	wa, err := webauthn.New(&webauthn.Config{RPID: rpID, RPDisplayName: "loadtest", RPOrigins: []string{origin}})
	if err != nil {
		return nil, err
	}
	a := &app{
		rpID:     rpID,
		users:    map[string]*user{},
		signIns:  map[string]*user{},
		credUser: map[string]*user{},
		// One software authenticator (one device) per core is plenty: it
		// only locks to pick a passkey and bump its counter.
		authenticators: []*stepuptest.Authenticator{stepuptest.New(origin), stepuptest.New(origin)},
	}
	hashKey, blockKey := make([]byte, 32), make([]byte, 32)
	rand.Read(hashKey)
	rand.Read(blockKey)
	store := sessions.NewCookieStore(hashKey, blockKey)
	a.su, err = stepup.New(stepup.Config{
		WebAuthn: wa, Store: store, Users: a,
		// Each client is one user stepping up hundreds of times a second;
		// the default limit (DefaultMaxStepUps a minute) would answer 429
		// from the eleventh cycle on. The limit is still taken and checked
		// on every ceremony, so the work measured is the same.
		MaxStepUps: math.MaxInt32,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// addUser creates a user with one passkey on auth.
func (a *app) addUser(name string, auth *stepuptest.Authenticator) {
	handle := make([]byte, 16)
	rand.Read(handle)
	u := &user{handle: handle, name: name}
	cred := auth.Register(a.rpID, handle)
	u.creds = []webauthn.Credential{cred}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.users[name] = u
	a.credUser[string(cred.ID)] = u
}

func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", a.login)
	mux.HandleFunc("GET /api/profile", a.profile)
	mux.Handle("POST /api/transfer", a.su.RequireRecentReauth(5*time.Minute)(http.HandlerFunc(a.transfer)))
	mux.Handle("/api/reauth/options", a.su.OptionsHandler())
	mux.Handle("/api/reauth/verify", a.su.VerifyHandler())
	return mux
}

// login signs in the user named in the query (a load test: no password)
// under a new sign-in session ID, ending the request's previous sign-in.
func (a *app) login(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	u, ok := a.users[r.URL.Query().Get("user")]
	if !ok {
		a.mu.Unlock()
		http.Error(w, "no such user", http.StatusNotFound)
		return
	}
	if old, err := r.Cookie("sid"); err == nil {
		delete(a.signIns, old.Value)
	}
	id := make([]byte, 16)
	rand.Read(id)
	sid := hex.EncodeToString(id)
	a.signIns[sid] = u
	a.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "sid", Value: sid, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	w.WriteHeader(http.StatusNoContent)
}

// profile is the ungated route: it only needs a signed-in user.
func (a *app) profile(w http.ResponseWriter, r *http.Request) {
	u, err := a.CurrentUser(r)
	if err != nil {
		http.Error(w, "sign in first", http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, "{\"name\":%q}\n", u.WebAuthnName())
}

// transfer is the gated route; it does the same work as profile.
func (a *app) transfer(w http.ResponseWriter, r *http.Request) {
	a.profile(w, r)
}

// signedIn returns the user of r's sign-in session.
func (a *app) signedIn(r *http.Request) (*user, string, error) {
	c, err := r.Cookie("sid")
	if err != nil {
		return nil, "", stepup.ErrNoActiveSession
	}
	a.mu.RLock()
	u, ok := a.signIns[c.Value]
	a.mu.RUnlock()
	if !ok {
		return nil, "", stepup.ErrNoActiveSession
	}
	return u, c.Value, nil
}

// CurrentUser implements stepup.UserStore.
func (a *app) CurrentUser(r *http.Request) (webauthn.User, error) {
	u, _, err := a.signedIn(r)
	if err != nil {
		return nil, err
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	cp := *u
	cp.creds = slices.Clone(u.creds)
	return &cp, nil
}

// SignInID implements stepup.SignInIdentifier: grants are bound to the
// sign-in session, so every new sign-in starts without one.
func (a *app) SignInID(r *http.Request) (string, error) {
	_, sid, err := a.signedIn(r)
	return sid, err
}

// CredentialByID implements stepup.UserStore.
func (a *app) CredentialByID(_ context.Context, id []byte) (webauthn.Credential, []byte, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	u, ok := a.credUser[string(id)]
	if !ok {
		return webauthn.Credential{}, nil, stepup.ErrUnknownCredential
	}
	for _, c := range u.creds {
		if bytes.Equal(c.ID, id) {
			return c, u.handle, nil
		}
	}
	return webauthn.Credential{}, nil, stepup.ErrUnknownCredential
}

// UpdateCredential implements stepup.UserStore.
func (a *app) UpdateCredential(_ context.Context, owner []byte, cred webauthn.Credential) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	u, ok := a.credUser[string(cred.ID)]
	if !ok || !bytes.Equal(u.handle, owner) {
		return stepup.ErrUnknownCredential
	}
	for i := range u.creds {
		if bytes.Equal(u.creds[i].ID, cred.ID) {
			u.creds[i] = cred
			return nil
		}
	}
	return stepup.ErrUnknownCredential
}
