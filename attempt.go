package stepup

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/sessions"
)

// ceremonyCaller runs the checks every ceremony handler starts with: the
// method, the origin and the signed-in user. It returns the signed-in user,
// or writes the refusal and returns false.
func (s *StepUp) ceremonyCaller(w http.ResponseWriter, r *http.Request) (principal, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, errMethod)
		return principal{}, false
	}
	if err := s.crossOrigin.Check(r); err != nil {
		s.event(r, slog.LevelWarn, EventCrossOriginRefused, slog.String("origin", r.Header.Get("Origin")))
		writeError(w, errCrossOrigin)
		return principal{}, false
	}
	return s.currentUser(w, r)
}

// grantRequest is what grant a ceremony asks for, in the bodies of the
// options and method handlers.
type grantRequest struct {
	Scope     string `json:"scope"`     // a scope some gate was made with
	Operation string `json:"operation"` // the digest of an operation pending for this user
	Token     bool   `json:"token"`     // a step-up token too (Config.Tokens)
	Audience  string `json:"audience"`  // the token's one audience, one of Tokens.Audience
}

// requestedGrant checks the grant a ceremony asks for: a scope some gate
// was made with; an operation pending for the user in the session (or, with
// Config.Tokens and a request without a step-up session, any well-formed
// digest: the token is bound to it, and no description is shown); a token
// only with Config.Tokens, for one of its audiences. It returns the
// operation, nil for none.
func (s *StepUp) requestedGrant(r *http.Request, who principal, req grantRequest, now time.Time) (*pendingOp, *refusal) {
	if req.Scope != "" {
		if _, known := s.scopes.Load(req.Scope); !known {
			return nil, &errUnknownScope
		}
	}
	if (req.Token || req.Audience != "") && s.tokens == nil {
		return nil, &errNoTokens
	}
	if req.Audience != "" && (!req.Token || !slices.Contains(s.tokens.audience, req.Audience)) {
		return nil, &errUnknownAudience
	}
	if req.Operation == "" {
		return nil, nil
	}
	if op := findOperation(readOperations(s.session(r)), who.handle, req.Operation, now); op != nil {
		return op, nil
	}
	if _, err := r.Cookie(s.name); err != nil && s.tokens != nil {
		if d, err := strictB64.DecodeString(req.Operation); err == nil && len(d) == sha256.Size {
			return &pendingOp{user: who.handle, digest: d}, nil
		}
	}
	return nil, &errUnknownOp
}

// readJSONBody reads r's body, at most max bytes (else 413). A non-empty body
// must be sent as application/json; bad is the refusal for one that is not
// or cannot be read.
func readJSONBody(w http.ResponseWriter, r *http.Request, max int64, bad refusal) ([]byte, *refusal) {
	if r.Body == http.NoBody { // what the server gives a request without a body
		return nil, nil
	}
	var buf []byte
	if n := r.ContentLength; n > 0 && n < max {
		buf = make([]byte, 0, n+1) // room to meet the end without growing
	}
	body, err := readAll(buf, http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, &errTooLarge
		}
		return nil, &bad
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
				return nil, &bad
			}
		}
	}
	return body, nil
}

// readAll reads rd to its end, appending to b, as io.ReadAll does from an
// empty slice: a body whose length the request declares is read into
// exactly that room, instead of a buffer grown from 512 bytes.
func readAll(b []byte, rd io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// attempt is one run of a ceremony handler for the signed-in user who.
type attempt struct {
	s    *StepUp
	w    http.ResponseWriter
	r    *http.Request
	ctx  context.Context
	who  principal
	sess *sessions.Session
	ps   []pending // the session's pending ceremonies when the attempt began
	now  time.Time

	method   string    // "passkey" or a Method's name; for the log
	credAttr slog.Attr // the credential, once known; for the log
	taken    []string  // the limits the attempt holds a unit of, given back on a fault of ours
	keep     bool      // a fault that must keep its units all the same (a Method's Check)

	description    string // a bound ceremony's description, as shown and signed
	tokenRequested bool   // the client asked for a step-up token too
	audience       string // for that audience only ("" for all)

	// quiet: the caller writes the answer (an External's finish). fail and
	// grant then write no body: they keep the refusal or the result here.
	quiet   bool
	refused *refusal
	result  verifyResult
}

func (s *StepUp) newAttempt(w http.ResponseWriter, r *http.Request, who principal) *attempt {
	sess := s.session(r)
	return &attempt{s: s, w: w, r: r, ctx: r.Context(), who: who, sess: sess, ps: readPending(sess), now: s.now(), method: MethodPasskey}
}

// registryFailed is the refusal of a step whose Registry update failed.
func (c *attempt) registryFailed(err error) *refusal {
	c.s.storeFailed(c.r, "registry", err)
	return refuse(errUnavailable, slog.LevelError, "registry failed")
}

// giveBack hands back the units the attempt took.
func (c *attempt) giveBack() {
	if len(c.taken) == 0 {
		return
	}
	if _, _, err := c.s.update(c.ctx, giveOps(c.taken)); err != nil {
		c.s.storeFailed(c.r, "registry", err)
	}
	c.taken = nil
}

// tooMany is the 429 refusal for a user over a limit ("failures" or
// "step-ups"), with Retry-After the time left in the limit's window in
// whole seconds, rounded up. It logs rate_limited.
func (s *StepUp) tooMany(r *http.Request, handle []byte, retry time.Duration, limit string) *refusal {
	secs := max(int64((retry+time.Second-1)/time.Second), 1)
	s.event(r, slog.LevelWarn, EventRateLimited, userAttr(handle), slog.Int64("retry_after", secs), slog.String("limit", limit))
	f := errTooMany
	f.retry, f.limited = secs, true
	return &f
}

// fail refuses the attempt. Every failed attempt clears the session's
// pending challenges, so a challenge answers at most once; the grants, if
// any, are left as they were. A refusal of the client's making keeps its
// units of the limits; a fault of ours (5xx) gives them back.
func (c *attempt) fail(f *refusal) {
	s := c.s
	if f.limited {
		c.answer(f)
		return
	}
	if len(c.ps) > 0 {
		writePending(c.sess, nil)
		if err := s.save(c.w, c.r, c.sess); err != nil {
			s.storeFailed(c.r, "session", err)
		}
	}
	attrs := append(f.attrs, slog.String("reason", f.code), userAttr(c.who.handle), slog.String("method", c.method))
	if c.credAttr.Key != "" {
		attrs = append(attrs, c.credAttr)
	}
	if f.cause != "" {
		attrs = append(attrs, slog.String("cause", f.cause))
	}
	s.event(c.r, f.level, EventReauthFailed, attrs...)
	if f.status >= 500 && !c.keep {
		c.giveBack()
	}
	c.answer(f)
}

// answer writes refusal f, or for a quiet attempt keeps it for the caller,
// with only its Retry-After header set.
func (c *attempt) answer(f *refusal) {
	if !c.quiet {
		writeRefusal(c.w, f)
		return
	}
	if f.retry > 0 {
		c.w.Header().Set("Retry-After", strconv.FormatInt(f.retry, 10))
	}
	c.refused = f
}

// proof is how a grant was earned, for the grant record and the log.
type proof struct {
	name         string
	amr          []string
	credentialID []byte // a passkey's ID
	backedUp     bool   // a passkey's backup state (synced)
	evidence     *Evidence
}

// newGrant makes the grant pending ceremony p earns with method m, with the
// revocation state p copied when it started.
func (c *attempt) newGrant(p pending, m proof) grantRecord {
	if p.sid == nil { // a pending record of the step-up session: its tag is the session's
		p.sid = sessionTagOf(c.sess, c.who.signIn)
	}
	g := grantRecord{revocation: p.revocation, at: c.now.Unix(), signIn: c.who.signIn, user: c.who.handle, scope: p.scope,
		op: p.op, id: make([]byte, 16), method: []byte(m.name), amr: []byte(strings.Join(m.amr, " "))}
	if len(m.credentialID) <= maxCredentialIDLen {
		g.cred = m.credentialID
	}
	if m.backedUp {
		g.flags |= grantBackedUp
	}
	rand.Read(g.id)
	return g
}

// nextGrants returns the session's grants with g, and those g pushes out: a
// new plain grant replaces the older one of its scope and method; bound
// grants are each for one operation; the oldest go past maxGrants.
func (c *attempt) nextGrants(p pending, g grantRecord) (gs, dropped []grantRecord) {
	var buf [maxGrants]grantRecord // decoded in place: each is copied out
	for _, old := range readGrants(buf[:0], c.sess) {
		if len(p.op) > 0 || !old.matches(c.who, string(p.scope), nil) || !bytes.Equal(old.method, g.method) {
			gs = append(gs, old)
		} else {
			dropped = append(dropped, old)
		}
	}
	gs = append(gs, g)
	if n := len(gs) - maxGrants; n > 0 {
		dropped, gs = append(dropped, gs[:n]...), gs[n:]
	}
	return gs, dropped
}

// record records grant g in the Registry (grantOps): the revocation states
// its ceremony copied must be current, and a passkey's counter value, when
// it has one, is consumed, so that of two assertions with the same non-zero
// counter for one credential, verified at the same moment on one instance
// or several, only one passes (reading the stored counter, comparing and
// UpdateCredential are separate steps of the application's store).
func (c *attempt) record(g grantRecord, dropped []grantRecord, credentialID []byte, counter uint32) *refusal {
	key := ""
	if counter != 0 {
		key = counterKey(g.user, credentialID, counter) // the user is the owner, checked before
	}
	life := c.s.grantLifetime()
	if c.tokenRequested { // the token's jti is this record: it lives as long as the token
		life = max(life, c.s.tokens.ttl+futureSkew+time.Second)
	}
	ops := c.s.grantOps(g, dropped, life, c.method == MethodPasskey, key)
	_, failed, err := c.s.update(c.ctx, ops)
	switch {
	case err != nil:
		return c.registryFailed(err)
	case failed == opGrantEpoch || failed == opGrantSession:
		return refuse(errExpired, slog.LevelWarn, "revoked while the ceremony ran")
	case failed == opGrantCounter && key != "":
		c.cloneDetected(g.user, counter, counter)
		return refuse(errVerifyFailed, slog.LevelWarn, "sign counter value already used (possible cloned authenticator)")
	case failed >= 0:
		return c.registryFailed(fmt.Errorf("grant update failed at op %d", failed))
	}
	return nil
}

// grant puts grant g, recorded in the Registry, in the session and answers
// 200. For a bound ceremony it first hands the evidence to
// Config.RecordEvidence, and grants nothing if that fails.
func (c *attempt) grant(p pending, g grantRecord, gs []grantRecord, m proof) {
	s, uid := c.s, c.who.handle
	if len(p.op) > 0 && s.recordEvidence != nil && m.evidence != nil {
		ev := *m.evidence
		ev.At = time.Unix(g.at, 0)
		if err := s.recordEvidence(c.ctx, ev); err != nil {
			s.storeFailed(c.r, "evidence", err, c.credAttr)
			c.fail(refuse(errInternal, slog.LevelError, "RecordEvidence failed"))
			return
		}
	}
	res := verifyResult{Status: "ok", ReauthenticatedAt: time.Unix(g.at, 0).UTC().Format(time.RFC3339)}
	if c.tokenRequested {
		token, exp, err := s.tokens.sign(g, c.audience, c.now)
		if err != nil {
			s.storeFailed(c.r, "tokens", err)
			c.fail(refuse(errInternal, slog.LevelError, "signing the token failed"))
			return
		}
		res.Token, res.TokenExpiresAt = token, exp.UTC().Format(time.RFC3339)
	}
	c.putGrant(p, gs)
	if err := s.save(c.w, c.r, c.sess); err != nil {
		s.storeFailed(c.r, "session", err, userAttr(uid))
		c.ps = nil // nothing to clear: the session was not saved
		c.fail(refuse(errInternal, slog.LevelError, "saving the session failed"))
		return
	}
	if s.log.Enabled(c.ctx, slog.LevelInfo) { // spares building the attributes
		attrs := []slog.Attr{userAttr(uid), slog.String("method", m.name), slog.String("scope", string(p.scope))}
		if c.credAttr.Key != "" {
			attrs = append(attrs, c.credAttr)
		}
		if c.tokenRequested {
			attrs = append(attrs, slog.Bool("token", true))
		}
		s.event(c.r, slog.LevelInfo, EventReauthSucceeded, attrs...)
	}
	c.result = res
	if !c.quiet {
		writeJSONBytes(c.w, http.StatusOK, res.appendJSON(make([]byte, 0, 96+len(res.Token))))
	}
}

// succeed records the grant that pending ceremony p earns with a method
// other than a passkey, m, and answers: the success of a Method and of an
// External alike.
func (c *attempt) succeed(p pending, m proof) {
	g := c.newGrant(p, m)
	gs, dropped := c.nextGrants(p, g)
	if f := c.record(g, dropped, nil, 0); f != nil {
		c.fail(f)
		return
	}
	c.grant(p, g, gs, m)
}

// putGrant writes the grants gs into the session, with what the new one
// ends: the pending ceremony p, and for a bound grant its pending operation.
func (c *attempt) putGrant(p pending, gs []grantRecord) {
	secs := append(make([]section, 0, 3), section{secGrants, encodeGrants(gs), len(gs) == 0})
	// A server-side store keeps the session under an ID that the cookie
	// carries: the grant gets a new one, so that an ID planted in the
	// browser before the step-up (session fixation) never holds a grant.
	// Cookie stores have no ID.
	c.sess.ID = ""
	if p.challenge != nil { // a passkey ceremony: it is done
		var rest []pending
		for _, q := range c.ps {
			if !bytes.Equal(q.challenge, p.challenge) {
				rest = append(rest, q)
			}
		}
		secs = append(secs, section{secPending, encodePending(rest), len(rest) == 0})
	}
	if len(p.op) > 0 {
		var ops []pendingOp
		for _, o := range readOperations(c.sess) {
			if !bytes.Equal(o.digest, p.op) || !bytes.Equal(o.user, c.who.handle) {
				ops = append(ops, o)
			}
		}
		secs = append(secs, section{secOperations, encodeOperations(ops), len(ops) == 0})
	}
	putSections(c.sess, secs...)
}

// verifyResult is the body of a successful verify.
type verifyResult struct {
	Status            string `json:"status"`
	ReauthenticatedAt string `json:"reauthenticated_at"`
	Token             string `json:"token,omitempty"`            // a step-up token, when asked for
	TokenExpiresAt    string `json:"token_expires_at,omitempty"` // its exp, RFC 3339
}

// appendJSON appends what encoding/json writes for v, and a newline
// (TestVerifyResultJSON holds it to that), without its reflection.
func (v verifyResult) appendJSON(b []byte) []byte {
	b = appendJSONString(append(b, `{"status":`...), v.Status)
	b = appendJSONString(append(b, `,"reauthenticated_at":`...), v.ReauthenticatedAt)
	if v.Token != "" {
		b = appendJSONString(append(b, `,"token":`...), v.Token)
	}
	if v.TokenExpiresAt != "" {
		b = appendJSONString(append(b, `,"token_expires_at":`...), v.TokenExpiresAt)
	}
	return append(b, "}\n"...)
}
