package stepup

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"time"

	"github.com/gorilla/sessions"
)

// The step-up session holds two values, each a small byte string in a
// format of our own, so that nothing has to be registered with gob (no
// global state) and the cookie stays small whatever the number of passkeys:
//
//	grant:   version(1) | at unix seconds (8) | len(1) | sign-in tag | user handle
//	pending: version(1) | { expires unix seconds (8) | len(1) | challenge | len(1) | user handle }...
//
// A value that does not parse counts as absent: no grant, no pending
// challenge. Nothing here is secret or trusted on its own; the session store
// authenticates (and for a cookie store encrypts) the whole session.
const (
	keyGrant   = "stepup.grant"
	keyPending = "stepup.pending"

	recordVersion = 1

	// signInTagLen is the length of the tag that binds a grant to the
	// application's sign-in session: a truncated SHA-256 of its ID.
	signInTagLen = 16

	// maxHandleLen is the longest user handle the WebAuthn specification
	// allows (§5.4.3: at most 64 bytes).
	maxHandleLen = 64
)

// grant is a completed step-up: who, when (Unix seconds by Now), and in
// which sign-in session (a tag derived from the application's sign-in ID, or
// empty when the UserStore does not name its sign-in sessions).
type grant struct {
	at     int64
	signIn []byte
	user   []byte
}

// pending is a started ceremony: the challenge, who it was issued to, and
// when it stops being valid (Unix seconds by Now).
type pending struct {
	expires   int64
	challenge []byte
	user      []byte
}

func encodeGrant(g grant) []byte {
	b := make([]byte, 0, 1+8+1+len(g.signIn)+len(g.user))
	b = append(b, recordVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(g.at))
	b = append(b, byte(len(g.signIn)))
	b = append(b, g.signIn...)
	return append(b, g.user...)
}

func decodeGrant(b []byte) (grant, bool) {
	if len(b) < 1+8+1 || b[0] != recordVersion {
		return grant{}, false
	}
	g := grant{at: int64(binary.BigEndian.Uint64(b[1:9]))}
	n := int(b[9])
	b = b[10:]
	if n > signInTagLen || len(b) < n {
		return grant{}, false
	}
	g.signIn, g.user = b[:n], b[n:]
	if len(g.user) == 0 || len(g.user) > maxHandleLen {
		return grant{}, false
	}
	return g, true
}

func encodePending(ps []pending) []byte {
	b := []byte{recordVersion}
	for _, p := range ps {
		b = binary.BigEndian.AppendUint64(b, uint64(p.expires))
		b = append(b, byte(len(p.challenge)))
		b = append(b, p.challenge...)
		b = append(b, byte(len(p.user)))
		b = append(b, p.user...)
	}
	return b
}

func decodePending(b []byte) ([]pending, bool) {
	if len(b) < 1 || b[0] != recordVersion {
		return nil, false
	}
	b = b[1:]
	var ps []pending
	for len(b) > 0 {
		if len(ps) == maxPending || len(b) < 9 {
			return nil, false
		}
		var p pending
		p.expires = int64(binary.BigEndian.Uint64(b))
		n := int(b[8])
		b = b[9:]
		if n == 0 || len(b) < n+1 {
			return nil, false
		}
		p.challenge, b = b[:n], b[n:]
		n = int(b[0])
		b = b[1:]
		if n == 0 || n > maxHandleLen || len(b) < n {
			return nil, false
		}
		p.user, b = b[:n], b[n:]
		ps = append(ps, p)
	}
	return ps, true
}

// session returns the step-up session of r. A session that cannot be read
// (tampered, expired, made under a retired key, or a failing store) comes
// back empty: it holds no grant and no pending challenge, and saving it
// overwrites the bad cookie.
func (s *StepUp) session(r *http.Request) *sessions.Session {
	sess, err := s.store.Get(r, s.name)
	if err != nil {
		s.log.LogAttrs(r.Context(), levelDebug, "stepup.session_unreadable", errAttr(err))
	}
	if sess == nil {
		sess = sessions.NewSession(s.store, s.name)
	}
	return sess
}

func readGrant(sess *sessions.Session) (grant, bool) {
	b, _ := sess.Values[keyGrant].([]byte)
	return decodeGrant(b)
}

func readPending(sess *sessions.Session) []pending {
	b, _ := sess.Values[keyPending].([]byte)
	ps, _ := decodePending(b)
	return ps
}

func writePending(sess *sessions.Session, ps []pending) {
	if len(ps) == 0 {
		delete(sess.Values, keyPending)
		return
	}
	sess.Values[keyPending] = encodePending(ps)
}

// freshGrant reports the current user's grant in sess and whether it is at
// most maxAge old by now. A grant of another user or of another sign-in
// session, or one stamped more than futureSkew in the future, is never fresh.
// The boundary is inclusive: age == maxAge passes, age > maxAge is stale.
// Ages are whole seconds.
func freshGrant(sess *sessions.Session, user, signIn []byte, now time.Time, maxAge time.Duration) (grant, bool) {
	g, ok := readGrant(sess)
	if !ok || !bytes.Equal(g.user, user) || !bytes.Equal(g.signIn, signIn) {
		return g, false
	}
	age := time.Duration(now.Unix()-g.at) * time.Second
	return g, age >= -futureSkew && age <= maxAge
}

// save writes sess with the step-up cookie's fixed attributes: HttpOnly and
// SameSite Lax (Strict if the store asks for it); path, domain, Secure and
// lifetime come from the store.
func (s *StepUp) save(w http.ResponseWriter, r *http.Request, sess *sessions.Session) error {
	var o sessions.Options
	if sess.Options != nil {
		o = *sess.Options
	}
	if o.Path == "" {
		o.Path = "/"
	}
	o.HttpOnly = true
	if o.SameSite != http.SameSiteStrictMode {
		o.SameSite = http.SameSiteLaxMode
	}
	sess.Options = &o
	return sess.Save(r, w)
}
