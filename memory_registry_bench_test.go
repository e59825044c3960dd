package stepup

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"
)

// BenchmarkMemoryRegistry measures MemoryRegistry.Update against
// floorRegistry (below: the same job with Go maps under a mutex) in the
// same run, each holding the steady state of 2,500 step-ups a second of a
// simulated clock by 25,000 users, every step-up from a new browser session
// with a passkey that has a sign counter, gates of five minutes: about 1.7
// million live entries (below the 80% mark of DefaultRegistrySize, so that
// neither refuses anything), made by a prefill before its sub-benchmarks.
// One implementation is prefilled and measured, then dropped before the
// other is made, so that neither's heap is in the other's garbage
// collections.
//
//   - op=gate: the gate's read (gateOps of a plain gate: three Gets) of a
//     live grant; the clock stands still.
//   - op=stepup: a whole step-up's updates, in the handlers' order:
//     optionsOps, claimOps, grantOps (with the counter value), gateOps.
//     The clock advances 400 µs an iteration, so entries expire in the loop
//     at the rate they are made (and MemoryRegistry's sweep visits its
//     table once a second of that clock). ns/update is ns/op over four.
//
// The ops are built by the handlers' own functions, in batches with the
// timer stopped. bytes/entry is the heap after the prefill (after a GC,
// less the heap before the registry was made) over the live entries;
// heap-MB the same heap.
func BenchmarkMemoryRegistry(b *testing.B) {
	impls := []struct {
		name string
		make func(now func() time.Time) benchRegistry
	}{
		{"floor", func(now func() time.Time) benchRegistry { return newFloorRegistry(DefaultRegistrySize, now) }},
		{"memory", func(now func() time.Time) benchRegistry { return NewMemoryRegistry(DefaultRegistrySize, now) }},
	}
	for _, impl := range impls {
		b.Run("impl="+impl.name, func(b *testing.B) {
			st := prefillRegistry(b, impl.make)
			for _, op := range []string{"gate", "stepup"} {
				b.Run("op="+op, func(b *testing.B) {
					b.ReportAllocs()
					switch op {
					case "gate":
						st.benchGate(b)
					case "stepup":
						st.benchStepUps(b)
						b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(4*b.N), "ns/update")
					}
					b.ReportMetric(st.bytesPerEntry, "bytes/entry")
					b.ReportMetric(st.heapMB, "heap-MB")
				})
			}
		})
	}
}

// benchRegistry is a MemoryRegistry or a floorRegistry.
type benchRegistry interface {
	Registry
	Len() int
}

// The steady state of the benchmark.
const (
	benchRate   = 2_500  // step-ups a second
	benchUsers  = 25_000 // each steps up every 10 s
	benchBatch  = 4096
	benchPeriod = time.Second / benchRate
)

// benchState is a prefilled registry, its clock and the next step-up.
type benchState struct {
	reg           benchRegistry
	clk           *floodClock
	gen           *stepUpGen
	next          uint64
	bytesPerEntry float64
	heapMB        float64
}

// prefillRegistry runs step-ups until the registry is in its steady state:
// the longest an entry lives (a session's revocation state: the challenge's
// lifetime and the grant's) and a minute more.
func prefillRegistry(b *testing.B, make func(now func() time.Time) benchRegistry) *benchState {
	b.Helper()
	gen := newStepUpGen(b)
	clk := &floodClock{ns: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixNano()}
	base := heapAlloc()
	st := &benchState{reg: make(clk.Now), clk: clk, gen: gen}
	steps := uint64(benchRate * (gen.s.ttl + gen.s.grantLifetime() + time.Minute) / time.Second)
	for st.next < steps {
		batch := gen.batch(st.next, min(benchBatch, steps-st.next))
		for i := range batch {
			st.run(b, &batch[i])
		}
	}
	heap := heapAlloc() - base
	st.bytesPerEntry = float64(heap) / float64(st.reg.Len())
	st.heapMB = float64(heap) / 1e6
	b.Logf("%T: %d entries after %d step-ups, %.1f MB, %.1f bytes an entry", st.reg, st.reg.Len(), st.next, st.heapMB, st.bytesPerEntry)
	return st
}

// run makes step-up su's updates, as the handlers and the gate do.
func (st *benchState) run(b *testing.B, su *benchStepUp) {
	st.clk.ns += int64(benchPeriod)
	ctx := context.Background()
	for i, ops := range [][]Op{su.options, su.claim, su.grant, su.gate} {
		res := su.res[:len(ops)]
		if failed, err := st.reg.Update(ctx, ops, res); failed >= 0 || err != nil {
			b.Fatalf("step-up %d, update %d: failed at %d, %v", st.next, i, failed, err)
		}
	}
	if su.res[0].Value != grantLive {
		b.Fatalf("step-up %d: the gate found %v", st.next, su.res[:3])
	}
	st.next++
}

func (st *benchState) benchStepUps(b *testing.B) {
	var batch []benchStepUp
	for i := 0; i < b.N; i++ {
		if len(batch) == 0 {
			b.StopTimer()
			batch = st.gen.batch(st.next, benchBatch)
			b.StartTimer()
		}
		st.run(b, &batch[0])
		batch = batch[1:]
	}
}

// benchGate reads recent grants, all live, as the gate does.
func (st *benchState) benchGate(b *testing.B) {
	recent := st.gen.batch(st.next-benchBatch, benchBatch)
	ctx := context.Background()
	var res [3]Result
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		su := &recent[i%len(recent)]
		if failed, err := st.reg.Update(ctx, su.gate, res[:]); failed >= 0 || err != nil || res[0].Value != grantLive {
			b.Fatalf("gate: %d %v %v", failed, err, res)
		}
	}
}

// stepUpGen makes the updates of step-up k, deterministically: user k mod
// benchUsers, a new session, a challenge, a grant and a counter value of
// its own; the revocation states it proposes are the user's (the same
// every time) and the session's.
type stepUpGen struct {
	s     *StepUp
	users [][]byte
	creds [][]byte
}

type benchStepUp struct {
	options, claim, grant, gate []Op
	gateOps                     [3]Op
	res                         [8]Result
}

func newStepUpGen(b *testing.B) *stepUpGen {
	b.Helper()
	wa, err := webauthn.New(&webauthn.Config{RPID: "app.example", RPDisplayName: "Bench", RPOrigins: []string{"https://app.example"}})
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{WebAuthn: wa, Store: sessions.NewCookieStore(make([]byte, 32)), Users: floodUsers{}, Registry: NewMemoryRegistry(1, nil)})
	if err != nil {
		b.Fatal(err)
	}
	s.RequireRecentReauth(5 * time.Minute)
	g := &stepUpGen{s: s}
	for u := range benchUsers {
		g.users = append(g.users, binary.BigEndian.AppendUint64(make([]byte, 8, 16), uint64(u)))
		g.creds = append(g.creds, binary.BigEndian.AppendUint64(make([]byte, 24, 32), uint64(u)))
	}
	return g
}

// batch returns step-ups from k on, n of them.
func (g *stepUpGen) batch(k, n uint64) []benchStepUp {
	out := make([]benchStepUp, n)
	for i := range out {
		g.make(&out[i], k+uint64(i))
	}
	return out
}

func (g *stepUpGen) make(su *benchStepUp, k uint64) {
	u := k % benchUsers
	uid := g.users[u]
	id := binary.BigEndian.AppendUint64(make([]byte, 8, 16), k)
	challenge := binary.BigEndian.AppendUint64(make([]byte, 24, 32), k)
	rv := revocation{sid: id, userEpoch: int64(u) + 1, sessEpoch: int64(k) + 1}
	gr := grantRecord{revocation: rv, user: uid, id: id}
	su.options = g.s.optionsOps(uid, rv, challenge)
	su.claim = g.s.claimOps(uid, challenge)
	su.grant = g.s.grantOps(gr, nil, g.s.grantLifetime(), true, counterKey(uid, g.creds[u], uint32(k/benchUsers)+1))
	su.gate = gateOps(&su.gateOps, gr, false)
}

// heapAlloc is the live heap after a garbage collection.
func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// floorRegistry does the job of MemoryRegistry the plain way: a Go map from
// the key to its value and expiry, a map from the tag to the user's count,
// and the keys filed by the second they expire in, all under one mutex. It
// keeps the same contract (all or nothing, results from before the update,
// the later expiry kept, a Take's window never extended, a positive TTL for
// a new key, one tag per update, the clock going back or jumping) and the
// same admission rule. It is the benchmarks' floor and the model tests'
// reference.
type floorRegistry struct {
	now                 func() time.Time
	max, high, heavyCap int

	mu                    sync.Mutex
	entries               map[string]floorEntry
	users                 map[string]int
	lightN, heavyN, heavy int
	buckets               map[int64][]string // expiry second -> keys that may expire then
	cursor                int64              // the buckets before this second are dropped
}

type floorEntry struct{ v, exp int64 }

func newFloorRegistry(max int, now func() time.Time) *floorRegistry {
	return &floorRegistry{now: now, max: max, high: max - max/5, heavyCap: max - max/10,
		entries: map[string]floorEntry{}, users: map[string]int{}, buckets: map[int64][]string{},
		cursor: now().Unix()}
}

func (f *floorRegistry) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.entries)
}

func (f *floorRegistry) Update(_ context.Context, ops []Op, res []Result) (int, error) {
	if len(res) != len(ops) {
		return -1, fmt.Errorf("%d results for %d ops", len(res), len(ops))
	}
	if len(ops) == 0 {
		return -1, nil
	}
	tag := tagOf(ops[0].Key)
	for _, op := range ops {
		if tagOf(op.Key) != tag {
			return -1, errors.New("two tags")
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now().UnixNano()
	f.expire(now)
	failed, made := -1, []string(nil)
	for i, op := range ops {
		e, live := f.live(op.Key, now)
		res[i] = Result{}
		if live {
			res[i] = Result{Value: e.v, TTL: time.Duration(e.exp - now)}
		}
		var cond bool
		switch op.Kind {
		case OpGet, OpGive, OpPut, OpInit:
			cond = true
		case OpTake, OpBelow:
			cond = e.v < op.Limit
		case OpSwap:
			cond = e.v == op.Value
		default:
			return -1, errors.New("unknown kind")
		}
		if !cond && failed < 0 {
			failed = i
		}
		if live || !cond || !floorMakes(op) {
			continue
		}
		if op.TTL <= 0 {
			return -1, errNeedTTL
		}
		if _, present := f.entries[op.Key]; !present && !slices.Contains(made, op.Key) {
			made = append(made, op.Key)
		}
	}
	if failed >= 0 {
		return failed, nil
	}
	if len(made) > 0 {
		if err := f.admit(tag, len(made)); err != nil {
			return -1, err
		}
	}
	for _, op := range ops {
		f.apply(op, now)
	}
	return -1, nil
}

func floorMakes(op Op) bool {
	return op.Kind == OpTake || op.Kind == OpInit || (op.Kind == OpPut && op.Value != 0) || (op.Kind == OpSwap && op.New != 0)
}

func (f *floorRegistry) live(key string, now int64) (floorEntry, bool) {
	e, ok := f.entries[key]
	if !ok || e.exp <= now {
		return floorEntry{}, false
	}
	return e, true
}

// admit is MemoryRegistry's rule: light users until full, everyone until
// the high-water mark, then heavy users up to their fair share, and none
// past the heavy cap.
func (f *floorRegistry) admit(tag string, n int) error {
	total, share := len(f.entries)+n, f.users[tag]
	switch {
	case total > f.max:
		return ErrRegistryFull
	case share+n <= lightShare || total <= f.high:
		return nil
	case total > f.heavyCap:
		return ErrRegistryFull
	}
	heavy, light := f.heavy, f.lightN
	if share <= lightShare {
		heavy, light = heavy+1, light-share
	}
	if (share+n)*heavy > f.high-light {
		return ErrRegistryFull
	}
	return nil
}

func (f *floorRegistry) apply(op Op, now int64) {
	e, live := f.live(op.Key, now)
	keep := func(ttl time.Duration) {
		if exp := addTTL(now, ttl); ttl > 0 && exp > e.exp {
			e.exp = exp
		}
	}
	switch op.Kind {
	case OpGet, OpBelow:
		return
	case OpTake:
		if !live {
			e = floorEntry{exp: addTTL(now, op.TTL)}
		}
		e.v++
	case OpGive:
		if !live || e.v <= 0 {
			return
		}
		e.v--
	case OpPut, OpSwap:
		v := op.Value
		if op.Kind == OpSwap {
			v = op.New
		}
		if v == 0 {
			f.remove(op.Key)
			return
		}
		if !live {
			e = floorEntry{}
		}
		e.v = v
		keep(op.TTL)
	case OpInit:
		if !live {
			e = floorEntry{v: op.Value}
		}
		keep(op.TTL)
	}
	f.set(op.Key, e)
}

func (f *floorRegistry) set(key string, e floorEntry) {
	old, present := f.entries[key]
	f.entries[key] = e
	if !present {
		f.account(tagOf(key), 1)
	}
	sec := max(ceilSecond(e.exp), f.cursor)
	if !present || max(ceilSecond(old.exp), f.cursor) != sec {
		f.buckets[sec] = append(f.buckets[sec], key)
	}
}

func ceilSecond(ns int64) int64 {
	s := ns / int64(time.Second)
	if s*int64(time.Second) < ns {
		s++
	}
	return s
}

func (f *floorRegistry) remove(key string) {
	if _, ok := f.entries[key]; ok {
		delete(f.entries, key)
		f.account(tagOf(key), -1)
	}
}

func (f *floorRegistry) account(tag string, d int) {
	old := f.users[tag]
	n := old + d
	if n == 0 {
		delete(f.users, tag)
	} else {
		f.users[tag] = n
	}
	if old <= lightShare {
		f.lightN -= old
	} else {
		f.heavyN, f.heavy = f.heavyN-old, f.heavy-1
	}
	if n <= lightShare {
		f.lightN += n
	} else {
		f.heavyN, f.heavy = f.heavyN+n, f.heavy+1
	}
}

// expire drops the buckets of the seconds up to now.
func (f *floorRegistry) expire(now int64) {
	sec := now / int64(time.Second)
	switch {
	case sec < f.cursor-1:
		f.cursor = sec + 1 // the clock went back: later buckets come in time
		return
	case sec < f.cursor:
		return
	case sec-f.cursor > int64(len(f.buckets)):
		for b := range f.buckets { // a long jump: the buckets there are
			if b <= sec {
				f.drop(b, now)
			}
		}
	default:
		for b := f.cursor; b <= sec; b++ {
			f.drop(b, now)
		}
	}
	f.cursor = sec + 1
}

func (f *floorRegistry) drop(b, now int64) {
	for _, k := range f.buckets[b] {
		if e, ok := f.entries[k]; ok && e.exp <= now {
			f.remove(k)
		}
	}
	delete(f.buckets, b)
}
