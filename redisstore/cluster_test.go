package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/redisstore"
)

// The cluster tests run on a real Redis Cluster of three masters (no
// replicas) on free loopback ports, made once per test binary with
// redis-cli --cluster create and stopped by TestMain.

// cluster is the shared cluster, started on first use.
var cluster struct {
	once sync.Once
	c    *redisCluster
	err  error
}

// redisCluster is a running cluster: its masters and the folder that holds
// their nodes.conf files.
type redisCluster struct {
	root  string
	nodes []*redisServer
}

// sharedCluster returns the shared cluster, skipping t when redis-server or
// redis-cli is missing (TestMain has said so, or failed the package).
func sharedCluster(t testing.TB) *redisCluster {
	t.Helper()
	requireRedis(t)
	if redisCLI == "" {
		t.SkipNow()
	}
	cluster.once.Do(func() { cluster.c, cluster.err = startCluster(3) })
	if cluster.err != nil {
		t.Fatal(cluster.err)
	}
	return cluster.c
}

// startCluster starts n masters, joins them with redis-cli --cluster create
// (which spreads the 16384 slots evenly), and waits until every node says
// cluster_state:ok and knows all n.
func startCluster(n int) (_ *redisCluster, err error) {
	root, err := os.MkdirTemp("", "redisstore-cluster-")
	if err != nil {
		return nil, err
	}
	c := &redisCluster{root: root}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	for i := range n {
		dir := filepath.Join(root, strconv.Itoa(i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return nil, err
		}
		s, err := startRedisServer(dir, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, s)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	cmd := exec.CommandContext(ctx, redisCLI, args...)
	setParentDeathSignal(cmd)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
	}

	want := []string{"cluster_state:ok", "cluster_slots_assigned:16384", "cluster_known_nodes:" + strconv.Itoa(n)}
	for _, s := range c.nodes {
		rdb := redis.NewClient(&redis.Options{Addr: s.addr, DialTimeout: time.Second, ReadTimeout: time.Second})
		var info string
		for !containsAll(info, want) {
			if ctx.Err() != nil {
				rdb.Close()
				return nil, fmt.Errorf("cluster node %s not ready within 30s: %q", s.addr, info)
			}
			time.Sleep(20 * time.Millisecond)
			info, _ = rdb.ClusterInfo(ctx).Result()
		}
		rdb.Close()
	}
	return c, nil
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// stop kills every node and removes their folder.
func (c *redisCluster) stop() {
	for _, s := range c.nodes {
		s.stop()
	}
	os.RemoveAll(c.root)
}

func (c *redisCluster) addrs() []string {
	var out []string
	for _, s := range c.nodes {
		out = append(out, s.addr)
	}
	return out
}

// client returns a cluster client that t closes when it ends: what
// redis.NewUniversalClient makes of several addresses.
func (c *redisCluster) client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	u := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:        c.addrs(),
		DialTimeout:  time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		MaxRetries:   1,
	})
	t.Cleanup(func() { u.Close() })
	cc, ok := u.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("NewUniversalClient with %d addresses made a %T, not a cluster client", len(c.addrs()), u)
	}
	return cc
}

// userKeys returns registry keys of one user as stepup makes them (see
// keys.go in stepup): a hash tag of the user's handle in base64url, then the
// kind.
func userKeys(handle string) (challenge, count, epoch string) {
	p := "stepup:{" + b64(handle) + "}:"
	return p + "challenge:q83vEjRWeJCrze8SNFZ4kA", p + "fail", p + "epoch"
}

// oneUserUpdate is an update as stepup makes them: ops on several keys of
// one user.
func oneUserUpdate(challenge, count, epoch string) []stepup.Op {
	return []stepup.Op{
		{Kind: stepup.OpPut, Key: challenge, Value: 1, TTL: time.Minute},
		{Kind: stepup.OpTake, Key: count, Limit: 5, TTL: time.Minute},
		{Kind: stepup.OpInit, Key: epoch, Value: -7, TTL: time.Minute},
	}
}

func TestClusterSpreadsUsersOverEveryMaster(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	ctx := t.Context()
	cc := c.client(t)
	p := prefix(t)
	r := redisstore.New(cc, redisstore.WithKeyPrefix(p))

	// Keys of many users, each user's written by one Update: each user's
	// keys share one slot, and the users spread over all three masters.
	const users = 64
	var all []string
	for u := range users {
		challenge, count, epoch := userKeys("user-" + strconv.Itoa(u))
		ops := oneUserUpdate(challenge, count, epoch)
		res := make([]stepup.Result, len(ops))
		if failed, err := r.Update(ctx, ops, res); failed != -1 || err != nil {
			t.Fatalf("Update of one user's keys: %d %v", failed, err)
		}
		var slots []int64
		for _, k := range []string{challenge, count, epoch} {
			slot, err := cc.ClusterKeySlot(ctx, p+k).Result()
			if err != nil {
				t.Fatal(err)
			}
			slots = append(slots, slot)
			all = append(all, p+k)
		}
		if slots[0] != slots[1] || slots[1] != slots[2] {
			t.Fatalf("the keys of one user are in slots %v, want one slot", slots)
		}
		get := []stepup.Op{{Kind: stepup.OpGet, Key: challenge}, {Kind: stepup.OpGet, Key: count}, {Kind: stepup.OpGet, Key: epoch}}
		if failed, err := r.Update(ctx, get, res); failed != -1 || err != nil || res[0].Value != 1 || res[1].Value != 1 || res[2].Value != -7 {
			t.Fatalf("reading one user's keys: %d %v %v, want 1 1 -7", failed, err, res)
		}
	}

	// Ask each master, without the cluster client's routing, which of the
	// keys it holds: a master answers EXISTS for its own slots and MOVED
	// for the others.
	held := 0
	for _, s := range c.nodes {
		rdb := s.client(t)
		mine := 0
		for _, k := range all {
			n, err := rdb.Exists(ctx, k).Result()
			switch {
			case err == nil && n == 1:
				mine++
			case err != nil && strings.HasPrefix(err.Error(), "MOVED "):
			default:
				t.Fatalf("EXISTS %s on %s: %d %v", k, s.addr, n, err)
			}
		}
		if dbsize := rdb.DBSize(ctx).Val(); dbsize < int64(mine) {
			t.Errorf("master %s: DBSIZE %d, below the %d keys of this test it holds", s.addr, dbsize, mine)
		}
		t.Logf("master %s holds %d of the %d keys", s.addr, mine, len(all))
		if mine == 0 {
			t.Errorf("master %s holds none of the keys of %d users", s.addr, users)
		}
		held += mine
	}
	if held != len(all) {
		t.Errorf("the masters hold %d keys, want each of the %d on exactly one", held, len(all))
	}
}

func TestClusterUpdateAcrossTagsFails(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	ctx := t.Context()
	cc := c.client(t)
	p := prefix(t)
	r := redisstore.New(cc, redisstore.WithKeyPrefix(p))

	// Two users whose keys live on different masters.
	put := func(key string) {
		t.Helper()
		res := make([]stepup.Result, 1)
		if failed, err := r.Update(ctx, []stepup.Op{{Kind: stepup.OpPut, Key: key, Value: 1, TTL: time.Minute}}, res); failed != -1 || err != nil {
			t.Fatalf("Put %s: %d %v", key, failed, err)
		}
	}
	a, _, _ := userKeys("alice")
	put(a)
	var b string
	for u := 0; b == ""; u++ {
		k, _, _ := userKeys("user-" + strconv.Itoa(u))
		put(k)
		if c.holder(t, p+k) != c.holder(t, p+a) {
			b = k
		}
	}
	res := make([]stepup.Result, 2)
	ops := []stepup.Op{{Kind: stepup.OpPut, Key: a, Value: 2, TTL: time.Minute}, {Kind: stepup.OpPut, Key: b, Value: 2, TTL: time.Minute}}
	if failed, err := r.Update(ctx, ops, res); !errors.Is(err, redisstore.ErrCrossSlot) {
		t.Fatalf("Update of two users' keys: %d %v, want ErrCrossSlot", failed, err)
	}
	// Nothing was written, and each on its own is fine.
	for _, k := range []string{a, b} {
		res := make([]stepup.Result, 1)
		if failed, err := r.Update(ctx, []stepup.Op{{Kind: stepup.OpGet, Key: k}}, res); failed != -1 || err != nil || res[0].Value != 1 {
			t.Fatalf("Get %s: %d %v %v, want 1", k, failed, err, res)
		}
	}
	// What Redis itself does with a script on two slots: every node
	// refuses it.
	for _, s := range c.nodes {
		err := s.client(t).Eval(ctx, "return 1", []string{p + a, p + b}).Err()
		if err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
			t.Errorf("EVAL on two slots on node %s: %v, want CROSSSLOT", s.addr, err)
		}
	}
}

// holder returns the address of the master that holds key, asking each
// directly.
func (c *redisCluster) holder(t *testing.T, key string) string {
	t.Helper()
	for _, s := range c.nodes {
		if s.client(t).Exists(t.Context(), key).Val() == 1 {
			return s.addr
		}
	}
	t.Fatalf("no master holds %s", key)
	return ""
}
