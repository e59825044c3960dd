package stepup_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// mem wraps a MemoryRegistry with one-op helpers for these tests.
type mem struct {
	t *testing.T
	*stepup.MemoryRegistry
}

func newMem(t *testing.T, max int, clk *clock) mem {
	return mem{t, stepup.NewMemoryRegistry(max, clk.Now)}
}

// do runs ops and returns the failed index, the results and the error.
func (m mem) do(ops ...stepup.Op) (int, []stepup.Result, error) {
	res := make([]stepup.Result, len(ops))
	failed, err := m.Update(context.Background(), ops, res)
	return failed, res, err
}

// consume makes key (1) for ttl unless it holds a value: true when it made it.
func (m mem) consume(key string, ttl time.Duration) (bool, error) {
	failed, _, err := m.do(stepup.Op{Kind: stepup.OpSwap, Key: key, New: 1, TTL: ttl})
	return failed < 0 && err == nil, err
}

func (m mem) get(key string) stepup.Result {
	_, res, err := m.do(stepup.Op{Kind: stepup.OpGet, Key: key})
	if err != nil {
		m.t.Fatal(err)
	}
	return res[0]
}

// TestMemoryRegistryKeepsEveryKeyForItsTTLAtScale consumes 1,000
// challenges a second of a simulated clock for 10 minutes (100 under the
// race detector), each kept 180 s, with the counter value a verify records
// (30 s): every key is refused for its whole TTL, and the registry holds
// what lives, a second more at most.
// (The size and memory at full scale are BenchmarkMemoryRegistry's and the
// flood's.)
func TestMemoryRegistryKeepsEveryKeyForItsTTLAtScale(t *testing.T) {
	t.Parallel()
	const (
		seconds = 600
		ttl     = 180 * time.Second
	)
	rate := 1_000
	if raceEnabled {
		rate = 100
	}
	users := rate * 6 // at 10 step-ups a minute each
	clk := newClock()
	m := newMem(t, stepup.DefaultRegistrySize, clk)
	key := func(sec, i int) string {
		return fmt.Sprintf("stepup:{u%d}:challenge:%d-%d", (sec*rate+i)%users, sec, i)
	}
	for sec := range seconds {
		for i := range rate {
			clk.Advance(time.Second / time.Duration(rate))
			if ok, err := m.consume(key(sec, i), ttl); err != nil || !ok {
				t.Fatalf("second %d, key %d: %v %v (%d entries)", sec, i, ok, err, m.Len())
			}
			counter := fmt.Sprintf("stepup:{u%d}:counter:%d-%d:1", (sec*rate+i)%users, sec, i)
			if ok, err := m.consume(counter, 30*time.Second); err != nil || !ok {
				t.Fatalf("second %d, counter %d: %v %v (%d entries)", sec, i, ok, err, m.Len())
			}
		}
		// Keys consumed 179 s ago are still refused; from 181 s ago, gone.
		if sec >= 181 {
			for _, i := range []int{0, rate / 2, rate - 1} {
				if ok, _ := m.consume(key(sec-179, i), ttl); ok {
					t.Fatalf("second %d: a key consumed 179 s ago was accepted again", sec)
				}
			}
		}
	}
	if live := m.Len(); live > rate*(181+31) || live < rate*(179+29) {
		t.Errorf("%d entries held, want about %d (180 s and 30 s at %d/s)", live, rate*210, rate)
	}
	// All of it expires.
	clk.Advance(ttl + time.Second)
	m.consume("stepup:{x}:challenge:last", time.Second)
	if n := m.Len(); n != 1 {
		t.Errorf("%d entries after every TTL ended, want 1", n)
	}
}

// TestMemoryRegistryRefusesTheHeaviestUserFirst fills a registry with one
// heavy user and many light ones: past 80% the heavy user is refused while
// the light ones still get in, and only a full registry refuses them.
func TestMemoryRegistryRefusesTheHeaviestUserFirst(t *testing.T) {
	t.Parallel()
	clk := newClock()
	m := newMem(t, 1000, clk)
	heavy := 0
	for i := range 2000 {
		ok, err := m.consume(fmt.Sprintf("stepup:{mallory}:challenge:%d", i), time.Minute)
		if errors.Is(err, stepup.ErrRegistryFull) {
			break
		}
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		heavy++
	}
	if heavy != 800 {
		t.Fatalf("one user took %d of 1000 entries, want 800 (the 80%% mark)", heavy)
	}
	light := 0
	for i := range 300 {
		if ok, err := m.consume(fmt.Sprintf("stepup:{user%d}:challenge:x", i), time.Minute); ok && err == nil {
			light++
		}
	}
	if light != 200 {
		t.Errorf("%d light users got in, want 200 (the rest of the registry)", light)
	}
	if _, err := m.consume("stepup:{mallory}:challenge:more", time.Minute); !errors.Is(err, stepup.ErrRegistryFull) {
		t.Errorf("the heavy user got in again: %v", err)
	}
	// A state the heavy user already holds can still be replaced: revoking
	// them needs no new entry.
	if ok, _ := m.consume("stepup:{mallory}:challenge:0", time.Minute); ok {
		t.Error("a live entry was dropped")
	}
	if failed, _, err := m.do(stepup.Op{Kind: stepup.OpPut, Key: "stepup:{mallory}:challenge:0", Value: 7, TTL: time.Second}); failed >= 0 || err != nil {
		t.Errorf("replacing a value of the heavy user: %d %v", failed, err)
	}
	clk.Advance(time.Minute)
	if ok, err := m.consume("stepup:{mallory}:challenge:0", time.Minute); !ok || err != nil {
		t.Errorf("after expiry: %v %v", ok, err)
	}
}

// TestMemoryRegistryKeepsAnEntryForItsTTL: a key is refused until its TTL
// has passed (held at most one second longer), then accepted again.
func TestMemoryRegistryKeepsAnEntryForItsTTL(t *testing.T) {
	t.Parallel()
	clk := newClock()
	clk.Advance(300 * time.Millisecond) // not on a second boundary
	m := newMem(t, 100, clk)
	m.consume("stepup:{a}:k", 10*time.Second)
	clk.Advance(10*time.Second - time.Millisecond)
	if ok, _ := m.consume("stepup:{a}:k", time.Second); ok {
		t.Fatal("accepted again before its TTL ended")
	}
	clk.Advance(time.Second + time.Millisecond)
	if ok, _ := m.consume("stepup:{a}:k", time.Second); !ok {
		t.Fatal("still refused a second after its TTL ended")
	}
	// A long jump of the clock drops every bucket there is.
	for i := range 50 {
		m.consume(fmt.Sprintf("stepup:{a}:%d", i), time.Duration(i+1)*time.Hour)
	}
	clk.Advance(365 * 24 * time.Hour)
	m.consume("stepup:{a}:new", time.Second)
	if m.Len() != 1 {
		t.Errorf("%d entries after a year", m.Len())
	}
}

// TestMemoryRegistryOps covers each kind of op and the all-or-nothing rule.
func TestMemoryRegistryOps(t *testing.T) {
	t.Parallel()
	clk := newClock()
	m := newMem(t, 100, clk)
	const k = "stepup:{a}:fail"
	take := stepup.Op{Kind: stepup.OpTake, Key: k, Limit: 3, TTL: time.Minute}
	for i := range 3 {
		failed, res, err := m.do(take)
		if failed >= 0 || err != nil || res[0].Value != int64(i) {
			t.Fatalf("take %d: %d %v %v", i, failed, res, err)
		}
		clk.AdvanceSeconds(10)
	}
	failed, res, _ := m.do(take)
	if failed != 0 || res[0].Value != 3 || res[0].TTL != 30*time.Second {
		t.Fatalf("over the limit: %d %v", failed, res)
	}
	// All or nothing: a failed Below leaves the Put before it undone.
	failed, _, _ = m.do(stepup.Op{Kind: stepup.OpPut, Key: "stepup:{a}:x", Value: 5, TTL: time.Minute},
		stepup.Op{Kind: stepup.OpBelow, Key: k, Limit: 3})
	if failed != 1 || m.get("stepup:{a}:x").Value != 0 {
		t.Fatalf("a failed update changed something: %d %v", failed, m.get("stepup:{a}:x"))
	}
	m.do(stepup.Op{Kind: stepup.OpGive, Key: k})
	if v := m.get(k); v.Value != 2 {
		t.Fatalf("after Give: %v", v)
	}
	clk.AdvanceSeconds(30) // the window ends
	if v := m.get(k); v.Value != 0 || v.TTL != 0 {
		t.Fatalf("after the window: %v", v)
	}
	for range 5 {
		m.do(stepup.Op{Kind: stepup.OpGive, Key: k}) // never below zero, never creates
	}
	if m.get(k).Value != 0 || m.Len() != 0 {
		t.Fatalf("Give made %v (%d entries)", m.get(k), m.Len())
	}
	// Put keeps the later expiry; Put 0 deletes.
	const e = "stepup:{a}:epoch"
	m.do(stepup.Op{Kind: stepup.OpPut, Key: e, Value: 50, TTL: 2 * time.Minute})
	m.do(stepup.Op{Kind: stepup.OpPut, Key: e, Value: 40, TTL: time.Minute})
	if v := m.get(e); v.Value != 40 || v.TTL != 2*time.Minute {
		t.Fatalf("Put: %v", v)
	}
	// Init stores only when absent, and extends.
	m.do(stepup.Op{Kind: stepup.OpInit, Key: e, Value: 9, TTL: 3 * time.Minute})
	if v := m.get(e); v.Value != 40 || v.TTL != 3*time.Minute {
		t.Fatalf("Init on a present key: %v", v)
	}
	// Swap: a wrong expected value fails; the right one replaces.
	if failed, _, _ := m.do(stepup.Op{Kind: stepup.OpSwap, Key: e, Value: 41, New: 1}); failed != 0 {
		t.Fatal("Swap with a wrong value passed")
	}
	if failed, _, _ := m.do(stepup.Op{Kind: stepup.OpSwap, Key: e, Value: 40, New: 0}); failed >= 0 || m.get(e).Value != 0 {
		t.Fatal("Swap to 0 did not delete")
	}
	m.do(stepup.Op{Kind: stepup.OpPut, Key: e, Value: 1, TTL: time.Minute})
	m.do(stepup.Op{Kind: stepup.OpPut, Key: e, Value: 0})
	if m.get(e).Value != 0 {
		t.Fatal("Put 0 did not delete")
	}
	// Keys of two users in one update, a new key without a TTL: errors.
	if _, _, err := m.do(stepup.Op{Kind: stepup.OpGet, Key: "stepup:{a}:x"}, stepup.Op{Kind: stepup.OpGet, Key: "stepup:{b}:x"}); err == nil {
		t.Error("an update across two users' keys was accepted")
	}
	if _, _, err := m.do(stepup.Op{Kind: stepup.OpPut, Key: "stepup:{a}:x", Value: 1}); err == nil {
		t.Error("a key without a TTL was made")
	}

	// Of concurrent Takes, never more than the limit; of concurrent
	// consumes, one.
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, consumed := 0, 0
	for range 50 {
		wg.Go(func() {
			failed, _, _ := m.do(stepup.Op{Kind: stepup.OpTake, Key: "stepup:{b}:stepups", Limit: 10, TTL: time.Minute})
			ok, _ := m.consume("stepup:{b}:once", time.Minute)
			mu.Lock()
			defer mu.Unlock()
			if failed < 0 {
				won++
			}
			if ok {
				consumed++
			}
		})
	}
	wg.Wait()
	if won != 10 || consumed != 1 {
		t.Errorf("%d of 50 concurrent Takes won (want 10), %d consumes (want 1)", won, consumed)
	}
}

// TestMemoryRegistrySurvivesTheClockGoingBack: entries made after the clock
// stepped back (NTP, a restored VM) still expire.
func TestMemoryRegistrySurvivesTheClockGoingBack(t *testing.T) {
	t.Parallel()
	clk := newClock()
	m := newMem(t, 1000, clk)
	m.consume("stepup:{a}:warm", time.Second)
	clk.Advance(-time.Hour)
	for i := range 900 {
		if _, err := m.consume(fmt.Sprintf("stepup:{u%d}:challenge:%d", i, i), 2*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	for s := range 7200 {
		clk.Advance(time.Second)
		m.consume(fmt.Sprintf("stepup:{b}:tick:%d", s), time.Second)
	}
	if n := m.Len(); n > 10 {
		t.Fatalf("%d entries still held two hours later", n)
	}
}

// TestRegistryFloodThroughTheHandlers is the flood (registry_flood_test.go)
// scaled down to run through the real handlers and gates: a registry of
// 300 entries, six accounts at the step-up limit (ten a minute each) for
// ten minutes of the simulated clock, three of them asking for options from
// a new session every time and leaving the challenges, three running whole
// ceremonies from a new session every time and using each grant at a
// single-use gate; meanwhile a new user arrives every minute and three
// returning users step up every three minutes in their browser. The
// attackers push the registry past its 80% mark and are refused (503) from
// then on; no new or returning user ever is.
func TestRegistryFloodThroughTheHandlers(t *testing.T) {
	t.Parallel()
	const size = 300
	h := newHarness(t, func(c *stepup.Config) {
		c.Registry = &faultyRegistry{MemoryRegistry: stepup.NewMemoryRegistry(size, c.Now)}
	})
	h.registry = h.cfg.Registry.(*faultyRegistry)
	account := func(name string) string {
		u := h.users.Add(name)
		h.users.AddCredential(name, h.auth.Register(testRPID, u.Handle))
		return name
	}
	// legit runs a user's ceremony and gate: they must pass.
	legit := func(round int, c *http.Client, name, gate string) {
		t.Helper()
		if err := h.auth.Reauthenticate(h.ctx(), c, h.srv.URL); err != nil {
			t.Fatalf("round %d: %s could not step up during the flood (%d entries): %v", round, name, h.registry.Len(), err)
		}
		if s := h.gateAt(c, h.srv.URL, gate); s != http.StatusOK {
			t.Fatalf("round %d: %s refused at %s during the flood: %d", round, name, gate, s)
		}
	}
	returning := map[string]*http.Client{}
	for i := range 3 {
		name := account(fmt.Sprintf("returning%d", i))
		returning[name] = h.client(name)
		legit(-1, returning[name], name, "/sensitive")
	}
	var attackers []string
	for i := range 6 {
		attackers = append(attackers, account(fmt.Sprintf("mallory%d", i)))
	}
	refused, peak := 0, 0
	for round := range 100 { // 6 s each
		for i, name := range attackers {
			c := h.client(name) // a new session every time
			status := 0
			if i < 3 {
				status = h.do(c, http.MethodPost, "/api/reauth/options", nil, nil).status
			} else if err := h.auth.Reauthenticate(h.ctx(), c, h.srv.URL); err != nil {
				var he *stepuptest.HTTPError
				if !asHTTPError(err, &he) {
					t.Fatal(err)
				}
				status = he.Status
			} else {
				status = h.gateAt(c, h.srv.URL, "/once")
			}
			switch status {
			case http.StatusOK:
			case http.StatusServiceUnavailable:
				refused++
			default:
				t.Fatalf("round %d: %s: %d", round, name, status)
			}
		}
		if round%10 == 5 {
			name := account(fmt.Sprintf("new%d", round))
			legit(round, h.client(name), name, "/sensitive")
		}
		if round%30 == 15 {
			for name, c := range returning {
				legit(round, c, name, []string{"/sensitive", "/once"}[round/30%2])
			}
		}
		peak = max(peak, h.registry.Len())
		h.clock.AdvanceSeconds(6)
	}
	t.Logf("attackers refused %d times of 600; registry peak %d of %d entries", refused, peak, size)
	if refused == 0 || peak <= size*8/10 {
		t.Errorf("the attackers never pushed the registry past its 80%% mark (peak %d, %d refusals): the test measured nothing", peak, refused)
	}
}
