package stepup

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// modelRun drives a MemoryRegistry and the floorRegistry (the same job with
// Go maps, memory_registry_bench_test.go) with the same random updates and
// clock, and fails at the first answer that differs.
type modelRun struct {
	t        *testing.T
	rng      *rand.Rand
	clk      *floodClock
	m        *MemoryRegistry
	f        *floorRegistry
	users    int
	keys     int
	seconds  bool // whole seconds only: both drop what expired at once, so their sizes agree
	updates  int
	refusals int // ErrRegistryFull answers
}

func newModelRun(t *testing.T, seed uint64, max, users, keys int, seconds bool) *modelRun {
	clk := &floodClock{ns: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixNano()}
	return &modelRun{t: t, rng: rand.New(rand.NewPCG(seed, 1)), clk: clk,
		m: NewMemoryRegistry(max, clk.Now), f: newFloorRegistry(max, clk.Now), users: users, keys: keys, seconds: seconds}
}

func (r *modelRun) pick(xs ...int64) int64 { return xs[r.rng.IntN(len(xs))] }

// op returns a random op on a key of user u (a key without a tag when u is
// negative).
func (r *modelRun) op(u int) Op {
	key := fmt.Sprintf("stepup:{u%d}:k%d", u, r.rng.IntN(r.keys))
	if u < 0 {
		key = fmt.Sprintf("untagged-%d", r.rng.IntN(r.keys))
	}
	big := int64(1)<<62 + r.rng.Int64N(1<<20)
	op := Op{Kind: OpKind(1 + r.rng.IntN(int(OpSwap))), Key: key,
		Value: r.pick(0, 1, 1, 2, 3, big), New: r.pick(0, 1, 2, 3, big), Limit: r.pick(0, 1, 2, 3)}
	ttls := []int64{0, -1, int64(time.Second), int64(2 * time.Second), int64(7 * time.Second), int64(time.Hour), math.MaxInt64}
	if !r.seconds {
		ttls = append(ttls, 1, int64(300*time.Millisecond), int64(1500*time.Millisecond))
	}
	op.TTL = time.Duration(r.pick(ttls...))
	if r.rng.IntN(200) == 0 {
		op.Kind = OpKind(r.rng.IntN(2) * 99) // 0 or 99: unknown
	}
	return op
}

// step moves the clock: mostly a little, sometimes a long jump, and (whole
// seconds only) sometimes back.
func (r *modelRun) step() {
	steps := []int64{0, int64(time.Second), int64(3 * time.Second), int64(20 * time.Second)}
	if r.seconds {
		steps = append(steps, -int64(5*time.Second), -int64(time.Hour))
	} else {
		steps = append(steps, 1, int64(100*time.Millisecond), int64(700*time.Millisecond))
	}
	if r.rng.IntN(500) == 0 {
		steps = []int64{int64(400 * 24 * time.Hour)}
	}
	r.clk.ns += r.pick(steps...)
}

// update applies one random update of one user (rarely two users' keys) to
// both and compares what they answer.
func (r *modelRun) update() {
	r.t.Helper()
	u := r.rng.IntN(r.users+1) - 1
	ops := make([]Op, 1+r.rng.IntN(6))
	for i := range ops {
		ops[i] = r.op(u)
	}
	if r.rng.IntN(100) == 0 {
		ops = append(ops, r.op((u+1)%r.users))
	}
	rm, rf := make([]Result, len(ops)), make([]Result, len(ops))
	fm, em := r.m.Update(context.Background(), ops, rm)
	ff, ef := r.f.Update(context.Background(), ops, rf)
	r.updates++
	if errors.Is(em, ErrRegistryFull) {
		r.refusals++
	}
	switch {
	case (em == nil) != (ef == nil) || errors.Is(em, ErrRegistryFull) != errors.Is(ef, ErrRegistryFull) || errors.Is(em, errNeedTTL) != errors.Is(ef, errNeedTTL):
		r.t.Fatalf("update %d %v: errors %v and %v (floor)", r.updates, ops, em, ef)
	case em != nil:
		return
	case fm != ff:
		r.t.Fatalf("update %d %v: failed at %d and %d (floor)", r.updates, ops, fm, ff)
	}
	for i := range ops {
		if rm[i] != rf[i] {
			r.t.Fatalf("update %d %v: op %d found %v and %v (floor)", r.updates, ops, i, rm[i], rf[i])
		}
	}
	if r.seconds && r.m.Len() != r.f.Len() {
		r.t.Fatalf("update %d %v: %d entries and %d (floor)", r.updates, ops, r.m.Len(), r.f.Len())
	}
	checkInvariants(r.t, r.m)
}

// TestMemoryRegistryMatchesTheFloor: every answer of random updates, with
// every kind of op, TTLs from none to forever, a clock that moves by
// nanoseconds, seconds, back and by a year, equals the floor's; and with a
// small registry whole seconds apart, so that both have dropped what
// expired, every refusal and every size too.
func TestMemoryRegistryMatchesTheFloor(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name                string
		max, users, keys, n int
		seconds             bool
	}{
		{"sub-second clock, never full", 100_000, 4, 12, 20_000, false},
		{"whole seconds, full and refusing", 60, 8, 30, 20_000, true},
		{"whole seconds, one heavy user among light ones", 200, 30, 40, 20_000, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for seed := range uint64(3) {
				r := newModelRun(t, seed, c.max, c.users, c.keys, c.seconds)
				for range c.n {
					if r.rng.IntN(3) == 0 {
						r.step()
					}
					r.update()
				}
				if c.seconds && r.refusals == 0 {
					t.Errorf("seed %d: %d updates, none refused: the admission rule was not exercised", seed, r.updates)
				}
			}
		})
	}
}

// checkInvariants checks the table and the accounting of m: every entry is
// found from its home slot, every user's count is the number of entries
// carrying its number, the light and heavy sums agree, and numbered users
// are exactly those holding entries.
func checkInvariants(t *testing.T, m *MemoryRegistry) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	counts := map[uint32]int32{}
	n := 0
	for i, e := range m.tab.slots {
		w := e.w
		if w == 0 {
			continue
		}
		n++
		counts[uint32(w&m.ownerMask)]++
		if at := m.tab.find(w); at != i {
			t.Fatalf("the entry in slot %d is found at %d", i, at)
		}
	}
	if n != m.tab.n || n > m.tab.size()*4/5+1 && m.tab.size() < m.maxSlots() {
		t.Fatalf("%d entries, counted %d, in %d slots", m.tab.n, n, m.tab.size())
	}
	light, heavyN, heavy := 0, 0, 0
	for u := range m.users.recs {
		if u == 0 {
			continue
		}
		r := m.users.recs[u]
		if r.n != counts[uint32(u)] {
			t.Fatalf("user %d counts %d entries, holds %d", u, r.n, counts[uint32(u)])
		}
		if got := m.users.byTag[r.tag]; r.n > 0 && got != uint32(u) {
			t.Fatalf("user %d holds entries but its tag names %d", u, got)
		}
		if r.n <= lightShare {
			light += int(r.n)
		} else {
			heavyN += int(r.n)
			heavy++
		}
	}
	if len(m.users.byTag)+len(m.users.free) != len(m.users.recs)-1 {
		t.Fatalf("%d numbered users and %d free numbers of %d", len(m.users.byTag), len(m.users.free), len(m.users.recs)-1)
	}
	if light != m.lightN || heavyN != m.heavyN || heavy != m.heavy {
		t.Fatalf("light %d heavy %d in %d users, accounted %d, %d, %d", light, heavyN, heavy, m.lightN, m.heavyN, m.heavy)
	}
}

// TestMemoryRegistryTableGrowsAndShrinks: the table grows as entries come,
// stays at most 80% full, and shrinks back as they expire.
func TestMemoryRegistryTableGrowsAndShrinks(t *testing.T) {
	t.Parallel()
	clk := &floodClock{ns: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixNano()}
	m := NewMemoryRegistry(100_000, clk.Now)
	put := func(u, k int, ttl time.Duration) {
		t.Helper()
		res := make([]Result, 1)
		if _, err := m.Update(context.Background(), []Op{{Kind: OpPut, Key: fmt.Sprintf("stepup:{u%d}:k%d", u, k), Value: 1, TTL: ttl}}, res); err != nil {
			t.Fatal(err)
		}
	}
	for k := range 50_000 {
		put(k%500, k, time.Minute)
	}
	checkInvariants(t, m)
	if size := m.tab.size(); size < 50_000*5/4 || size > 50_000*5/3+1 {
		t.Errorf("50,000 entries in %d slots, want 60 to 80%% full", size)
	}
	clk.ns += int64(time.Minute)
	put(0, -1, time.Second) // the sweep drops the expired entries and shrinks the table
	checkInvariants(t, m)
	if m.Len() != 1 || m.tab.size() != minSlots || len(m.users.byTag) != 1 {
		t.Errorf("after expiry: %d entries, %d slots, %d users", m.Len(), m.tab.size(), len(m.users.byTag))
	}
	// At the maximum the table is at most 80% full.
	m = NewMemoryRegistry(10_000, clk.Now)
	for k := range 10_000 {
		put(k, k, time.Minute)
	}
	checkInvariants(t, m)
	if m.Len() != 10_000 || m.tab.size() != m.maxSlots() {
		t.Errorf("full: %d entries in %d slots, want 10,000 in %d", m.Len(), m.tab.size(), m.maxSlots())
	}
}

// TestMemoryRegistryAdmission: the admission rule, on a registry of 100
// entries (the high-water mark at 80, the heavy cap at 90). Each case fills
// it with users holding the given shares, then user "x" asks for n more.
func TestMemoryRegistryAdmission(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		shares []int // of users a, b, c, ...
		x, n   int   // x's share, and how many more it asks for
		full   bool  // ErrRegistryFull
	}{
		{"below 80%, a heavy user pass", []int{70}, 5, 5, false},
		{"past 80%, a user above its fair share refused", []int{20}, 60, 1, true},
		{"past 80%, a heavy user below its fair share pass", []int{63}, 17, 1, false},
		{"past 80%, a user crossing lightShare takes its entries to the heavy side, below its fair share pass", []int{35, 16, 16}, 16, 1, false},
		{"past 80%, light users shrink the fair share: above it refused", []int{20, 16, 16, 16}, 20, 1, true},
		{"past 90%, a heavy user below its fair share refused", []int{41, 16, 16}, 17, 1, true},
		{"past 90%, a user holding nothing pass", []int{60, 16, 16}, 0, 5, false},
		{"past 90%, a user filling its light share pass", []int{64, 16}, 4, 12, false},
		{"past 90%, a light user going past lightShare refused", []int{64, 16}, 4, 13, true},
		{"at 100%, a user holding nothing refused", []int{60, 16, 16, 8}, 0, 1, true},
		{"at 99%, a user holding nothing pass", []int{60, 16, 16, 7}, 0, 1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			clk := &floodClock{ns: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixNano()}
			m := NewMemoryRegistry(100, clk.Now)
			put := func(user string, k int) error {
				_, err := m.Update(context.Background(), []Op{{Kind: OpPut, Key: fmt.Sprintf("stepup:{%s}:k%d", user, k), Value: 1, TTL: time.Hour}}, make([]Result, 1))
				return err
			}
			// x first, then the others in order, so that each was admitted.
			for k := range c.x {
				if err := put("x", k); err != nil {
					t.Fatalf("filling x: %v", err)
				}
			}
			for i, s := range c.shares {
				for k := range s {
					if err := put(string(rune('a'+i)), k); err != nil {
						t.Fatalf("filling user %c to %d: %v (%d entries)", 'a'+i, s, err, m.Len())
					}
				}
			}
			ops := make([]Op, c.n)
			for k := range ops {
				ops[k] = Op{Kind: OpInit, Key: fmt.Sprintf("stepup:{x}:new%d", k), Value: 1, TTL: time.Hour}
			}
			before := m.Len()
			_, err := m.Update(context.Background(), ops, make([]Result, len(ops)))
			if got := errors.Is(err, ErrRegistryFull); got != c.full || (err != nil && !got) {
				t.Fatalf("x holding %d of %d entries asks for %d: %v, want refused=%v", c.x, before, c.n, err, c.full)
			}
			if want := before + c.n; !c.full && m.Len() != want || c.full && m.Len() != before {
				t.Errorf("%d entries after, from %d", m.Len(), before)
			}
			checkInvariants(t, m)
		})
	}
}

// TestUpdateKeysShareOneTag: an update's keys must share the first key's
// {tag}, however they are spelled around it; keys without one must be that
// very key.
func TestUpdateKeysShareOneTag(t *testing.T) {
	for _, c := range []struct {
		keys []string
		ok   bool
	}{
		{[]string{"stepup:{u1}:a", "stepup:{u1}:b"}, true},
		{[]string{"stepup:{u1}:a", "floor:{u1}:b"}, true},
		{[]string{"stepup:{u1}:a", "stepup:{u10}:a"}, false},
		{[]string{"stepup:{u10}:a", "stepup:{u1}:a"}, false},
		{[]string{"a}b{c}d", "a}b{e}d"}, false},
		{[]string{"a}b{c}d", "x{c}"}, true},
		{[]string{"abc", "abcd"}, false},
		{[]string{"abc", "abc"}, true},
		{[]string{"{}x", "{}y"}, false}, // an empty tag is no tag
	} {
		ops := make([]Op, len(c.keys))
		for i, k := range c.keys {
			ops[i] = Op{Kind: OpGet, Key: k}
		}
		_, err := NewMemoryRegistry(16, nil).Update(context.Background(), ops, make([]Result, len(ops)))
		if (err == nil) != c.ok {
			t.Errorf("%q: error %v, want ok %v", c.keys, err, c.ok)
		}
	}
}
