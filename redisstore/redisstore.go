package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/passkey-stepup/stepup"
)

// ErrCrossSlot is returned by [Registry.Update] for ops whose keys do not all
// have the same hash tag. stepup never makes such an Update (all the keys of
// one Update belong to one user); it is refused on every deployment, before
// Redis is asked, so that a mistake shows on a single server as it would on
// a cluster, where the keys may live on different nodes.
var ErrCrossSlot = errors.New("redisstore: update keys do not share one hash tag")

// Registry is a [stepup.Registry] kept in Redis, for every instance of an
// application behind a load balancer to share. Each [Registry.Update] is one
// Lua script run with EVALSHA (EVAL once after the script cache was
// flushed): one round trip, atomic across any number of instances and
// clients, on a single server and on Redis Cluster (the keys of one Update
// share a hash tag, so they live in one slot).
//
// Keys hold decimal int64 strings with a PX expiry. Every expiry is a
// duration that Redis measures from the moment the script runs, never a time
// on an instance's clock: single use and revocation do not depend on the
// clocks of the instances, and no margin for clock skew is needed.
//
// Every Redis error (unreachable server, timeout, refused write, a value
// that is not an integer) is returned, wrapped, and stepup then answers 503
// service_unavailable and grants nothing: the registry fails closed. It is
// safe for concurrent use. It needs Redis 7.0 or later.
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
// It panics if prefix holds '{' or '}': the prefix comes before the user's
// hash tag in each key, and a brace in it would change which part of the key
// Redis Cluster hashes.
func WithKeyPrefix(prefix string) Option {
	if strings.ContainsAny(prefix, "{}") {
		panic(fmt.Sprintf("redisstore: WithKeyPrefix(%q): a prefix must not hold '{' or '}'", prefix))
	}
	return func(r *Registry) { r.prefix = prefix }
}

// New returns a Registry that keeps its keys in Redis through client, which
// may be a *redis.Client, a *redis.ClusterClient or a failover client. The
// client is the caller's to configure (timeouts, retries, TLS) and to close.
// New panics if client is nil.
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

// kindNames are the names of the op kinds in the update script.
var kindNames = [...]string{
	stepup.OpGet:   "get",
	stepup.OpTake:  "take",
	stepup.OpBelow: "below",
	stepup.OpGive:  "give",
	stepup.OpPut:   "put",
	stepup.OpInit:  "init",
	stepup.OpSwap:  "swap",
}

// argsPerOp is how many ARGV each op passes to the update script.
const argsPerOp = 5

// Update implements [stepup.Registry] with one run of a Lua script (see
// updateScript) on the keys of ops. The keys must share one hash tag
// (stepup's keys of one user do): keys with different tags are refused with
// [ErrCrossSlot], on a single server as on a cluster. TTLs are rounded up to
// whole milliseconds. A value that is not a decimal int64 is an error, and
// so is an op that would make a key without a positive TTL.
func (r *Registry) Update(ctx context.Context, ops []stepup.Op, res []stepup.Result) (int, error) {
	if len(res) != len(ops) {
		return -1, fmt.Errorf("redisstore: update: %d results for %d ops", len(res), len(ops))
	}
	if len(ops) == 0 {
		return -1, nil
	}
	keys := make([]string, len(ops))
	args := make([]any, 0, argsPerOp*len(ops))
	for i, op := range ops {
		if int(op.Kind) >= len(kindNames) || kindNames[op.Kind] == "" {
			return -1, fmt.Errorf("redisstore: update: unknown op kind %d", op.Kind)
		}
		keys[i] = r.prefix + op.Key
		if hashTag(keys[i]) != hashTag(keys[0]) {
			return -1, ErrCrossSlot
		}
		args = append(args, kindNames[op.Kind],
			strconv.FormatInt(op.Value, 10), strconv.FormatInt(op.New, 10), strconv.FormatInt(op.Limit, 10),
			ceilMillis(op.TTL))
	}
	reply, err := updateScript.Run(ctx, r.client, keys, args...).Slice()
	if err != nil {
		return -1, fmt.Errorf("redisstore: update: %w", err)
	}
	failed, err := readUpdate(reply, res)
	if err != nil {
		return -1, fmt.Errorf("redisstore: update: %w", err)
	}
	return failed, nil
}

// readUpdate reads the update script's reply, {failed, value 1, ms left 1,
// value 2, ...}, into res and returns failed.
func readUpdate(reply []any, res []stepup.Result) (int, error) {
	if len(reply) != 1+2*len(res) {
		return -1, fmt.Errorf("unexpected script reply of %d values for %d ops", len(reply), len(res))
	}
	failed, ok := reply[0].(int64)
	if !ok || failed < -1 || failed >= int64(len(res)) {
		return -1, fmt.Errorf("unexpected script reply %v", reply[0])
	}
	for i := range res {
		s, ok1 := reply[1+2*i].(string)
		ms, ok2 := reply[2+2*i].(int64)
		if !ok1 || !ok2 || ms < 0 {
			return -1, fmt.Errorf("unexpected script reply %v %v", reply[1+2*i], reply[2+2*i])
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return -1, fmt.Errorf("value %d of %d is not an integer", i+1, len(res))
		}
		res[i] = stepup.Result{Value: v, TTL: time.Duration(ms) * time.Millisecond}
	}
	return int(failed), nil
}

// updateScript applies one Update. KEYS[i] is the key of op i; ARGV holds
// five values per op: its kind (kindNames), Value, New and Limit as decimal
// strings, and its TTL in milliseconds (0: none). It returns {failed, then
// for each op the value (a decimal string, "0" when absent) and the
// milliseconds left (0 when absent) of its key before the update}, failed
// being the 0-based index of the first op whose condition fails, or -1.
//
// It reads each key once (GET, PTTL), checks every condition against that,
// and only when all hold applies the ops in order to a copy of the values in
// the script, then writes each key that changed once: SET with PX when the
// op set its expiry, SET with KEEPTTL when only the value changed, DEL when
// it is gone. A key in its last millisecond (PTTL 0) counts as gone, as it
// is a moment later. A key found without an expiry (stepup makes none; one
// written by hand, say) counts as expiring now: an op that keeps a key for
// at least TTL gives it TTL, and a Take gives it its window at once, even
// when the update fails, so that such a count cannot lock a user out for
// good; its time left reads 0.
//
// Lua numbers are doubles, exact only up to 2^53: values are compared
// exactly as strings (cmp), counted up and down as strings (inc, dec), and
// never rewritten from a number. The "#!lua" line (Redis 7.0) makes Redis
// refuse the whole script up front when it cannot write (out of memory),
// rather than at its first write; ACL key rules are checked for every key
// in KEYS before it runs. So an update is applied whole or not at all.
var updateScript = redis.NewScript(`#!lua
` + luaInt + luaCmp + luaIncDec + `
local n = #KEYS
local st, order = {}, {}
for i = 1, n do
	local k = KEYS[i]
	if not st[k] then
		local s = {v = false, ttl = 0}
		local v = redis.call('GET', k)
		if v then
			if not int(v) then
				return redis.error_reply('ERR the value of ' .. k .. ' is not an integer')
			end
			s.found = true
			local left = redis.call('PTTL', k)
			if left ~= 0 then
				s.v, s.ttl = v, left
			end
		end
		st[k] = s
		order[#order + 1] = k
	end
end
for i = 1, n do
	local s, kind, ttl = st[KEYS[i]], ARGV[5 * i - 4], tonumber(ARGV[5 * i])
	if kind == 'take' and s.v and s.ttl < 0 and ttl > 0 then
		redis.call('PEXPIRE', KEYS[i], ttl)
		s.ttl = ttl
	end
end

local out, failed = {}, -1
for i = 1, n do
	local s = st[KEYS[i]]
	local kind, value, new, limit, ttl = ARGV[5 * i - 4], ARGV[5 * i - 3], ARGV[5 * i - 2], ARGV[5 * i - 1], tonumber(ARGV[5 * i])
	local cur = s.v or '0'
	out[2 * i], out[2 * i + 1] = cur, math.max(s.ttl, 0)
	local ok = true
	if kind == 'take' or kind == 'below' then
		ok = cmp(cur, limit) < 0
	elseif kind == 'swap' then
		ok = cur == value
	end
	if not ok and failed < 0 then
		failed = i - 1
	end
	if not s.v and ttl <= 0 and ((kind == 'take' and ok) or kind == 'init' or
		(kind == 'put' and value ~= '0') or (kind == 'swap' and ok and new ~= '0')) then
		return redis.error_reply('ERR a new key needs a positive TTL')
	end
end
out[1] = failed
if failed >= 0 then
	return out
end

local function keep(s, ttl)
	if ttl > 0 and s.ttl < ttl then
		s.ttl, s.exp = ttl, true
	end
end
local function store(s, v, ttl)
	if s.v or ttl > 0 then
		if s.v ~= v then
			s.v, s.dirty = v, true
		end
		keep(s, ttl)
	end
end
for i = 1, n do
	local s = st[KEYS[i]]
	local kind, value, new, ttl = ARGV[5 * i - 4], ARGV[5 * i - 3], ARGV[5 * i - 2], tonumber(ARGV[5 * i])
	if kind == 'take' then
		if s.v then
			s.v, s.dirty = inc(s.v), true
		elseif ttl > 0 then
			s.v, s.ttl, s.exp, s.dirty = '1', ttl, true, true
		end
	elseif kind == 'give' then
		if s.v and cmp(s.v, '0') > 0 then
			s.v, s.dirty = dec(s.v), true
		end
	elseif kind == 'put' or kind == 'swap' then
		local v = value
		if kind == 'swap' then
			v = new
		end
		if v == '0' then
			if s.v then
				s.v, s.ttl, s.exp, s.dirty = false, 0, false, true
			end
		else
			store(s, v, ttl)
		end
	elseif kind == 'init' then
		if s.v then
			keep(s, ttl)
		else
			store(s, value, ttl)
		end
	end
end
for _, k in ipairs(order) do
	local s = st[k]
	if s.dirty or s.exp then
		if not s.v then
			if s.found then
				redis.call('DEL', k)
			end
		elseif s.exp then
			redis.call('SET', k, s.v, 'PX', s.ttl)
		else
			redis.call('SET', k, s.v, 'KEEPTTL')
		end
	end
end
return out
`)

// luaInt defines int(v): the number held in a value read with GET, or nil
// when the value is not an int64 written the way Redis and Go write them
// (no sign but '-', no leading zero). The number is exact only up to 2^53:
// it tells a valid value from another, and values are otherwise compared as
// strings (see luaCmp).
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

// luaCmp defines cmp(a, b): -1, 0 or 1 as a is less than, equal to or
// greater than b, two integers written as int accepts them, exactly.
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

// luaIncDec defines inc(v), v plus one, for v below the int64 maximum, and
// dec(v), v minus one, for v above zero, on decimal strings, exactly.
const luaIncDec = `
local function up(d)
	local i = #d
	while i > 0 and d:byte(i) == 57 do
		i = i - 1
	end
	if i == 0 then
		return '1' .. string.rep('0', #d)
	end
	return d:sub(1, i - 1) .. string.char(d:byte(i) + 1) .. string.rep('0', #d - i)
end
local function down(d)
	local i = #d
	while d:byte(i) == 48 do
		i = i - 1
	end
	local s = (d:sub(1, i - 1) .. string.char(d:byte(i) - 1) .. string.rep('9', #d - i)):gsub('^0+', '')
	if s == '' then
		return '0'
	end
	return s
end
local function inc(v)
	if v:sub(1, 1) ~= '-' then
		return up(v)
	end
	local m = down(v:sub(2))
	if m == '0' then
		return '0'
	end
	return '-' .. m
end
local function dec(v)
	return down(v)
end
`

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

// ceilMillis converts d to whole milliseconds, rounding up; 0 when d is not
// positive.
func ceilMillis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond != 0 {
		ms++
	}
	return ms
}
