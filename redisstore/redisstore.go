package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/passkey-stepup/stepup"
)

// ErrBadTTL is returned by [Registry.Consume], [Registry.Take] and
// [Registry.Mark] for a ttl or window that is not positive: Redis would keep
// such a key forever, or not at all.
var ErrBadTTL = errors.New("redisstore: ttl and window must be positive")

// ErrCrossSlot is returned by [Registry.Lookup] for keys that do not all have
// the same hash tag. stepup never makes such a Lookup (all the keys of one
// Lookup belong to one user); it is refused on every deployment, before
// Redis is asked, so that a mistake shows on a single server as it would on
// a cluster, where the keys may live on different nodes.
var ErrCrossSlot = errors.New("redisstore: lookup keys do not share one hash tag")

// DefaultClockSkew is the margin [New] adds to the TTLs of consumed keys and
// marks unless [WithClockSkew] says otherwise.
const DefaultClockSkew = time.Minute

// Registry is a [stepup.Registry] kept in Redis, for every instance of an
// application behind a load balancer to share. Each operation is one atomic
// Redis command or script on one key (Lookup: on keys of one hash tag), so
// the guarantees hold across instances and on Redis Cluster:
//
//   - Consume is SET key 1 NX PX ttl+skew: of concurrent calls with one key,
//     on any number of instances, exactly one gets true.
//   - Take is one Lua script: the first Take creates the count at 1 with the
//     window as its expiry; later ones add one while the count is under the
//     limit and otherwise refuse without counting. Never more than limit
//     calls get true in one window, and no call extends the window.
//   - Give is one Lua script: DECR only when the key exists and holds more
//     than zero. It never creates a key.
//   - Count is one Lua script that only reads (GET and PTTL), Reset a DEL.
//   - Mark is one Lua script that keeps the greater value and the later
//     expiry, ttl+skew.
//   - Lookup is one MGET.
//
// Every Redis error (unreachable server, timeout, refused write) is returned,
// wrapped, and stepup then answers 503 service_unavailable and grants
// nothing: the registry fails closed. It is safe for concurrent use.
type Registry struct {
	client redis.UniversalClient
	prefix string
	skewMS int64 // the clock-skew margin in milliseconds
}

var _ stepup.Registry = (*Registry)(nil)

// Option configures a [Registry] made by [New].
type Option func(*Registry)

// WithKeyPrefix puts prefix in front of every key the registry writes, such
// as "myapp:" to keep two applications that share one Redis database apart.
// stepup's own keys already start with "stepup:". Default "" (no prefix).
// It panics if prefix holds '{' or '}': the prefix comes before the user's
// hash tag in each key, and a brace in it would change which part of the key
// Redis Cluster hashes.
func WithKeyPrefix(prefix string) Option {
	if strings.ContainsAny(prefix, "{}") {
		panic(fmt.Sprintf("redisstore: WithKeyPrefix(%q): a prefix must not hold '{' or '}'", prefix))
	}
	return func(r *Registry) { r.prefix = prefix }
}

// WithClockSkew sets the margin added to the TTL of every consumed key and
// every mark, to cover the difference between the clocks of the instances
// that share the registry. Default [DefaultClockSkew], one minute.
//
// stepup computes those TTLs on the calling instance's clock, from times it
// wrote into a cookie: a challenge or grant is consumed until it expires, a
// mark (such as a revocation) is kept while a grant it refers to may still
// be used. Another instance whose clock runs behind by d still takes the
// challenge or grant for valid for d after the key is gone, and would accept
// it again. With the margin, that cannot happen while the clocks of all
// instances agree within d. Use 0 only for a single instance, or clocks
// known to agree to well under a second. Take windows get no margin: a
// window is a length measured by Redis from the first Take, on no
// instance's clock. WithClockSkew panics if d is negative.
func WithClockSkew(d time.Duration) Option {
	if d < 0 {
		panic("redisstore: WithClockSkew expects d >= 0")
	}
	return func(r *Registry) { r.skewMS = ceilMillis(d) }
}

// New returns a Registry that keeps its keys in Redis through client, which
// may be a *redis.Client, a *redis.ClusterClient or a failover client. The
// client is the caller's to configure (timeouts, retries, TLS) and to close.
// New panics if client is nil.
func New(client redis.UniversalClient, opts ...Option) *Registry {
	if client == nil {
		panic("redisstore: New expects a non-nil client")
	}
	r := &Registry{client: client, skewMS: ceilMillis(DefaultClockSkew)}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Consume implements [stepup.Registry] with SET key 1 NX PX, for ttl plus
// the clock-skew margin. ttl is rounded up to whole milliseconds; a ttl that
// is not positive is refused with [ErrBadTTL].
func (r *Registry) Consume(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	ms, err := r.withSkew(ttl)
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

// luaInt is shared by the scripts: int returns the number held in a value
// read with GET, or nil when the value is not an int64 written the way Redis
// and Go write them (no sign but '-', no leading zero). Lua numbers are
// doubles, exact only up to 2^53: the number is good for comparing a count
// with a limit, and values are otherwise compared as strings (see luaCmp)
// and never rewritten from a number.
const luaInt = `
local function int(v)
	if v == '0' then
		return 0
	end
	local sign, digits = string.match(v, '^(%-?)([1-9]%d*)$')
	if not digits or #digits > 19 or
		(#digits == 19 and digits > (sign == '-' and '9223372036854775808' or '9223372036854775807')) then
		return nil
	end
	return tonumber(v)
end
`

// luaCmp compares two integers written as int accepts them, exactly: -1,
// 0 or 1.
const luaCmp = `
local function cmp(a, b)
	if a == b then
		return 0
	end
	local na, nb = a:sub(1, 1) == '-', b:sub(1, 1) == '-'
	if na ~= nb then
		return na and -1 or 1
	end
	local r
	if #a ~= #b then
		r = #a < #b and -1 or 1
	else
		r = a < b and -1 or 1
	end
	if na then
		r = -r
	end
	return r
end
`

// take reserves one unit of a limit, KEYS[1] the count, ARGV[1] the limit,
// ARGV[2] the window in milliseconds. It returns {1 or 0, ms left}. The
// window is the key's expiry, set when the key is made and never again. A
// key in the last millisecond of its window (PTTL 0) counts as gone, as it
// is a moment later. A count left without an expiry (by hand, say) gets the
// whole window, so that it cannot lock a user out for good.
var take = redis.NewScript(luaInt + `
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local v = redis.call('GET', KEYS[1])
local n, left = 0, 0
if v then
	n = int(v)
	if not n then
		return redis.error_reply('value is not an integer')
	end
	left = redis.call('PTTL', KEYS[1])
	if left < 0 then
		redis.call('PEXPIRE', KEYS[1], window)
		left = window
	end
end
if left == 0 then
	if limit < 1 then
		redis.call('SET', KEYS[1], '0', 'PX', window)
		return {0, window}
	end
	redis.call('SET', KEYS[1], '1', 'PX', window)
	return {1, window}
end
if n >= limit then
	return {0, left}
end
redis.call('INCR', KEYS[1])
return {1, left}
`)

// give hands back one unit: DECR only when KEYS[1] exists and holds more
// than zero. DECR keeps the key's expiry; a missing key stays missing.
var give = redis.NewScript(luaInt + `
local v = redis.call('GET', KEYS[1])
if not v then
	return 0
end
local n = int(v)
if not n then
	return redis.error_reply('value is not an integer')
end
if n > 0 then
	redis.call('DECR', KEYS[1])
end
return 0
`)

// count reads a value and the time left before it expires in one step, so
// that the key cannot expire between the two reads. It returns {} when there
// is no key (or it is in its last millisecond, as take sees it), else
// {value, ms left}, the value as stored; a value without an expiry has 0
// left.
var count = redis.NewScript(luaInt + `
local v = redis.call('GET', KEYS[1])
if not v then
	return {}
end
if not int(v) then
	return redis.error_reply('value is not an integer')
end
local left = redis.call('PTTL', KEYS[1])
if left == 0 then
	return {}
end
if left < 0 then
	left = 0
end
return {v, left}
`)

// mark records ARGV[1] under KEYS[1] for ARGV[2] milliseconds, keeping the
// greater value and the later expiry of what is there. A value in its last
// millisecond counts as gone, as in take; one left without an expiry (by
// hand, say) gets this expiry.
var mark = redis.NewScript(luaInt + luaCmp + `
local v, ttl = ARGV[1], tonumber(ARGV[2])
local old = redis.call('GET', KEYS[1])
local left = 0
if old then
	if not int(old) then
		return redis.error_reply('value is not an integer')
	end
	left = redis.call('PTTL', KEYS[1])
end
if left == 0 then
	redis.call('SET', KEYS[1], v, 'PX', ttl)
	return 0
end
if cmp(old, v) > 0 then
	v = old
end
if left >= ttl then
	if v ~= old then
		redis.call('SET', KEYS[1], v, 'KEEPTTL')
	end
else
	redis.call('SET', KEYS[1], v, 'PX', ttl)
end
return 0
`)

// Take implements [stepup.Registry]. window is rounded up to whole
// milliseconds, without the clock-skew margin; a window that is not positive
// is refused with [ErrBadTTL].
func (r *Registry) Take(ctx context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error) {
	ms, err := millis(window)
	if err != nil {
		return false, 0, err
	}
	v, err := take.Run(ctx, r.client, []string{r.prefix + key}, limit, ms).Int64Slice()
	if err == nil && (len(v) != 2 || v[0] < 0 || v[0] > 1 || v[1] < 0) {
		err = fmt.Errorf("unexpected script reply %v", v)
	}
	if err != nil {
		return false, 0, fmt.Errorf("redisstore: take: %w", err)
	}
	return v[0] == 1, time.Duration(v[1]) * time.Millisecond, nil
}

// Give implements [stepup.Registry].
func (r *Registry) Give(ctx context.Context, key string) error {
	if err := give.Run(ctx, r.client, []string{r.prefix + key}).Err(); err != nil {
		return fmt.Errorf("redisstore: give: %w", err)
	}
	return nil
}

// Count implements [stepup.Registry]. It returns zero and zero when there is
// no count under key.
func (r *Registry) Count(ctx context.Context, key string) (int, time.Duration, error) {
	n, left, err := readCount(count.Run(ctx, r.client, []string{r.prefix + key}))
	if err != nil {
		return 0, 0, fmt.Errorf("redisstore: count: %w", err)
	}
	return n, left, nil
}

// readCount reads count's reply.
func readCount(cmd *redis.Cmd) (int, time.Duration, error) {
	reply, err := cmd.Slice()
	if err != nil {
		return 0, 0, err
	}
	if len(reply) == 0 {
		return 0, 0, nil
	}
	if len(reply) != 2 {
		return 0, 0, fmt.Errorf("unexpected script reply %v", reply)
	}
	s, ok1 := reply[0].(string)
	left, ok2 := reply[1].(int64)
	if !ok1 || !ok2 || left < 0 {
		return 0, 0, fmt.Errorf("unexpected script reply %v", reply)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, 0, fmt.Errorf("value is not an integer: %w", err)
	}
	return n, time.Duration(left) * time.Millisecond, nil
}

// Reset implements [stepup.Registry] with DEL. Deleting a key that is not
// there is not an error.
func (r *Registry) Reset(ctx context.Context, key string) error {
	if err := r.client.Del(ctx, r.prefix+key).Err(); err != nil {
		return fmt.Errorf("redisstore: reset: %w", err)
	}
	return nil
}

// Mark implements [stepup.Registry], keeping the key for ttl plus the
// clock-skew margin. Values are compared exactly, over the whole int64
// range. ttl is rounded up to whole milliseconds; a ttl that is not positive
// is refused with [ErrBadTTL].
func (r *Registry) Mark(ctx context.Context, key string, value int64, ttl time.Duration) error {
	ms, err := r.withSkew(ttl)
	if err != nil {
		return err
	}
	if err := mark.Run(ctx, r.client, []string{r.prefix + key}, strconv.FormatInt(value, 10), ms).Err(); err != nil {
		return fmt.Errorf("redisstore: mark: %w", err)
	}
	return nil
}

// Lookup implements [stepup.Registry] with one MGET. The keys must share one
// hash tag (stepup's keys of one user do): keys with different tags are
// refused with [ErrCrossSlot], on a single server as on a cluster. A value
// that is not an integer is an error.
func (r *Registry) Lookup(ctx context.Context, keys ...string) ([]int64, error) {
	out := make([]int64, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = r.prefix + k
		if hashTag(full[i]) != hashTag(full[0]) {
			return nil, ErrCrossSlot
		}
	}
	vals, err := r.client.MGet(ctx, full...).Result()
	if err == nil && len(vals) != len(keys) {
		err = fmt.Errorf("MGET answered %d values for %d keys", len(vals), len(keys))
	}
	if err != nil {
		return nil, fmt.Errorf("redisstore: lookup: %w", err)
	}
	for i, v := range vals {
		switch v := v.(type) {
		case nil:
		case string:
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("redisstore: lookup: value %d of %d is not an integer", i+1, len(keys))
			}
			out[i] = n
		default:
			return nil, fmt.Errorf("redisstore: lookup: unexpected MGET value %T", v)
		}
	}
	return out, nil
}

// hashTag returns the part of key that Redis Cluster hashes to find its
// slot: what is between the first '{' and the first '}' after it, when that
// is not empty; else the whole key.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// withSkew returns ttl plus the clock-skew margin, in milliseconds.
func (r *Registry) withSkew(ttl time.Duration) (int64, error) {
	ms, err := millis(ttl)
	if err != nil {
		return 0, err
	}
	if ms > math.MaxInt64-r.skewMS {
		return math.MaxInt64, nil
	}
	return ms + r.skewMS, nil
}

// millis converts d to whole milliseconds, rounding up, and refuses a d that
// is not positive.
func millis(d time.Duration) (int64, error) {
	if d <= 0 {
		return 0, ErrBadTTL
	}
	return ceilMillis(d), nil
}

// ceilMillis converts d >= 0 to whole milliseconds, rounding up.
func ceilMillis(d time.Duration) int64 {
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond != 0 {
		ms++
	}
	return ms
}
