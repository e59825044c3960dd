package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/passkey-stepup/stepup"
)

// ErrBadTTL is returned by [Registry.Consume] and [Registry.AddFailure] for a
// duration that is not positive: Redis would keep such a key forever.
var ErrBadTTL = errors.New("redisstore: ttl and window must be positive")

// Registry is a [stepup.Registry] kept in Redis, for every instance of an
// application behind a load balancer to share. Each operation is one atomic
// Redis command or script, so the guarantees hold across instances:
//
//   - Consume is SET key 1 NX PX ttl: of concurrent calls with one key, on any
//     number of instances, exactly one gets true.
//   - AddFailure is one Lua script (INCR, PTTL, and PEXPIRE when the count is
//     new): the window starts at the first failure and later failures do not
//     extend it.
//   - Failures is one Lua script that only reads (GET and PTTL), ResetFailures
//     a DEL.
//
// Every Redis error (unreachable server, timeout, refused write) is returned,
// wrapped, and stepup then answers 503 service_unavailable and grants
// nothing: the registry fails closed. It is safe for concurrent use.
type Registry struct {
	client redis.UniversalClient
	prefix string
}

var _ stepup.Registry = (*Registry)(nil)

// Option configures a [Registry] made by [New].
type Option func(*Registry)

// WithKeyPrefix puts prefix in front of every key the registry writes, such
// as "myapp:" to keep two applications that share one Redis database apart.
// stepup's own keys already start with "stepup:". Default "" (no prefix).
func WithKeyPrefix(prefix string) Option {
	return func(r *Registry) { r.prefix = prefix }
}

// New returns a Registry that keeps its keys in Redis through client, which
// may be a *redis.Client, a *redis.ClusterClient (each operation touches one
// key, so it works on a cluster) or a failover client. The client is the
// caller's to configure (timeouts, retries, TLS) and to close. New panics if
// client is nil.
func New(client redis.UniversalClient, opts ...Option) *Registry {
	if client == nil {
		panic("redisstore: New expects a non-nil client")
	}
	r := &Registry{client: client}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Consume implements [stepup.Registry] with SET key 1 NX PX ttl. ttl is
// rounded up to whole milliseconds; a ttl that is not positive is refused
// with [ErrBadTTL].
func (r *Registry) Consume(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	ms, err := millis(ttl)
	if err != nil {
		return false, err
	}
	err = r.client.Do(ctx, "set", r.prefix+key, "1", "px", ms, "nx").Err()
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, redis.Nil): // NX: the key is already there
		return false, nil
	default:
		return false, fmt.Errorf("redisstore: consume: %w", err)
	}
}

// addFailure counts a failure in a fixed window that the first failure
// starts. A count left without an expiry (by hand, say) gets one, so that it
// cannot lock a user out for good.
var addFailure = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if n == 1 or ttl < 0 then
	redis.call('PEXPIRE', KEYS[1], ARGV[1])
	ttl = tonumber(ARGV[1])
end
return {n, ttl}
`)

// failures reads a count and the time left in its window in one step, so
// that the key cannot expire between the two reads.
var failures = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
	return {0, 0}
end
local n = tonumber(v)
if not n then
	return redis.error_reply('failure count is not a number')
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
	ttl = 0
end
return {n, ttl}
`)

// AddFailure implements [stepup.Registry]. window is rounded up to whole
// milliseconds; a window that is not positive is refused with [ErrBadTTL].
func (r *Registry) AddFailure(ctx context.Context, key string, window time.Duration) (int, time.Duration, error) {
	ms, err := millis(window)
	if err != nil {
		return 0, 0, err
	}
	count, left, err := countAndTTL(addFailure.Run(ctx, r.client, []string{r.prefix + key}, ms))
	if err != nil {
		return 0, 0, fmt.Errorf("redisstore: add failure: %w", err)
	}
	return count, left, nil
}

// Failures implements [stepup.Registry]. It returns zero and zero when there
// is no count under key.
func (r *Registry) Failures(ctx context.Context, key string) (int, time.Duration, error) {
	count, left, err := countAndTTL(failures.Run(ctx, r.client, []string{r.prefix + key}))
	if err != nil {
		return 0, 0, fmt.Errorf("redisstore: failures: %w", err)
	}
	return count, left, nil
}

// ResetFailures implements [stepup.Registry] with DEL. Deleting a key that
// is not there is not an error.
func (r *Registry) ResetFailures(ctx context.Context, key string) error {
	if err := r.client.Del(ctx, r.prefix+key).Err(); err != nil {
		return fmt.Errorf("redisstore: reset failures: %w", err)
	}
	return nil
}

// millis converts d to whole milliseconds, rounding up.
func millis(d time.Duration) (int64, error) {
	if d <= 0 {
		return 0, ErrBadTTL
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond), nil
}

// countAndTTL reads a script's {count, milliseconds left} reply.
func countAndTTL(cmd *redis.Cmd) (int, time.Duration, error) {
	v, err := cmd.Int64Slice()
	if err != nil {
		return 0, 0, err
	}
	if len(v) != 2 || v[0] < 0 || v[1] < 0 {
		return 0, 0, fmt.Errorf("unexpected script reply %v", v)
	}
	return int(v[0]), time.Duration(v[1]) * time.Millisecond, nil
}
