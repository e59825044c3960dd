package redisstore_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The tests run against a real redis-server that they start on a free
// loopback port. Where none is installed they skip, with one line saying
// so, except when CI=true or STEPUP_REQUIRE_REDIS=1: there a missing server
// fails the package.

// redisBin is the redis-server binary, or "" when none is installed;
// redisCLI likewise for redis-cli, which makes the test cluster.
var redisBin, redisCLI string

// shared is the server of the tests that do not stop it; each of them keeps
// its keys apart with a prefix of its own. Started on first use.
var shared struct {
	once sync.Once
	srv  *redisServer
	err  error
}

func TestMain(m *testing.M) {
	// go-redis logs every failed dial; the outage tests make them on purpose.
	redis.SetLogger(discardLogger{})
	redisBin, _ = exec.LookPath("redis-server")
	redisCLI, _ = exec.LookPath("redis-cli")
	required := os.Getenv("CI") == "true" || os.Getenv("STEPUP_REQUIRE_REDIS") == "1"
	switch {
	case redisBin == "" && required:
		fmt.Fprintln(os.Stderr, "redisstore: FAIL: redis-server is not on PATH, and CI=true or STEPUP_REQUIRE_REDIS=1 requires it (apt-get install redis-server)")
		os.Exit(1)
	case redisBin == "":
		fmt.Fprintln(os.Stderr, "redisstore: SKIP: redis-server is not on PATH, so the Redis tests are skipped (apt-get install redis-server to run them)")
	case redisCLI == "" && required:
		fmt.Fprintln(os.Stderr, "redisstore: FAIL: redis-cli is not on PATH, and CI=true or STEPUP_REQUIRE_REDIS=1 requires it to make the test cluster (apt-get install redis-tools)")
		os.Exit(1)
	case redisCLI == "":
		fmt.Fprintln(os.Stderr, "redisstore: SKIP: redis-cli is not on PATH, so the Redis Cluster tests are skipped (apt-get install redis-tools to run them)")
	}
	code := m.Run()
	if shared.srv != nil {
		shared.srv.stop()
	}
	if cluster.c != nil {
		cluster.c.stop()
	}
	os.Exit(code)
}

// requireRedis skips t when no redis-server is installed; TestMain has said
// why, once.
func requireRedis(t testing.TB) {
	t.Helper()
	if redisBin == "" {
		t.SkipNow()
	}
}

// sharedRedis returns the shared server.
func sharedRedis(t testing.TB) *redisServer {
	t.Helper()
	requireRedis(t)
	shared.once.Do(func() { shared.srv, shared.err = startRedisServer(os.TempDir()) })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.srv
}

// newRedis starts a server of t's own, which t may stop and start again; it
// is killed when t ends.
func newRedis(t testing.TB, args ...string) *redisServer {
	t.Helper()
	requireRedis(t)
	s, err := startRedisServer(t.TempDir(), args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	return s
}

// redisServer is a redis-server process on 127.0.0.1, without persistence.
type redisServer struct {
	addr string
	dir  string
	args []string // more command-line arguments

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	out    *syncBuffer
}

// startRedisServer starts a server on a free port, trying another port if
// the chosen one is taken before the server binds it. A cluster node
// (--cluster-enabled yes) gets a free port for its cluster bus too: by
// default Redis takes the port 10000 above its own, which may be taken or,
// above 55535, not exist.
func startRedisServer(dir string, args ...string) (*redisServer, error) {
	var err error
	for range 3 {
		var addr, bus string
		if addr, err = freeAddr(); err != nil {
			return nil, err
		}
		a := args
		if slices.Contains(args, "--cluster-enabled") {
			if bus, err = freeAddr(); err != nil {
				return nil, err
			}
			_, port, _ := net.SplitHostPort(bus)
			a = append(slices.Clip(args), "--cluster-port", port)
		}
		s := &redisServer{addr: addr, dir: dir, args: a}
		if err = s.start(); err == nil {
			return s, nil
		}
	}
	return nil, err
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// start runs the server on s.addr and waits until it answers PING.
func (s *redisServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("redis-server on %s is already running", s.addr)
	}
	_, port, _ := net.SplitHostPort(s.addr)
	s.out = &syncBuffer{}
	args := append([]string{
		"--port", port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no",
		"--dir", s.dir, "--logfile", "", "--loglevel", "warning",
	}, s.args...)
	cmd := exec.Command(redisBin, args...)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		if ping(s.addr) == nil {
			s.cmd, s.exited = cmd, exited
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server on %s exited: %s", s.addr, s.out)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on %s did not answer PING within 10s: %s", s.addr, s.out)
		}
	}
}

// stop kills the server and waits for it to exit. Its data is lost.
func (s *redisServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// ping sends PING over a fresh connection and expects +PONG.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// client returns a client of s that t closes when it ends.
func (s *redisServer) client(t testing.TB) *redis.Client {
	t.Helper()
	return newClient(t, s.addr)
}

// newClient returns a client of addr that t closes when it ends. Its
// timeouts and retries are short, as an application's should be, so that an
// outage fails fast instead of holding requests for seconds.
func newClient(t testing.TB, addr string, opts ...func(*redis.Options)) *redis.Client {
	t.Helper()
	o := &redis.Options{
		Addr:               addr,
		DialTimeout:        time.Second,
		ReadTimeout:        time.Second,
		WriteTimeout:       time.Second,
		DialerRetries:      1,
		DialerRetryTimeout: 10 * time.Millisecond,
		MaxRetries:         1,
	}
	for _, f := range opts {
		f(o)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

type discardLogger struct{}

func (discardLogger) Printf(context.Context, string, ...any) {}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t testing.TB) string {
	t.Helper()
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// prefix returns a key prefix unique to t on the shared server.
func prefix(t testing.TB) string {
	return "test:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":" + t.Name() + ":"
}

// syncBuffer is a buffer safe for concurrent writers: a log sink for
// handlers and for redis-server's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// b64 is how stepup writes a user handle in a registry key's hash tag.
func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
