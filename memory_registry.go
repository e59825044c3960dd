package stepup

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultRegistrySize is the number of entries a [MemoryRegistry] made by
// [New] holds. See docs/registry.md for how it was sized.
const DefaultRegistrySize = 3_000_000

// MemoryRegistry is a [Registry] for a single instance. It is safe for
// concurrent use.
//
// Every entry counts against the user whose tag its key carries, exactly:
// no two users share a count. When an update would add entries, it is
// refused ([ErrRegistryFull]) by this rule, so that the accounts holding the
// most are refused first and an account flood cannot take the room of the
// users holding little:
//
//   - a user holding at most lightShare entries after the update (16: one
//     ceremony needs 6, a returning user holds a few more) is admitted until
//     the registry is full;
//   - any user, until it is 80% full;
//   - from 80% to 90%, a user holding more than lightShare only up to its
//     fair share: the room below the 80% mark that the light users leave,
//     split evenly among the users holding more than lightShare;
//   - past 90%, none of those.
//
// An entry is a 24-byte slot of an open-addressing table that is at most
// 80% full when the registry is (30 bytes an entry then), plus about 50
// bytes per user holding entries; an idle registry takes next to nothing.
// A key is kept as a 64-bit word under a secret seed: the low bits number
// the user (b bits, enough for max users: 22 at the default size), the
// others are a keyed hash of the key. A fresh key of a user holding k
// entries is read as one of them with probability about k in 2^(64-b)
// (one in 10^12 for a user holding 6 at the default size, one in 10^9 for
// an account holding 1,300), and the two keys then share one entry
// (docs/registry.md says what that does). Expired entries are dropped by a
// sweep that visits the whole table once a second of the registry's clock,
// a slice at every update. docs/registry.md has the sizing.
type MemoryRegistry struct {
	now       func() time.Time
	max       int
	high      int          // past this many entries, the fair share applies
	heavyCap  int          // past this many, only users holding at most lightShare are admitted
	seed      maphash.Seed // of keys
	tagSeed   maphash.Seed // of tags
	ownerBits uint         // the low bits of a word: the owner's number
	ownerMask uint64

	mu     sync.Mutex
	tab    table
	users  users
	lightN int   // entries held by users holding at most lightShare
	heavyN int   // entries held by the others
	heavy  int   // users holding more than lightShare
	swept  int64 // registry time (unix ns) the sweep has caught up with
	cursor int   // the next slot the sweep visits
}

// lightShare is how many entries a user may always hold until the registry
// is full: more than one ceremony writes (a challenge, a counter value, a
// grant, two limits and two revocation states), and a few grants more.
const lightShare = 16

// sweepPeriod is how often the sweep visits every slot of the table, on the
// registry's clock.
const sweepPeriod = time.Second

// maxMemoryRegistrySize bounds NewMemoryRegistry's max, so that a user's
// number and at least 32 bits of a key's hash fit in a word.
const maxMemoryRegistrySize = 1<<31 - 1

// errNeedTTL is returned for an op that would make a key without a positive
// TTL: such a key would never expire, or at once.
var errNeedTTL = errors.New("stepup: registry: a new key needs a positive TTL")

// NewMemoryRegistry returns a registry holding at most max entries, using
// now (time.Now if nil) to expire them. It panics unless 0 < max < 2^31.
func NewMemoryRegistry(max int, now func() time.Time) *MemoryRegistry {
	if max <= 0 || max > maxMemoryRegistrySize {
		panic("stepup: NewMemoryRegistry expects 0 < max < 2^31")
	}
	if now == nil {
		now = time.Now
	}
	// Numbers 1..max+1: a user is numbered while it holds an entry, and one
	// more may be numbered during an update.
	ownerBits := uint(bits.Len64(uint64(max) + 1))
	m := &MemoryRegistry{
		now:       now,
		max:       max,
		high:      max - max/5,
		heavyCap:  max - max/10,
		seed:      maphash.MakeSeed(),
		tagSeed:   maphash.MakeSeed(),
		ownerBits: ownerBits,
		ownerMask: 1<<ownerBits - 1,
		swept:     now().UnixNano(),
	}
	m.tab.init(m.fit(0, 60))
	m.users.init()
	return m
}

// Len returns the number of entries held. Entries are dropped within about
// a second of expiring, as the registry is used.
func (m *MemoryRegistry) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tab.n
}

// tagOf returns the {tag} of key, or the whole key when it has none.
func tagOf(key string) string {
	tag, _ := tagSpan(key)
	return tag
}

// tagSpan returns the {tag} of key and the length of key through its '}'
// (0 when it has none, and then the whole key as the tag).
func tagSpan(key string) (string, int) {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j], i + j + 2
		}
	}
	return key, 0
}

// Update implements [Registry].
func (m *MemoryRegistry) Update(_ context.Context, ops []Op, res []Result) (int, error) {
	if len(res) != len(ops) {
		return -1, fmt.Errorf("stepup: registry: %d results for %d ops", len(res), len(ops))
	}
	if len(ops) == 0 {
		return -1, nil
	}
	// Hash outside the lock: the tag once, each key without its owner bits.
	tag, end := tagSpan(ops[0].Key)
	head := ops[0].Key[:end] // keys starting as the first one, through its '}', share its tag
	var buf [16]uint64
	hs := buf[:0]
	if len(ops) > len(buf) {
		hs = make([]uint64, 0, len(ops))
	}
	for _, op := range ops {
		if (head == "" || !strings.HasPrefix(op.Key, head)) && tagOf(op.Key) != tag {
			return -1, errors.New("stepup: registry: the keys of one update must share one tag")
		}
		hs = append(hs, maphash.String(m.seed, op.Key)&^m.ownerMask)
	}
	th := maphash.String(m.tagSeed, tag)

	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now().UnixNano()
	m.sweep(now)
	u := m.users.find(th)
	failed, creates, err := m.check(ops, hs, u, res, now)
	if err != nil || failed >= 0 {
		return failed, err
	}
	if creates > 0 {
		if err := m.admit(u, creates); err != nil {
			return -1, err
		}
		m.reserve(creates)
	}
	for i, op := range ops {
		u = m.apply(op, hs[i], u, th, now)
	}
	if u != 0 && m.users.recs[u].n == 0 {
		m.users.release(u)
	}
	return -1, nil
}

// slot returns the slot of the key whose hash is h, of user u (0: a user
// holding nothing), and whether it holds a live entry. A slot whose entry
// has expired but is not yet swept is returned, not live.
func (m *MemoryRegistry) slot(h uint64, u uint32, now int64) (int, bool) {
	if u == 0 {
		return -1, false
	}
	i := m.tab.find(h | uint64(u))
	return i, i >= 0 && m.tab.slots[i].exp > now
}

// check fills res, finds the first failed condition and counts the keys the
// update would add to the table.
func (m *MemoryRegistry) check(ops []Op, hs []uint64, u uint32, res []Result, now int64) (failed, creates int, err error) {
	failed = -1
	var buf [16]uint64
	made := buf[:0]
	for i, op := range ops {
		at, live := m.slot(hs[i], u, now)
		var v int64
		res[i] = Result{}
		if live {
			e := &m.tab.slots[at]
			v = e.v
			res[i] = Result{Value: v, TTL: time.Duration(e.exp - now)}
		}
		var cond bool
		switch op.Kind {
		case OpGet, OpGive, OpPut, OpInit:
			cond = true
		case OpTake, OpBelow:
			cond = v < op.Limit
		case OpSwap:
			cond = v == op.Value
		default:
			return -1, 0, fmt.Errorf("stepup: registry: unknown op kind %d", op.Kind)
		}
		if !cond && failed < 0 {
			failed = i
		}
		if live || !cond {
			continue
		}
		makes := op.Kind == OpTake || op.Kind == OpInit ||
			(op.Kind == OpPut && op.Value != 0) || (op.Kind == OpSwap && op.New != 0)
		if !makes {
			continue
		}
		if op.TTL <= 0 {
			return -1, 0, errNeedTTL
		}
		// An expired entry not yet swept is made again in its slot; a key
		// that an earlier op makes is counted once.
		if at < 0 && !slices.Contains(made, hs[i]) {
			made = append(made, hs[i])
		}
	}
	return failed, len(made), nil
}

// admit decides whether user u (0: a user holding nothing) may hold n more
// entries.
func (m *MemoryRegistry) admit(u uint32, n int) error {
	total := m.tab.n + n
	if total > m.max {
		return ErrRegistryFull
	}
	share := 0
	if u != 0 {
		share = int(m.users.recs[u].n)
	}
	if share+n <= lightShare || total <= m.high {
		return nil
	}
	if total > m.heavyCap {
		return ErrRegistryFull
	}
	// The room below the high-water mark the light users leave, split
	// evenly among the heavy users, this one counted as it would be.
	heavy, light := m.heavy, m.lightN
	if share <= lightShare {
		heavy++
		light -= share
	}
	if (share+n)*heavy > m.high-light {
		return ErrRegistryFull
	}
	return nil
}

// apply performs op, whose condition holds, on the key whose hash is h, of
// user u numbered for tag hash th; it returns the user's number, which the
// first entry of a user holding nothing gives it.
func (m *MemoryRegistry) apply(op Op, h uint64, u uint32, th uint64, now int64) uint32 {
	if op.Kind == OpGet || op.Kind == OpBelow {
		return u
	}
	at, live := m.slot(h, u, now)
	t := &m.tab
	switch op.Kind {
	case OpTake:
		if live {
			t.slots[at].v++
			return u
		}
		return m.set(at, h, u, th, 1, addTTL(now, op.TTL))
	case OpGive:
		if live && t.slots[at].v > 0 {
			t.slots[at].v--
		}
	case OpInit:
		if live {
			t.keep(at, now, op.TTL)
			return u
		}
		return m.set(at, h, u, th, op.Value, addTTL(now, op.TTL))
	case OpPut, OpSwap: // both store a value (Put's Value, Swap's New); 0 deletes
		v := op.Value
		if op.Kind == OpSwap {
			v = op.New
		}
		switch {
		case v == 0:
			if at >= 0 {
				m.drop(at, false)
			}
		case live:
			t.slots[at].v = v
			t.keep(at, now, op.TTL)
		default:
			return m.set(at, h, u, th, v, addTTL(now, op.TTL))
		}
	}
	return u
}

// set makes the entry of the key whose hash is h: in slot at, where an
// expired entry of the key still sits, or in a new slot, which it accounts
// to user u (numbered now if it held nothing).
func (m *MemoryRegistry) set(at int, h uint64, u uint32, th uint64, v, exp int64) uint32 {
	if at >= 0 {
		m.tab.slots[at].v, m.tab.slots[at].exp = v, exp
		return u
	}
	if u == 0 {
		u = m.users.number(th)
	}
	m.tab.insert(h|uint64(u), v, exp)
	m.account(u, 1)
	return u
}

// drop deletes the entry in slot at and accounts for it; release frees the
// owner's number when it holds nothing more (not during an update, whose
// later ops use it).
func (m *MemoryRegistry) drop(at int, release bool) {
	u := uint32(m.tab.slots[at].w & m.ownerMask)
	m.tab.remove(at)
	m.account(u, -1)
	if release && m.users.recs[u].n == 0 {
		m.users.release(u)
	}
}

// account adds d to the entries of user u.
func (m *MemoryRegistry) account(u uint32, d int32) {
	r := &m.users.recs[u]
	old := int(r.n)
	r.n += d
	n := int(r.n)
	if old <= lightShare {
		m.lightN -= old
	} else {
		m.heavyN -= old
		m.heavy--
	}
	if n <= lightShare {
		m.lightN += n
	} else {
		m.heavyN += n
		m.heavy++
	}
}

// addTTL returns now + ttl, saturated.
func addTTL(now int64, ttl time.Duration) int64 {
	if int64(ttl) > math.MaxInt64-now {
		return math.MaxInt64
	}
	return now + int64(ttl)
}

// Table sizes: a table grows when it would be more than 80% full, to 60%
// full, and shrinks when it is less than 20% full, to 40%; it has between
// minSlots and maxSlots slots, at which it is at most 80% full when the
// registry is. A resize moves every entry, under the lock.
const minSlots = 1024

func (m *MemoryRegistry) maxSlots() int { return m.max + m.max/4 + 1 }

// fit returns the table size for n entries at load percent full.
func (m *MemoryRegistry) fit(n, load int) int {
	return min(max(n*100/load, minSlots), m.maxSlots())
}

// reserve grows the table so that n more entries fit.
func (m *MemoryRegistry) reserve(n int) {
	size := m.tab.size()
	if n += m.tab.n; n*5 > size*4 && size < m.maxSlots() {
		m.resize(m.fit(n, 60))
	}
}

// resize moves the entries to a table of size slots.
func (m *MemoryRegistry) resize(size int) {
	old := m.tab
	m.tab.init(size)
	for _, e := range old.slots {
		if e.w != 0 {
			m.tab.insert(e.w, e.v, e.exp)
		}
	}
	m.cursor = 0
}

// sweep visits the slots due by now, the whole table once per sweepPeriod
// of the registry's clock, and drops the entries that have expired.
func (m *MemoryRegistry) sweep(now int64) {
	elapsed := now - m.swept
	if elapsed < 0 {
		// The clock went back: the entries keep their expiries, and the
		// sweep goes on from the new time.
		m.swept = now
		return
	}
	size := m.tab.size()
	due := size
	if elapsed < int64(sweepPeriod) {
		due = int(int64(size) * elapsed / int64(sweepPeriod))
		if due == 0 {
			return // the time is kept for the next update
		}
		m.swept += int64(due) * int64(sweepPeriod) / int64(size)
	} else {
		m.swept = now
	}
	t := &m.tab
	for due > 0 && t.n > 0 {
		end := min(m.cursor+due, size)
		for i := m.cursor; i < end; i++ {
			// A drop shifts the next entries back: the slot is looked at again.
			for e := &t.slots[i]; e.exp <= now && e.w != 0; {
				m.drop(i, true)
			}
		}
		due -= end - m.cursor
		if m.cursor = end; m.cursor == size {
			m.cursor = 0
			m.users.compact()
		}
	}
	if size > minSlots && t.n*5 < size {
		m.resize(m.fit(t.n, 40))
	}
}

// table is an open-addressing hash table of entries: linear probing from a
// home slot chosen by the word's high bits, backward-shift deletion (no
// tombstones). A slot is 24 bytes, so that finding an entry usually reads
// one cache line.
type table struct {
	slots []slot
	n     int
}

// slot is an entry: its word (64 bits: a keyed hash of the key in the high
// bits, the owner's number in the low bits; 0 in an empty slot), its value
// and its expiry (unix nanoseconds of the registry's clock).
type slot struct {
	w      uint64
	v, exp int64
}

func (t *table) init(size int) { *t = table{slots: make([]slot, size)} }

func (t *table) size() int { return len(t.slots) }

// home is the slot where the probe for w starts.
func (t *table) home(w uint64) int {
	hi, _ := bits.Mul64(w, uint64(len(t.slots)))
	return int(hi)
}

// find returns the slot of w, or -1.
func (t *table) find(w uint64) int {
	size := len(t.slots)
	for i := t.home(w); ; {
		switch t.slots[i].w {
		case w:
			return i
		case 0:
			return -1
		}
		if i++; i == size {
			i = 0
		}
	}
}

// insert puts w, which is absent, in the table, which has an empty slot.
func (t *table) insert(w uint64, v, exp int64) {
	size := len(t.slots)
	i := t.home(w)
	for t.slots[i].w != 0 {
		if i++; i == size {
			i = 0
		}
	}
	t.slots[i] = slot{w, v, exp}
	t.n++
}

// remove empties slot i and shifts back the entries probed past it.
func (t *table) remove(i int) {
	size := len(t.slots)
	t.n--
	for {
		t.slots[i] = slot{}
		j := i
		for {
			if j++; j == size {
				j = 0
			}
			w := t.slots[j].w
			if w == 0 {
				return
			}
			// An entry whose home lies cyclically in (i, j] stays.
			h := t.home(w)
			if (i <= j && i < h && h <= j) || (i > j && (i < h || h <= j)) {
				continue
			}
			break
		}
		t.slots[i] = t.slots[j]
		i = j
	}
}

// keep makes slot i's entry last at least ttl from now.
func (t *table) keep(i int, now int64, ttl time.Duration) {
	if ttl > 0 {
		if exp := addTTL(now, ttl); exp > t.slots[i].exp {
			t.slots[i].exp = exp
		}
	}
}

// users numbers the users holding entries: a user's number is in the low
// bits of its entries' words, and stays while it holds one.
type users struct {
	recs  []user            // by number; 0 is nobody
	byTag map[uint64]uint32 // keyed hash of the tag -> number
	free  []uint32
	peak  int // len(byTag) when the map was made or last at its largest
}

type user struct {
	tag uint64
	n   int32 // entries held
}

func (us *users) init() {
	*us = users{recs: make([]user, 1), byTag: make(map[uint64]uint32)}
}

// find returns the number of the user with tag hash th, or 0.
func (us *users) find(th uint64) uint32 { return us.byTag[th] }

// number numbers the user with tag hash th, who holds nothing.
func (us *users) number(th uint64) uint32 {
	var u uint32
	if n := len(us.free); n > 0 {
		u, us.free = us.free[n-1], us.free[:n-1]
	} else {
		u = uint32(len(us.recs))
		us.recs = append(us.recs, user{})
	}
	us.recs[u] = user{tag: th}
	us.byTag[th] = u
	us.peak = max(us.peak, len(us.byTag))
	return u
}

// release frees the number of user u, who holds nothing.
func (us *users) release(u uint32) {
	delete(us.byTag, us.recs[u].tag)
	us.recs[u] = user{}
	us.free = append(us.free, u)
}

// compact makes the map again when it holds far fewer users than it grew
// to: a Go map keeps its largest size.
func (us *users) compact() {
	if us.peak < 1<<12 || len(us.byTag)*8 > us.peak {
		return
	}
	byTag := make(map[uint64]uint32, len(us.byTag))
	for th, u := range us.byTag {
		byTag[th] = u
	}
	us.byTag, us.peak = byTag, len(byTag)
}
