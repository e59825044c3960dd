package stepup

import (
	"crypto/sha256"
	"strconv"
)

// Registry keys. Every key belongs to one user and starts with
// "stepup:{tag}:", tag being the user's handle in base64url: Redis Cluster
// keeps all of a user's keys in one hash slot, and a registry can bound each
// user's share. Challenges and credential IDs appear only hashed.

func userKey(handle []byte, kind string) string {
	return "stepup:{" + b64(handle) + "}:" + kind
}

// failureKey counts the user's failed attempts (Config.MaxFailures).
func failureKey(handle []byte) string { return userKey(handle, "fail") }

// stepUpKey counts the user's ceremonies (Config.MaxStepUps).
func stepUpKey(handle []byte) string { return userKey(handle, "stepups") }

// challengeKey marks a consumed challenge issued to the user.
func challengeKey(handle, challenge []byte) string {
	sum := sha256.Sum256(challenge)
	return userKey(handle, "challenge:") + b64(sum[:16])
}

// grantKey marks a grant of the user as used (by a Once or Bind gate) or
// revoked (by Revoke).
func grantKey(handle, id []byte) string { return userKey(handle, "grant:") + b64(id) }

// revokedKey holds the time (Unix seconds) up to which every grant of the
// user is revoked (RevokeUser).
func revokedKey(handle []byte) string { return userKey(handle, "revoked") }

// counterKey marks a sign counter value of one credential as used.
func counterKey(owner, credentialID []byte, counter uint32) string {
	sum := sha256.Sum256(credentialID)
	return userKey(owner, "counter:") + b64(sum[:12]) + ":" + strconv.FormatUint(uint64(counter), 10)
}
