package redisstore_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
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

// redisBin is the redis-server binary, or "" when none is installed.
var redisBin string

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
	if redisBin == "" {
		if os.Getenv("CI") == "true" || os.Getenv("STEPUP_REQUIRE_REDIS") == "1" {
			fmt.Fprintln(os.Stderr, "redisstore: FAIL: redis-server is not on PATH, and CI=true or STEPUP_REQUIRE_REDIS=1 requires it (apt-get install redis-server)")
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "redisstore: SKIP: redis-server is not on PATH, so the Redis tests are skipped (apt-get install redis-server to run them)")
	}
	code := m.Run()
	if shared.srv != nil {
		shared.srv.stop()
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
// the chosen one is taken before the server binds it.
func startRedisServer(dir string, args ...string) (*redisServer, error) {
	var err error
	for range 3 {
		var l net.Listener
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
		addr := l.Addr().String()
		l.Close()
		s := &redisServer{addr: addr, dir: dir, args: args}
		if err = s.start(); err == nil {
			return s, nil
		}
	}
	return nil, err
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
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
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
