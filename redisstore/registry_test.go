package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/redisstore"
)

// The contract of stepup.Registry's Update, held against every
// implementation: stepup.MemoryRegistry on a fake clock, this package's
// Registry on a single redis-server and on the three-master cluster. The
// same table of scenarios runs on each.

// contractEnv is one implementation under test, for one scenario.
type contractEnv struct {
	// instance returns another instance sharing the same state, as
	// instances behind a load balancer share one Redis (a client of its
	// own each).
	instance func() stepup.Registry
	// advance makes d pass for the keys of this scenario. For the memory
	// registry it moves the fake clock. Redis cannot be given a clock, so
	// there it ages each key of the scenario by d: PEXPIRE to its PTTL
	// minus d, or DEL when that is not positive. Redis measures the rest;
	// TestUpdateExpiresInRealTime checks real expiry without it.
	advance func(d time.Duration)
}

var contractImpls = []struct {
	name string
	new  func(t *testing.T) contractEnv
}{
	{"memory", func(t *testing.T) contractEnv {
		clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
		m := stepup.NewMemoryRegistry(1000, clock.Now)
		return contractEnv{
			instance: func() stepup.Registry { return m },
			advance:  clock.Advance,
		}
	}},
	{"redis", func(t *testing.T) contractEnv {
		srv, p := sharedRedis(t), scenarioPrefix()
		admin := srv.client(t)
		return contractEnv{
			instance: func() stepup.Registry { return redisstore.New(srv.client(t), redisstore.WithKeyPrefix(p)) },
			advance:  func(d time.Duration) { ageKeys(t, admin, p, d) },
		}
	}},
	{"cluster", func(t *testing.T) contractEnv {
		c, p := sharedCluster(t), scenarioPrefix()
		admin := c.client(t)
		return contractEnv{
			instance: func() stepup.Registry { return redisstore.New(c.client(t), redisstore.WithKeyPrefix(p)) },
			advance:  func(d time.Duration) { ageKeys(t, admin, p, d) },
		}
	}},
}

// fakeClock is the memory registry's clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var scenarios atomic.Int64

// scenarioPrefix returns a key prefix of its own for one scenario: plain,
// so that it is a SCAN pattern as it is.
func scenarioPrefix() string {
	return "contract:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":" + strconv.FormatInt(scenarios.Add(1), 10) + ":"
}

// age is one key's aging by ARGV[1] milliseconds.
var age = redis.NewScript(`
local d, left = tonumber(ARGV[1]), redis.call('PTTL', KEYS[1])
if left > d then
	redis.call('PEXPIRE', KEYS[1], left - d)
elseif left >= 0 then
	redis.call('DEL', KEYS[1])
end
return 0
`)

// ageKeys ages every key under prefix by d, on every master.
func ageKeys(t *testing.T, c redis.UniversalClient, prefix string, d time.Duration) {
	t.Helper()
	ctx := t.Context()
	each := func(ctx context.Context, rdb *redis.Client) error {
		iter := rdb.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			if err := age.Run(ctx, rdb, []string{iter.Val()}, d.Milliseconds()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	var err error
	switch c := c.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, each)
	case *redis.Client:
		err = each(ctx, c)
	default:
		t.Fatalf("ageKeys: a %T", c)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Keys of the scenarios: a to h of one user, and one key of another user.
const userTag = "stepup:{dXNlcg}:"

var (
	ka, kb, kc, kd = userTag + "a", userTag + "b", userTag + "c", userTag + "d"
	ke, kf, kg, kh = userTag + "e", userTag + "f", userTag + "g", userTag + "h"
	kOther         = "stepup:{b3RoZXI}:a"
)

// Op builders.
func get(k string) stepup.Op { return stepup.Op{Kind: stepup.OpGet, Key: k} }
func take(k string, limit int64, window time.Duration) stepup.Op {
	return stepup.Op{Kind: stepup.OpTake, Key: k, Limit: limit, TTL: window}
}
func below(k string, limit int64) stepup.Op {
	return stepup.Op{Kind: stepup.OpBelow, Key: k, Limit: limit}
}
func give(k string) stepup.Op { return stepup.Op{Kind: stepup.OpGive, Key: k} }
func put(k string, v int64, ttl time.Duration) stepup.Op {
	return stepup.Op{Kind: stepup.OpPut, Key: k, Value: v, TTL: ttl}
}
func initOp(k string, v int64, ttl time.Duration) stepup.Op {
	return stepup.Op{Kind: stepup.OpInit, Key: k, Value: v, TTL: ttl}
}
func swap(k string, old, new int64, ttl time.Duration) stepup.Op {
	return stepup.Op{Kind: stepup.OpSwap, Key: k, Value: old, New: new, TTL: ttl}
}

// step is one Update of a scenario and what it must answer.
type step struct {
	advance time.Duration // time passed before the update
	ops     []stepup.Op
	failed  int             // the failed index wanted: -1 applied
	res     []stepup.Result // the results wanted, if not nil
	wantErr bool            // an error wanted,
	err     string          // holding this text
}

// do is an update that applies (failed -1); its methods change what is
// wanted.
func do(ops ...stepup.Op) step { return step{ops: ops, failed: -1} }

// after is do after d has passed.
func after(d time.Duration, ops ...stepup.Op) step { return step{advance: d, ops: ops, failed: -1} }

// fails wants the update refused at op i.
func (s step) fails(i int) step { s.failed = i; return s }

// want wants these results.
func (s step) want(res ...stepup.Result) step { s.res = res; return s }

// errs wants an error holding text.
func (s step) errs(text string) step { s.wantErr, s.err = true, text; return s }

// is reads key and wants v with ttl left.
func is(key string, v int64, ttl time.Duration) step { return do(get(key)).want(r(v, ttl)) }

// r is a Result; none is the result of an absent key.
func r(v int64, ttl time.Duration) stepup.Result { return stepup.Result{Value: v, TTL: ttl} }

var none = stepup.Result{}

// ttlSlack is how much less than wanted a time left may be: Redis measures
// real time between the steps, in whole milliseconds.
const ttlSlack = time.Second

// sameResult reports whether got is want: the same value, and a time left
// of at most want's and more than want's minus ttlSlack (exactly 0 when
// want's is 0).
func sameResult(got, want stepup.Result) bool {
	if got.Value != want.Value {
		return false
	}
	if want.TTL == 0 {
		return got.TTL == 0
	}
	return got.TTL <= want.TTL && got.TTL > want.TTL-ttlSlack
}

const (
	big       = 1<<53 + 1 // the first int64 a double cannot hold
	newKeyTTL = "a new key needs a positive TTL"
)

// contractScenarios is the table every implementation runs. Names end in
// the verdict.
var contractScenarios = []struct {
	name  string
	steps []step
}{
	{"get of an absent key reads zero and makes nothing pass", []step{
		do(get(ka), get(ka)).want(none, none),
		is(ka, 0, 0),
	}},
	{"empty update pass", []step{
		do().want(),
	}},
	{"take counts up to the limit in a window from the first take pass", []step{
		do(take(ka, 3, time.Minute)).want(none),
		is(ka, 1, time.Minute),
		after(40*time.Second, take(ka, 3, time.Minute)).want(r(1, 20*time.Second)),
		do(take(ka, 3, 5*time.Minute)).want(r(2, 20*time.Second)),
		is(ka, 3, 20*time.Second), // later takes never extend the window
		do(take(ka, 3, time.Minute)).fails(0).want(r(3, 20*time.Second)),
		do(take(ka, 3, time.Minute), take(ka, 3, time.Minute)).fails(0).want(r(3, 20*time.Second), r(3, 20*time.Second)),
		is(ka, 3, 20*time.Second), // refused takes count nothing
		after(20*time.Second, take(ka, 3, time.Minute)).want(none),
		is(ka, 1, time.Minute), // a new window
	}},
	{"take with a limit of zero or below refuses and makes nothing reject", []step{
		do(take(ka, 0, time.Minute)).fails(0).want(none),
		do(take(ka, -1, time.Minute)).fails(0).want(none),
		is(ka, 0, 0),
	}},
	{"below checks a limit and takes nothing pass", []step{
		do(below(ka, 1), below(ka, math.MaxInt64)).want(none, none),
		is(ka, 0, 0),
		do(take(ka, 5, time.Minute), take(ka, 5, time.Minute)),
		do(below(ka, 3)).want(r(2, time.Minute)),
		do(below(ka, 2)).fails(0).want(r(2, time.Minute)),
		do(below(ka, 0)).fails(0),
		is(ka, 2, time.Minute),
	}},
	{"give counts down to zero never makes a key and keeps the window pass", []step{
		do(give(ka), give(ka)).want(none, none),
		is(ka, 0, 0),
		do(take(ka, 5, time.Minute), take(ka, 5, time.Minute)),
		after(10*time.Second, give(ka)).want(r(2, 50*time.Second)),
		is(ka, 1, 50*time.Second),
		do(give(ka), give(ka), give(ka)).want(r(1, 50*time.Second), r(1, 50*time.Second), r(1, 50*time.Second)),
		is(ka, 0, 50*time.Second), // zero, in the same window
		do(take(ka, 1, time.Minute)).want(r(0, 50*time.Second)),
		is(ka, 1, 50*time.Second),
		do(put(kb, -3, time.Minute), give(kb)),
		is(kb, -3, time.Minute), // not above zero: unchanged
	}},
	{"put stores a value and keeps the later expiry pass", []step{
		do(put(ka, 5, 2*time.Minute)).want(none),
		is(ka, 5, 2*time.Minute),
		do(put(ka, 6, time.Minute)).want(r(5, 2*time.Minute)),
		is(ka, 6, 2*time.Minute), // the value replaced, the expiry kept
		do(put(ka, 4, 5*time.Minute)),
		is(ka, 4, 5*time.Minute), // the expiry moved out
		after(4*time.Minute, get(ka)).want(r(4, time.Minute)),
		after(time.Minute, get(ka)).want(none), // gone when it expires
		do(put(ka, 0, time.Minute)).want(none),
		is(ka, 0, 0), // a Value of 0 makes nothing
	}},
	{"put of zero deletes pass", []step{
		do(put(ka, 9, time.Minute), put(kb, 9, time.Minute)),
		do(put(ka, 0, 0), put(kb, 0, time.Hour)).want(r(9, time.Minute), r(9, time.Minute)),
		is(ka, 0, 0),
		is(kb, 0, 0),
	}},
	{"put with no ttl keeps the expiry of a key pass", []step{
		do(put(ka, 9, time.Minute)),
		after(30*time.Second, put(ka, 8, 0)),
		is(ka, 8, 30*time.Second),
	}},
	{"init stores only when absent and keeps the later expiry pass", []step{
		do(initOp(ka, 4, time.Minute)).want(none),
		is(ka, 4, time.Minute),
		do(initOp(ka, 8, 3*time.Minute)).want(r(4, time.Minute)),
		is(ka, 4, 3*time.Minute), // the value kept, the expiry moved out
		do(initOp(ka, 8, 10*time.Second)),
		is(ka, 4, 3*time.Minute),
		do(initOp(kb, 0, time.Minute)),
		is(kb, 0, time.Minute), // a zero stored: there, with an expiry
	}},
	{"swap replaces the value it expects pass", []step{
		do(swap(ka, 0, 5, time.Minute)).want(none), // 0: absent
		is(ka, 5, time.Minute),
		after(10*time.Second, swap(ka, 5, 6, 0)).want(r(5, 50*time.Second)),
		is(ka, 6, 50*time.Second), // TTL 0: the expiry as it was
		do(swap(ka, 6, 7, 2*time.Minute)),
		is(ka, 7, 2*time.Minute),
		do(swap(ka, 7, 8, 30*time.Second)),
		is(ka, 8, 2*time.Minute), // the later expiry kept
		do(swap(ka, 8, 0, 0)).want(r(8, 2*time.Minute)),
		is(ka, 0, 0), // New 0 deletes
		do(swap(ka, 0, 0, 0)).want(none),
		is(ka, 0, 0),
	}},
	{"swap of another value reject", []step{
		do(put(ka, 5, time.Minute)),
		do(swap(ka, 4, 6, time.Minute)).fails(0).want(r(5, time.Minute)),
		do(swap(ka, 0, 6, time.Minute)).fails(0),
		do(swap(kb, 5, 6, time.Minute)).fails(0).want(none), // absent is 0
		is(ka, 5, time.Minute),
		is(kb, 0, 0),
	}},
	{"a failed condition changes nothing and names the first failed op reject", []step{
		do(put(ka, 1, time.Minute), take(kd, 1, time.Minute)),
		do(take(kb, 5, time.Minute), put(kc, 7, time.Minute), swap(ka, 2, 3, time.Minute), take(kd, 1, time.Minute), give(kd), initOp(ke, 1, time.Minute)).
			fails(2).want(none, none, r(1, time.Minute), r(1, time.Minute), r(1, time.Minute), none),
		is(ka, 1, time.Minute),
		is(kb, 0, 0),
		is(kc, 0, 0),
		is(kd, 1, time.Minute),
		is(ke, 0, 0),
		do(take(kb, 5, time.Minute), put(kc, 7, time.Minute), swap(ka, 1, 3, time.Minute), give(kd), initOp(ke, 1, time.Minute)).
			want(none, none, r(1, time.Minute), r(1, time.Minute), none),
		is(ka, 3, time.Minute),
		is(kb, 1, time.Minute),
		is(kc, 7, time.Minute),
		is(kd, 0, time.Minute),
		is(ke, 1, time.Minute),
	}},
	{"conditions and results see the state before the update pass", []step{
		// Both takes find 0 under a limit of 1: both apply.
		do(take(ka, 1, time.Minute), take(ka, 1, time.Minute)).want(none, none),
		is(ka, 2, time.Minute),
		// The swap does not see the put before it.
		do(put(kb, 5, time.Minute), swap(kb, 5, 6, time.Minute), get(kb)).fails(1).want(none, none, none),
		is(kb, 0, 0),
		do(put(kb, 5, time.Minute), get(kb), swap(kb, 0, 6, time.Minute)).want(none, none, none),
		is(kb, 6, time.Minute),
	}},
	{"ops apply in order pass", []step{
		do(put(ka, 5, time.Minute), put(ka, 0, 0)),
		is(ka, 0, 0),
		do(put(kb, 3, time.Minute)),
		do(put(kb, 0, 0), initOp(kb, 7, 2*time.Minute)).want(r(3, time.Minute), r(3, time.Minute)),
		is(kb, 7, 2*time.Minute), // deleted, then made anew
		do(take(kc, 5, time.Minute), give(kc)),
		is(kc, 0, time.Minute),
		do(initOp(kd, 4, time.Minute), put(kd, 9, time.Second)),
		is(kd, 9, time.Minute),
		do(swap(ke, 0, 2, time.Minute), take(ke, 5, time.Hour), take(ke, 5, time.Hour)),
		is(ke, 4, time.Minute),
	}},
	{"values are exact over the whole int64 range pass", []step{
		// big and big-1 are one double; big+1 is the next.
		do(put(ka, big, time.Minute)),
		do(swap(ka, big-1, 1, time.Minute)).fails(0).want(r(big, time.Minute)),
		do(take(ka, big, time.Minute)).fails(0),
		do(take(ka, big+1, time.Minute)),
		is(ka, big+1, time.Minute),
		do(give(ka)),
		is(ka, big, time.Minute),
		do(give(ka)),
		do(below(ka, big)).want(r(big-1, time.Minute)),
		do(put(kb, math.MaxInt64, time.Minute)),
		do(below(kb, math.MaxInt64)).fails(0).want(r(math.MaxInt64, time.Minute)),
		do(swap(kb, math.MaxInt64, math.MinInt64, 0)),
		is(kb, math.MinInt64, time.Minute),
		do(take(kb, math.MinInt64+1, time.Minute)),
		is(kb, math.MinInt64+1, time.Minute),
		do(below(kb, math.MinInt64+1)).fails(0),
		do(put(kc, -1, time.Minute), put(kd, 999, time.Minute), put(ke, 1000, time.Minute), put(kf, -10, time.Minute), put(kg, 1<<62, time.Minute)),
		do(take(kc, 5, time.Minute), take(kd, 1001, time.Minute), give(ke), take(kf, 0, time.Minute), give(kg)),
		is(kc, 0, time.Minute),
		is(kd, 1000, time.Minute),
		is(ke, 999, time.Minute),
		is(kf, -9, time.Minute),
		is(kg, 1<<62-1, time.Minute),
		do(take(kc, 5, time.Minute), take(kf, 0, time.Minute)),
		is(kc, 1, time.Minute),
		is(kf, -8, time.Minute),
		do(initOp(kh, -5, time.Minute), swap(kh, -5, 2, time.Minute)).fails(1),
		is(kh, 0, 0),
		do(initOp(kh, -5, time.Minute)),
		do(swap(kh, -5, 1<<63-2, time.Minute)),
		is(kh, 1<<63-2, time.Minute),
	}},
	{"a key that would be made without a positive ttl is an error and changes nothing reject", []step{
		do(take(ka, 5, 0)).errs(newKeyTTL),
		do(put(ka, 1, 0)).errs(newKeyTTL),
		do(initOp(ka, 1, 0)).errs(newKeyTTL),
		do(swap(ka, 0, 1, 0)).errs(newKeyTTL),
		do(put(ka, 1, -time.Second)).errs(newKeyTTL),
		do(put(kb, 1, time.Minute), take(ka, 5, -time.Minute)).errs(newKeyTTL),
		is(ka, 0, 0),
		is(kb, 0, 0),
		// A key that is there may be changed without one.
		do(put(ka, 1, time.Minute)),
		do(put(ka, 2, 0), take(ka, 9, 0), swap(ka, 1, 3, 0), initOp(ka, 7, 0)),
		is(ka, 3, time.Minute),
		// Whether an op makes a key is judged on the state before the
		// update, as its condition is.
		do(initOp(kd, 4, time.Minute), put(kd, 9, 0)).errs(newKeyTTL),
		is(kd, 0, 0),
		// A key deleted, then stored again without a TTL, is gone.
		do(put(ka, 0, 0), put(ka, 5, 0)).want(r(3, time.Minute), r(3, time.Minute)),
		is(ka, 0, 0),
		// Ops that make nothing need none.
		do(get(kc), below(kc, 1), give(kc), put(kc, 0, 0), swap(kc, 0, 0, 0), take(kc, 0, 0)).fails(5),
	}},
	{"a swap whose condition fails makes nothing and needs no ttl reject", []step{
		// A single-use gate's check of a grant whose record is gone: a
		// failed condition (the gate refuses 403), not an error (503).
		do(swap(ka, 1, 2, 0), swap(kb, 5, 5, 0), swap(kc, 7, 7, 0)).fails(0).want(none, none, none),
		do(put(kb, 5, time.Minute), swap(ka, 1, 2, 0), swap(kb, 5, 5, 0)).fails(1),
		is(ka, 0, 0),
		is(kb, 0, 0),
	}},
	{"keys of two users in one update are an error and change nothing reject", []step{
		do(get(ka), get(kOther)).errs(""),
		do(put(ka, 1, time.Minute), put(kOther, 1, time.Minute)).errs(""),
		do(put(kOther, 1, time.Minute), take(ka, 5, time.Minute)).errs(""),
		is(ka, 0, 0),
		is(kOther, 0, 0),
	}},
	{"keys expire after their ttl pass", []step{
		do(put(ka, 5, 10*time.Second), take(kb, 1, 10*time.Second), initOp(kc, 2, 20*time.Second)),
		do(take(kb, 1, 10*time.Second)).fails(0),
		after(10*time.Second, get(ka), get(kb), get(kc)).want(none, none, r(2, 10*time.Second)),
		do(take(kb, 1, 10*time.Second)).want(none),
		after(10*time.Second, get(kc)).want(none),
	}},
}

func TestUpdateContract(t *testing.T) {
	t.Parallel()
	for _, impl := range contractImpls {
		t.Run(impl.name, func(t *testing.T) {
			t.Parallel()
			for _, sc := range contractScenarios {
				t.Run(sc.name, func(t *testing.T) {
					t.Parallel()
					env := impl.new(t)
					rs := []stepup.Registry{env.instance(), env.instance()}
					for i, s := range sc.steps {
						if s.advance > 0 {
							env.advance(s.advance)
						}
						res := make([]stepup.Result, len(s.ops))
						for j := range res {
							res[j] = stepup.Result{Value: -42, TTL: -42} // to see that each is filled
						}
						failed, err := rs[i%2].Update(t.Context(), s.ops, res) // alternate instances
						if s.wantErr || err != nil {
							if !s.wantErr || err == nil || !strings.Contains(err.Error(), s.err) {
								t.Fatalf("step %d %v: error %v, want one holding %q", i, s.ops, err, s.err)
							}
							continue
						}
						if failed != s.failed {
							t.Fatalf("step %d %v: failed %d, want %d (results %v)", i, s.ops, failed, s.failed, res)
						}
						for j, want := range s.res {
							if !sameResult(res[j], want) {
								t.Fatalf("step %d %v: res[%d] = %v, want %v", i, s.ops, j, res[j], want)
							}
						}
						if s.res != nil && len(s.res) != len(s.ops) {
							t.Fatalf("step %d: the table wants %d results for %d ops", i, len(s.res), len(s.ops))
						}
					}
				})
			}

			t.Run("concurrent takes across instances never pass the limit pass", func(t *testing.T) {
				t.Parallel()
				env := impl.new(t)
				rs := []stepup.Registry{env.instance(), env.instance()}
				const limit, calls = 17, 200
				var oks, errs atomic.Int64
				var wg sync.WaitGroup
				for i := range calls {
					wg.Go(func() {
						// Two limits at once, as a verify takes them.
						ops := []stepup.Op{take(ka, limit, time.Minute), take(kb, limit+3, time.Minute)}
						failed, err := rs[i%2].Update(t.Context(), ops, make([]stepup.Result, 2))
						if err != nil {
							errs.Add(1)
						}
						if failed == -1 && err == nil {
							oks.Add(1)
						}
					})
				}
				wg.Wait()
				if oks.Load() != limit || errs.Load() != 0 {
					t.Fatalf("%d of %d concurrent updates took a unit of %d (%d errors), want exactly %d", oks.Load(), calls, limit, errs.Load(), limit)
				}
				res := make([]stepup.Result, 2)
				if _, err := rs[0].Update(t.Context(), []stepup.Op{get(ka), get(kb)}, res); err != nil || res[0].Value != limit || res[1].Value != limit {
					t.Fatalf("counts %v %v, want %d and %d: a refused update took a unit", res, err, limit, limit)
				}
			})

			t.Run("concurrent claims of one value across instances one wins", func(t *testing.T) {
				t.Parallel()
				env := impl.new(t)
				rs := []stepup.Registry{env.instance(), env.instance()}
				if failed, err := rs[0].Update(t.Context(), []stepup.Op{put(ka, 1, time.Minute)}, make([]stepup.Result, 1)); failed != -1 || err != nil {
					t.Fatal(failed, err)
				}
				var won, refused, errs atomic.Int64
				var wg sync.WaitGroup
				for i := range 64 {
					wg.Go(func() {
						// Claim the challenge (1 -> deleted) and record a
						// grant made once (absent -> 1).
						ops := []stepup.Op{swap(ka, 1, 0, 0), swap(kb, 0, 1, time.Minute)}
						switch failed, err := rs[i%2].Update(t.Context(), ops, make([]stepup.Result, 2)); {
						case err != nil:
							errs.Add(1)
						case failed == -1:
							won.Add(1)
						case failed == 0:
							refused.Add(1)
						}
					})
				}
				wg.Wait()
				if won.Load() != 1 || refused.Load() != 63 || errs.Load() != 0 {
					t.Fatalf("of 64 concurrent claims %d won, %d were refused at the claim, %d failed; want 1 and 63", won.Load(), refused.Load(), errs.Load())
				}
			})

			t.Run("results of another length are an error reject", func(t *testing.T) {
				t.Parallel()
				r := impl.new(t).instance()
				for _, n := range []int{0, 1, 3} {
					if _, err := r.Update(t.Context(), []stepup.Op{put(ka, 1, time.Minute), get(ka)}, make([]stepup.Result, n)); err == nil {
						t.Errorf("2 ops, %d results: no error", n)
					}
				}
				res := make([]stepup.Result, 1)
				if _, err := r.Update(t.Context(), []stepup.Op{get(ka)}, res); err != nil || res[0] != none {
					t.Fatalf("after the refused updates: %v %v, want nothing stored", res, err)
				}
			})
		})
	}
}

// update runs one Update on r and fails t on an error.
func update(t *testing.T, r stepup.Registry, ops ...stepup.Op) (int, []stepup.Result) {
	t.Helper()
	res := make([]stepup.Result, len(ops))
	failed, err := r.Update(t.Context(), ops, res)
	if err != nil {
		t.Fatalf("Update %v: %v", ops, err)
	}
	return failed, res
}

func TestUpdateWritesDecimalValuesWithPX(t *testing.T) {
	t.Parallel()
	srv, p := sharedRedis(t), prefix(t)
	c := srv.client(t)
	r := redisstore.New(c, redisstore.WithKeyPrefix(p))
	ctx := t.Context()
	update(t, r, put(ka, -42, 90*time.Second), take(kb, 5, time.Minute), initOp(kc, math.MaxInt64, time.Hour))
	for _, w := range []struct {
		key, v string
		ttl    time.Duration
	}{
		{ka, "-42", 90 * time.Second},
		{kb, "1", time.Minute},
		{kc, "9223372036854775807", time.Hour},
	} {
		if v, err := c.Get(ctx, p+w.key).Result(); v != w.v || err != nil {
			t.Errorf("GET %s: %q %v, want %q", w.key, v, err, w.v)
		}
		if ttl := c.PTTL(ctx, p+w.key).Val(); ttl > w.ttl || ttl <= w.ttl-time.Second {
			t.Errorf("PTTL %s: %v, want about %v", w.key, ttl, w.ttl)
		}
		if n := c.Exists(ctx, w.key).Val(); n != 0 {
			t.Errorf("%s written without the prefix", w.key)
		}
	}
	// Under a millisecond rounds up to one, not down to "no TTL".
	if failed, _ := update(t, r, put(kd, 1, time.Microsecond)); failed != -1 {
		t.Fatalf("Put with a TTL of 1µs: failed %d", failed)
	}
	eventually(t, 2*time.Second, "a key kept for 1µs expires", func() bool {
		_, res := update(t, r, get(kd))
		return res[0] == none
	})
}

func TestUpdateExpiresInRealTime(t *testing.T) {
	t.Parallel()
	srv := sharedRedis(t)
	r := redisstore.New(srv.client(t), redisstore.WithKeyPrefix(prefix(t)))
	const window = 150 * time.Millisecond
	start := time.Now()
	for _, ops := range [][]stepup.Op{{take(ka, 2, window), put(kb, 7, window)}, {take(ka, 2, window)}} {
		if failed, _ := update(t, r, ops...); failed != -1 {
			t.Fatal("Take refused under the limit")
		}
	}
	// Takes every few milliseconds, refused: were each to extend the
	// window, none would pass again.
	eventually(t, 3*time.Second, "a new window after the first one ended", func() bool {
		failed, res := update(t, r, take(ka, 2, window))
		if res[0].TTL > window {
			t.Fatalf("time left %v, above the window of %v", res[0].TTL, window)
		}
		return failed == -1
	})
	if d := time.Since(start); d < window {
		t.Errorf("the window ended after %v, before %v", d, window)
	}
	eventually(t, time.Second, "a put for the window expires", func() bool {
		_, res := update(t, r, get(kb))
		return res[0] == none
	})
	if d := time.Since(start); d < window {
		t.Errorf("a put for %v expired after %v", window, d)
	}
}

func TestUpdateValuesThatAreNotIntegersAreErrors(t *testing.T) {
	t.Parallel()
	srv, p := sharedRedis(t), prefix(t)
	c := srv.client(t)
	r := redisstore.New(c, redisstore.WithKeyPrefix(p))
	ctx := t.Context()
	for _, bad := range []string{"not a number", "1.5", "", " 1", "+1", "01", "-0", "9223372036854775808", "-9223372036854775809", "1e3"} {
		c.Set(ctx, p+ka, bad, time.Minute)
		for _, op := range []stepup.Op{get(ka), take(ka, 100, time.Minute), below(ka, 100), give(ka), put(ka, 1, time.Minute), initOp(ka, 1, time.Minute), swap(ka, 0, 1, time.Minute)} {
			// Another key first: it must not change either.
			res := make([]stepup.Result, 2)
			if _, err := r.Update(ctx, []stepup.Op{put(kb, 9, time.Minute), op}, res); err == nil {
				t.Errorf("op %d read %q", op.Kind, bad)
			}
			if v := c.Get(ctx, p+ka).Val(); v != bad {
				t.Errorf("op %d changed %q to %q", op.Kind, bad, v)
			}
			if n := c.Exists(ctx, p+kb).Val(); n != 0 {
				t.Errorf("op %d on %q: the other key of the update was written", op.Kind, bad)
			}
		}
	}
	// Another type than a string is an error too.
	c.Del(ctx, p+ka)
	c.RPush(ctx, p+ka, "1")
	if _, err := r.Update(ctx, []stepup.Op{get(ka)}, make([]stepup.Result, 1)); err == nil {
		t.Error("a list read as a value")
	}
}

func TestUpdateMendsAKeyWithoutExpiry(t *testing.T) {
	t.Parallel()
	srv, p := sharedRedis(t), prefix(t)
	c := srv.client(t)
	reg := redisstore.New(c, redisstore.WithKeyPrefix(p))
	ctx := t.Context()
	// Left without an expiry, by hand: it reads with 0 left.
	c.Set(ctx, p+ka, 7, 0)
	if _, res := update(t, reg, get(ka)); res[0] != r(7, 0) {
		t.Fatalf("a count without expiry reads %v, want 7 and 0 left", res[0])
	}
	// A Take gives it its window, even when it is refused, so that it
	// cannot lock the user out for good.
	if failed, res := update(t, reg, take(ka, 5, time.Minute)); failed != 0 || !sameResult(res[0], r(7, time.Minute)) {
		t.Fatalf("Take over the limit: %d %v, want refused with the window", failed, res[0])
	}
	if ttl := c.PTTL(ctx, p+ka).Val(); ttl <= 59*time.Second || ttl > time.Minute {
		t.Fatalf("PTTL %v after a refused Take, want the window", ttl)
	}
	c.Set(ctx, p+ka, 7, 0)
	if failed, _ := update(t, reg, take(ka, 10, time.Minute)); failed != -1 {
		t.Fatal("Take under the limit refused")
	}
	if v, ttl := c.Get(ctx, p+ka).Val(), c.PTTL(ctx, p+ka).Val(); v != "8" || ttl <= 59*time.Second || ttl > time.Minute {
		t.Fatalf("after a Take: %q PTTL %v, want 8 with the window", v, ttl)
	}
	// An op that keeps a key for at least a TTL gives it that TTL.
	for _, op := range []stepup.Op{put(kb, 3, time.Minute), initOp(kb, 4, time.Minute), swap(kb, 3, 5, time.Minute)} {
		c.Set(ctx, p+kb, 3, 0)
		update(t, reg, op)
		if ttl := c.PTTL(ctx, p+kb).Val(); ttl <= 59*time.Second || ttl > time.Minute {
			t.Errorf("op %d: PTTL %v, want a minute", op.Kind, ttl)
		}
	}
}

func TestUpdateRefusesKeysOfDifferentTagsBeforeAskingRedis(t *testing.T) {
	t.Parallel()
	requireRedis(t)
	p := prefix(t)
	live := redisstore.New(sharedRedis(t).client(t), redisstore.WithKeyPrefix(p))
	// Refused before Redis is asked: a registry on a dead address answers
	// ErrCrossSlot, not a connection error.
	dead := redisstore.New(newClient(t, deadAddr(t)), redisstore.WithKeyPrefix(p))
	for _, keys := range [][]string{
		{ka, kOther},
		{ka, kb, kOther},
		{"a", "b"},                      // no tag: the whole key is hashed
		{"{x}a", "x"},                   // a tag, and a key that is only the tag's text
		{"stepup:{}:a", "stepup:{}:a:"}, // an empty tag does not count
	} {
		ops := make([]stepup.Op, len(keys))
		for i, k := range keys {
			ops[i] = put(k, 1, time.Minute)
		}
		for _, r := range []*redisstore.Registry{live, dead} {
			if failed, err := r.Update(t.Context(), ops, make([]stepup.Result, len(ops))); !errors.Is(err, redisstore.ErrCrossSlot) {
				t.Errorf("Update%q: %d %v, want ErrCrossSlot", keys, failed, err)
			}
		}
		if _, res := update(t, live, get(keys[0])); res[0] != none {
			t.Errorf("Update%q wrote %v", keys, res[0])
		}
	}
	for _, keys := range [][]string{
		{ka, kb, kc},
		{"{x}a", "b{x}", "{x}{y}"},
		{"a", "a"},
	} {
		ops := make([]stepup.Op, len(keys))
		for i, k := range keys {
			ops[i] = put(k, 1, time.Minute)
		}
		if failed, err := live.Update(t.Context(), ops, make([]stepup.Result, len(ops))); failed != -1 || err != nil {
			t.Errorf("Update%q: %d %v, want applied", keys, failed, err)
		}
	}
}

func TestUpdateScriptCacheFlushed(t *testing.T) {
	t.Parallel()
	srv := newRedis(t) // SCRIPT FLUSH is server-wide
	c := srv.client(t)
	r := redisstore.New(c)
	ctx := t.Context()
	update(t, r, take(ka, 5, time.Minute))
	for n := int64(2); n <= 4; n++ {
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if failed, res := update(t, r, take(ka, 5, time.Minute)); failed != -1 || res[0].Value != n-1 {
			t.Fatalf("Take after SCRIPT FLUSH: %d %v, want applied on %d", failed, res, n-1)
		}
	}
	if v := c.Get(ctx, ka).Val(); v != "4" {
		t.Fatalf("count %q after four takes, want 4: a take ran twice or not at all", v)
	}
}

func TestUpdateRefusedByACLChangesNothing(t *testing.T) {
	t.Parallel()
	srv := newRedis(t) // ACL users are server-wide
	admin := srv.client(t)
	ctx := t.Context()
	// The user may write counts, and only read the other keys.
	if err := admin.Do(ctx, "ACL", "SETUSER", "app", "on", ">app-secret", "resetkeys", "+@all", "%R~*", "~*:fail").Err(); err != nil {
		t.Fatal(err)
	}
	r := redisstore.New(newClient(t, srv.addr, func(o *redis.Options) { o.Username, o.Password = "app", "app-secret" }))
	fail := userTag + "fail"
	update(t, r, take(fail, 5, time.Minute))
	if _, err := r.Update(ctx, []stepup.Op{take(fail, 5, time.Minute), put(ka, 1, time.Minute)}, make([]stepup.Result, 2)); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("Update writing a key the user may not write: %v, want NOPERM", err)
	}
	if v := admin.Get(ctx, fail).Val(); v != "1" {
		t.Fatalf("count %q after a refused update, want 1: the update was applied in part", v)
	}
	// An update that only reads is refused too: the script declares its
	// keys, and Redis checks them for reading and writing.
	if _, err := r.Update(ctx, []stepup.Op{get(ka)}, make([]stepup.Result, 1)); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("Update reading a key the user may only read: %v, want NOPERM", err)
	}
}

func TestUpdateOutOfMemoryChangesNothing(t *testing.T) {
	t.Parallel()
	srv := newRedis(t)
	admin := srv.client(t)
	r := redisstore.New(srv.client(t))
	ctx := t.Context()
	update(t, r, take(ka, 5, time.Minute))
	if err := admin.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	_, err := r.Update(ctx, []stepup.Op{take(ka, 5, time.Minute), put(kb, 1, time.Minute)}, make([]stepup.Result, 2))
	if err == nil || !strings.Contains(err.Error(), "OOM") {
		t.Fatalf("Update at maxmemory: %v, want OOM", err)
	}
	if err := admin.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if v, n := admin.Get(ctx, ka).Val(), admin.Exists(ctx, kb).Val(); v != "1" || n != 0 {
		t.Fatalf("after a refused update: count %q, other key %d, want 1 and none", v, n)
	}
}

func TestUnreachableRedisReturnsErrors(t *testing.T) {
	t.Parallel()
	requireRedis(t)
	r := redisstore.New(newClient(t, deadAddr(t)))
	ctx := t.Context()
	for _, op := range []stepup.Op{get(ka), take(ka, 5, time.Minute), swap(ka, 1, 0, 0)} {
		if failed, err := r.Update(ctx, []stepup.Op{op}, make([]stepup.Result, 1)); failed != -1 || err == nil {
			t.Errorf("op %d: %d %v, want an error", op.Kind, failed, err)
		}
	}

	// A cancelled request is an error too, never a claim or a unit.
	live := redisstore.New(sharedRedis(t).client(t), redisstore.WithKeyPrefix(prefix(t)))
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := live.Update(cancelled, []stepup.Op{take(ka, 5, time.Minute)}, make([]stepup.Result, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Update with a cancelled context: %v", err)
	}
	if _, res := update(t, live, get(ka)); res[0] != none {
		t.Errorf("a cancelled Take counted: %v", res[0])
	}
}

func TestUnknownOpKindIsAnError(t *testing.T) {
	t.Parallel()
	r := redisstore.New(newClient(t, "127.0.0.1:1"))
	for _, k := range []stepup.OpKind{0, stepup.OpSwap + 1, 255} {
		if _, err := r.Update(t.Context(), []stepup.Op{{Kind: k, Key: ka, TTL: time.Minute}}, make([]stepup.Result, 1)); err == nil || !strings.Contains(err.Error(), fmt.Sprint("kind ", k)) {
			t.Errorf("kind %d: %v, want an error naming it", k, err)
		}
	}
}

func TestOptionsPanicOnNonsense(t *testing.T) {
	t.Parallel()
	for name, f := range map[string]func(){
		"New(nil)":               func() { redisstore.New(nil) },
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
