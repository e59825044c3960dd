package stepup_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/passkey-stepup/stepup"
)

// TestMemoryRegistryAtTheTargetRate consumes 10,000 challenges per second of
// a simulated clock for 10 minutes, each kept 180 s, in the default-sized
// registry, with what else a verify records (the counter value, 30 s): never
// full, every key refused for its whole TTL, within 64 MB of heap. (Under
// the race detector the rate is a tenth: the run would take minutes.)
func TestMemoryRegistryAtTheTargetRate(t *testing.T) {
	rate := 10_000
	if raceEnabled || testing.Short() {
		rate = 1_000
	}
	const (
		seconds = 600
		ttl     = 180 * time.Second
		users   = 60_000 // 10,000 a second at 10 step-ups a minute each
	)
	ctx := context.Background()
	clk := newClock()
	m := stepup.NewMemoryRegistry(stepup.DefaultRegistrySize, clk.Now)
	key := func(sec, i int) string {
		return fmt.Sprintf("stepup:{u%d}:challenge:%d-%d", (sec*rate+i)%users, sec, i)
	}
	var peak runtime.MemStats
	for sec := range seconds {
		for i := range rate {
			clk.Advance(time.Second / time.Duration(rate))
			ok, err := m.Consume(ctx, key(sec, i), ttl)
			if err != nil || !ok {
				t.Fatalf("second %d, key %d: %v %v (%d entries)", sec, i, ok, err, m.Len())
			}
			counter := fmt.Sprintf("stepup:{u%d}:counter:%d-%d:1", (sec*rate+i)%users, sec, i)
			if ok, err := m.Consume(ctx, counter, 30*time.Second); err != nil || !ok {
				t.Fatalf("second %d, counter %d: %v %v (%d entries)", sec, i, ok, err, m.Len())
			}
		}
		// Keys consumed 179 s ago are still refused; from 181 s ago, gone.
		if sec >= 181 {
			for _, i := range []int{0, rate / 2, rate - 1} {
				if ok, _ := m.Consume(ctx, key(sec-179, i), ttl); ok {
					t.Fatalf("second %d: a key consumed 179 s ago was accepted again", sec)
				}
			}
		}
		if sec == seconds-1 {
			runtime.GC()
			runtime.ReadMemStats(&peak)
		}
	}
	live := m.Len()
	if want := rate * (181 + 31); live > want || live < rate*(179+29) {
		t.Errorf("%d entries held, want about %d (180 s and 30 s at %d/s)", live, rate*210, rate)
	}
	perEntry := float64(peak.HeapAlloc) / float64(live)
	t.Logf("%d/s for %d s: %d entries, heap %.1f MB, %.1f bytes per entry", rate, seconds, live, float64(peak.HeapAlloc)/1e6, perEntry)
	if peak.HeapAlloc > 64<<20 {
		t.Errorf("heap %d MB, want at most 64 MB", peak.HeapAlloc>>20)
	}
	// All of it expires, a bucket at a time.
	clk.Advance(ttl + time.Second)
	m.Consume(ctx, "stepup:{x}:challenge:last", time.Second)
	if n := m.Len(); n != 1 {
		t.Errorf("%d entries after every TTL ended, want 1", n)
	}
}

// TestMemoryRegistryRefusesTheHeaviestUserFirst fills a registry with one
// heavy user and many light ones: past 80% the heavy user is refused while
// the light ones still get in, and only a full registry refuses everyone.
func TestMemoryRegistryRefusesTheHeaviestUserFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	m := stepup.NewMemoryRegistry(1000, clk.Now)
	heavy := 0
	for i := range 2000 {
		ok, err := m.Consume(ctx, fmt.Sprintf("stepup:{mallory}:challenge:%d", i), time.Minute)
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
		if ok, err := m.Consume(ctx, fmt.Sprintf("stepup:{user%d}:challenge:x", i), time.Minute); ok && err == nil {
			light++
		}
	}
	if light != 200 {
		t.Errorf("%d light users got in, want 200 (the rest of the registry)", light)
	}
	if _, err := m.Consume(ctx, "stepup:{mallory}:challenge:more", time.Minute); !errors.Is(err, stepup.ErrRegistryFull) {
		t.Errorf("the heavy user got in again: %v", err)
	}
	// Nothing live was dropped to make room.
	if ok, _ := m.Consume(ctx, "stepup:{mallory}:challenge:0", time.Minute); ok {
		t.Error("a live entry was dropped")
	}
	clk.Advance(time.Minute)
	if ok, err := m.Consume(ctx, "stepup:{mallory}:challenge:0", time.Minute); !ok || err != nil {
		t.Errorf("after expiry: %v %v", ok, err)
	}
}

// TestMemoryRegistryKeepsAnEntryForItsTTL: a key is refused until its TTL
// has passed (held at most one second longer), then accepted again.
func TestMemoryRegistryKeepsAnEntryForItsTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	clk.Advance(300 * time.Millisecond) // not on a second boundary
	m := stepup.NewMemoryRegistry(100, clk.Now)
	m.Consume(ctx, "stepup:{a}:k", 10*time.Second)
	clk.Advance(10*time.Second - time.Millisecond)
	if ok, _ := m.Consume(ctx, "stepup:{a}:k", time.Second); ok {
		t.Fatal("accepted again before its TTL ended")
	}
	clk.Advance(time.Second + time.Millisecond)
	if ok, _ := m.Consume(ctx, "stepup:{a}:k", time.Second); !ok {
		t.Fatal("still refused a second after its TTL ended")
	}
	// A long jump of the clock drops every bucket there is.
	for i := range 50 {
		m.Consume(ctx, fmt.Sprintf("stepup:{a}:%d", i), time.Duration(i+1)*time.Hour)
	}
	clk.Advance(365 * 24 * time.Hour)
	m.Consume(ctx, "stepup:{a}:new", time.Second)
	if m.Len() != 1 {
		t.Errorf("%d entries after a year", m.Len())
	}
}

// TestMemoryRegistryLimits covers Take, Give, Count, Reset, Mark and Lookup.
func TestMemoryRegistryLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	m := stepup.NewMemoryRegistry(100, clk.Now)
	const k = "stepup:{a}:fail"
	for i := range 3 {
		ok, left, err := m.Take(ctx, k, 3, time.Minute)
		if !ok || err != nil || left != time.Minute-time.Duration(i)*10*time.Second {
			t.Fatalf("take %d: %v %v %v", i, ok, left, err)
		}
		clk.AdvanceSeconds(10)
	}
	if ok, left, _ := m.Take(ctx, k, 3, time.Minute); ok || left != 30*time.Second {
		t.Fatalf("over the limit: %v %v", ok, left)
	}
	m.Give(ctx, k)
	if n, _, _ := m.Count(ctx, k); n != 2 {
		t.Fatalf("after Give: %d", n)
	}
	if ok, _, _ := m.Take(ctx, k, 3, time.Minute); !ok {
		t.Fatal("a unit given back could not be taken")
	}
	clk.AdvanceSeconds(30) // the window ends
	if n, left, _ := m.Count(ctx, k); n != 0 || left != 0 {
		t.Fatalf("after the window: %d %v", n, left)
	}
	for range 5 {
		m.Give(ctx, k) // never below zero, never creates
	}
	if n, _, _ := m.Count(ctx, k); n != 0 {
		t.Fatalf("Give made %d", n)
	}
	m.Take(ctx, k, 3, time.Minute)
	m.Reset(ctx, k)
	if n, _, _ := m.Count(ctx, k); n != 0 {
		t.Fatalf("after Reset: %d", n)
	}

	// Mark keeps the greater value and the later expiry.
	const r = "stepup:{a}:revoked"
	m.Mark(ctx, r, 50, time.Minute)
	m.Mark(ctx, r, 40, 2*time.Minute)
	m.Consume(ctx, "stepup:{a}:grant:x", time.Minute)
	v, err := m.Lookup(ctx, r, "stepup:{a}:grant:x", "stepup:{a}:grant:y")
	if err != nil || len(v) != 3 || v[0] != 50 || v[1] != 1 || v[2] != 0 {
		t.Fatalf("Lookup: %v %v", v, err)
	}
	clk.AdvanceSeconds(90)
	if v, _ := m.Lookup(ctx, r); v[0] != 50 {
		t.Fatalf("the later expiry was not kept: %v", v)
	}
	clk.AdvanceSeconds(31)
	if v, _ := m.Lookup(ctx, r); v[0] != 0 {
		t.Fatalf("a mark outlived its TTL: %v", v)
	}

	// Of concurrent Takes, never more than the limit.
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for range 50 {
		wg.Go(func() {
			if ok, _, _ := m.Take(ctx, "stepup:{b}:stepups", 10, time.Minute); ok {
				mu.Lock()
				won++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if won != 10 {
		t.Errorf("%d of 50 concurrent Takes won, want 10", won)
	}
}
