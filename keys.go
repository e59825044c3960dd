package stepup

import (
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
)

// A Registry key is "stepup:{" + base64url(handle) + "}:" + kind +
// base64url(tail) + suffix: the user's handle is its tag, so that a
// registry accounts it to the user and Redis Cluster keeps a user's keys in
// one slot.
const (
	kindFailure   = "fail"
	kindStepUps   = "stepups"
	kindChallenge = "challenge:"
	kindGrant     = "grant:"
	kindEpoch     = "epoch"
	kindSession   = "session:"
	kindCounter   = "counter:"
)

// keySpec names one key of a user.
type keySpec struct {
	kind   string
	tail   []byte
	suffix string
}

// maxKeys is the most keys userKeys builds at once: a step's keys.
const maxKeys = 6

// userKeys returns the key each spec names, for the user with handle: in one
// allocation (the keys are substrings of one string) and from one encoding
// of the handle, since every step of a ceremony and every gate builds
// several keys of one user. It takes at most maxKeys specs.
func userKeys(handle []byte, specs ...keySpec) (out [maxKeys]string) {
	enc := base64.RawURLEncoding
	var hb [88]byte // a handle is at most 64 bytes
	h := enc.AppendEncode(hb[:0], handle)
	n := 0
	for _, k := range specs {
		n += len("stepup:{}:") + len(h) + len(k.kind) + enc.EncodedLen(len(k.tail)) + len(k.suffix)
	}
	var sb strings.Builder
	sb.Grow(n)
	var ends [maxKeys]int
	for i, k := range specs {
		var tb [64]byte // a tail is at most 32 bytes
		sb.WriteString("stepup:{")
		sb.Write(h)
		sb.WriteString("}:")
		sb.WriteString(k.kind)
		sb.Write(enc.AppendEncode(tb[:0], k.tail))
		sb.WriteString(k.suffix)
		ends[i] = sb.Len()
	}
	all, start := sb.String(), 0
	for i := range specs {
		out[i], start = all[start:ends[i]], ends[i]
	}
	return out
}

// userKey returns the one key of handle that kind, tail and suffix name.
func userKey(handle []byte, kind string, tail []byte, suffix string) string {
	return userKeys(handle, keySpec{kind, tail, suffix})[0]
}

// failureKey counts the user's failed attempts (Config.MaxFailures).
func failureKey(handle []byte) string { return userKey(handle, kindFailure, nil, "") }

// stepUpKey counts the user's ceremonies (Config.MaxStepUps).
func stepUpKey(handle []byte) string { return userKey(handle, kindStepUps, nil, "") }

// challengeKey is a challenge issued to the user: the options handler puts
// it for the challenge's lifetime, verify claims (deletes) it, so that it
// answers at most once and never after the registry let it expire.
func challengeKey(handle, challenge []byte) string {
	t := challengeTail(challenge)
	return userKey(handle, kindChallenge, t[:], "")
}

// challengeTail is the tail of challengeKey.
func challengeTail(challenge []byte) [16]byte {
	sum := sha256.Sum256(challenge)
	return [16]byte(sum[:16])
}

// grantKey is a grant of the user: 1 while it may open gates, 2 once a
// single-use gate used it; gone once it expired, by the registry's clock.
func grantKey(handle, id []byte) string { return userKey(handle, kindGrant, id, "") }

// epochKey holds the user's revocation state: a random value that every
// ceremony copies when it starts and RevokeUser replaces.
func epochKey(handle []byte) string { return userKey(handle, kindEpoch, nil, "") }

// sessionKey holds the revocation state of one step-up session of the user
// (see sessionTag), which Revoke replaces.
func sessionKey(handle, sid []byte) string { return userKey(handle, kindSession, sid, "") }

// counterKey marks a sign counter value of one credential as used.
func counterKey(owner, credentialID []byte, counter uint32) string {
	sum := sha256.Sum256(credentialID)
	return userKey(owner, kindCounter, sum[:12], ":"+strconv.FormatUint(uint64(counter), 10))
}
