package stepup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// DefaultRegistrySize is the number of entries a [MemoryRegistry] made by
// [New] holds. See docs/registry.md for how it was sized.
const DefaultRegistrySize = 3_000_000

// MemoryRegistry is a [Registry] for a single instance. It is safe for
// concurrent use. Every entry is accounted to the user whose tag its key
// carries, exactly (no two users share a count). When it is more than 80%
// full, a user who holds more than lightShare entries and at least the
// average share of the users above lightShare is refused ([ErrRegistryFull])
// so that heavy accounts cannot deny step-up to everyone else; users holding
// no more than one ceremony needs are refused only when it is full.
type MemoryRegistry struct {
	now  func() time.Time
	max  int
	high int // above this many entries, heavy users are refused

	mu      sync.Mutex
	entries map[string]memEntry
	users   map[string]int32   // tag -> live entries
	heavy   int                // users holding more than lightShare entries
	heavyN  int                // entries held by those users
	buckets map[int64][]string // expiry second -> keys that may expire then
	cursor  int64              // every bucket before this second is dropped
}

type memEntry struct {
	v       int64
	expires int64 // unix nanoseconds
}

// lightShare is how many entries a user may always hold until the registry
// is full: more than one ceremony writes (a challenge, a counter value, a
// grant, two limits and two revocation states).
const lightShare = 16

// errNeedTTL is returned for an op that would make a key without a positive
// TTL: such a key would never expire, or at once.
var errNeedTTL = errors.New("stepup: registry: a new key needs a positive TTL")

// NewMemoryRegistry returns a registry holding at most max entries, using
// now (time.Now if nil) to expire them.
func NewMemoryRegistry(max int, now func() time.Time) *MemoryRegistry {
	if max <= 0 {
		panic("stepup: NewMemoryRegistry expects max > 0")
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryRegistry{
		now:     now,
		max:     max,
		high:    max - max/5,
		entries: make(map[string]memEntry),
		users:   make(map[string]int32),
		buckets: make(map[int64][]string),
		cursor:  now().Unix(),
	}
}

// Len returns the number of entries held. Entries are dropped within a
// second of expiring, as the registry is used.
func (m *MemoryRegistry) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// tagOf returns the {tag} of key, or the whole key when it has none.
func tagOf(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// Update implements [Registry].
func (m *MemoryRegistry) Update(_ context.Context, ops []Op, res []Result) (int, error) {
	if len(res) != len(ops) {
		return -1, fmt.Errorf("stepup: registry: %d results for %d ops", len(res), len(ops))
	}
	now := m.now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advance(now)
	failed, creates, err := m.check(ops, res, now)
	if err != nil || failed >= 0 {
		return failed, err
	}
	if creates > 0 {
		if err := m.admit(tagOf(ops[0].Key), creates); err != nil {
			return -1, err
		}
	}
	for _, op := range ops {
		m.apply(op, now)
	}
	return -1, nil
}

// live returns the unexpired entry under key.
func (m *MemoryRegistry) live(key string, now int64) (memEntry, bool) {
	e, ok := m.entries[key]
	if !ok || e.expires <= now {
		return memEntry{}, false
	}
	return e, true
}

// check fills res, finds the first failed condition and counts the keys the
// update would create.
func (m *MemoryRegistry) check(ops []Op, res []Result, now int64) (failed, creates int, err error) {
	failed = -1
	tag := ""
	for i, op := range ops {
		if i == 0 {
			tag = tagOf(op.Key)
		} else if tagOf(op.Key) != tag {
			return -1, 0, fmt.Errorf("stepup: registry: the keys of one update must share one tag")
		}
		e, ok := m.live(op.Key, now)
		res[i] = Result{}
		if ok {
			res[i] = Result{Value: e.v, TTL: time.Duration(e.expires - now)}
		}
		var cond bool
		switch op.Kind {
		case OpGet, OpGive:
			cond = true
		case OpTake, OpBelow:
			cond = e.v < op.Limit
		case OpPut, OpInit:
			cond = true
		case OpSwap:
			cond = e.v == op.Value
		default:
			return -1, 0, fmt.Errorf("stepup: registry: unknown op kind %d", op.Kind)
		}
		if !cond && failed < 0 {
			failed = i
		}
		if ok || (op.Kind == OpTake && !cond) {
			continue
		}
		makes := op.Kind == OpTake || op.Kind == OpInit ||
			(op.Kind == OpPut && op.Value != 0) || (op.Kind == OpSwap && op.New != 0)
		if makes {
			if op.TTL <= 0 {
				return -1, 0, errNeedTTL
			}
			creates++
		}
	}
	return failed, creates, nil
}

// admit reports whether the user tag may hold n more entries.
func (m *MemoryRegistry) admit(tag string, n int) error {
	total := len(m.entries) + n
	if total > m.max {
		return ErrRegistryFull
	}
	share := int(m.users[tag]) + n
	if share <= lightShare || total <= m.high {
		return nil
	}
	// The users above lightShare, this one counted as it would be.
	heavy, heavyN := m.heavy, m.heavyN+n
	if int(m.users[tag]) <= lightShare {
		heavy++
		heavyN += int(m.users[tag])
	}
	if share*heavy >= heavyN {
		return ErrRegistryFull
	}
	return nil
}

// apply performs op, whose condition holds.
func (m *MemoryRegistry) apply(op Op, now int64) {
	e, ok := m.live(op.Key, now)
	keep := func(ttl time.Duration) {
		if exp := now + int64(ttl); ttl > 0 && exp > e.expires {
			e.expires = exp
		}
	}
	switch op.Kind {
	case OpGet, OpBelow:
		return
	case OpTake:
		if !ok {
			e = memEntry{expires: now + int64(op.TTL)}
		}
		e.v++
	case OpGive:
		if !ok || e.v <= 0 {
			return
		}
		e.v--
	case OpPut:
		if op.Value == 0 {
			m.remove(op.Key)
			return
		}
		e.v = op.Value
		keep(op.TTL)
	case OpInit:
		if !ok {
			e.v = op.Value
		}
		keep(op.TTL)
	case OpSwap:
		if op.New == 0 {
			if ok {
				m.remove(op.Key)
			}
			return
		}
		e.v = op.New
		keep(op.TTL)
	}
	m.set(op.Key, e)
}

// set stores e under key and files it under the second it expires, unless
// it is filed there already.
func (m *MemoryRegistry) set(key string, e memEntry) {
	old, present := m.entries[key]
	m.entries[key] = e
	if !present {
		m.account(tagOf(key), 1)
	}
	sec := max((e.expires+int64(time.Second)-1)/int64(time.Second), m.cursor)
	if present && max((old.expires+int64(time.Second)-1)/int64(time.Second), m.cursor) == sec {
		return
	}
	m.buckets[sec] = append(m.buckets[sec], key)
}

func (m *MemoryRegistry) remove(key string) {
	if _, ok := m.entries[key]; ok {
		delete(m.entries, key)
		m.account(tagOf(key), -1)
	}
}

// account adds d to the entries of user tag.
func (m *MemoryRegistry) account(tag string, d int32) {
	old := m.users[tag]
	n := old + d
	if n == 0 {
		delete(m.users, tag)
	} else {
		m.users[tag] = n
	}
	wasHeavy, isHeavy := old > lightShare, n > lightShare
	switch {
	case wasHeavy && isHeavy:
		m.heavyN += int(d)
	case wasHeavy:
		m.heavy--
		m.heavyN -= int(old)
	case isHeavy:
		m.heavy++
		m.heavyN += int(n)
	}
}

// advance drops the buckets that have expired by now (unix nanoseconds).
func (m *MemoryRegistry) advance(now int64) {
	sec := now / int64(time.Second)
	if sec < m.cursor-1 {
		// The clock went back: buckets ahead are visited as time comes.
		m.cursor = sec + 1
		return
	}
	if sec < m.cursor {
		return
	}
	if sec-m.cursor > int64(len(m.buckets)) {
		for b := range m.buckets {
			if b <= sec {
				m.drop(b, now)
			}
		}
	} else {
		for b := m.cursor; b <= sec; b++ {
			m.drop(b, now)
		}
	}
	m.cursor = sec + 1
}

// drop deletes the expired keys of bucket b; a key extended since it was
// filed there sits in a later bucket too and stays.
func (m *MemoryRegistry) drop(b, now int64) {
	keys, ok := m.buckets[b]
	if !ok {
		return
	}
	delete(m.buckets, b)
	for _, k := range keys {
		if e, ok := m.entries[k]; ok && e.expires <= now {
			m.remove(k)
		}
	}
}
