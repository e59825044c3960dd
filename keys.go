package stepup

import (
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
)

// Registry keys. Every key belongs to one user and starts with
// "stepup:{tag}:", tag being the user's handle in base64url: Redis Cluster
// keeps all of a user's keys in one hash slot, and a registry can bound each
// user's share. Challenges and credential IDs appear only hashed.

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

// challengeKey marks a consumed challenge issued to the user.
func challengeKey(handle, challenge []byte) string {
	sum := sha256.Sum256(challenge)
	return userKey(handle, "challenge:", sum[:16], "")
}

// grantKey marks a grant of the user as used (by a Once or Bind gate) or
// revoked (by Revoke).
func grantKey(handle, id []byte) string { return userKey(handle, "grant:", id, "") }

// revokedKey holds the time (Unix seconds) up to which every grant of the
// user is revoked (RevokeUser).
func revokedKey(handle []byte) string { return userKey(handle, "revoked", nil, "") }

// counterKey marks a sign counter value of one credential as used.
func counterKey(owner, credentialID []byte, counter uint32) string {
	sum := sha256.Sum256(credentialID)
	return userKey(owner, "counter:", sum[:12], ":"+strconv.FormatUint(uint64(counter), 10))
}
