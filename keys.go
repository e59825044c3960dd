package stepup

import (
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
)

// userKey returns "stepup:{" + base64url(handle) + "}:" + kind +
// base64url(tail) + suffix, in one allocation: the gate builds two keys on
// every request it lets through.
func userKey(handle []byte, kind string, tail []byte, suffix string) string {
	enc := base64.RawURLEncoding
	var sb strings.Builder
	sb.Grow(len("stepup:{}:") + enc.EncodedLen(len(handle)) + len(kind) + enc.EncodedLen(len(tail)) + len(suffix))
	var buf [128]byte // a handle is at most 64 bytes, a tail at most 32
	sb.WriteString("stepup:{")
	sb.Write(enc.AppendEncode(buf[:0], handle))
	sb.WriteString("}:")
	sb.WriteString(kind)
	sb.Write(enc.AppendEncode(buf[:0], tail))
	sb.WriteString(suffix)
	return sb.String()
}

// failureKey counts the user's failed attempts (Config.MaxFailures).
func failureKey(handle []byte) string { return userKey(handle, "fail", nil, "") }

// stepUpKey counts the user's ceremonies (Config.MaxStepUps).
func stepUpKey(handle []byte) string { return userKey(handle, "stepups", nil, "") }

// challengeKey is a challenge issued to the user: the options handler puts
// it for the challenge's lifetime, verify claims (deletes) it, so that it
// answers at most once and never after the registry let it expire.
func challengeKey(handle, challenge []byte) string {
	sum := sha256.Sum256(challenge)
	return userKey(handle, "challenge:", sum[:16], "")
}

// grantKey is a grant of the user: 1 while it may open gates, 2 once a
// single-use gate used it; gone once it expired, by the registry's clock.
func grantKey(handle, id []byte) string { return userKey(handle, "grant:", id, "") }

// epochKey holds the user's revocation state: a random value that every
// ceremony copies when it starts and RevokeUser replaces.
func epochKey(handle []byte) string { return userKey(handle, "epoch", nil, "") }

// sessionKey holds the revocation state of one step-up session of the user
// (see sessionTag), which Revoke replaces.
func sessionKey(handle, sid []byte) string { return userKey(handle, "session:", sid, "") }

// counterKey marks a sign counter value of one credential as used.
func counterKey(owner, credentialID []byte, counter uint32) string {
	sum := sha256.Sum256(credentialID)
	return userKey(owner, "counter:", sum[:12], ":"+strconv.FormatUint(uint64(counter), 10))
}
