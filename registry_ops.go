package stepup

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"time"
)

// Values of a grant's key.
const (
	grantLive = 1 // it may open gates
	grantUsed = 2 // a single-use gate used it
)

// counterKeyTTL is how long a counter value stays consumed: it need only
// cover the moments between reading the stored credential and
// UpdateCredential of concurrent verifies, after which the stored count
// refuses it.
const counterKeyTTL = 30 * time.Second

// Positions in optionsOps and startOps.
const (
	opFailures = 0
	opStepUps  = 1
	opEpoch    = 2
	opSession  = 3
)

// ceremonyGrace is how long past its start (a passkey ceremony: past its
// challenge's lifetime) a ceremony keeps the revocation states it read:
// long enough to record its grant, which then keeps them as long as it
// lives (grantOps). A ceremony that makes no grant, such as every one of a
// client that keeps no cookies and so has a new session tag each time,
// leaves nothing for the longest gate's maxAge. A ceremony slower than that
// is refused as revoked: the states it copied may be gone.
const ceremonyGrace = time.Minute

// optionsOps starts a passkey ceremony: the user must be under the failure
// limit and takes a unit of the step-up limit; the revocation states are
// read (made if absent, with the values rv proposes) and kept until the
// ceremony can record its grant; the challenge is issued for its lifetime.
func (s *StepUp) optionsOps(uid []byte, rv revocation, challenge []byte) []Op {
	t := challengeTail(challenge)
	k := userKeys(uid, keySpec{kind: kindFailure}, keySpec{kind: kindStepUps}, keySpec{kind: kindEpoch},
		keySpec{kind: kindSession, tail: rv.sid}, keySpec{kind: kindChallenge, tail: t[:]})
	return []Op{
		{Kind: OpBelow, Key: k[0], Limit: int64(s.maxFailures)},
		{Kind: OpTake, Key: k[1], Limit: int64(s.maxStepUps), TTL: s.stepUpWindow},
		{Kind: OpInit, Key: k[2], Value: rv.userEpoch, TTL: s.ttl + ceremonyGrace},
		{Kind: OpInit, Key: k[3], Value: rv.sessEpoch, TTL: s.ttl + ceremonyGrace},
		{Kind: OpPut, Key: k[4], Value: 1, TTL: s.ttl},
	}
}

// startOps starts a method's attempt: a unit of each limit, and the
// revocation states as in optionsOps.
func (s *StepUp) startOps(uid []byte, rv revocation) []Op {
	k := userKeys(uid, keySpec{kind: kindFailure}, keySpec{kind: kindStepUps}, keySpec{kind: kindEpoch},
		keySpec{kind: kindSession, tail: rv.sid})
	return []Op{
		{Kind: OpTake, Key: k[0], Limit: int64(s.maxFailures), TTL: s.window},
		{Kind: OpTake, Key: k[1], Limit: int64(s.maxStepUps), TTL: s.stepUpWindow},
		{Kind: OpInit, Key: k[2], Value: rv.userEpoch, TTL: ceremonyGrace},
		{Kind: OpInit, Key: k[3], Value: rv.sessEpoch, TTL: ceremonyGrace},
	}
}

// claimOps takes a unit of the failure limit and claims the challenge: it
// must still be issued (once, and not expired by the registry's clock).
func (s *StepUp) claimOps(uid, challenge []byte) []Op {
	t := challengeTail(challenge)
	k := userKeys(uid, keySpec{kind: kindFailure}, keySpec{kind: kindChallenge, tail: t[:]})
	return []Op{
		{Kind: OpTake, Key: k[0], Limit: int64(s.maxFailures), TTL: s.window},
		{Kind: OpSwap, Key: k[1], Value: 1, New: 0},
	}
}

// chargeOps takes a unit of the failure limit, for an attempt refused before
// it reached the Registry.
func (s *StepUp) chargeOps(uid []byte) []Op {
	return []Op{{Kind: OpTake, Key: failureKey(uid), Limit: int64(s.maxFailures), TTL: s.window}}
}

// Positions in grantOps.
const (
	opGrantEpoch   = 0
	opGrantSession = 1
	opGrantCounter = 4 // present only for a passkey with a counter
)

// grantOps records grant g: the revocation states it copied must be
// unchanged (else it was revoked while its ceremony ran) and are kept as long
// as it lives; it lives life (grantLifetime, or a token's lifetime if
// longer) by the registry's clock. A passkey
// success resets the failure count, another method's success gives its own
// unit back (the password must not buy more guesses of a code). counter, if
// not empty, is the counter value key the assertion consumes. The records of
// the user's grants that g pushes out of the session (dropped) are deleted:
// an older copy of the cookie cannot use them, and a user's live grant
// records stay bounded by maxGrants per session.
func (s *StepUp) grantOps(g grantRecord, dropped []grantRecord, life time.Duration, passkey bool, counter string) []Op {
	k := userKeys(g.user, keySpec{kind: kindEpoch}, keySpec{kind: kindSession, tail: g.sid}, keySpec{kind: kindGrant, tail: g.id},
		keySpec{kind: kindFailure})
	ops := make([]Op, 4, 5+len(dropped))
	ops[0] = Op{Kind: OpSwap, Key: k[0], Value: g.userEpoch, New: g.userEpoch, TTL: life}
	ops[1] = Op{Kind: OpSwap, Key: k[1], Value: g.sessEpoch, New: g.sessEpoch, TTL: life}
	ops[2] = Op{Kind: OpPut, Key: k[2], Value: grantLive, TTL: life}
	ops[3] = Op{Kind: OpGive, Key: k[3]}
	if passkey {
		ops[3] = Op{Kind: OpPut, Key: k[3], Value: 0}
	}
	if counter != "" {
		ops = append(ops, Op{Kind: OpSwap, Key: counter, Value: 0, New: 1, TTL: counterKeyTTL})
	}
	for _, old := range dropped {
		if bytes.Equal(old.user, g.user) { // one user's keys in one update
			ops = append(ops, Op{Kind: OpPut, Key: grantKey(old.user, old.id), Value: 0})
		}
	}
	return ops
}

// gateOps checks grant g at a gate: its record and the revocation states it
// copied. For a single-use gate the record goes from live to used, so that
// of concurrent requests carrying it exactly one passes; for any other gate
// the update only reads.
func gateOps(dst *[3]Op, g grantRecord, single bool) []Op {
	k := userKeys(g.user, keySpec{kind: kindGrant, tail: g.id}, keySpec{kind: kindEpoch}, keySpec{kind: kindSession, tail: g.sid})
	dst[0] = Op{Kind: OpGet, Key: k[0]}
	dst[1] = Op{Kind: OpGet, Key: k[1]}
	dst[2] = Op{Kind: OpGet, Key: k[2]}
	if single {
		dst[0] = Op{Kind: OpSwap, Key: dst[0].Key, Value: grantLive, New: grantUsed}
		dst[1] = Op{Kind: OpSwap, Key: dst[1].Key, Value: g.userEpoch, New: g.userEpoch}
		dst[2] = Op{Kind: OpSwap, Key: dst[2].Key, Value: g.sessEpoch, New: g.sessEpoch}
	}
	return dst[:]
}

// giveOps hands back units taken under keys.
func giveOps(keys []string) []Op {
	ops := make([]Op, len(keys))
	for i, k := range keys {
		ops[i] = Op{Kind: OpGive, Key: k}
	}
	return ops
}

// update runs ops and returns what they found.
func (s *StepUp) update(ctx context.Context, ops []Op) ([]Result, int, error) {
	res := make([]Result, len(ops))
	failed, err := s.registry.Update(ctx, ops, res)
	return res, failed, err
}

// newEpoch returns a random revocation state: positive, so never the 0 of
// an absent key.
func newEpoch() int64 {
	var b [8]byte
	rand.Read(b[:])
	v := int64(binary.BigEndian.Uint64(b[:]) >> 1)
	if v == 0 {
		v = 1
	}
	return v
}

// maxGateAge is the longest maxAge a gate may have, so that lifetimes and
// TTLs computed from it never overflow.
const maxGateAge = 366 * 24 * time.Hour

// grantLifetime is how long after it was made a grant may still open some
// gate: the longest maxAge of the gates made so far (at least a minute),
// plus the allowed clock skew. The Registry keeps a grant's record that
// long, measured on its own clock.
func (s *StepUp) grantLifetime() time.Duration {
	return max(time.Duration(s.maxGateAge.Load()), time.Minute) + futureSkew + time.Second
}
