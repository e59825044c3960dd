package stepup

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"
)

// The flood: accounts stepping up as fast as the limits let them, while new
// users (holding nothing yet) and returning users (a few step-ups an hour,
// one browser session) step up too, replayed against a MemoryRegistry on a
// simulated clock. Each step-up makes exactly the Registry updates the
// handlers make, built by the same functions (optionsOps, claimOps,
// grantOps, startOps, gateOps, giveOps) in the same order, with the grants
// kept in a step-up session as the handlers keep them (newGrant,
// nextGrants); only HTTP, signatures and the application's stores are left
// out. A refusal is a Registry update that fails with ErrRegistryFull (the
// 503 a handler or the gate answers); a 429 is counted apart.
//
// TestRegistryFloodScaledDown runs with the ordinary tests; the full size
// and the rate search run with STEPUP_FLOOD=1 (see docs/registry.md):
//
//	STEPUP_FLOOD=1 go test -run 'TestRegistryFlood$' -v -timeout 1h .
//	STEPUP_FLOOD=1 go test -run TestRegistryRateNobodyRefused -v -timeout 2h .

// floodTick is the step of the simulated clock.
const floodTick = 100 * time.Millisecond

// floodClock is the simulated clock: the StepUp's and the registry's Now.
type floodClock struct{ ns int64 }

func (c *floodClock) Now() time.Time { return time.Unix(0, c.ns) }

// floodBehavior is how a group of accounts steps up.
type floodBehavior struct {
	name        string
	kind        floodKind
	accounts    int           // accounts in the group (for new users: arrivals every `every`)
	every       time.Duration // from one step-up of an account to its next
	password    bool          // the password Method, else a passkey
	optionsOnly bool          // the passkey ceremony stops after options
	newSession  bool          // a new browser session (no cookie) every step-up
	once        bool          // the grant opens a single-use gate, else a plain one
	counter     bool          // the passkey has a sign counter
	think       time.Duration // from options to verify
	start       time.Duration // the group's first step-up
}

// floodKind tells what the numbers of a group are measured against.
type floodKind uint8

const (
	floodAttacker  floodKind = iota
	floodNew                 // every step-up is a new account's first: it holds nothing yet
	floodReturning           // stepped up before, in one browser session
)

// floodStats counts step-ups: tried, and how each ended: passed (the gate
// let the grant through; for options alone, the challenge was issued),
// limited (429) or refused (503, the registry full for this user).
type floodStats struct {
	tried, granted, limited, refused int
}

func (s floodStats) refusedShare() float64 {
	if s.tried == 0 {
		return 0
	}
	return float64(s.refused) / float64(s.tried)
}

// floodAccount is an account and its browser's step-up session.
type floodAccount struct {
	uid, cred []byte
	counter   uint32
	sid       []byte // the step-up session's ID (secSessionID), nil without a cookie
	grants    []byte // the step-up session's grants (secGrants)
	p         pending
	measured  bool // the step-up under way started in the measured window
}

type floodEvent struct {
	group, account int32
	verify         bool
}

// flood is one simulation run.
type flood struct {
	tb       testing.TB
	s        *StepUp
	reg      *MemoryRegistry
	clk      *floodClock
	ctx      context.Context
	groups   []floodBehavior
	accounts [][]floodAccount
	ring     [][]floodEvent
	origin   int64 // the clock at tick 0
	tick     int64
	measured int64 // ticks before this one are the warm-up
	stats    []floodStats
	all      []floodStats // warm-up included
	peak     int
}

// floodUsers is the application's side, which the simulation never asks.
type floodUsers struct{}

func (floodUsers) CurrentUser(*http.Request) (webauthn.User, error) { return nil, ErrNoActiveSession }
func (floodUsers) CredentialByID(context.Context, []byte) (webauthn.Credential, []byte, error) {
	return webauthn.Credential{}, nil, ErrUnknownCredential
}
func (floodUsers) UpdateCredential(context.Context, []byte, webauthn.Credential) error { return nil }

// newFlood makes a StepUp with the default limits on a MemoryRegistry of
// size entries, with gates of 5 minutes and, if longest is longer, of
// longest, so that grants live as they would.
func newFlood(tb testing.TB, size int, longest time.Duration, groups []floodBehavior) *flood {
	tb.Helper()
	clk := &floodClock{ns: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixNano()}
	reg := NewMemoryRegistry(size, clk.Now)
	wa, err := webauthn.New(&webauthn.Config{RPID: "app.example", RPDisplayName: "Flood", RPOrigins: []string{"https://app.example"}})
	if err != nil {
		tb.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	s, err := New(Config{WebAuthn: wa, Store: sessions.NewCookieStore(key), Users: floodUsers{}, Now: clk.Now, Registry: reg})
	if err != nil {
		tb.Fatal(err)
	}
	s.RequireRecentReauth(5 * time.Minute)
	s.RequireRecentReauth(longest)
	f := &flood{tb: tb, s: s, reg: reg, clk: clk, ctx: context.Background(), groups: groups, origin: clk.ns,
		stats: make([]floodStats, len(groups)), all: make([]floodStats, len(groups))}
	ring := int64(1)
	for _, g := range groups {
		ring = max(ring, int64((g.start+g.every)/floodTick)+1, int64(g.think/floodTick)+1)
	}
	f.ring = make([][]floodEvent, ring+1)
	for gi, g := range groups {
		f.accounts = append(f.accounts, make([]floodAccount, g.accounts))
		for ai := range g.accounts {
			f.accounts[gi][ai] = newFloodAccount()
			// Spread evenly over one period.
			f.at(int64(g.start/floodTick)+int64(g.every/floodTick)*int64(ai)/int64(g.accounts), floodEvent{group: int32(gi), account: int32(ai)})
		}
	}
	return f
}

func newFloodAccount() floodAccount {
	a := floodAccount{uid: make([]byte, 16), cred: make([]byte, 32)}
	rand.Read(a.uid)
	rand.Read(a.cred)
	return a
}

// at schedules e at tick t.
func (f *flood) at(t int64, e floodEvent) {
	i := t % int64(len(f.ring))
	f.ring[i] = append(f.ring[i], e)
}

// after schedules e d from now, at least a tick later.
func (f *flood) after(d time.Duration, e floodEvent) {
	f.at(f.tick+max(int64(d/floodTick), 1), e)
}

// run goes on for warmup, then measures for measure, of the simulated
// clock.
func (f *flood) run(warmup, measure time.Duration) {
	f.measured = f.tick + int64(warmup/floodTick)
	end := f.measured + int64(measure/floodTick)
	for ; f.tick < end; f.tick++ {
		f.clk.ns = f.origin + f.tick*int64(floodTick)
		i := f.tick % int64(len(f.ring))
		events := f.ring[i]
		f.ring[i] = nil
		for _, e := range events {
			f.handle(e)
		}
		if f.ring[i] == nil {
			f.ring[i] = events[:0] // keep the array
		}
		if f.tick%10 == 0 {
			f.peak = max(f.peak, f.reg.Len())
		}
	}
}

func (f *flood) handle(e floodEvent) {
	g, a := &f.groups[e.group], &f.accounts[e.group][e.account]
	if e.verify {
		f.verify(e, g, a)
		return
	}
	f.after(g.every, e)
	switch {
	case g.kind == floodNew:
		*a = newFloodAccount()
	case g.newSession:
		a.sid, a.grants = nil, nil
	}
	a.measured = f.tick >= f.measured
	f.count(e, a, func(s *floodStats) { s.tried++ })
	if g.password {
		f.password(e, g, a)
		return
	}
	if !f.options(e, a) {
		return
	}
	if g.optionsOnly {
		f.count(e, a, func(s *floodStats) { s.granted++ }) // a challenge issued
		return
	}
	if g.think < floodTick {
		f.verify(e, g, a)
		return
	}
	e.verify = true
	f.after(g.think, e)
}

// count applies inc to the group's counts of the whole run, and of the
// measured window if the step-up started in it.
func (f *flood) count(e floodEvent, a *floodAccount, inc func(*floodStats)) {
	inc(&f.all[e.group])
	if a.measured {
		inc(&f.stats[e.group])
	}
}

// ended reports whether an update ended the step-up: refused (the registry
// is full for this user), limited (429), or any other failure, a bug of
// the simulation or of the registry, which stops the test.
func (f *flood) ended(e floodEvent, a *floodAccount, step string, failed int, err error, limits ...int) bool {
	f.tb.Helper()
	switch {
	case errors.Is(err, ErrRegistryFull):
		f.count(e, a, func(s *floodStats) { s.refused++ })
	case err != nil:
		f.tb.Fatalf("%s: %s: %v", f.groups[e.group].name, step, err)
	case failed >= 0 && slices.Contains(limits, failed):
		f.count(e, a, func(s *floodStats) { s.limited++ })
	case failed >= 0:
		f.tb.Fatalf("%s: %s failed at op %d", f.groups[e.group].name, step, failed)
	default:
		return false
	}
	return true
}

// session is the account's step-up session as a request would load it.
func (a *floodAccount) session() *sessions.Session {
	sess := sessions.NewSession(nil, "stepup")
	if a.sid != nil {
		put(sess, secSessionID, a.sid, false)
	}
	if a.grants != nil {
		put(sess, secGrants, a.grants, false)
	}
	return sess
}

// save keeps what the handlers saved in the session.
func (a *floodAccount) save(sess *sessions.Session) {
	a.sid, a.grants = value(sess, secSessionID), value(sess, secGrants)
}

// options is the options handler's update (startCeremony).
func (f *flood) options(e floodEvent, a *floodAccount) bool {
	sess := a.session()
	rv := proposeRevocation(principal{handle: a.uid}, sess)
	challenge := make([]byte, 32)
	rand.Read(challenge)
	res, failed, err := f.s.update(f.ctx, f.s.optionsOps(a.uid, rv, challenge))
	if f.ended(e, a, "options", failed, err, opFailures, opStepUps) {
		return false
	}
	a.save(sess)
	a.p = pending{revocation: rv.bound(res), challenge: challenge, user: a.uid}
	return true
}

// verify is the verify handler's updates (claim, then record) and the gate.
func (f *flood) verify(e floodEvent, g *floodBehavior, a *floodAccount) {
	_, failed, err := f.s.update(f.ctx, f.s.claimOps(a.uid, a.p.key()))
	if f.ended(e, a, "claim", failed, err, 0) {
		return
	}
	var counter uint32
	if g.counter {
		a.counter++
		counter = a.counter
	}
	m := proof{name: MethodPasskey, amr: passkeyAMR, credentialID: a.cred}
	f.record(e, g, a, a.p, m, counter, []string{failureKey(a.uid)})
}

// password is the method handler's updates (start, then record) and the
// gate; the password is right.
func (f *flood) password(e floodEvent, g *floodBehavior, a *floodAccount) {
	sess := a.session()
	rv := proposeRevocation(principal{handle: a.uid}, sess)
	res, failed, err := f.s.update(f.ctx, f.s.startOps(a.uid, rv))
	if f.ended(e, a, "start", failed, err, opFailures, opStepUps) {
		return
	}
	a.save(sess)
	p := pending{revocation: rv.bound(res), user: a.uid}
	f.record(e, g, a, p, proof{name: "password", amr: []string{"pwd"}}, 0, []string{failureKey(a.uid), stepUpKey(a.uid)})
}

// record records the grant of ceremony p (grantOps), as attempt.record
// does for a grant without a token, giving back the units taken when the registry refuses; then the
// grant opens a gate.
func (f *flood) record(e floodEvent, g *floodBehavior, a *floodAccount, p pending, m proof, counter uint32, taken []string) {
	sess := a.session()
	c := &attempt{s: f.s, ctx: f.ctx, who: principal{handle: a.uid}, sess: sess, now: f.clk.Now(), method: m.name}
	gr := c.newGrant(p, m)
	gs, dropped := c.nextGrants(p, gr)
	key := ""
	if counter != 0 {
		key = counterKey(a.uid, m.credentialID, counter)
	}
	_, failed, err := f.s.update(f.ctx, f.s.grantOps(gr, dropped, f.s.grantLifetime(), m.name == MethodPasskey, key))
	if errors.Is(err, ErrRegistryFull) {
		if _, _, err := f.s.update(f.ctx, giveOps(taken)); err != nil {
			f.tb.Fatalf("%s: give back: %v", g.name, err)
		}
	}
	if f.ended(e, a, "record", failed, err) {
		return
	}
	writeGrants(sess, gs)
	a.save(sess)
	f.gate(e, g, a, gr, gs)
}

// gate is the gate's update (passGrant) for grant gr, the newest of gs.
func (f *flood) gate(e floodEvent, g *floodBehavior, a *floodAccount, gr grantRecord, gs []grantRecord) {
	var ops [3]Op
	var res [3]Result
	failed, err := f.reg.Update(f.ctx, gateOps(&ops, gr, g.once), res[:])
	if f.ended(e, a, "gate", failed, err) {
		return
	}
	if res[0].Value != grantLive || res[1].Value != gr.userEpoch || res[2].Value != gr.sessEpoch {
		f.tb.Fatalf("%s: the gate refused a grant just recorded: %v", g.name, res)
	}
	if g.once {
		sess := a.session()
		writeGrants(sess, gs[:len(gs)-1])
		a.save(sess)
	}
	f.count(e, a, func(s *floodStats) { s.granted++ })
}

// attackerGroups is n accounts at the step-up limit (10 a minute), in four
// ways of holding the most: passkey ceremonies from a new session each
// time, leaving their grants; passkey ceremonies in one session, each grant
// used by a single-use gate (its record stays, marked used); the password
// in a new session each time, grants used; options alone from a new
// session each time, the challenges left to expire. Passkeys have
// counters. The four run at once, so every kind of entry is in play.
func attackerGroups(n int) []floodBehavior {
	every := time.Minute / defaultMaxStepUps
	return []floodBehavior{
		{name: "attacker: passkey, new session each", accounts: n / 4, every: every, newSession: true, counter: true},
		{name: "attacker: passkey, single-use gate", accounts: n / 4, every: every, once: true, counter: true},
		{name: "attacker: password, new session each, single-use gate", accounts: n / 4, every: every, password: true, newSession: true, once: true},
		{name: "attacker: options only, new session each", accounts: n - 3*(n/4), every: every, newSession: true, optionsOnly: true},
	}
}

// returningGroups is n users each stepping up every 15 minutes in one
// browser session, half with a passkey (with a counter), half with the
// password, half of each at a plain gate and half at a single-use one;
// think is the time they take between options and verify.
func returningGroups(n int) []floodBehavior {
	const every, think = 15 * time.Minute, 5 * time.Second
	return []floodBehavior{
		{name: "returning: passkey, plain gate", kind: floodReturning, accounts: n / 4, every: every, counter: true, think: think},
		{name: "returning: passkey, single-use gate", kind: floodReturning, accounts: n / 4, every: every, counter: true, once: true, think: think},
		{name: "returning: password, plain gate", kind: floodReturning, accounts: n / 4, every: every, password: true, think: think},
		{name: "returning: password, single-use gate", kind: floodReturning, accounts: n - 3*(n/4), every: every, password: true, once: true, think: think},
	}
}

// newUserGroups is new users arriving perMinute a minute, each stepping up
// once, half with a passkey, half with the password.
func newUserGroups(perMinute int) []floodBehavior {
	const think = 5 * time.Second
	return []floodBehavior{
		{name: "new: passkey", kind: floodNew, accounts: max(perMinute/2, 1), every: time.Minute, counter: true, think: think},
		{name: "new: password", kind: floodNew, accounts: max(perMinute/2, 1), every: time.Minute, password: true, think: think},
	}
}

// floodResult sums a run's measured counts by kind.
func (f *flood) result(kind floodKind) floodStats {
	var sum floodStats
	for i, g := range f.groups {
		if g.kind == kind {
			sum.tried += f.stats[i].tried
			sum.granted += f.stats[i].granted
			sum.limited += f.stats[i].limited
			sum.refused += f.stats[i].refused
		}
	}
	return sum
}

// report logs every group's counts and the registry's state.
func (f *flood) report() {
	f.tb.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "registry %d of %d entries (peak %d), %d users above lightShare\n", f.reg.Len(), f.reg.max, f.peak, f.reg.heavyUsers())
	for i, g := range f.groups {
		s, held := f.stats[i], 0
		for _, a := range f.accounts[i] {
			held += f.reg.share(a.uid)
		}
		fmt.Fprintf(&b, "  %-62s tried %8d  passed %8d  429 %6d  refused %8d (%6.2f %%)  holds %6.1f\n",
			g.name, s.tried, s.granted, s.limited, s.refused, 100*s.refusedShare(), float64(held)/float64(max(len(f.accounts[i]), 1)))
	}
	f.tb.Log(b.String())
}

// floodCase is a flood: at size entries, with gates of 5 minutes and of
// longest, attackers at the step-up limit (wave of them holding back until
// the flood is at its steady state, then joining at once), returning users
// and new users.
type floodCase struct {
	size, attackers, wave, returning, newPerMinute int
	longest                                        time.Duration
}

// runFlood runs c to its steady state (the longest grant lifetime and four
// minutes), then measures for measure, the wave joining at its start; it
// checks the targets: no new user refused, at most 1 % of returning users'
// step-ups refused, nobody but the attackers limited.
func runFlood(t *testing.T, c floodCase, measure time.Duration) {
	t.Helper()
	warmup := defaultChallengeTTL + max(c.longest, time.Minute) + futureSkew + time.Second + 4*time.Minute
	wave := attackerGroups(c.wave)
	for i := range wave {
		wave[i].name += " (wave)"
		wave[i].start = warmup
	}
	groups := slices.Concat(attackerGroups(c.attackers-c.wave), wave, returningGroups(c.returning), newUserGroups(c.newPerMinute))
	f := newFlood(t, c.size, c.longest, groups)
	if want := f.s.ttl + f.s.grantLifetime() + 4*time.Minute; warmup != want {
		t.Fatalf("warm-up %v, want %v", warmup, want)
	}
	f.run(warmup, measure)
	f.report()
	nw, ret, att := f.result(floodNew), f.result(floodReturning), f.result(floodAttacker)
	t.Logf("refused: new %.2f %% of %d, returning %.2f %% of %d, attackers %.1f %% of %d",
		100*nw.refusedShare(), nw.tried, 100*ret.refusedShare(), ret.tried, 100*att.refusedShare(), att.tried)
	if nw.tried == 0 || ret.tried == 0 || att.refused == 0 {
		t.Fatalf("the flood measured nothing: new %+v, returning %+v, attackers %+v", nw, ret, att)
	}
	if nw.refused > 0 {
		t.Errorf("%d of %d new users' step-ups refused, want none", nw.refused, nw.tried)
	}
	if ret.refusedShare() > 0.01 {
		t.Errorf("%.2f %% of returning users' step-ups refused, want at most 1 %%", 100*ret.refusedShare())
	}
	if nw.limited+ret.limited > 0 {
		t.Errorf("users within the limits were limited: new %d, returning %d", nw.limited, ret.limited)
	}
}

// TestRegistryFloodScaledDown is the flood at a hundredth of the full size
// (a thousandth under the race detector): 600 attackers on a registry of
// 30,000 entries, a third of them joining at once after the steady state,
// with five-minute gates and with one-hour ones.
func TestRegistryFloodScaledDown(t *testing.T) {
	t.Parallel()
	scale := 100
	if raceDetector() {
		scale = 1000
	}
	for _, longest := range []time.Duration{5 * time.Minute, time.Hour} {
		t.Run(fmt.Sprintf("gates=%v", longest), func(t *testing.T) {
			t.Parallel()
			c := floodCase{size: DefaultRegistrySize / scale, attackers: 60_000 / scale, wave: 20_000 / scale,
				returning: 20_000 / scale, newPerMinute: max(400/scale, 2), longest: longest}
			runFlood(t, c, 5*time.Minute)
		})
	}
}

// raceDetector reports whether the test binary was built with -race.
func raceDetector() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// floodFull skips t unless STEPUP_FLOOD is set.
func floodFull(t *testing.T) {
	if os.Getenv("STEPUP_FLOOD") == "" {
		t.Skip("set STEPUP_FLOOD=1 for the full-size flood (minutes)")
	}
}

// TestRegistryFlood is the flood at full size: DefaultRegistrySize, 60,000
// attackers at 10 step-ups a minute each, 20,000 returning users, 60 new
// users a minute; with five-minute gates, then with one-hour ones; all the
// attackers from the start, then a third of them holding back and joining
// at once when the others have filled what they can.
func TestRegistryFlood(t *testing.T) {
	floodFull(t)
	for _, longest := range []time.Duration{5 * time.Minute, time.Hour} {
		for _, wave := range []int{0, 20_000} {
			t.Run(fmt.Sprintf("gates=%v/wave=%d", longest, wave), func(t *testing.T) {
				c := floodCase{size: DefaultRegistrySize, attackers: 60_000, wave: wave, returning: 20_000, newPerMinute: 60, longest: longest}
				runFlood(t, c, 10*time.Minute)
			})
		}
	}
}

// TestRegistryRateNobodyRefused measures, by bisection on the number of
// accounts, the highest sustained step-up rate at which a registry of
// DefaultRegistrySize refuses nobody at all (not one update, warm-up
// included, over the longest grant lifetime, two minutes and ten more),
// with five-minute gates and with one-hour ones, for two workloads: every
// account at the step-up limit in the attackers' four ways (each step-up
// keeps what it can), and ordinary users (one session, a step-up every 15
// minutes).
func TestRegistryRateNobodyRefused(t *testing.T) {
	floodFull(t)
	workloads := []struct {
		name   string
		groups func(int) []floodBehavior
		every  time.Duration // of an account
		guess  int           // accounts, to start from
	}{
		{"at the limit, keeping what it can", attackerGroups, time.Minute / defaultMaxStepUps, 2_000},
		{"ordinary users", returningGroups, 15 * time.Minute, 200_000},
	}
	for _, w := range workloads {
		for _, longest := range []time.Duration{5 * time.Minute, time.Hour} {
			t.Run(fmt.Sprintf("%s/gates=%v", w.name, longest), func(t *testing.T) {
				ok := func(n int) bool {
					f := newFlood(t, DefaultRegistrySize, longest, w.groups(n))
					f.run(f.s.ttl+f.s.grantLifetime()+2*time.Minute, 10*time.Minute)
					refused := 0
					for _, s := range f.all {
						refused += s.refused
					}
					t.Logf("%7d accounts, %6.0f step-ups/s: peak %d entries, %d refused", n, float64(n)/w.every.Seconds(), f.peak, refused)
					return refused == 0
				}
				lo, hi := 0, w.guess
				for ok(hi) {
					lo, hi = hi, hi*2
				}
				for hi-lo > max(lo/50, 4) {
					if mid := (lo + hi) / 2; ok(mid) {
						lo = mid
					} else {
						hi = mid
					}
				}
				t.Logf("nobody refused up to %d accounts: %.0f step-ups a second (refusals from %d)", lo, float64(lo)/w.every.Seconds(), hi)
			})
		}
	}
}

// heavyUsers returns the number of users holding more than lightShare.
func (m *MemoryRegistry) heavyUsers() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.heavy
}

// share returns the entries the user with handle uid holds.
func (m *MemoryRegistry) share(uid []byte) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.users.find(maphash.String(m.tagSeed, tagOf(failureKey(uid))))
	return int(m.users.recs[u].n)
}
