package stepup

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrRegistryFull is returned by [MemoryRegistry] when it holds its maximum
// number of unexpired entries. stepup answers 503 and grants nothing: an entry
// is never dropped before it expires, because that would let its challenge be
// replayed.
var ErrRegistryFull = errors.New("stepup: registry full")

// Registry is the server-side state that makes a challenge single use and
// limits failed attempts. A cookie session store cannot do either: a client
// can always send an older cookie again. Share one Registry (such as the
// Redis one in the redisstore module) between all instances behind a load
// balancer.
//
// Keys are opaque strings made by stepup; they never contain a challenge,
// only a hash of it. Errors mean the registry could not be reached or
// updated: stepup then fails closed (503, no grant). Not finding a key is not
// an error.
type Registry interface {
	// Consume records key as used for ttl. It reports true only for the
	// first call with key within ttl: of concurrent calls with one key,
	// across every instance sharing the registry, exactly one gets true.
	Consume(ctx context.Context, key string, ttl time.Duration) (first bool, err error)
	// AddFailure counts one failure under key in a fixed window of length
	// window that starts with the first failure, and returns the count so
	// far and the time left in the window.
	AddFailure(ctx context.Context, key string, window time.Duration) (count int, retryAfter time.Duration, err error)
	// Failures returns the count under key and the time left in its window;
	// zero and zero when there is none.
	Failures(ctx context.Context, key string) (count int, retryAfter time.Duration, err error)
	// ResetFailures forgets the count under key.
	ResetFailures(ctx context.Context, key string) error
}

// DefaultRegistrySize is the number of entries a [MemoryRegistry] made by
// [New] holds: about 10 MB at most.
const DefaultRegistrySize = 100_000

// MemoryRegistry is a [Registry] for a single instance. Its memory is
// bounded: expired entries are evicted as it goes, and when it holds max
// unexpired entries, new ones are refused with [ErrRegistryFull]. It is safe
// for concurrent use.
type MemoryRegistry struct {
	now func() time.Time
	max int

	mu        sync.Mutex
	entries   map[string]memEntry
	lastSweep int64 // unix nanoseconds
	nextSweep int64
}

type memEntry struct {
	expires int64 // unix nanoseconds
	count   int
}

// NewMemoryRegistry returns a registry holding at most max entries, using
// now (time.Now if nil) for expiry.
func NewMemoryRegistry(max int, now func() time.Time) *MemoryRegistry {
	if max <= 0 {
		panic("stepup: NewMemoryRegistry expects max > 0")
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryRegistry{now: now, max: max, entries: make(map[string]memEntry)}
}

// Len returns the number of entries held, expired ones included until the
// next sweep.
func (m *MemoryRegistry) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// live returns the unexpired entry under key. The caller holds m.mu.
func (m *MemoryRegistry) live(key string, now int64) (memEntry, bool) {
	e, ok := m.entries[key]
	if ok && e.expires <= now {
		delete(m.entries, key)
		return memEntry{}, false
	}
	return e, ok
}

// insert stores e under key. Expired entries are swept once a minute, and
// when the registry is full, at most once a second so that a full registry
// costs a flood of inserts little. The caller holds m.mu.
func (m *MemoryRegistry) insert(key string, e memEntry, now int64) error {
	if _, exists := m.entries[key]; !exists {
		full := len(m.entries) >= m.max
		if now >= m.nextSweep || (full && now >= m.lastSweep+int64(time.Second)) {
			for k, old := range m.entries {
				if old.expires <= now {
					delete(m.entries, k)
				}
			}
			m.lastSweep, m.nextSweep = now, now+int64(time.Minute)
		}
		if len(m.entries) >= m.max {
			return ErrRegistryFull
		}
	}
	m.entries[key] = e
	return nil
}

// Consume implements [Registry].
func (m *MemoryRegistry) Consume(_ context.Context, key string, ttl time.Duration) (bool, error) {
	now := m.now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, used := m.live(key, now); used {
		return false, nil
	}
	if err := m.insert(key, memEntry{expires: now + int64(ttl)}, now); err != nil {
		return false, err
	}
	return true, nil
}

// AddFailure implements [Registry].
func (m *MemoryRegistry) AddFailure(_ context.Context, key string, window time.Duration) (int, time.Duration, error) {
	now := m.now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.live(key, now)
	if !ok {
		e = memEntry{expires: now + int64(window)}
	}
	e.count++
	if err := m.insert(key, e, now); err != nil {
		return 0, 0, err
	}
	return e.count, time.Duration(e.expires - now), nil
}

// Failures implements [Registry].
func (m *MemoryRegistry) Failures(_ context.Context, key string) (int, time.Duration, error) {
	now := m.now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.live(key, now)
	if !ok {
		return 0, 0, nil
	}
	return e.count, time.Duration(e.expires - now), nil
}

// ResetFailures implements [Registry].
func (m *MemoryRegistry) ResetFailures(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.entries, key)
	return nil
}
