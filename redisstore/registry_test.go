package redisstore_test

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/redisstore"
)

// registries are the implementations the contract tests run against. Each
// call of a constructor is one instance, with a client of its own; those of
// one test share state, as instances behind a load balancer share one Redis.
// The Redis registries have no clock-skew margin here, so that the tests of
// expiry need not wait a minute; the margin has tests of its own.
var registries = []struct {
	name string
	new  func(t *testing.T) func() stepup.Registry
}{
	{"memory", func(t *testing.T) func() stepup.Registry {
		m := stepup.NewMemoryRegistry(1000, nil)
		return func() stepup.Registry { return m }
	}},
	{"redis", func(t *testing.T) func() stepup.Registry {
		srv, p := sharedRedis(t), prefix(t)
		return func() stepup.Registry {
			return redisstore.New(srv.client(t), redisstore.WithKeyPrefix(p), redisstore.WithClockSkew(0))
		}
	}},
	{"cluster", func(t *testing.T) func() stepup.Registry {
		c, p := sharedCluster(t), prefix(t)
		return func() stepup.Registry {
			return redisstore.New(c.client(t), redisstore.WithKeyPrefix(p), redisstore.WithClockSkew(0))
		}
	}},
}

// eventually polls cond every few milliseconds until it holds, and fails t
// if it does not within limit.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Keys of the contract tests, with a user's hash tag as stepup makes them.
const (
	keyConsumed = "stepup:{dXNlcg}:challenge:abc"
	keyCount    = "stepup:{dXNlcg}:fail"
	keyMark     = "stepup:{dXNlcg}:revoked"
	keyOther    = "stepup:{b3RoZXI}:fail" // another user's
)

func TestRegistryContract(t *testing.T) {
	t.Parallel()
	for _, impl := range registries {
		t.Run(impl.name, func(t *testing.T) {
			t.Parallel()

			t.Run("consume once pass, twice reject", func(t *testing.T) {
				t.Parallel()
				ctx, r := t.Context(), impl.new(t)()
				if ok, err := r.Consume(ctx, keyConsumed, time.Minute); !ok || err != nil {
					t.Fatalf("first Consume: %v %v, want true", ok, err)
				}
				if ok, err := r.Consume(ctx, keyConsumed, time.Minute); ok || err != nil {
					t.Fatalf("second Consume: %v %v, want false", ok, err)
				}
				if ok, err := r.Consume(ctx, keyOther, time.Minute); !ok || err != nil {
					t.Fatalf("another key: %v %v, want true", ok, err)
				}
			})

			t.Run("consume expires after ttl pass", func(t *testing.T) {
				t.Parallel()
				ctx, r := t.Context(), impl.new(t)()
				const ttl = 80 * time.Millisecond
				start := time.Now()
				if ok, _ := r.Consume(ctx, "k", ttl); !ok {
					t.Fatal("first Consume refused")
				}
				if ok, _ := r.Consume(ctx, "k", ttl); ok && time.Since(start) < ttl {
					t.Fatal("consumed again within ttl")
				}
				eventually(t, 3*time.Second, "key consumable again after ttl", func() bool {
					ok, err := r.Consume(ctx, "k", ttl)
					if err != nil {
						t.Fatal(err)
					}
					return ok
				})
				if d := time.Since(start); d < ttl {
					t.Errorf("consumed again after %v, before the ttl of %v", d, ttl)
				}
			})

			t.Run("concurrent consume across instances one wins", func(t *testing.T) {
				t.Parallel()
				ctx, instance := t.Context(), impl.new(t)
				rs := []stepup.Registry{instance(), instance()}
				var won, errs atomic.Int64
				var wg sync.WaitGroup
				for i := range 64 {
					wg.Go(func() {
						ok, err := rs[i%2].Consume(ctx, "race", time.Minute)
						if err != nil {
							errs.Add(1)
						}
						if ok {
							won.Add(1)
						}
					})
				}
				wg.Wait()
				if won.Load() != 1 || errs.Load() != 0 {
					t.Fatalf("%d of 64 concurrent Consume calls won (%d errors), want exactly 1", won.Load(), errs.Load())
				}
			})

			t.Run("take up to the limit in a window from the first take pass", func(t *testing.T) {
				t.Parallel()
				ctx, instance := t.Context(), impl.new(t)
				a, b := instance(), instance()
				if n, left, err := a.Count(ctx, keyCount); n != 0 || left != 0 || err != nil {
					t.Fatalf("nothing taken yet: %d %v %v", n, left, err)
				}
				ok, left1, err := a.Take(ctx, keyCount, 3, time.Minute)
				if !ok || left1 <= 59*time.Second || left1 > time.Minute || err != nil {
					t.Fatalf("first Take: %v %v %v, want true and about a minute", ok, left1, err)
				}
				ok, left2, err := b.Take(ctx, keyCount, 3, time.Minute)
				if !ok || left2 > left1 || left2 <= 59*time.Second || err != nil {
					t.Fatalf("second Take (other instance): %v %v %v, want true and at most %v", ok, left2, err, left1)
				}
				if ok, _, err := a.Take(ctx, keyCount, 3, time.Minute); !ok || err != nil {
					t.Fatalf("third Take: %v %v", ok, err)
				}
				for range 3 {
					ok, left, err := b.Take(ctx, keyCount, 3, time.Minute)
					if ok || left <= 59*time.Second || left > left2 || err != nil {
						t.Fatalf("Take over the limit: %v %v %v, want false and the time left", ok, left, err)
					}
				}
				n, left, err := b.Count(ctx, keyCount)
				if n != 3 || left > left2 || left <= 59*time.Second || err != nil {
					t.Fatalf("Count after three takes and three refusals: %d %v %v, want 3", n, left, err)
				}
				if n, _, _ := a.Count(ctx, keyOther); n != 0 {
					t.Fatalf("another key has %d taken", n)
				}
				if err := a.Reset(ctx, keyCount); err != nil {
					t.Fatal(err)
				}
				if n, left, err := b.Count(ctx, keyCount); n != 0 || left != 0 || err != nil {
					t.Fatalf("after Reset: %d %v %v", n, left, err)
				}
				if ok, _, err := b.Take(ctx, keyCount, 3, time.Minute); !ok || err != nil {
					t.Fatalf("Take after Reset: %v %v", ok, err)
				}
				if err := a.Reset(ctx, "never"); err != nil {
					t.Fatalf("Reset of no key: %v", err)
				}
				// A limit of zero refuses from the start, and starts the window.
				if ok, left, err := a.Take(ctx, "zero", 0, time.Minute); ok || left <= 59*time.Second || left > time.Minute || err != nil {
					t.Fatalf("Take with limit 0: %v %v %v, want false and the window", ok, left, err)
				}
			})

			t.Run("concurrent take across instances never over the limit pass", func(t *testing.T) {
				t.Parallel()
				ctx, instance := t.Context(), impl.new(t)
				rs := []stepup.Registry{instance(), instance()}
				const limit, calls = 17, 200
				var oks, errs atomic.Int64
				var wg sync.WaitGroup
				for i := range calls {
					wg.Go(func() {
						ok, _, err := rs[i%2].Take(ctx, keyCount, limit, time.Minute)
						if err != nil {
							errs.Add(1)
						}
						if ok {
							oks.Add(1)
						}
					})
				}
				wg.Wait()
				if oks.Load() != limit || errs.Load() != 0 {
					t.Fatalf("%d of %d concurrent Take calls got a unit of %d (%d errors), want exactly %d", oks.Load(), calls, limit, errs.Load(), limit)
				}
				if n, _, err := rs[0].Count(ctx, keyCount); n != limit || err != nil {
					t.Fatalf("Count: %d %v, want %d", n, err, limit)
				}
			})

			t.Run("takes do not extend the window pass", func(t *testing.T) {
				t.Parallel()
				ctx, r := t.Context(), impl.new(t)()
				const window = 150 * time.Millisecond
				start := time.Now()
				for range 2 {
					if ok, _, err := r.Take(ctx, keyCount, 2, window); !ok || err != nil {
						t.Fatalf("Take: %v %v", ok, err)
					}
				}
				// Takes every few ms, refused: were each to extend the
				// window, none would ever succeed again.
				eventually(t, 3*time.Second, "a new window after the first one ended", func() bool {
					ok, left, err := r.Take(ctx, keyCount, 2, window)
					if err != nil || left > window || left <= 0 {
						t.Fatalf("Take: %v %v %v", ok, left, err)
					}
					return ok
				})
				if d := time.Since(start); d < window {
					t.Errorf("window ended after %v, before %v", d, window)
				}
				if n, _, err := r.Count(ctx, keyCount); n != 1 || err != nil {
					t.Fatalf("Count in the new window: %d %v, want 1", n, err)
				}
				eventually(t, 3*time.Second, "count gone after the window", func() bool {
					n, left, err := r.Count(ctx, keyCount)
					if err != nil {
						t.Fatal(err)
					}
					return n == 0 && left == 0
				})
			})

			t.Run("give floors at zero and creates nothing pass", func(t *testing.T) {
				t.Parallel()
				ctx, instance := t.Context(), impl.new(t)
				a, b := instance(), instance()
				if err := a.Give(ctx, keyCount); err != nil {
					t.Fatalf("Give of nothing taken: %v", err)
				}
				if n, left, err := b.Count(ctx, keyCount); n != 0 || left != 0 || err != nil {
					t.Fatalf("Give made a count: %d %v %v", n, left, err)
				}
				if v, err := b.Lookup(ctx, keyCount); err != nil || v[0] != 0 {
					t.Fatalf("Give made a value: %v %v", v, err)
				}
				for range 2 {
					if ok, _, err := a.Take(ctx, keyCount, 2, time.Minute); !ok || err != nil {
						t.Fatalf("Take: %v %v", ok, err)
					}
				}
				if ok, _, _ := b.Take(ctx, keyCount, 2, time.Minute); ok {
					t.Fatal("Take over the limit")
				}
				_, before, _ := a.Count(ctx, keyCount)
				if err := b.Give(ctx, keyCount); err != nil {
					t.Fatal(err)
				}
				if ok, _, err := a.Take(ctx, keyCount, 2, time.Minute); !ok || err != nil {
					t.Fatalf("Take after Give: %v %v, want the unit given back", ok, err)
				}
				for range 4 {
					if err := b.Give(ctx, keyCount); err != nil {
						t.Fatal(err)
					}
				}
				n, left, err := a.Count(ctx, keyCount)
				if n != 0 || left <= 0 || left > before || err != nil {
					t.Fatalf("after giving back more than taken: %d %v %v, want 0 in the same window (at most %v)", n, left, err, before)
				}
				for range 2 {
					if ok, _, err := a.Take(ctx, keyCount, 2, time.Minute); !ok || err != nil {
						t.Fatalf("Take from zero: %v %v", ok, err)
					}
				}
				if ok, _, _ := b.Take(ctx, keyCount, 2, time.Minute); ok {
					t.Fatal("the count went below zero: a third Take passed a limit of 2")
				}
			})

			t.Run("mark keeps the greater value and the later expiry pass", func(t *testing.T) {
				t.Parallel()
				ctx, instance := t.Context(), impl.new(t)
				a, b := instance(), instance()
				const short, long = 100 * time.Millisecond, 2 * time.Second
				lookup := func(key string) int64 {
					t.Helper()
					v, err := b.Lookup(ctx, key)
					if err != nil {
						t.Fatal(err)
					}
					return v[0]
				}
				mark := func(key string, v int64, ttl time.Duration) {
					t.Helper()
					if err := a.Mark(ctx, key, v, ttl); err != nil {
						t.Fatal(err)
					}
				}
				// A long mark, then shorter ones: the value rises, the
				// expiry stays.
				mark("m1", 5, long)
				mark("m1", 3, short)
				if v := lookup("m1"); v != 5 {
					t.Fatalf("a lower value replaced a higher: %d, want 5", v)
				}
				mark("m1", 9, short)
				if v := lookup("m1"); v != 9 {
					t.Fatalf("a higher value was not kept: %d, want 9", v)
				}
				// A short mark, then a longer one with a lower value: the
				// value stays, the expiry moves out.
				mark("m2", 4, short)
				mark("m2", 2, long)
				if v := lookup("m2"); v != 4 {
					t.Fatalf("a lower value replaced a higher: %d, want 4", v)
				}
				time.Sleep(3 * short)
				if v := lookup("m1"); v != 9 {
					t.Fatalf("a shorter mark cut the expiry: %d after %v, want 9", v, 3*short)
				}
				if v := lookup("m2"); v != 4 {
					t.Fatalf("a longer mark did not extend the expiry: %d after %v, want 4", v, 3*short)
				}
				eventually(t, 4*time.Second, "marks gone after the later expiry", func() bool {
					return lookup("m1") == 0 && lookup("m2") == 0
				})

				// Exact over the whole int64 range, beyond a double's 53 bits.
				for _, c := range []struct {
					name string
					vs   []int64
					want int64
				}{
					{"big", []int64{1<<62 + 1, 1 << 62, 1<<62 - 1}, 1<<62 + 1},
					{"max", []int64{math.MaxInt64 - 1, math.MaxInt64, math.MaxInt64 - 2}, math.MaxInt64},
					{"negative", []int64{-5, -12, math.MinInt64}, -5},
					{"sign", []int64{-7, 0, -1}, 0},
					{"lengths", []int64{99, 100, 9}, 100},
				} {
					for _, v := range c.vs {
						mark(c.name, v, time.Minute)
					}
					if v := lookup(c.name); v != c.want {
						t.Errorf("marks %v: %d, want %d", c.vs, v, c.want)
					}
				}
			})

			t.Run("lookup reads several keys of one user at once pass", func(t *testing.T) {
				t.Parallel()
				ctx, instance := t.Context(), impl.new(t)
				a, b := instance(), instance()
				if ok, err := a.Consume(ctx, keyConsumed, time.Minute); !ok || err != nil {
					t.Fatal(ok, err)
				}
				for range 2 {
					if ok, _, err := a.Take(ctx, keyCount, 5, time.Minute); !ok || err != nil {
						t.Fatal(ok, err)
					}
				}
				if err := a.Mark(ctx, keyMark, 42, time.Minute); err != nil {
					t.Fatal(err)
				}
				v, err := b.Lookup(ctx, keyConsumed, keyCount, keyMark, "stepup:{dXNlcg}:missing", keyCount)
				if err != nil || len(v) != 5 || v[0] != 1 || v[1] != 2 || v[2] != 42 || v[3] != 0 || v[4] != 2 {
					t.Fatalf("Lookup: %v %v, want [1 2 42 0 2]", v, err)
				}
				if v, err := b.Lookup(ctx); len(v) != 0 || err != nil {
					t.Fatalf("Lookup of no keys: %v %v", v, err)
				}
			})
		})
	}
}

func TestConsumeIsSetNXPXWithClockSkew(t *testing.T) {
	t.Parallel()
	srv, p := sharedRedis(t), prefix(t)
	c := srv.client(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		opts []redisstore.Option
		skew time.Duration
	}{
		{"default", nil, time.Minute},
		{"5s", []redisstore.Option{redisstore.WithClockSkew(5 * time.Second)}, 5 * time.Second},
		{"none", []redisstore.Option{redisstore.WithClockSkew(0)}, 0},
	} {
		r := redisstore.New(c, append(tc.opts, redisstore.WithKeyPrefix(p))...)
		key := "stepup:{dXNlcg}:challenge:" + tc.name
		if ok, err := r.Consume(ctx, key, 90*time.Second); !ok || err != nil {
			t.Fatalf("%s: Consume: %v %v", tc.name, ok, err)
		}
		if v, err := c.Get(ctx, p+key).Result(); v != "1" || err != nil {
			t.Fatalf("%s: value under the prefixed key: %q %v", tc.name, v, err)
		}
		want := 90*time.Second + tc.skew
		if ttl := c.PTTL(ctx, p+key).Val(); ttl <= want-time.Second || ttl > want {
			t.Errorf("%s: PTTL %v, want about %v (the ttl and the margin)", tc.name, ttl, want)
		}
		if n := c.Exists(ctx, key).Val(); n != 0 {
			t.Errorf("%s: key written without the prefix", tc.name)
		}
	}
}

func TestMarkTTLHasClockSkewTakeWindowHasNone(t *testing.T) {
	t.Parallel()
	srv, p := sharedRedis(t), prefix(t)
	c := srv.client(t)
	r := redisstore.New(c, redisstore.WithKeyPrefix(p)) // the default margin, a minute
	ctx := t.Context()

	if err := r.Mark(ctx, keyMark, 3, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	if ttl := c.PTTL(ctx, p+keyMark).Val(); ttl <= 149*time.Second || ttl > 150*time.Second {
		t.Errorf("Mark: PTTL %v, want about 150s (90s and the margin)", ttl)
	}
	// A shorter mark keeps the expiry, a longer one moves it out.
	if err := r.Mark(ctx, keyMark, 2, time.Second); err != nil {
		t.Fatal(err)
	}
	if ttl := c.PTTL(ctx, p+keyMark).Val(); ttl <= 149*time.Second {
		t.Errorf("a shorter Mark cut PTTL to %v", ttl)
	}
	if err := r.Mark(ctx, keyMark, 2, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if ttl := c.PTTL(ctx, p+keyMark).Val(); ttl <= 10*time.Minute+59*time.Second || ttl > 11*time.Minute {
		t.Errorf("a longer Mark: PTTL %v, want about 11m", ttl)
	}
	if v := c.Get(ctx, p+keyMark).Val(); v != "3" {
		t.Errorf("value %q, want the greatest, 3", v)
	}

	ok, left, err := r.Take(ctx, keyCount, 5, 90*time.Second)
	if !ok || left != 90*time.Second || err != nil {
		t.Fatalf("Take: %v %v %v, want the window of 90s, without a margin", ok, left, err)
	}
	if ttl := c.PTTL(ctx, p+keyCount).Val(); ttl <= 89*time.Second || ttl > 90*time.Second {
		t.Errorf("Take: PTTL %v, want about 90s", ttl)
	}
}

func TestBadTTLRefused(t *testing.T) {
	t.Parallel()
	srv := sharedRedis(t)
	r := redisstore.New(srv.client(t), redisstore.WithKeyPrefix(prefix(t)), redisstore.WithClockSkew(0))
	ctx := t.Context()
	for _, d := range []time.Duration{0, -time.Second} {
		if ok, err := r.Consume(ctx, "k", d); ok || !errors.Is(err, redisstore.ErrBadTTL) {
			t.Errorf("Consume(ttl %v): %v %v, want ErrBadTTL", d, ok, err)
		}
		if _, _, err := r.Take(ctx, "f", 5, d); !errors.Is(err, redisstore.ErrBadTTL) {
			t.Errorf("Take(window %v): %v, want ErrBadTTL", d, err)
		}
		if err := r.Mark(ctx, "m", 1, d); !errors.Is(err, redisstore.ErrBadTTL) {
			t.Errorf("Mark(ttl %v): %v, want ErrBadTTL", d, err)
		}
	}
	// Under a millisecond rounds up to one, not to "no expiry".
	if ok, err := r.Consume(ctx, "short", time.Microsecond); !ok || err != nil {
		t.Fatalf("Consume(1µs): %v %v", ok, err)
	}
	if ok, left, err := r.Take(ctx, "short-window", 5, time.Microsecond); !ok || left != time.Millisecond || err != nil {
		t.Fatalf("Take(1µs): %v %v %v, want a window of 1ms", ok, left, err)
	}
	if err := r.Mark(ctx, "short-mark", 1, time.Microsecond); err != nil {
		t.Fatalf("Mark(1µs): %v", err)
	}
	eventually(t, 2*time.Second, "1µs keys expire", func() bool {
		ok, _ := r.Consume(ctx, "short", time.Microsecond)
		n, _, _ := r.Count(ctx, "short-window")
		v, _ := r.Lookup(ctx, "short-mark")
		return ok && n == 0 && v[0] == 0
	})
}

func TestTakeMendsACountWithoutExpiry(t *testing.T) {
	t.Parallel()
	srv, p := sharedRedis(t), prefix(t)
	c := srv.client(t)
	r := redisstore.New(c, redisstore.WithKeyPrefix(p))
	ctx := t.Context()
	for _, limit := range []int{10, 5} { // under the limit, and over it
		c.Set(ctx, p+"f", 7, 0) // left without expiry by hand
		ok, left, err := r.Take(ctx, "f", limit, time.Minute)
		if ok != (limit > 7) || left != time.Minute || err != nil {
			t.Fatalf("Take(limit %d): %v %v %v, want %v and the whole window", limit, ok, left, err, limit > 7)
		}
		if ttl := c.PTTL(ctx, p+"f").Val(); ttl <= 0 {
			t.Fatalf("limit %d: count still without expiry: PTTL %v", limit, ttl)
		}
	}
}

func TestValuesThatAreNotIntegersAreErrors(t *testing.T) {
	t.Parallel()
	srv, p := sharedRedis(t), prefix(t)
	c := srv.client(t)
	r := redisstore.New(c, redisstore.WithKeyPrefix(p))
	ctx := t.Context()
	for _, bad := range []string{"not a number", "1.5", "", " 1", "9223372036854775808"} {
		c.Set(ctx, p+"g", bad, time.Minute)
		if _, _, err := r.Count(ctx, "g"); err == nil {
			t.Errorf("Count read %q", bad)
		}
		if _, _, err := r.Take(ctx, "g", 100, time.Minute); err == nil {
			t.Errorf("Take counted on %q", bad)
		}
		if err := r.Give(ctx, "g"); err == nil {
			t.Errorf("Give counted down %q", bad)
		}
		if err := r.Mark(ctx, "g", 1, time.Minute); err == nil {
			t.Errorf("Mark compared with %q", bad)
		}
		if _, err := r.Lookup(ctx, "g"); err == nil {
			t.Errorf("Lookup read %q", bad)
		}
		if v := c.Get(ctx, p+"g").Val(); v != bad {
			t.Errorf("%q changed to %q", bad, v)
		}
	}
}

func TestGiveNeverCreatesAKey(t *testing.T) {
	t.Parallel()
	srv, p := sharedRedis(t), prefix(t)
	c := srv.client(t)
	r := redisstore.New(c, redisstore.WithKeyPrefix(p))
	ctx := t.Context()
	for range 3 {
		if err := r.Give(ctx, keyCount); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Exists(ctx, p+keyCount).Val(); n != 0 {
		t.Fatal("Give created a key")
	}
	if _, _, err := r.Take(ctx, keyCount, 5, time.Minute); err != nil {
		t.Fatal(err)
	}
	before := c.PTTL(ctx, p+keyCount).Val()
	for range 3 {
		if err := r.Give(ctx, keyCount); err != nil {
			t.Fatal(err)
		}
	}
	if v, ttl := c.Get(ctx, p+keyCount).Val(), c.PTTL(ctx, p+keyCount).Val(); v != "0" || ttl <= 0 || ttl > before {
		t.Fatalf("after Give: value %q PTTL %v, want 0 in the same window (at most %v)", v, ttl, before)
	}
}

func TestLookupRefusesKeysOfDifferentTags(t *testing.T) {
	t.Parallel()
	srv := sharedRedis(t)
	r := redisstore.New(srv.client(t), redisstore.WithKeyPrefix(prefix(t)))
	ctx := t.Context()
	for _, keys := range [][]string{
		{keyCount, keyOther},
		{keyCount, keyMark, keyOther},
		{"a", "b"},                      // no tag: the whole key is hashed
		{"{x}a", "x"},                   // a tag, and a key that is only the tag's text
		{"stepup:{}:a", "stepup:{}:a:"}, // an empty tag does not count
	} {
		if v, err := r.Lookup(ctx, keys...); !errors.Is(err, redisstore.ErrCrossSlot) {
			t.Errorf("Lookup%q: %v %v, want ErrCrossSlot", keys, v, err)
		}
	}
	for _, keys := range [][]string{
		{keyConsumed, keyCount, keyMark},
		{"{x}a", "b{x}", "{x}{y}"},
		{"a", "a"},
	} {
		if v, err := r.Lookup(ctx, keys...); err != nil || len(v) != len(keys) {
			t.Errorf("Lookup%q: %v %v, want values", keys, v, err)
		}
	}
}

func TestScriptCacheFlushed(t *testing.T) {
	t.Parallel()
	srv := newRedis(t) // SCRIPT FLUSH is server-wide
	c := srv.client(t)
	r := redisstore.New(c)
	ctx := t.Context()
	if ok, _, err := r.Take(ctx, "f", 5, time.Minute); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := r.Take(ctx, "f", 5, time.Minute); !ok || err != nil {
		t.Fatalf("Take after SCRIPT FLUSH: %v %v", ok, err)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Give(ctx, "f"); err != nil {
		t.Fatalf("Give after SCRIPT FLUSH: %v", err)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if n, _, err := r.Count(ctx, "f"); n != 1 || err != nil {
		t.Fatalf("Count after SCRIPT FLUSH: %d %v", n, err)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Mark(ctx, "m", 4, time.Minute); err != nil {
		t.Fatalf("Mark after SCRIPT FLUSH: %v", err)
	}
	if v, err := r.Lookup(ctx, "m"); err != nil || v[0] != 4 {
		t.Fatalf("Lookup: %v %v", v, err)
	}
}

func TestUnreachableRedisReturnsErrors(t *testing.T) {
	t.Parallel()
	requireRedis(t)
	r := redisstore.New(newClient(t, deadAddr(t)))
	ctx := t.Context()
	if ok, err := r.Consume(ctx, "k", time.Minute); ok || err == nil {
		t.Errorf("Consume: %v %v, want an error and false", ok, err)
	}
	if ok, _, err := r.Take(ctx, "f", 5, time.Minute); ok || err == nil {
		t.Errorf("Take: %v %v, want an error and false", ok, err)
	}
	if err := r.Give(ctx, "f"); err == nil {
		t.Error("Give: no error")
	}
	if n, _, err := r.Count(ctx, "f"); n != 0 || err == nil {
		t.Errorf("Count: %d %v, want an error", n, err)
	}
	if err := r.Reset(ctx, "f"); err == nil {
		t.Error("Reset: no error")
	}
	if err := r.Mark(ctx, "m", 1, time.Minute); err == nil {
		t.Error("Mark: no error")
	}
	if v, err := r.Lookup(ctx, "m", "m"); v != nil || err == nil {
		t.Errorf("Lookup: %v %v, want an error", v, err)
	}

	// A cancelled request is an error too, never a "first" or a unit.
	live := redisstore.New(sharedRedis(t).client(t), redisstore.WithKeyPrefix(prefix(t)))
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if ok, err := live.Consume(cancelled, "k", time.Minute); ok || !errors.Is(err, context.Canceled) {
		t.Errorf("Consume with a cancelled context: %v %v", ok, err)
	}
	if ok, _, err := live.Take(cancelled, "f", 5, time.Minute); ok || !errors.Is(err, context.Canceled) {
		t.Errorf("Take with a cancelled context: %v %v", ok, err)
	}
}

func TestOptionsPanicOnNonsense(t *testing.T) {
	t.Parallel()
	for name, f := range map[string]func(){
		"New(nil)":               func() { redisstore.New(nil) },
		"WithClockSkew(-1s)":     func() { redisstore.WithClockSkew(-time.Second) },
		`WithKeyPrefix("{app}")`: func() { redisstore.WithKeyPrefix("{app}:") },
		`WithKeyPrefix("a}")`:    func() { redisstore.WithKeyPrefix("a}") },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			f()
		}()
	}
}
