package stepup

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/sessions"
)

// revocation is the revocation state a ceremony copies when it starts and
// its grant keeps: the session tag, and the values under the user's
// epochKey and the session's sessionKey. A gate passes the grant only while
// the Registry holds the same values; RevokeUser and Revoke replace them.
type revocation struct {
	sid       []byte
	userEpoch int64
	sessEpoch int64
}

// sessionTag returns the tag of r's step-up session for p: the sign-in tag
// when the UserStore names its sign-in sessions, else a random ID kept in
// the step-up session, made (and put in sess, for the caller to save) when
// there is none.
func sessionTag(p principal, sess *sessions.Session) []byte {
	if len(p.signIn) == sessionIDLen {
		return p.signIn
	}
	if id := value(sess, secSessionID); len(id) == sessionIDLen {
		return id
	}
	id := make([]byte, sessionIDLen)
	rand.Read(id)
	put(sess, secSessionID, id, false)
	return id
}

// sessionTagOf returns the session tag of a record of sess with sign-in tag
// signIn.
func sessionTagOf(sess *sessions.Session, signIn []byte) []byte {
	if len(signIn) == sessionIDLen {
		return signIn
	}
	if id := value(sess, secSessionID); len(id) == sessionIDLen {
		return id
	}
	return nil
}

// proposeRevocation returns the revocation state a ceremony of p starting
// now proposes: the session tag, and fresh values to store where the
// Registry holds none yet.
func proposeRevocation(p principal, sess *sessions.Session) revocation {
	return revocation{sid: sessionTag(p, sess), userEpoch: newEpoch(), sessEpoch: newEpoch()}
}

// bound returns the revocation state a start update (optionsOps, startOps)
// bound the ceremony to: the values found, or those it stored.
func (rv revocation) bound(res []Result) revocation {
	if v := res[opEpoch].Value; v != 0 {
		rv.userEpoch = v
	}
	if v := res[opSession].Value; v != 0 {
		rv.sessEpoch = v
	}
	return rv
}

// replaceState gives the revocation state under key a new value, in one
// atomic write. The key keeps its expiry, which already outlives every grant
// that copied the old value; a key that was absent (no live grant copied
// anything from it) is made for a minute, to outlive the update itself. A
// registry too full to make it (ErrRegistryFull: the one entry would be
// new) is not a failure: there was nothing to revoke.
func (s *StepUp) replaceState(ctx context.Context, key string) error {
	_, _, err := s.update(ctx, []Op{{Kind: OpPut, Key: key, Value: newEpoch(), TTL: time.Minute}})
	if errors.Is(err, ErrRegistryFull) {
		return nil
	}
	return err
}

// Revoke ends every step-up grant of the session, in every copy of its
// cookie and on every instance sharing the Registry: it replaces the
// session's revocation state in the Registry (one key, whatever the number
// of grants), then drops the grants from the session and saves it. Call it
// at sign-out, and after a one-off action (such as deleting the account)
// whose grant must not be reused. The session is the application's sign-in
// session when the UserStore is a [SignInIdentifier], else the step-up
// session (a random ID in its cookie); for a client that keeps no cookies
// (without a SignInIdentifier), the session of the step-up token the
// request carries, if any: a token sent with no request that reaches
// Revoke ends only at RevokeUser, its exp, or maxAge.
//
// It returns the Registry's and the session store's errors, if any; the
// grants are dropped from the session even when the Registry fails (then an
// older copy of the cookie may still pass until its grants expire: call
// RevokeUser).
func (s *StepUp) Revoke(w http.ResponseWriter, r *http.Request) error {
	sess := s.session(r)
	gs := readGrants(nil, sess)
	targets := s.revokeTargets(r, sess, gs)
	var errs []error
	for _, t := range targets {
		if err := s.replaceState(r.Context(), sessionKey(t.user, t.sid)); err != nil {
			errs = append(errs, fmt.Errorf("stepup: Revoke: %w", err))
			break
		}
	}
	if len(gs) > 0 {
		writeGrants(sess, nil)
		if err := s.save(w, r, sess); err != nil {
			errs = append(errs, fmt.Errorf("stepup: Revoke: saving the session: %w", err))
		}
	}
	if len(errs) == 0 {
		s.event(r, slog.LevelInfo, EventGrantsRevoked, slog.Int("grants", len(gs)), slog.Int("sessions", len(targets)), slog.String("by", "Revoke"))
	}
	return errors.Join(errs...)
}

// revokeTarget is a session of a user whose state Revoke replaces.
type revokeTarget struct{ user, sid []byte }

// revokeTargets lists the sessions Revoke ends: that of the signed-in user,
// if any, and those of the grants and pending ceremonies the step-up session
// holds (the application may have signed the user out already; a pending
// ceremony of a sign-in session cannot finish after the sign-out).
func (s *StepUp) revokeTargets(r *http.Request, sess *sessions.Session, gs []grantRecord) []revokeTarget {
	var out []revokeTarget
	add := func(user, sid []byte) {
		if len(user) == 0 || len(sid) != sessionIDLen {
			return
		}
		for _, t := range out {
			if bytes.Equal(t.user, user) && bytes.Equal(t.sid, sid) {
				return
			}
		}
		out = append(out, revokeTarget{user: user, sid: sid})
	}
	if p, err := s.principal(r); err == nil {
		if len(p.signIn) == sessionIDLen {
			add(p.handle, p.signIn)
		} else {
			add(p.handle, value(sess, secSessionID))
		}
		// A client that keeps no cookies has no step-up session: without
		// sign-in IDs, the session of its token is the one it names.
		if g, ok, _ := s.tokenGrant(r, p); ok {
			add(g.user, g.sid)
		}
	}
	for _, g := range gs {
		add(g.user, g.sid)
	}
	for _, p := range readPending(sess) {
		add(p.user, value(sess, secSessionID))
	}
	for _, x := range readExternal(s.externalSession(r)) {
		add(x.user, sessionTagOf(sess, x.signIn))
	}
	return out
}

// RevokeUser ends every grant of the user with handle whose ceremony started
// before it returns, in every session and on every instance sharing the
// Registry, whatever their clocks: call it when a passkey is deleted, the
// password changes or an administrator locks the account, from any process
// (it needs no gates of its own). A ceremony in flight when it runs records
// no grant. Grants made by ceremonies that start after it returns pass at
// once. It replaces the user's revocation state in the Registry: one key,
// one round trip.
func (s *StepUp) RevokeUser(ctx context.Context, handle []byte) error {
	if len(handle) == 0 || len(handle) > maxHandleLen {
		return errors.New("stepup: RevokeUser: a user handle is 1 to 64 bytes")
	}
	if err := s.replaceState(ctx, epochKey(handle)); err != nil {
		return fmt.Errorf("stepup: RevokeUser: %w", err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, EventGrantsRevoked, userAttr(handle), slog.String("by", "RevokeUser"))
	return nil
}
