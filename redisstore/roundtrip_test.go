package redisstore_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/redisstore"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// Round trips are counted twice, by two witnesses that must agree:
//
//   - redis-server itself, through a MONITOR connection: the server writes
//     every command it executes to its monitors, in the order it executes
//     them, whichever client sent it, with the client's address, and the
//     commands a script runs marked "lua". The commands not marked "lua"
//     are exactly the requests the server answered: with one client
//     sending one command at a time, one command is one round trip. That
//     is the ground truth, and it sees what a client-side count could miss
//     (a retry, a NOSCRIPT fallback, a handshake).
//   - a go-redis hook on the application's client (countingHook), which
//     counts each command and each pipeline or MULTI/EXEC as one: what the
//     application asked for, attributed to one HTTP request.
//
// Each test has a redis-server of its own, so that no other test's
// commands reach its monitor.

// monitor reads a MONITOR connection.
type monitor struct {
	t      *testing.T
	conn   net.Conn
	r      *bufio.Reader
	marker net.Conn // a second raw connection, which sends only markers
	n      atomic.Int64
}

// newMonitor starts monitoring srv. It is closed when t ends.
func newMonitor(t *testing.T, srv *redisServer) *monitor {
	t.Helper()
	dial := func() (net.Conn, *bufio.Reader) {
		conn, err := net.DialTimeout("tcp", srv.addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn, bufio.NewReader(conn)
	}
	m := &monitor{t: t}
	m.conn, m.r = dial()
	m.expect(m.conn, m.r, "MONITOR", "+OK")
	var mr *bufio.Reader
	m.marker, mr = dial()
	m.expect(m.marker, mr, "PING", "+PONG")
	go func() { // drain the marker connection's replies
		for {
			if _, err := mr.ReadString('\n'); err != nil {
				return
			}
		}
	}()
	return m
}

func (m *monitor) expect(conn net.Conn, r *bufio.Reader, cmd, reply string) {
	m.t.Helper()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "%s\r\n", cmd); err != nil {
		m.t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != reply {
		m.t.Fatalf("%s answered %q %v, want %s", cmd, line, err, reply)
	}
}

// seen is what the server executed for clients between two markers.
type seen struct {
	cmds   []string // the commands clients sent, as "evalsha", "get", ...
	inLua  []string // the commands the scripts ran
	script int      // of cmds, EVAL and EVALSHA
}

func (s seen) String() string {
	return fmt.Sprintf("%d sent %v, in scripts %v", len(s.cmds), s.cmds, s.inLua)
}

// during runs f and returns what the server executed meanwhile, except the
// markers. f must wait for its commands' replies (every client call does).
func (m *monitor) during(f func()) seen {
	m.t.Helper()
	m.mark() // everything before f
	f()
	return m.mark()
}

// mark sends a marker and returns what the monitor showed before it.
func (m *monitor) mark() seen {
	m.t.Helper()
	tag := "stepup-marker-" + strconv.FormatInt(m.n.Add(1), 10)
	m.marker.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(m.marker, "ECHO %s\r\n", tag); err != nil {
		m.t.Fatal(err)
	}
	var s seen
	m.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		line, err := m.r.ReadString('\n')
		if err != nil {
			m.t.Fatalf("monitor: %v", err)
		}
		// +1700000000.123456 [0 127.0.0.1:54321] "evalsha" "..." ...
		_, rest, ok1 := strings.Cut(line, " [")
		who, args, ok2 := strings.Cut(rest, "] ")
		if !ok1 || !ok2 {
			m.t.Fatalf("monitor line %q", line)
		}
		name, _, _ := strings.Cut(strings.TrimSpace(args), " ")
		name = strings.ToLower(strings.Trim(name, `"`))
		switch {
		case name == "echo" && strings.Contains(args, `"`+tag+`"`):
			return s
		case name == "echo" && strings.Contains(args, "stepup-marker-"):
			// an earlier marker
		case strings.HasSuffix(who, " lua"):
			s.inLua = append(s.inLua, name)
		default:
			s.cmds = append(s.cmds, name)
			if name == "evalsha" || name == "eval" {
				s.script++
			}
		}
	}
}

func TestUpdateIsOneRoundTrip(t *testing.T) {
	t.Parallel()
	srv := newRedis(t)
	m := newMonitor(t, srv)
	c := srv.client(t)
	var hooked atomic.Int64
	c.AddHook(countingHook{n: &hooked})
	r := redisstore.New(c)
	ctx := t.Context()
	if err := c.Ping(ctx).Err(); err != nil { // dial before counting
		t.Fatal(err)
	}
	hooked.Store(0)

	// What a verify might do at once: take two limits, claim a challenge,
	// record a counter value and a grant, check two revocation states.
	ops := []stepup.Op{
		take(userTag+"fail", 5, 15*time.Minute), take(userTag+"stepups", 10, time.Minute),
		put(userTag+"challenge:x", 1, 2*time.Minute), put(userTag+"counter:y", 1, time.Minute),
		initOp(userTag+"grant:z", 1, 5*time.Minute), get(userTag + "epoch"), get(userTag + "session:s"),
	}
	for _, tc := range []struct {
		name  string
		flush bool // flush the script cache first
		want  []string
	}{
		{"first", false, []string{"evalsha", "eval"}}, // a new server has no script cached
		{"cached", false, []string{"evalsha"}},
		{"again", false, []string{"evalsha"}},
		{"after SCRIPT FLUSH", true, []string{"evalsha", "eval"}},
		{"cached again", false, []string{"evalsha"}},
	} {
		if tc.flush {
			if err := c.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		before := hooked.Load()
		s := m.during(func() {
			if _, err := r.Update(ctx, ops, make([]stepup.Result, len(ops))); err != nil {
				t.Fatal(err)
			}
		})
		t.Logf("%s: %v", tc.name, s)
		if strings.Join(s.cmds, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%s: the server executed %v, want %v", tc.name, s.cmds, tc.want)
		}
		if n := hooked.Load() - before; n != int64(len(tc.want)) {
			t.Errorf("%s: the hook counted %d commands, the server %d", tc.name, n, len(s.cmds))
		}
		if len(s.inLua) == 0 {
			t.Errorf("%s: the monitor saw no command inside the script", tc.name)
		}
	}
}

func TestStepUpRoundTrips(t *testing.T) {
	t.Parallel()
	srv := newRedis(t) // its monitor sees only this test's commands
	m := newMonitor(t, srv)
	a := newApp(t, srv)
	var hooked atomic.Int64
	a.newReg = func() stepup.Registry {
		c := srv.client(t)
		c.AddHook(countingHook{n: &hooked})
		return redisstore.New(c)
	}
	one := a.instance()
	c := a.client("alice")
	// Warm up: the script cached, a connection dialed.
	one.reauth(c)
	one.expectGrant(c)

	// count runs the request f and returns what the server executed for
	// it, checking that the hook counted as much.
	count := func(what string, f func()) seen {
		t.Helper()
		before := hooked.Load()
		s := m.during(f)
		t.Logf("%s: %v", what, s)
		if n := hooked.Load() - before; n != int64(len(s.cmds)) {
			t.Errorf("%s: the hook counted %d commands, the server executed %d", what, n, len(s.cmds))
		}
		if s.script != len(s.cmds) {
			t.Errorf("%s: %v, want only scripts", what, s.cmds)
		}
		return s
	}
	bound := func(c *http.Client) response {
		t.Helper()
		return one.post(c, "/bound", []byte(`"100 EUR to bob"`))
	}
	var options, as []byte
	var kept string // the step-up cookie before the first verify
	var refused response
	var older *http.Client // a copy of the cookie before the Once gate used its grant
	for _, step := range []struct {
		name string
		want int
		f    func()
	}{
		{"options", 1, func() { options = one.options(c) }},
		{"verify", 2, func() {
			kept = a.stepupCookie(c)
			as = a.sign(options)
			if r := one.verify(c, as); r.status != http.StatusOK {
				t.Fatalf("verify: %d %s", r.status, r.raw)
			}
		}},
		{"plain gate pass", 1, func() { one.expectGrant(c) }},
		{"Once gate pass", 1, func() {
			older = a.copyClient(c)
			if r := one.post(c, "/once", nil); r.status != http.StatusOK {
				t.Fatalf("Once gate: %d %s", r.status, r.raw)
			}
		}},
		{"gate refusal after the Once gate dropped the grant", 0, func() { one.expectNoGrant(c) }},
		{"gate refusal of the used grant in an older cookie", 1, func() { one.expectNoGrant(older) }},
		{"Bind gate refusal without a bound grant", 0, func() {
			refused = bound(c)
			expectError(t, refused, http.StatusForbidden, codeReauthenticationRequired)
		}},
		{"options for the operation", 1, func() {
			op, _ := refused.body["operation"].(map[string]any)
			digest, _ := op["digest"].(string)
			o, err := stepuptest.OptionsFor(t.Context(), c, one.URL+"/api/reauth/options", stepuptest.Request{Operation: digest})
			if err != nil {
				t.Fatal(err)
			}
			options = o
		}},
		{"verify of the operation", 2, func() {
			if r := one.verify(c, a.sign(options)); r.status != http.StatusOK {
				t.Fatalf("verify: %d %s", r.status, r.raw)
			}
		}},
		{"Bind gate pass", 1, func() {
			if r := bound(c); r.status != http.StatusOK {
				t.Fatalf("Bind gate: %d %s", r.status, r.raw)
			}
		}},
		{"options again", 1, func() { options = one.options(c) }},
		{"verify refused: bad signature", 1, func() {
			expectError(t, one.verify(c, a.sign(options, stepuptest.WithBadSignature())), http.StatusBadRequest, codeVerificationFailed)
		}},
		{"verify refused: replayed challenge", 2, func() {
			// An older copy of the cookie and the first assertion: the
			// claim fails, and the replay is then charged a unit.
			old := a.copyClient(c)
			a.setStepupCookie(old, kept)
			expectError(t, one.verify(old, as), http.StatusBadRequest, codeChallengeExpired)
		}},
		{"request without any grant", 0, func() { one.expectNoGrant(a.client("bob")) }},
		{"Revoke", 1, func() { one.revoke(c) }},
		{"RevokeUser", 1, func() {
			if err := one.su.RevokeUser(t.Context(), []byte("handle-alice")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		s := count(step.name, step.f)
		if n := len(s.cmds); n != step.want {
			t.Errorf("%s: %d round trips (%v), want %d", step.name, n, s.cmds, step.want)
		}
	}
}
