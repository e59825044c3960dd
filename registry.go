package stepup

import (
	"context"
	"errors"
	"time"
)

// ErrRegistryFull is returned by [MemoryRegistry] when it cannot record one
// more entry: it holds its maximum, or it is nearly full and the user the
// entry belongs to already holds more than the users it refuses first.
// stepup answers 503 and grants nothing. An entry is never dropped before it
// expires, because that would let its challenge or grant be used again. A
// Registry returns it only when the update would make a key that is absent:
// so RevokeUser and Revoke, refused it, succeed (the revocation state they
// would replace does not exist, and nothing copied it).
var ErrRegistryFull = errors.New("stepup: registry full")

// Registry is the server-side state that makes challenges and one-time grants
// single use, limits each user's attempts and remembers revocations. A
// cookie session store cannot do any of it: a client can always send an
// older copy of its cookie. Share one Registry (such as the Redis one in the
// redisstore module) between all instances behind a load balancer.
//
// A registry is a set of keys, each holding a signed 64-bit value (0 when
// the key is absent) and an expiry. Expiries are durations measured by the
// registry itself from the moment an update reaches it, never times on a
// caller's clock: that is what keeps single use and revocation independent
// of the clocks of the instances that share it.
//
// Keys are opaque strings made by stepup, of the form
// "stepup:{tag}:kind:...", where tag is the user's handle in base64url (the
// Redis Cluster hash-tag convention). They never contain a challenge, only a
// hash of it. Every key belongs to exactly one user, all the keys of one
// Update have the same tag, and a registry uses the tag to keep a user's
// keys together and to account for each user's share exactly.
//
// Errors mean the registry could not be reached or updated: stepup then
// fails closed (503, no grant). A failed condition is not an error.
type Registry interface {
	// Update applies ops as one atomic step, in one round trip, against
	// the state before the step: every condition (see [OpKind]) is checked
	// first; when all hold, every op is applied in order and failed is -1;
	// otherwise nothing changes and failed is the index of the first op
	// whose condition does not hold. Either way res[i] (res has len(ops))
	// is what ops[i] found before the step. Of concurrent Updates, across
	// every instance sharing the registry, each sees the state the others
	// left, as if they ran one after the other.
	Update(ctx context.Context, ops []Op, res []Result) (failed int, err error)
}

// OpKind is what an [Op] does. Only Take, Below and Swap have a condition.
type OpKind uint8

// The kinds of [Op]. TTL is a duration from the moment the update reaches
// the registry; "keeps the key for at least TTL" means its expiry becomes the
// later of the one it has and TTL from now.
const (
	// OpGet reads the key; it changes nothing.
	OpGet OpKind = iota + 1
	// OpTake reserves one unit of a limit. Condition: the key's count is
	// below Limit. Applied: the count goes up by one; the first unit starts
	// a window of TTL, the key's expiry, which later Takes never extend.
	OpTake
	// OpBelow checks a limit without taking from it. Condition: the key's
	// count is below Limit.
	OpBelow
	// OpGive hands back one unit: the count goes down by one if it is above
	// zero. It never creates a key nor changes an expiry.
	OpGive
	// OpPut stores Value and keeps the key for at least TTL; a Value of 0
	// deletes the key.
	OpPut
	// OpInit stores Value if the key is absent (for TTL), and either way
	// keeps the key for at least TTL.
	OpInit
	// OpSwap replaces one value with another. Condition: the key holds
	// Value (0: it is absent). Applied: it holds New (0 deletes it), kept
	// for at least TTL (0: the expiry is left as it is; a key made by Swap
	// needs a positive TTL, but a Swap whose condition fails makes nothing:
	// that is a failed condition, never an error, whatever its TTL).
	OpSwap
)

// Op is one step of a [Registry] Update.
type Op struct {
	Kind  OpKind
	Key   string
	Value int64         // OpPut, OpInit: the value stored; OpSwap: the value expected
	New   int64         // OpSwap: the value stored
	Limit int64         // OpTake, OpBelow: the limit
	TTL   time.Duration // OpTake: the window; OpPut, OpInit, OpSwap: how long the key is kept at least
}

// Result is what an [Op] found before the update.
type Result struct {
	Value int64         // the key's value, 0 when absent
	TTL   time.Duration // the time left before the key expires, 0 when absent
}
