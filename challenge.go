package stepup

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
)

// With Config.Tokens set, every challenge is self-contained: it carries
// what verify checks (the user, scope, bound operation, expiry, the
// revocation state the ceremony copied, and whether the client asked for a
// token), authenticated with a key derived from Tokens.Keys[0], so that a
// client that keeps no cookies can finish the ceremony with nothing but the
// assertion. Single use stays in the Registry: options issues the nonce's
// key and verify claims it.
//
//	sealed: 's' | expires | user | scope | op | nonce | commit | desc |
//	        userEpoch | sessEpoch | sid | flags | audience | MAC (16 bytes)
//
// in the session records' format (integers 8 bytes, byte strings with a
// 1-byte length). commit is boundChallenge of a bound ceremony (empty
// otherwise): the authenticator signs the sealed challenge, so its signature
// covers the commitment, which is what Evidence.Verify checks.
const (
	sealedVersion = 's'
	sealedMACLen  = 16
)

// Flags of a sealed challenge.
const sealedToken = 1 // the client asked for a step-up token

// ceremony is a started ceremony as verify needs it: the pending record,
// what a bound one showed, and the token request.
type ceremony struct {
	pending
	description string // a bound ceremony's description, as shown and signed
	token       bool   // the client asked for a step-up token
	audience    string // for that audience only ("" for all)
}

// seal returns the self-contained challenge of c.
func (t *tokens) seal(c ceremony) []byte {
	var flags int64
	if c.token {
		flags |= sealedToken
	}
	var commit []byte
	if len(c.op) > 0 {
		commit = boundChallenge(c.nonce, c.user, string(c.scope), c.op, c.description)
	}
	w := writer{sealedVersion}.int(c.expires).bytes(c.user).bytes(c.scope).bytes(c.op).bytes(c.nonce).
		bytes(commit).bytes([]byte(c.description)).int(c.userEpoch).int(c.sessEpoch).bytes(c.sid).int(flags).
		bytes([]byte(c.audience))
	m := hmac.New(sha256.New, t.challenge)
	m.Write(w)
	return m.Sum(w)[:len(w)+sealedMACLen]
}

var errNotSealed = errors.New("not a challenge of ours")

// open authenticates and decodes a sealed challenge.
func (t *tokens) open(b []byte) (ceremony, error) {
	if len(b) < 1+sealedMACLen || b[0] != sealedVersion {
		return ceremony{}, errNotSealed
	}
	payload, mac := b[:len(b)-sealedMACLen], b[len(b)-sealedMACLen:]
	if !t.sealedByUs(payload, mac) {
		return ceremony{}, errNotSealed
	}
	c, commit, ok := readSealed(payload)
	if !ok || (len(c.op) > 0) != (len(commit) > 0) {
		return ceremony{}, errNotSealed
	}
	c.challenge = b
	return c, nil
}

// sealedByUs reports whether mac authenticates payload under the challenge
// key of one of t's keys (Keys[0] seals; a key being retired still opens
// the challenges it sealed).
func (t *tokens) sealedByUs(payload, mac []byte) bool {
	for _, k := range t.keys {
		m := hmac.New(sha256.New, k.challenge)
		m.Write(payload)
		if hmac.Equal(m.Sum(nil)[:sealedMACLen], mac) {
			return true
		}
	}
	return false
}

// readSealed decodes a sealed payload without authenticating it.
func readSealed(payload []byte) (c ceremony, commit []byte, ok bool) {
	if len(payload) < 1 || payload[0] != sealedVersion {
		return c, nil, false
	}
	r := reader{b: payload[1:], ok: true}
	c.expires = r.int()
	c.user = r.bytes(1, maxHandleLen)
	c.scope = r.bytes(0, maxScopeLen)
	c.op = r.bytes(0, 32)
	c.nonce = r.bytes(16, 32)
	commit = r.bytes(0, 32)
	c.description = string(r.bytes(0, maxDescriptionLen))
	c.userEpoch = r.int()
	c.sessEpoch = r.int()
	c.sid = r.bytes(sessionIDLen, sessionIDLen)
	flags := r.int()
	c.audience = string(r.bytes(0, 255))
	c.token = flags&sealedToken != 0
	// An operation and its commitment are a whole digest, or none.
	whole := func(b []byte) bool { return len(b) == 0 || len(b) == sha256.Size }
	return c, commit, r.ok && len(r.b) == 0 && whole(c.op) && whole(commit)
}

// sealedCommitment returns the commitment a sealed challenge holds, without
// authenticating it (Evidence.Verify has no key: the passkey's signature
// over the challenge is what proves it).
func sealedCommitment(challenge []byte) ([]byte, bool) {
	if len(challenge) < 1+sealedMACLen {
		return nil, false
	}
	_, commit, ok := readSealed(challenge[:len(challenge)-sealedMACLen])
	return commit, ok && len(commit) == sha256.Size
}
