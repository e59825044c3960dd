package stepup

import (
	"encoding/binary"
	"net/http"
	"slices"

	"github.com/gorilla/sessions"
)

// The step-up session holds one value, under keySession: a byte string of
// sections, each a kind byte, its length (a uvarint) and its bytes, in
// a format of our own, so that nothing has to be registered with gob (no
// global state) and the cookie stays small whatever the number of passkeys:
//
//	secGrants:     version(1) | grant...    (at most maxGrants)
//	secPending:    version(1) | pending...  (at most maxPending)
//	secOperations: version(1) | operation...(at most maxOperations)
//	secSessionID:  the session's random ID (sessionIDLen bytes)
//
// One value rather than one per section: gob writes each map entry's key
// and the type names of its key and value, and every byte of the session is
// encrypted, authenticated and base64-encoded twice on every save and read.
//
// Each record is a fixed sequence of fields: a time or a flag set is a
// varint (binary.AppendVarint, shortest form only), a revocation state 8
// bytes big endian, a byte string a 1-byte length and the bytes. A value
// that does not parse exactly counts as absent. Nothing here is secret or trusted on
// its own; the session store authenticates (and for a cookie store encrypts)
// the whole session.
const (
	keySession = "stepup"

	secGrants     = 'g'
	secPending    = 'p'
	secOperations = 'o'
	secSessionID  = 's'
	secExternal   = 'x' // in the External methods' own session (external.go)

	// recordVersion 2 added the method, AMR, credential and flags of a
	// grant; 3 the session tag and the revocation states a grant and a
	// pending ceremony copy, and the description a bound ceremony shows; 4
	// writes times and flags as varints (3 wrote 8 bytes) and a passkey
	// grant's method and AMR, always "passkey" and "hwk user", as two empty
	// strings. Version 3 is still read, so that grants and ceremonies in
	// flight outlive an upgrade; a session written by another version holds
	// nothing.
	recordVersion       = 4
	legacyRecordVersion = 3

	// sessionIDLen is the length of a session tag: the sign-in tag, or the
	// random ID kept in the step-up session when the UserStore does not
	// name its sign-in sessions.
	sessionIDLen = 16

	// signInTagLen is the length of the tag that binds a grant to the
	// application's sign-in session: a truncated SHA-256 of its ID.
	signInTagLen = 16

	// maxHandleLen is the longest user handle the WebAuthn specification
	// allows (§5.4.3: at most 64 bytes).
	maxHandleLen = 64

	// maxScopeLen is the longest scope name; see [Scope].
	maxScopeLen = 32

	// maxDescriptionLen bounds an operation's description kept in the
	// session (longer ones are cut at a rune boundary).
	maxDescriptionLen = 120

	// maxMethodLen is the longest method name; see [Method].
	maxMethodLen = 32

	// maxAMRLen bounds a grant's AMR values, joined by spaces.
	maxAMRLen = 64

	// maxCredentialIDLen is the longest credential ID a grant records
	// (WebAuthn allows 1023 bytes; a longer one is not recorded).
	maxCredentialIDLen = 255

	// Bounds on the records a session keeps; the oldest go first.
	maxGrants     = 4
	maxOperations = 3
)

// maxPending is how many started ceremonies a session keeps, so that two or
// three tabs can each finish theirs.
const maxPending = 3

// pending is a started ceremony: when it stops being valid (Unix seconds by
// Now), the challenge, who it was issued to, the scope, and for a bound
// ceremony the nonce and operation digest the challenge commits to.
type pending struct {
	revocation
	expires   int64
	challenge []byte
	user      []byte
	scope     []byte
	nonce     []byte
	op        []byte
}

// pendingOp is a refused bound request waiting for confirmation: its digest
// and description, for whom, until when.
type pendingOp struct {
	expires     int64
	user        []byte
	digest      []byte
	description []byte
}

// writer and reader implement the record fields.
type writer []byte

func (w writer) int(v int64) writer { return binary.BigEndian.AppendUint64(w, uint64(v)) }

func (w writer) bytes(b []byte) writer { return append(append(w, byte(len(b))), b...) }

// small writes a time or a flag set.
func (w writer) small(v int64) writer { return binary.AppendVarint(w, v) }

type reader struct {
	b      []byte
	ok     bool
	legacy bool // recordVersion 3: small is 8 bytes, a passkey's method and AMR are written out
}

// small reads what writer.small wrote, in its shortest form only, so that
// each record has one encoding.
func (r *reader) small() int64 {
	if r.legacy {
		return r.int()
	}
	v, n := binary.Varint(r.b)
	if n <= 0 || (n > 1 && r.b[n-1] == 0) { // a longer form ends in a zero byte
		r.ok = false
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) int() int64 {
	if len(r.b) < 8 {
		r.ok = false
		return 0
	}
	v := int64(binary.BigEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

// bytes reads a byte string of min to max bytes.
func (r *reader) bytes(min, max int) []byte {
	if len(r.b) < 1 || int(r.b[0]) < min || int(r.b[0]) > max || len(r.b) < 1+int(r.b[0]) {
		r.ok = false
		return nil
	}
	n := int(r.b[0])
	v := r.b[1 : 1+n : 1+n]
	r.b = r.b[1+n:]
	return v
}

// decodeList decodes a version byte followed by at most max records,
// appending them to dst[:0]. The reader goes to record by value so that it
// stays on the stack, and a dst with room for max records is never grown:
// a caller that passes an array decodes without allocating.
func decodeList[T any](dst []T, b []byte, max int, record func(reader) (T, reader)) ([]T, bool) {
	if len(b) < 1 || (b[0] != recordVersion && b[0] != legacyRecordVersion) {
		return nil, false
	}
	r := reader{b: b[1:], ok: true, legacy: b[0] == legacyRecordVersion}
	out := dst[:0]
	for len(r.b) > 0 && r.ok {
		if len(out) == max {
			return nil, false
		}
		var v T
		v, r = record(r)
		out = append(out, v)
	}
	if !r.ok {
		return nil, false
	}
	return out, true
}

func encodeList[T any](items []T, record func(writer, T) writer) []byte {
	w := append(make(writer, 0, 1+len(items)*128), recordVersion) // most records are under 128 bytes
	for _, it := range items {
		w = record(w, it)
	}
	return w
}

// The session tag of a revocation is not written: it is the record's
// sign-in tag, or else the step-up session's own ID (secSessionID), which
// readGrants and readPending fill in.
func (w writer) revocation(v revocation) writer {
	return w.int(v.userEpoch).int(v.sessEpoch)
}

func (r *reader) revocation() revocation {
	return revocation{userEpoch: r.int(), sessEpoch: r.int()}
}

// passkeyAMRField is a passkey grant's AMR as the record keeps it.
const passkeyAMRField = "hwk user"

// isPasskeyProof reports whether a grant's method and AMR are a passkey's,
// which the record leaves out.
func isPasskeyProof(method, amr []byte) bool {
	return string(method) == MethodPasskey && string(amr) == passkeyAMRField
}

func writeGrant(w writer, g grantRecord) writer {
	method, amr := g.method, g.amr
	if isPasskeyProof(method, amr) {
		method, amr = nil, nil
	}
	return w.small(g.at).bytes(g.signIn).bytes(g.user).bytes(g.scope).bytes(g.op).bytes(g.id).
		bytes(method).bytes(amr).bytes(g.cred).small(g.flags).revocation(g.revocation)
}

func readGrantRecord(r reader) (grantRecord, reader) {
	g := grantRecord{
		at:     r.small(),
		signIn: r.bytes(0, signInTagLen),
		user:   r.bytes(1, maxHandleLen),
		scope:  r.bytes(0, maxScopeLen),
		op:     r.bytes(0, 32),
		id:     r.bytes(16, 16),
		method: r.bytes(0, maxMethodLen),
		amr:    r.bytes(0, maxAMRLen),
		cred:   r.bytes(0, maxCredentialIDLen),
		flags:  r.small(),
	}
	g.revocation = r.revocation()
	switch {
	case r.legacy:
		r.ok = r.ok && len(g.method) > 0
	case len(g.method) == 0: // a passkey's, left out
		r.ok = r.ok && len(g.amr) == 0
		g.method, g.amr = passkeyMethodField, passkeyAMRBytes
	case isPasskeyProof(g.method, g.amr): // never written out
		r.ok = false
	}
	return g, r // after the reads: operands of one statement have no set order
}

// The method and AMR of a passkey grant read from a record (shared, never
// changed).
var (
	passkeyMethodField = []byte(MethodPasskey)[:len(MethodPasskey):len(MethodPasskey)]
	passkeyAMRBytes    = []byte(passkeyAMRField)[:len(passkeyAMRField):len(passkeyAMRField)]
)

func writePendingRecord(w writer, p pending) writer {
	return w.small(p.expires).bytes(p.challenge).bytes(p.user).bytes(p.scope).bytes(p.nonce).bytes(p.op).
		revocation(p.revocation)
}

func readPendingRecord(r reader) (pending, reader) {
	p := pending{
		expires:   r.small(),
		challenge: r.bytes(16, 64),
		user:      r.bytes(1, maxHandleLen),
		scope:     r.bytes(0, maxScopeLen),
		nonce:     r.bytes(0, 32),
		op:        r.bytes(0, 32),
	}
	p.revocation = r.revocation()
	return p, r // after the reads: operands of one statement have no set order
}

func writeOperationRecord(w writer, o pendingOp) writer {
	return w.small(o.expires).bytes(o.user).bytes(o.digest).bytes(o.description)
}

func readOperationRecord(r reader) (pendingOp, reader) {
	o := pendingOp{
		expires:     r.small(),
		user:        r.bytes(1, maxHandleLen),
		digest:      r.bytes(32, 32),
		description: r.bytes(0, maxDescriptionLen),
	}
	return o, r // after the reads: operands of one statement have no set order
}

func encodeGrants(gs []grantRecord) []byte { return encodeList(gs, writeGrant) }

func decodeGrants(dst []grantRecord, b []byte) ([]grantRecord, bool) {
	return decodeList(dst, b, maxGrants, readGrantRecord)
}

func encodePending(ps []pending) []byte { return encodeList(ps, writePendingRecord) }

func decodePending(b []byte) ([]pending, bool) {
	return decodeList(nil, b, maxPending, readPendingRecord)
}

func encodeOperations(ops []pendingOp) []byte { return encodeList(ops, writeOperationRecord) }

func decodeOperations(b []byte) ([]pendingOp, bool) {
	return decodeList(nil, b, maxOperations, readOperationRecord)
}

// session returns the step-up session of r. A session that cannot be read
// (tampered, expired, made under a retired key, or a failing store) comes
// back empty: it holds no grant and no pending challenge, and saving it
// overwrites the bad cookie.
func (s *StepUp) session(r *http.Request) *sessions.Session {
	sess, err := s.store.Get(r, s.name)
	if err != nil {
		s.log.LogAttrs(r.Context(), levelDebug, EventSessionUnreadable, errAttr(err))
	}
	if sess == nil {
		sess = sessions.NewSession(s.store, s.name)
	}
	return sess
}

// legacyKeys are the keys under which sessions written before keySession
// kept each section: they are read while keySession is absent, and dropped
// at the next write.
var legacyKeys = [...]struct {
	kind byte
	key  string
}{{secGrants, "stepup.grants"}, {secPending, "stepup.pending"}, {secOperations, "stepup.operations"}, {secSessionID, "stepup.sid"},
	{secExternal, "stepup.external"}}

// value returns section kind of sess, or nil. It is a slice of the stored
// value, which put never changes in place.
func value(sess *sessions.Session, kind byte) []byte {
	b, ok := sess.Values[keySession].([]byte)
	if !ok {
		return legacyValue(sess, kind)
	}
	for len(b) > 0 {
		k, v, rest, ok := nextSection(b)
		if !ok {
			return nil
		}
		if k == kind {
			return v
		}
		b = rest
	}
	return nil
}

// nextSection splits the first section off b.
func nextSection(b []byte) (kind byte, v, rest []byte, ok bool) {
	n, w := binary.Uvarint(b[1:])
	if w <= 0 || n > uint64(len(b)-1-w) {
		return 0, nil, nil, false
	}
	end := 1 + w + int(n)
	return b[0], b[1+w : end : end], b[end:], true
}

func legacyValue(sess *sessions.Session, kind byte) []byte {
	for _, l := range legacyKeys {
		if l.kind == kind {
			b, _ := sess.Values[l.key].([]byte)
			return b
		}
	}
	return nil
}

// put replaces section kind of sess with b, or deletes it when empty, in a
// new value that keeps the other sections (sessions written before
// keySession have theirs copied in).
func put(sess *sessions.Session, kind byte, b []byte, empty bool) {
	putSections(sess, section{kind, b, empty})
}

// section is a section's new content for putSections.
type section struct {
	kind  byte
	b     []byte
	empty bool // delete the section
}

// putSections replaces each of secs in sess, as put does, in one new value.
func putSections(sess *sessions.Session, secs ...section) {
	replaced := func(k byte) bool {
		return slices.ContainsFunc(secs, func(x section) bool { return x.kind == k })
	}
	old, ok := sess.Values[keySession].([]byte)
	if !ok && len(sess.Values) > 0 {
		for _, l := range legacyKeys {
			if v := legacyValue(sess, l.kind); len(v) > 0 && !replaced(l.kind) {
				old = appendSection(old, l.kind, v)
			}
			delete(sess.Values, l.key)
		}
	}
	size := len(old)
	for _, x := range secs {
		size += 1 + binary.MaxVarintLen64 + len(x.b)
	}
	out := make([]byte, 0, size)
	for len(old) > 0 {
		k, _, rest, ok := nextSection(old)
		if !ok {
			break
		}
		if !replaced(k) {
			out = append(out, old[:len(old)-len(rest)]...)
		}
		old = rest
	}
	for _, x := range secs {
		if !x.empty {
			out = appendSection(out, x.kind, x.b)
		}
	}
	if len(out) == 0 {
		delete(sess.Values, keySession)
		return
	}
	sess.Values[keySession] = out
}

func appendSection(dst []byte, kind byte, b []byte) []byte {
	return append(binary.AppendUvarint(append(dst, kind), uint64(len(b))), b...)
}

// readGrants decodes the grants of sess into dst[:0] (nil allocates; an
// array of maxGrants does not).
func readGrants(dst []grantRecord, sess *sessions.Session) []grantRecord {
	gs, _ := decodeGrants(dst, value(sess, secGrants))
	for i := range gs {
		gs[i].sid = sessionTagOf(sess, gs[i].signIn)
	}
	return gs
}

func writeGrants(sess *sessions.Session, gs []grantRecord) {
	put(sess, secGrants, encodeGrants(gs), len(gs) == 0)
}

func readPending(sess *sessions.Session) []pending {
	ps, _ := decodePending(value(sess, secPending))
	return ps
}

func writePending(sess *sessions.Session, ps []pending) {
	put(sess, secPending, encodePending(ps), len(ps) == 0)
}

func readOperations(sess *sessions.Session) []pendingOp {
	ops, _ := decodeOperations(value(sess, secOperations))
	return ops
}

func writeOperations(sess *sessions.Session, ops []pendingOp) {
	put(sess, secOperations, encodeOperations(ops), len(ops) == 0)
}

// newest keeps the last max items.
func newest[T any](items []T, max int) []T {
	if len(items) > max {
		return items[len(items)-max:]
	}
	return items
}

// sessionBudget bounds the step-up value: securecookie writes a cookie of
// at most 4,096 bytes (its default MaxLength), which holds about 2,200
// bytes of the value once gob-encoded, encrypted, authenticated and
// base64-encoded twice. Each kind of record is bounded in number, but the
// most of every kind at their longest (64-byte handles, 255-byte passkey
// IDs, 120-byte descriptions) would not fit.
const sessionBudget = 2048

// fitSession keeps the step-up value of sess within sessionBudget: while it
// is over, it drops the oldest record that can be made again, keeping the
// newest of each kind (what the step saving it has just written): another
// tab's pending ceremony first (it is started again), then the oldest
// operation awaiting confirmation (the client sends it again), then the
// oldest grant (the user confirms again). A dropped grant's Registry record
// lives out its lifetime. It returns how many records it dropped.
func fitSession(sess *sessions.Session) int {
	n := 0
	for b, _ := sess.Values[keySession].([]byte); len(b) > sessionBudget; b, _ = sess.Values[keySession].([]byte) {
		if ps := readPending(sess); len(ps) > 1 {
			writePending(sess, ps[1:])
		} else if ops := readOperations(sess); len(ops) > 1 {
			writeOperations(sess, ops[1:])
		} else if gs := readGrants(nil, sess); len(gs) > 1 {
			writeGrants(sess, gs[1:])
		} else {
			return n // one record of each kind: it fits whatever they hold
		}
		n++
	}
	return n
}

// save writes sess with the step-up cookie's fixed attributes: HttpOnly and
// SameSite Lax (Strict if the store asks for it); path, domain, Secure and
// lifetime come from the store. It first keeps the session within its
// budget (fitSession).
func (s *StepUp) save(w http.ResponseWriter, r *http.Request, sess *sessions.Session) error {
	fitSession(sess)
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
