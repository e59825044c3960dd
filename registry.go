package stepup

import (
	"context"
	"errors"
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

// ErrRegistryFull is returned by [MemoryRegistry] when it cannot record one
// more entry: it holds its maximum, or it is nearly full and the user the key
// belongs to already holds more than an average user's share. stepup answers
// 503 and grants nothing. An entry is never dropped before it expires,
// because that would let its challenge or grant be used again.
var ErrRegistryFull = errors.New("stepup: registry full")

// Registry is the server-side state that makes challenges and one-time grants
// single use, limits each user's attempts, and remembers revocations. A
// cookie session store cannot do any of it: a client can always send an
// older copy of its cookie. Share one Registry (such as the Redis one in the
// redisstore module) between all instances behind a load balancer.
//
// Keys are opaque strings made by stepup, of the form
// "stepup:{tag}:kind:...", where tag is the user's handle in base64url
// (the Redis Cluster hash-tag convention). They never contain a challenge,
// only a hash of it. Every key belongs to exactly one user, all keys passed
// to one Lookup have the same tag, and a registry may use the tag to keep a
// user's keys together and to bound each user's share.
//
// TTLs and windows are measured on the caller's clock. A registry shared by
// instances whose clocks differ keeps entries a little longer (redisstore
// adds a margin); a registry of one instance needs no margin.
//
// Errors mean the registry could not be reached or updated: stepup then fails
// closed (503, no grant). Not finding a key is not an error.
type Registry interface {
	// Consume records key as used for ttl. It reports true only for the
	// first call with key within ttl: of concurrent calls with one key,
	// across every instance sharing the registry, exactly one gets true.
	// Lookup reads a consumed key as 1.
	Consume(ctx context.Context, key string, ttl time.Duration) (first bool, err error)
	// Take reserves one unit of a limit: when fewer than limit units are
	// taken under key in the current window, it takes one more and reports
	// true; otherwise it takes nothing and reports false. Either way it
	// returns the time left in the window, which is fixed: it starts with
	// the first Take and lasts window. Of concurrent calls, across every
	// instance, never more than limit get true in one window.
	Take(ctx context.Context, key string, limit int, window time.Duration) (ok bool, retryAfter time.Duration, err error)
	// Give hands back one unit taken under key, if its window has not
	// ended; the count never goes below zero.
	Give(ctx context.Context, key string) error
	// Count returns the units taken under key and the time left in its
	// window; zero and zero when there is none.
	Count(ctx context.Context, key string) (count int, retryAfter time.Duration, err error)
	// Reset forgets key.
	Reset(ctx context.Context, key string) error
	// Mark records value under key for at least ttl. If key holds a value
	// already, the greater value and the later expiry are kept.
	Mark(ctx context.Context, key string, value int64, ttl time.Duration) error
	// Lookup returns the value under each key (a count, a mark, or 1 for a
	// consumed key), or 0 where there is none, in one round trip.
	Lookup(ctx context.Context, keys ...string) ([]int64, error)
}

// DefaultRegistrySize is the number of entries a [MemoryRegistry] made by
// [New] holds: enough for 10,000 step-ups a second, each challenge
// remembered for three minutes and its counter value for 30 seconds, below
// the 80% mark where the heaviest users start to be refused. An entry takes
// about 25 bytes, so a full registry takes about 60 MB; an idle one takes
// next to nothing.
const DefaultRegistrySize = 3_000_000

// MemoryRegistry is a [Registry] for a single instance. It is safe for
// concurrent use and built so that it is never the bottleneck of step-up:
//
//   - an entry is a 64-bit keyed hash of its key, under a secret seed (a
//     collision, about one in 10^7 at full size, makes a fresh key look used,
//     or two counts one);
//   - entries expire in one-second buckets, dropped a bucket at a time, so no
//     operation sweeps the whole registry;
//   - an entry is kept for exactly its TTL, rounded up to the second;
//   - when it is more than 80% full, a user who holds more entries than the
//     average user is refused first ([ErrRegistryFull]), so that one heavy
//     account cannot deny step-up to everyone else.
type MemoryRegistry struct {
	now     func() time.Time
	max     int
	high    int          // above this many entries, heavy users are refused
	seed    maphash.Seed // for keys
	tagSeed maphash.Seed // for owner slots

	mu      sync.Mutex
	used    hashSet             // consumed keys
	vals    map[uint64]memValue // counts and marks
	buckets map[int64]*keyList  // expiry second -> keys that may expire then
	free    []*[chunkLen]uint64 // chunks of dropped buckets, for reuse
	cursor  int64               // every bucket before this second is dropped
	share   [ownerSlots]int32   // live entries per owner slot
	owners  int                 // owner slots with a live entry
}

// memValue is a count (with the end of its window) or a mark.
type memValue struct {
	expires int64 // unix nanoseconds
	v       int64
}

// lightShare is how many entries a user may always hold, full or not: more
// than a user within the default limits ever needs.
const lightShare = 64

// keyList is the keys of one expiry bucket, in chunks: the last chunk holds
// last keys, the others are full.
type keyList struct {
	chunks []*[chunkLen]uint64
	last   int
}

const (
	chunkLen      = 512
	maxFreeChunks = 1024
)

// ownerSlots is the number of per-user accounting slots. A user's keys all
// land in one slot, chosen by a hash of the key's tag; users who share a slot
// share its count.
const ownerSlots = 1 << 16

// NewMemoryRegistry returns a registry holding at most max entries, using
// now (time.Now if nil) for expiry.
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
		seed:    maphash.MakeSeed(),
		tagSeed: maphash.MakeSeed(),
		used:    newHashSet(),
		vals:    make(map[uint64]memValue),
		buckets: make(map[int64]*keyList),
		cursor:  now().Unix(),
	}
}

// Len returns the number of entries held. Entries are dropped within a
// second of expiring, as the registry is used.
func (m *MemoryRegistry) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.used.n + len(m.vals)
}

// hash returns the map key of key: 48 bits of a keyed hash of the whole key,
// and in the low 16 bits the owner slot of its tag.
func (m *MemoryRegistry) hash(key string) uint64 {
	return maphash.String(m.seed, key)&^(ownerSlots-1) | uint64(m.slot(key))
}

// slot returns the owner slot of key: a hash of its {tag}, or of the whole
// key when it has none.
func (m *MemoryRegistry) slot(key string) uint16 {
	tag := key
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			tag = key[i+1 : i+1+j]
		}
	}
	return uint16(maphash.String(m.tagSeed, tag))
}

// advance drops the buckets that have expired by now (unix nanoseconds). The
// caller holds m.mu.
func (m *MemoryRegistry) advance(now int64) {
	sec := now / int64(time.Second) // buckets up to sec hold only expired keys
	if sec < m.cursor-1 {
		// The clock went back: new entries go into buckets from here on,
		// and the buckets ahead are visited as time comes to them.
		m.cursor = sec + 1
		return
	}
	if sec < m.cursor {
		return
	}
	if sec-m.cursor > int64(len(m.buckets)) {
		// A long jump of the clock: visit the buckets there are, not every
		// second in between.
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

// drop deletes the expired keys of bucket b. A value key may also sit in a
// later bucket (Mark extended it); it is deleted only once it has expired.
func (m *MemoryRegistry) drop(b, now int64) {
	list, ok := m.buckets[b]
	if !ok {
		return
	}
	delete(m.buckets, b)
	for ci, c := range list.chunks {
		n := chunkLen
		if ci == len(list.chunks)-1 {
			n = list.last
		}
		for _, k := range c[:n] {
			if m.used.remove(k) {
				m.release(k)
			} else if v, ok := m.vals[k]; ok && v.expires <= now {
				delete(m.vals, k)
				m.release(k)
			}
		}
		if len(m.free) < maxFreeChunks {
			m.free = append(m.free, c)
		}
	}
	m.used.shrink()
}

func (m *MemoryRegistry) release(k uint64) {
	s := &m.share[uint16(k)]
	*s--
	if *s == 0 {
		m.owners--
	}
}

// admit reports whether one more entry for map key k may be stored. A mark
// (a revocation) is exempt from the heavy-user rule: the heaviest user is
// typically the one an administrator is locking out. The caller holds m.mu.
func (m *MemoryRegistry) admit(k uint64, mark bool) error {
	n := m.used.n + len(m.vals)
	if n >= m.max {
		return ErrRegistryFull
	}
	if share := int(m.share[uint16(k)]); !mark && n >= m.high && share >= lightShare && share >= n/max(m.owners, 1) {
		return ErrRegistryFull
	}
	return nil
}

// track files k under the bucket of its expiry and counts it for its owner.
func (m *MemoryRegistry) track(k uint64, expires int64, isNew bool) {
	// Never a bucket behind the cursor: it would not be visited again.
	b := max((expires+int64(time.Second)-1)/int64(time.Second), m.cursor)
	list := m.buckets[b]
	if list == nil {
		list = &keyList{last: chunkLen}
		m.buckets[b] = list
	}
	if list.last == chunkLen {
		var c *[chunkLen]uint64
		if n := len(m.free); n > 0 {
			c, m.free = m.free[n-1], m.free[:n-1]
		} else {
			c = new([chunkLen]uint64)
		}
		list.chunks = append(list.chunks, c)
		list.last = 0
	}
	list.chunks[len(list.chunks)-1][list.last] = k
	list.last++
	if isNew {
		s := &m.share[uint16(k)]
		if *s == 0 {
			m.owners++
		}
		*s++
	}
}

// value returns the live value under k. The caller holds m.mu.
func (m *MemoryRegistry) value(k uint64, now int64) (memValue, bool) {
	v, ok := m.vals[k]
	if !ok || v.expires <= now {
		return memValue{}, false
	}
	return v, true
}

// lock takes m.mu, drops what has expired and returns the time.
func (m *MemoryRegistry) lock() int64 {
	now := m.now().UnixNano()
	m.mu.Lock()
	m.advance(now)
	return now
}

// atLeastASecond gives a second for a non-positive TTL: such a caller has
// a bug, and a key that would expire at once would be no record at all.
func atLeastASecond(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Second
	}
	return d
}

// Consume implements [Registry].
func (m *MemoryRegistry) Consume(_ context.Context, key string, ttl time.Duration) (bool, error) {
	ttl = atLeastASecond(ttl)
	k := m.hash(key)
	now := m.lock()
	defer m.mu.Unlock()
	if m.used.has(k) {
		return false, nil
	}
	if err := m.admit(k, false); err != nil {
		return false, err
	}
	m.used.add(k)
	m.track(k, now+int64(ttl), true)
	return true, nil
}

// Take implements [Registry].
func (m *MemoryRegistry) Take(_ context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error) {
	window = atLeastASecond(window)
	k := m.hash(key)
	now := m.lock()
	defer m.mu.Unlock()
	v, ok := m.value(k, now)
	if !ok {
		// A new window. An expired entry not yet dropped is reused.
		_, present := m.vals[k]
		if !present {
			if err := m.admit(k, false); err != nil {
				return false, 0, err
			}
		}
		v = memValue{expires: now + int64(window)}
		m.vals[k] = v
		m.track(k, v.expires, !present)
	}
	left := time.Duration(v.expires - now)
	if v.v >= int64(limit) {
		return false, left, nil
	}
	v.v++
	m.vals[k] = v
	return true, left, nil
}

// Give implements [Registry].
func (m *MemoryRegistry) Give(_ context.Context, key string) error {
	k := m.hash(key)
	now := m.lock()
	defer m.mu.Unlock()
	if v, ok := m.value(k, now); ok && v.v > 0 {
		v.v--
		m.vals[k] = v
	}
	return nil
}

// Count implements [Registry].
func (m *MemoryRegistry) Count(_ context.Context, key string) (int, time.Duration, error) {
	k := m.hash(key)
	now := m.lock()
	defer m.mu.Unlock()
	v, ok := m.value(k, now)
	if !ok {
		return 0, 0, nil
	}
	return int(v.v), time.Duration(v.expires - now), nil
}

// Reset implements [Registry].
func (m *MemoryRegistry) Reset(_ context.Context, key string) error {
	k := m.hash(key)
	m.lock()
	defer m.mu.Unlock()
	if _, ok := m.vals[k]; ok {
		delete(m.vals, k)
		m.release(k)
	}
	return nil
}

// Mark implements [Registry].
func (m *MemoryRegistry) Mark(_ context.Context, key string, value int64, ttl time.Duration) error {
	ttl = atLeastASecond(ttl)
	k := m.hash(key)
	now := m.lock()
	defer m.mu.Unlock()
	expires := now + int64(ttl)
	old, exists := m.vals[k]
	if !exists {
		if err := m.admit(k, true); err != nil {
			return err
		}
	} else if old.expires > now {
		value = max(value, old.v)
		if old.expires >= expires {
			m.vals[k] = memValue{expires: old.expires, v: value}
			return nil
		}
	}
	m.vals[k] = memValue{expires: expires, v: value}
	m.track(k, expires, !exists)
	return nil
}

// Lookup implements [Registry].
func (m *MemoryRegistry) Lookup(_ context.Context, keys ...string) ([]int64, error) {
	out := make([]int64, len(keys))
	hs := make([]uint64, len(keys))
	for i, key := range keys {
		hs[i] = m.hash(key)
	}
	now := m.lock()
	defer m.mu.Unlock()
	for i, k := range hs {
		if m.used.has(k) {
			out[i] = 1
		} else if v, ok := m.value(k, now); ok {
			out[i] = v.v
		}
	}
	return out, nil
}

// hashSet is a set of non-zero 64-bit hashes: open addressing with linear
// probing and backward-shift deletion, 8 bytes a slot, at most 75% full. It
// takes about a third of the memory of a Go map for the same keys.
type hashSet struct {
	slots []uint64 // 0 is an empty slot
	n     int
	mask  uint64
}

const minSetSlots = 1 << 10

func newHashSet() hashSet {
	return hashSet{slots: make([]uint64, minSetSlots), mask: minSetSlots - 1}
}

// home is the slot where a probe for k starts. The low 16 bits of a key are
// its owner slot, so the index comes from the hashed high bits.
func (s *hashSet) home(k uint64) uint64 { return (k >> 16) & s.mask }

func nonZero(k uint64) uint64 {
	if k == 0 {
		return 1 << 16
	}
	return k
}

func (s *hashSet) has(k uint64) bool {
	k = nonZero(k)
	for i := s.home(k); ; i = (i + 1) & s.mask {
		switch s.slots[i] {
		case k:
			return true
		case 0:
			return false
		}
	}
}

// add inserts k; it reports false if k was there.
func (s *hashSet) add(k uint64) bool {
	k = nonZero(k)
	if (s.n+1)*4 > len(s.slots)*3 {
		s.resize(len(s.slots) * 2)
	}
	for i := s.home(k); ; i = (i + 1) & s.mask {
		switch s.slots[i] {
		case k:
			return false
		case 0:
			s.slots[i] = k
			s.n++
			return true
		}
	}
}

// remove deletes k, shifting back the keys probed past it, so that no
// tombstones are left; it reports whether k was there.
func (s *hashSet) remove(k uint64) bool {
	k = nonZero(k)
	i := s.home(k)
	for ; s.slots[i] != k; i = (i + 1) & s.mask {
		if s.slots[i] == 0 {
			return false
		}
	}
	s.n--
	for {
		s.slots[i] = 0
		j := i
		for {
			j = (j + 1) & s.mask
			if s.slots[j] == 0 {
				return true
			}
			h := s.home(s.slots[j])
			// A key whose home lies cyclically in (i, j] stays.
			if (i <= j && i < h && h <= j) || (i > j && (i < h || h <= j)) {
				continue
			}
			break
		}
		s.slots[i] = s.slots[j]
		i = j
	}
}

// shrink halves the table while it is less than a sixth full.
func (s *hashSet) shrink() {
	size := len(s.slots)
	for size > minSetSlots && s.n*6 < size {
		size /= 2
	}
	if size != len(s.slots) {
		s.resize(size)
	}
}

func (s *hashSet) resize(size int) {
	old := s.slots
	s.slots, s.mask, s.n = make([]uint64, size), uint64(size-1), 0
	for _, k := range old {
		if k != 0 {
			s.add(k)
		}
	}
}
