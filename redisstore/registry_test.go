package redisstore_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/redisstore"
)

// registries are the implementations the contract tests run against. Each
// call of a constructor is one instance; those of one test share state, as
// instances behind a load balancer share one Redis.
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
		return func() stepup.Registry { return redisstore.New(srv.client(t), redisstore.WithKeyPrefix(p)) }
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

func TestRegistryContract(t *testing.T) {
	t.Parallel()
	for _, impl := range registries {
		t.Run(impl.name, func(t *testing.T) {
			t.Parallel()

			t.Run("consume once pass, twice reject", func(t *testing.T) {
				t.Parallel()
				ctx, r := t.Context(), impl.new(t)()
				if ok, err := r.Consume(ctx, "k", time.Minute); !ok || err != nil {
					t.Fatalf("first Consume: %v %v, want true", ok, err)
				}
				if ok, err := r.Consume(ctx, "k", time.Minute); ok || err != nil {
					t.Fatalf("second Consume: %v %v, want false", ok, err)
				}
				if ok, err := r.Consume(ctx, "other", time.Minute); !ok || err != nil {
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

			t.Run("failures count in a window from the first failure pass", func(t *testing.T) {
				t.Parallel()
				ctx, instance := t.Context(), impl.new(t)
				a, b := instance(), instance()
				if n, left, err := a.Failures(ctx, "f"); n != 0 || left != 0 || err != nil {
					t.Fatalf("no failures yet: %d %v %v", n, left, err)
				}
				n1, left1, err := a.AddFailure(ctx, "f", time.Minute)
				if n1 != 1 || left1 <= 59*time.Second || left1 > time.Minute || err != nil {
					t.Fatalf("first failure: %d %v %v, want 1 and about a minute", n1, left1, err)
				}
				n2, left2, err := b.AddFailure(ctx, "f", time.Minute)
				if n2 != 2 || left2 > left1 || left2 <= 59*time.Second || err != nil {
					t.Fatalf("second failure (other instance): %d %v %v, want 2 and at most %v", n2, left2, err, left1)
				}
				n, left, err := b.Failures(ctx, "f")
				if n != 2 || left > left2 || left <= 59*time.Second || err != nil {
					t.Fatalf("Failures: %d %v %v", n, left, err)
				}
				if n, _, _ := a.Failures(ctx, "g"); n != 0 {
					t.Fatalf("another key has %d failures", n)
				}
				if err := a.ResetFailures(ctx, "f"); err != nil {
					t.Fatal(err)
				}
				if n, left, err := b.Failures(ctx, "f"); n != 0 || left != 0 || err != nil {
					t.Fatalf("after reset: %d %v %v", n, left, err)
				}
				if err := a.ResetFailures(ctx, "never"); err != nil {
					t.Fatalf("reset of no count: %v", err)
				}
			})

			t.Run("failures do not extend the window pass", func(t *testing.T) {
				t.Parallel()
				ctx, r := t.Context(), impl.new(t)()
				const window = 150 * time.Millisecond
				start := time.Now()
				if n, _, _ := r.AddFailure(ctx, "f", window); n != 1 {
					t.Fatalf("first failure counted %d", n)
				}
				// Failures every few ms: were each to extend the window, the
				// count would never start again at 1.
				eventually(t, 3*time.Second, "a new window after the first one ended", func() bool {
					n, left, err := r.AddFailure(ctx, "f", window)
					if err != nil || left > window {
						t.Fatalf("AddFailure: %d %v %v", n, left, err)
					}
					return n == 1
				})
				if d := time.Since(start); d < window {
					t.Errorf("window ended after %v, before %v", d, window)
				}
				eventually(t, 3*time.Second, "count gone after the window", func() bool {
					n, left, err := r.Failures(ctx, "f")
					if err != nil {
						t.Fatal(err)
					}
					return n == 0 && left == 0
				})
			})
		})
	}
}

func TestConsumeIsSetNXPX(t *testing.T) {
	t.Parallel()
	srv, p := sharedRedis(t), prefix(t)
	c := srv.client(t)
	r := redisstore.New(c, redisstore.WithKeyPrefix(p))
	ctx := t.Context()
	if ok, err := r.Consume(ctx, "stepup:challenge:abc", 90*time.Second); !ok || err != nil {
		t.Fatalf("Consume: %v %v", ok, err)
	}
	if v, err := c.Get(ctx, p+"stepup:challenge:abc").Result(); v != "1" || err != nil {
		t.Fatalf("value under the prefixed key: %q %v", v, err)
	}
	if ttl := c.PTTL(ctx, p+"stepup:challenge:abc").Val(); ttl <= 89*time.Second || ttl > 90*time.Second {
		t.Fatalf("PTTL %v, want about 90s", ttl)
	}
	if n := c.Exists(ctx, "stepup:challenge:abc").Val(); n != 0 {
		t.Fatal("key written without the prefix")
	}
}

func TestBadTTLRefused(t *testing.T) {
	t.Parallel()
	srv := sharedRedis(t)
	r := redisstore.New(srv.client(t), redisstore.WithKeyPrefix(prefix(t)))
	ctx := t.Context()
	for _, d := range []time.Duration{0, -time.Second} {
		if ok, err := r.Consume(ctx, "k", d); ok || !errors.Is(err, redisstore.ErrBadTTL) {
			t.Errorf("Consume(ttl %v): %v %v, want ErrBadTTL", d, ok, err)
		}
		if _, _, err := r.AddFailure(ctx, "f", d); !errors.Is(err, redisstore.ErrBadTTL) {
			t.Errorf("AddFailure(window %v): %v, want ErrBadTTL", d, err)
		}
	}
	// Under a millisecond rounds up to one, not to "no expiry".
	if ok, err := r.Consume(ctx, "short", time.Microsecond); !ok || err != nil {
		t.Fatalf("Consume(1µs): %v %v", ok, err)
	}
	eventually(t, 2*time.Second, "a 1µs key expires", func() bool {
		ok, _ := r.Consume(ctx, "short", time.Microsecond)
		return ok
	})
}

func TestAddFailureMendsACountWithoutExpiry(t *testing.T) {
	t.Parallel()
	srv, p := sharedRedis(t), prefix(t)
	c := srv.client(t)
	r := redisstore.New(c, redisstore.WithKeyPrefix(p))
	ctx := t.Context()
	c.Set(ctx, p+"f", 7, 0) // left without expiry by hand
	n, left, err := r.AddFailure(ctx, "f", time.Minute)
	if n != 8 || left != time.Minute || err != nil {
		t.Fatalf("AddFailure: %d %v %v, want 8 and the whole window", n, left, err)
	}
	if ttl := c.PTTL(ctx, p+"f").Val(); ttl <= 0 {
		t.Fatalf("count still without expiry: PTTL %v", ttl)
	}
	c.Set(ctx, p+"g", "not a number", time.Minute)
	if _, _, err := r.Failures(ctx, "g"); err == nil {
		t.Fatal("Failures read a count that is not a number")
	}
	if _, _, err := r.AddFailure(ctx, "g", time.Minute); err == nil {
		t.Fatal("AddFailure counted on a value that is not a number")
	}
}

func TestScriptCacheFlushed(t *testing.T) {
	t.Parallel()
	srv := newRedis(t) // SCRIPT FLUSH is server-wide
	c := srv.client(t)
	r := redisstore.New(c)
	ctx := t.Context()
	if n, _, err := r.AddFailure(ctx, "f", time.Minute); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if n, _, err := r.AddFailure(ctx, "f", time.Minute); n != 2 || err != nil {
		t.Fatalf("after SCRIPT FLUSH: %d %v", n, err)
	}
	if n, _, err := r.Failures(ctx, "f"); n != 2 || err != nil {
		t.Fatalf("after SCRIPT FLUSH: %d %v", n, err)
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
	if n, _, err := r.AddFailure(ctx, "f", time.Minute); n != 0 || err == nil {
		t.Errorf("AddFailure: %d %v, want an error", n, err)
	}
	if n, _, err := r.Failures(ctx, "f"); n != 0 || err == nil {
		t.Errorf("Failures: %d %v, want an error", n, err)
	}
	if err := r.ResetFailures(ctx, "f"); err == nil {
		t.Error("ResetFailures: no error")
	}

	// A cancelled request is an error too, never a "first".
	live := redisstore.New(sharedRedis(t).client(t), redisstore.WithKeyPrefix(prefix(t)))
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if ok, err := live.Consume(cancelled, "k", time.Minute); ok || !errors.Is(err, context.Canceled) {
		t.Errorf("Consume with a cancelled context: %v %v", ok, err)
	}
}

func TestNewPanicsOnNilClient(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("New(nil) did not panic")
		}
	}()
	redisstore.New(nil)
}

func TestRegistryOnACluster(t *testing.T) {
	t.Parallel()
	// A cluster of one node that serves every slot: enough for go-redis's
	// ClusterClient to route by key, and for Redis to check that each
	// command and script touches a single slot.
	srv := newRedis(t, "--cluster-enabled", "yes")
	ctx := t.Context()
	admin := srv.client(t)
	if err := admin.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", "0", "16383").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "cluster_state:ok", func() bool {
		return strings.Contains(admin.ClusterInfo(ctx).Val(), "cluster_state:ok")
	})
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{srv.addr}, MaxRetries: 1})
	t.Cleanup(func() { cluster.Close() })
	var r stepup.Registry = redisstore.New(cluster, redisstore.WithKeyPrefix("app:"))

	if ok, err := r.Consume(ctx, "stepup:challenge:x", time.Minute); !ok || err != nil {
		t.Fatalf("Consume: %v %v", ok, err)
	}
	if ok, err := r.Consume(ctx, "stepup:challenge:x", time.Minute); ok || err != nil {
		t.Fatalf("second Consume: %v %v", ok, err)
	}
	for want := 1; want <= 3; want++ {
		if n, left, err := r.AddFailure(ctx, "stepup:fail:u", time.Minute); n != want || left <= 0 || err != nil {
			t.Fatalf("AddFailure: %d %v %v", n, left, err)
		}
	}
	if n, _, err := r.Failures(ctx, "stepup:fail:u"); n != 3 || err != nil {
		t.Fatalf("Failures: %d %v", n, err)
	}
	if err := r.ResetFailures(ctx, "stepup:fail:u"); err != nil {
		t.Fatal(err)
	}
	if n, _, err := r.Failures(ctx, "stepup:fail:u"); n != 0 || err != nil {
		t.Fatalf("after reset: %d %v", n, err)
	}
}
