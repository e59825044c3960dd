package stepup_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"hash/maphash"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/passkey-stepup/stepup"
)

// The registry's sustained regime (TestMemoryRegistryAtTheTargetRate): 10,000
// new keys a second of a simulated clock, each kept 180 s, so that 1.8
// million are live and about 10,000 expire each second as new ones come.
const (
	regRate    = 10_000
	regTTL     = 180 * time.Second
	regEntries = regRate * 180
	regUsers   = 60_000 // 10,000 a second at 10 step-ups a minute each
	regBatch   = 1 << 16
)

// benchRegistry is what BenchmarkMemoryRegistry calls: a MemoryRegistry or
// floorRegistry.
type benchRegistry interface {
	Consume(ctx context.Context, key string, ttl time.Duration) (bool, error)
	Take(ctx context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error)
	Lookup(ctx context.Context, keys ...string) ([]int64, error)
	Len() int
}

// BenchmarkMemoryRegistry measures the default Registry against a floor
// (floorRegistry: Go maps under a mutex), each pre-filled to 1.8 million
// live entries on a simulated clock (regRate, regTTL).
//
//   - op=Consume: the sustained regime. Each iteration advances the clock by
//     100 µs and consumes a new key, so that the number of live entries
//     stays at 1.8 million and expiry (a one-second bucket of about 10,000
//     keys at each second boundary) is paid inside the loop. ops/s is the
//     sustained rate on one core; bytes/entry is the heap the registry
//     holds (HeapAlloc after a GC, less what was allocated before it was
//     made) divided by its live entries, at the end of the run; heap-MB the
//     same heap.
//   - op=Lookup: the gate's read, two keys of one user (a grant and the
//     user's revocation mark), both absent, as on every passing request.
//   - op=Take: a per-user limit, as verify takes twice; 60,000 users in turn,
//     a 15-minute window, no limit reached.
//
// For Lookup and Take the clock stands still: nothing expires during the
// loop (expiry is charged to Consume). Keys look like stepup's (user tag
// and a hashed challenge in base64url, 58 bytes for a challenge) and are
// made in batches with the timer stopped, so the loop holds only the
// registry's work.
func BenchmarkMemoryRegistry(b *testing.B) {
	impls := []struct {
		name string
		make func(now func() time.Time) benchRegistry
	}{
		{"floor", func(now func() time.Time) benchRegistry { return newFloorRegistry(now) }},
		{"memory", func(now func() time.Time) benchRegistry {
			return stepup.NewMemoryRegistry(stepup.DefaultRegistrySize, now)
		}},
	}
	ctx := context.Background()
	for _, op := range []string{"Consume", "Lookup", "Take"} {
		for _, impl := range impls {
			b.Run("op="+op+"/impl="+impl.name, func(b *testing.B) {
				base := heapAlloc()
				clk := newClock()
				reg := impl.make(clk.Now)
				seq := prefillRegistry(b, reg, clk)
				runtime.GC() // the prefill's garbage, not the loop's
				b.ReportAllocs()
				switch op {
				case "Consume":
					benchConsume(b, reg, clk, seq)
					heap := heapAlloc() - base
					b.ReportMetric(float64(heap)/float64(reg.Len()), "bytes/entry")
					b.ReportMetric(float64(heap)/1e6, "heap-MB")
				case "Lookup":
					keys := make([][2]string, 4096)
					for i := range keys {
						u := uint64(i*7919) % regUsers
						keys[i] = [2]string{regKey(u, "grant:", uint64(i)), regKey(u, "revoked", math.MaxUint64)}
					}
					i := 0
					cpu := startCPU()
					for b.Loop() {
						k := &keys[i%len(keys)]
						v, err := reg.Lookup(ctx, k[0], k[1])
						if err != nil || v[0] != 0 || v[1] != 0 {
							b.Fatalf("Lookup: %v %v", v, err)
						}
						i++
					}
					cpu.report(b)
				case "Take":
					keys := make([]string, regUsers)
					for u := range keys {
						keys[u] = regKey(uint64(u), "fail", math.MaxUint64)
					}
					i := 0
					cpu := startCPU()
					for b.Loop() {
						ok, _, err := reg.Take(ctx, keys[i%len(keys)], math.MaxInt32, stepup.DefaultFailureWindow)
						if err != nil || !ok {
							b.Fatalf("Take: %v %v", ok, err)
						}
						i++
					}
					cpu.report(b)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			})
		}
	}
}

// prefillRegistry consumes regEntries keys at regRate a second of clk and
// returns the next sequence number.
func prefillRegistry(b *testing.B, reg benchRegistry, clk *clock) uint64 {
	ctx := context.Background()
	for seq := range uint64(regEntries) {
		clk.Advance(time.Second / regRate)
		if ok, err := reg.Consume(ctx, regChallengeKey(seq), regTTL); !ok || err != nil {
			b.Fatalf("prefill %d: %v %v", seq, ok, err)
		}
	}
	if n := reg.Len(); n < regEntries-regRate || n > regEntries+regRate {
		b.Fatalf("%d entries after the prefill, want about %d", n, regEntries)
	}
	return regEntries
}

// benchConsume is the sustained regime: one new key per 100 µs of clk.
func benchConsume(b *testing.B, reg benchRegistry, clk *clock, seq uint64) {
	ctx := context.Background()
	batch := make([]string, regBatch)
	next := func() {
		for i := range batch {
			batch[i] = regChallengeKey(seq + uint64(i))
		}
	}
	b.StopTimer()
	next()
	b.StartTimer()
	// The CPU meter runs only while the timer does.
	var cpu time.Duration
	cpuStart, cpuOK := processCPU()
	i := 0
	for b.Loop() {
		if i == len(batch) {
			b.StopTimer()
			t, _ := processCPU()
			cpu += t - cpuStart
			seq += uint64(len(batch))
			next()
			i = 0
			cpuStart, _ = processCPU()
			b.StartTimer()
		}
		clk.Advance(time.Second / regRate)
		if ok, err := reg.Consume(ctx, batch[i], regTTL); !ok || err != nil {
			b.Fatalf("Consume: %v %v", ok, err)
		}
		i++
	}
	if t, ok := processCPU(); ok && cpuOK && b.N > 0 {
		b.ReportMetric(float64(cpu+t-cpuStart)/float64(b.N), "cpu-ns/op")
	}
	if n := reg.Len(); n < regEntries-regRate || n > regEntries+regRate {
		b.Fatalf("%d entries at the end, want about %d", n, regEntries)
	}
}

// regChallengeKey is the key of the seq-th consumed challenge, of user
// seq mod regUsers.
func regChallengeKey(seq uint64) string {
	return regKey(seq%regUsers, "challenge:", seq)
}

// regKey is a key shaped like stepup's: "stepup:{tag}:kind" followed, unless
// id is MaxUint64, by 16 bytes holding id in base64url.
func regKey(user uint64, kind string, id uint64) string {
	var handle [12]byte
	binary.BigEndian.PutUint64(handle[4:], user)
	key := "stepup:{" + base64.RawURLEncoding.EncodeToString(handle[:]) + "}:" + kind
	if id != math.MaxUint64 {
		var sum [16]byte
		binary.BigEndian.PutUint64(sum[:], id)
		key += base64.RawURLEncoding.EncodeToString(sum[:])
	}
	return key
}

// heapAlloc is the live heap after a garbage collection.
func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// floorRegistry is the least a correct registry does for these calls: a
// keyed 64-bit hash of each key (as MemoryRegistry), a Go map of consumed
// hashes and a queue of them in expiry order (one TTL for all, so
// insertion order is expiry order), and a map of counts with their windows,
// under one mutex. It has no per-user accounting, no size limit, never
// drops an expired count and does not support mixed TTLs.
type floorRegistry struct {
	now  func() time.Time
	seed maphash.Seed

	mu    sync.Mutex
	used  map[uint64]struct{}
	queue []floorEntry // consumed hashes, oldest first, from head on
	head  int
	vals  map[uint64]floorValue
}

type floorEntry struct {
	h       uint64
	expires int64
}

type floorValue struct {
	n       int64
	expires int64
}

func newFloorRegistry(now func() time.Time) *floorRegistry {
	return &floorRegistry{now: now, seed: maphash.MakeSeed(), used: make(map[uint64]struct{}), vals: make(map[uint64]floorValue)}
}

func (f *floorRegistry) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.used) + len(f.vals)
}

func (f *floorRegistry) Consume(_ context.Context, key string, ttl time.Duration) (bool, error) {
	h := maphash.String(f.seed, key)
	now := f.now().UnixNano()
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.head < len(f.queue) && f.queue[f.head].expires <= now {
		delete(f.used, f.queue[f.head].h)
		f.head++
	}
	if f.head > len(f.queue)/2 && f.head > 1024 {
		f.queue = f.queue[:copy(f.queue, f.queue[f.head:])]
		f.head = 0
	}
	if _, ok := f.used[h]; ok {
		return false, nil
	}
	f.used[h] = struct{}{}
	f.queue = append(f.queue, floorEntry{h: h, expires: now + int64(ttl)})
	return true, nil
}

func (f *floorRegistry) Take(_ context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error) {
	h := maphash.String(f.seed, key)
	now := f.now().UnixNano()
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.vals[h]
	if !ok || v.expires <= now {
		v = floorValue{expires: now + int64(window)}
	}
	left := time.Duration(v.expires - now)
	if v.n >= int64(limit) {
		return false, left, nil
	}
	v.n++
	f.vals[h] = v
	return true, left, nil
}

func (f *floorRegistry) Lookup(_ context.Context, keys ...string) ([]int64, error) {
	out := make([]int64, len(keys))
	var buf [4]uint64
	hs := buf[:0]
	if len(keys) > len(buf) {
		hs = make([]uint64, 0, len(keys))
	}
	for _, key := range keys {
		hs = append(hs, maphash.String(f.seed, key))
	}
	now := f.now().UnixNano()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, h := range hs {
		if _, ok := f.used[h]; ok {
			out[i] = 1
		} else if v, ok := f.vals[h]; ok && v.expires > now {
			out[i] = v.n
		}
	}
	return out, nil
}
