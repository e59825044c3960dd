package stepup

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gorilla/sessions"
)

// TestSessionSectionsKeepEachOther checks that writing one section of the
// step-up value replaces that section only, and that removing the last
// removes the value.
func TestSessionSectionsKeepEachOther(t *testing.T) {
	sess := sessions.NewSession(nil, "stepup")
	sid := bytes.Repeat([]byte{7}, sessionIDLen)
	g := grantRecord{at: 1764072000, user: []byte("handle-alice"), id: bytes.Repeat([]byte{1}, 16), method: []byte(MethodPasskey)}
	p := pending{expires: 1764072120, challenge: bytes.Repeat([]byte{2}, 32), user: []byte("handle-alice")}

	put(sess, secSessionID, sid, false)
	writeGrants(sess, []grantRecord{g})
	writePending(sess, []pending{p, p})
	writePending(sess, []pending{p}) // replaces, in place of appending
	if len(sess.Values) != 1 {
		t.Fatalf("session holds %d values, want the one step-up value", len(sess.Values))
	}
	if got := value(sess, secSessionID); !bytes.Equal(got, sid) {
		t.Errorf("session ID %x, want %x", got, sid)
	}
	if gs := readGrants(nil, sess); len(gs) != 1 || gs[0].at != g.at || !bytes.Equal(gs[0].sid, sid) {
		t.Errorf("grants %+v, want the one written, tagged with the session ID", gs)
	}
	if ps := readPending(sess); len(ps) != 1 || !bytes.Equal(ps[0].challenge, p.challenge) {
		t.Errorf("pending %+v, want the one written", ps)
	}

	writeGrants(sess, nil)
	writePending(sess, nil)
	if gs, ps := readGrants(nil, sess), readPending(sess); len(gs) != 0 || len(ps) != 0 {
		t.Errorf("after removing them: %d grants, %d pending", len(gs), len(ps))
	}
	if got := value(sess, secSessionID); !bytes.Equal(got, sid) {
		t.Errorf("session ID %x after removing the others, want %x", got, sid)
	}
	put(sess, secSessionID, nil, true)
	if len(sess.Values) != 0 {
		t.Errorf("an empty step-up session holds %v", sess.Values)
	}
}

// TestPutSectionsIsPutsInTurn: replacing several sections at once leaves
// every section as replacing them one by one does, from the current layout
// and from the earlier one (one key per section).
func TestPutSectionsIsPutsInTurn(t *testing.T) {
	sid := bytes.Repeat([]byte{7}, sessionIDLen)
	g := grantRecord{at: 1764072000, user: []byte("handle-alice"), id: bytes.Repeat([]byte{1}, 16), method: []byte(MethodPasskey)}
	p := pending{expires: 1764072120, challenge: bytes.Repeat([]byte{2}, 32), user: []byte("handle-alice")}
	o := pendingOp{expires: 1764072120, user: []byte("handle-alice"), digest: bytes.Repeat([]byte{3}, 32), description: []byte("Pay")}
	current := func() *sessions.Session {
		sess := sessions.NewSession(nil, "stepup")
		put(sess, secSessionID, sid, false)
		writeGrants(sess, []grantRecord{g})
		writePending(sess, []pending{p, p})
		writeOperations(sess, []pendingOp{o})
		return sess
	}
	earlier := func() *sessions.Session {
		sess := sessions.NewSession(nil, "stepup")
		sess.Values["stepup.grants"] = encodeGrantsV3([]grantRecord{g})
		sess.Values["stepup.pending"] = encodePendingV3([]pending{p})
		sess.Values["stepup.sid"] = sid
		return sess
	}
	g2 := g
	g2.at++
	secs := []section{{secGrants, encodeGrants([]grantRecord{g, g2}), false}, {secPending, nil, true}, {secOperations, encodeOperations(nil), true}}
	for name, mk := range map[string]func() *sessions.Session{"current": current, "earlier": earlier} {
		once, inTurn := mk(), mk()
		putSections(once, secs...)
		for _, x := range secs {
			put(inTurn, x.kind, x.b, x.empty)
		}
		for _, k := range []byte{secGrants, secPending, secOperations, secSessionID, secExternal} {
			if a, b := value(once, k), value(inTurn, k); !bytes.Equal(a, b) {
				t.Errorf("%s: section %c is %x at once, %x in turn", name, k, a, b)
			}
		}
		if len(once.Values) != len(inTurn.Values) {
			t.Errorf("%s: %d values at once, %d in turn", name, len(once.Values), len(inTurn.Values))
		}
	}
}

// TestSessionKeepsWithinItsBudget: a step-up session holding the most
// records of every kind, each at its longest, is more than a cookie store
// can write; fitSession drops other tabs' ceremonies first, then the
// oldest operations, then the oldest grants, keeping the newest of each,
// until a cookie store writes it. A session within its budget is left as
// it is.
func TestSessionKeepsWithinItsBudget(t *testing.T) {
	store := sessions.NewCookieStore(bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32))
	fill := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	user := fill('u', maxHandleLen)
	var filled func(grants int) *sessions.Session
	full := func() *sessions.Session { return filled(maxGrants) }
	filled = func(grants int) *sessions.Session {
		sess := sessions.NewSession(store, "stepup")
		put(sess, secSessionID, fill('s', sessionIDLen), false)
		var gs []grantRecord
		for i := range grants {
			gs = append(gs, grantRecord{at: int64(1764072000 + i), signIn: fill('i', signInTagLen), user: user, scope: fill('c', maxScopeLen),
				op: fill('o', 32), id: fill(byte(i), 16), method: fill('m', maxMethodLen), amr: fill('a', maxAMRLen),
				cred: fill('k', maxCredentialIDLen), revocation: revocation{userEpoch: 1, sessEpoch: 2}})
		}
		writeGrants(sess, gs)
		var ps []pending
		for i := range maxPending {
			ps = append(ps, pending{expires: int64(1764072120 + i), challenge: fill(byte(i), 64), user: user, scope: fill('c', maxScopeLen),
				nonce: fill('n', 32), op: fill('o', 32), revocation: revocation{userEpoch: 1, sessEpoch: 2}})
		}
		writePending(sess, ps)
		var ops []pendingOp
		for i := range maxOperations {
			ops = append(ops, pendingOp{expires: int64(1764072120 + i), user: user, digest: fill(byte(i), 32), description: fill('d', maxDescriptionLen)})
		}
		writeOperations(sess, ops)
		return sess
	}
	save := func(sess *sessions.Session) error {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		return sess.Save(r, httptest.NewRecorder())
	}
	if err := save(full()); err == nil {
		t.Fatal("a full session of the longest records was written as it is: the test no longer shows a session over its budget")
	}
	sess := full()
	if n := fitSession(sess); n == 0 {
		t.Fatal("fitSession dropped nothing")
	}
	if err := save(sess); err != nil {
		t.Fatalf("after fitSession: %v", err)
	}
	gs, ps, ops := readGrants(nil, sess), readPending(sess), readOperations(sess)
	if len(ps) != 1 || ps[0].expires != 1764072120+maxPending-1 {
		t.Errorf("pending %d, want the newest one only (the first dropped)", len(ps))
	}
	if len(ops) == 0 || ops[len(ops)-1].expires != 1764072120+maxOperations-1 {
		t.Errorf("operations: %d, want the newest kept", len(ops))
	}
	if len(gs) == 0 || gs[len(gs)-1].at != 1764072000+maxGrants-1 || (len(gs) < maxGrants && len(ops) > 1) {
		t.Errorf("grants: %d (operations %d), want the newest kept, and grants dropped only once one operation is left", len(gs), len(ops))
	}
	if !bytes.Equal(value(sess, secSessionID), fill('s', sessionIDLen)) {
		t.Error("the session ID was dropped")
	}

	// Two grants: dropping the other tabs' ceremonies is enough, and the
	// operations and grants are all kept.
	two := filled(2)
	if n := fitSession(two); n != maxPending-1 {
		t.Errorf("two grants: %d records dropped, want the %d other tabs' ceremonies", n, maxPending-1)
	}
	if gs, ps, ops := readGrants(nil, two), readPending(two), readOperations(two); len(gs) != 2 || len(ps) != 1 || len(ops) != maxOperations {
		t.Errorf("two grants: kept %d grants, %d pending, %d operations; want 2, 1, %d", len(gs), len(ps), len(ops), maxOperations)
	}

	small := sessions.NewSession(store, "stepup")
	writeGrants(small, []grantRecord{{at: 1, user: []byte("u"), id: fill(1, 16)}})
	writePending(small, []pending{{expires: 2, challenge: fill(2, 32), user: []byte("u")}, {expires: 3, challenge: fill(3, 32), user: []byte("u")}})
	before := bytes.Clone(small.Values[keySession].([]byte))
	if n := fitSession(small); n != 0 || !bytes.Equal(small.Values[keySession].([]byte), before) {
		t.Errorf("a session within its budget: %d records dropped", n)
	}
}

// TestSessionReadsEarlierLayout checks that a session written before the
// sections shared one value (one key per section) keeps its grants, its
// pending ceremonies and its ID: they are read as they are, and moved into
// the one value at the next write, the old keys dropped.
func TestSessionReadsEarlierLayout(t *testing.T) {
	sess := sessions.NewSession(nil, "stepup")
	sid := bytes.Repeat([]byte{7}, sessionIDLen)
	g := grantRecord{at: 1764072000, user: []byte("handle-alice"), id: bytes.Repeat([]byte{1}, 16), method: []byte(MethodPasskey), amr: []byte("hwk user")}
	p := pending{expires: 1764072120, challenge: bytes.Repeat([]byte{2}, 32), user: []byte("handle-alice")}
	sess.Values["stepup.grants"] = encodeGrantsV3([]grantRecord{g})
	sess.Values["stepup.pending"] = encodePendingV3([]pending{p})
	sess.Values["stepup.sid"] = sid
	sess.Values["app.user"] = "alice" // the application's own value, when it shares the session

	check := func(when string, wantPending int) {
		t.Helper()
		if gs := readGrants(nil, sess); len(gs) != 1 || gs[0].at != g.at || !bytes.Equal(gs[0].sid, sid) ||
			gs[0].export().Method != MethodPasskey || len(gs[0].export().AMR) != 2 {
			t.Errorf("%s: grants %+v, want the earlier one", when, gs)
		}
		if ps := readPending(sess); len(ps) != wantPending {
			t.Errorf("%s: %d pending, want %d", when, len(ps), wantPending)
		}
	}
	check("before a write", 1)
	writePending(sess, nil) // as a failed verify does
	check("after a write", 0)
	for _, k := range []string{"stepup.grants", "stepup.pending", "stepup.sid", "stepup.operations"} {
		if _, ok := sess.Values[k]; ok {
			t.Errorf("the earlier key %q is still in the session", k)
		}
	}
	if sess.Values["app.user"] != "alice" {
		t.Error("the application's value was dropped")
	}
}

// TestGrantRecordLeavesOutAPasskeysProof checks that a passkey grant's
// method and AMR are not written but read back, that another method's are
// written, and that a record naming the passkey's explicitly is refused (it
// would be a second encoding of the same grant).
func TestGrantRecordLeavesOutAPasskeysProof(t *testing.T) {
	id := bytes.Repeat([]byte{1}, 16)
	passkey := grantRecord{at: 1764072000, user: []byte("u"), id: id, method: []byte(MethodPasskey), amr: []byte("hwk user"), cred: []byte{9, 9}, flags: grantBackedUp}
	other := grantRecord{at: 1764072000, user: []byte("u"), id: id, method: []byte("password"), amr: []byte("pwd")}
	short, long := encodeGrants([]grantRecord{passkey}), encodeGrants([]grantRecord{other})
	if len(long)-len(short) != len("password")+len("pwd")-len(passkey.cred) {
		t.Errorf("records of %d and %d bytes: the passkey's method and AMR were written", len(short), len(long))
	}
	for _, g := range []grantRecord{passkey, other} {
		gs, ok := decodeGrants(nil, encodeGrants([]grantRecord{g}))
		if !ok || len(gs) != 1 || !bytes.Equal(gs[0].method, g.method) || !bytes.Equal(gs[0].amr, g.amr) || gs[0].flags != g.flags || gs[0].at != g.at {
			t.Errorf("%s grant: read back %+v, %v", g.method, gs, ok)
		}
	}
	explicit := writeGrantFields(writer{recordVersion}, passkey, passkey.method, passkey.amr)
	if _, ok := decodeGrants(nil, explicit); ok {
		t.Error("a record that writes out the passkey's method and AMR was accepted")
	}
	if _, ok := decodeGrants(nil, encodeGrantsV3([]grantRecord{passkey})); !ok {
		t.Error("a version 3 record of a passkey grant was refused")
	}
}

// writeGrantFields writes g in the current version with method and amr as
// given.
func writeGrantFields(w writer, g grantRecord, method, amr []byte) []byte {
	return w.small(g.at).bytes(g.signIn).bytes(g.user).bytes(g.scope).bytes(g.op).bytes(g.id).
		bytes(method).bytes(amr).bytes(g.cred).small(g.flags).revocation(g.revocation)
}

// encodeGrantsV3 and encodePendingV3 write records as version 3 did.
func encodeGrantsV3(gs []grantRecord) []byte {
	w := writer{legacyRecordVersion}
	for _, g := range gs {
		w = w.int(g.at).bytes(g.signIn).bytes(g.user).bytes(g.scope).bytes(g.op).bytes(g.id).
			bytes(g.method).bytes(g.amr).bytes(g.cred).int(g.flags).revocation(g.revocation)
	}
	return w
}

func encodePendingV3(ps []pending) []byte {
	w := writer{legacyRecordVersion}
	for _, p := range ps {
		w = w.int(p.expires).bytes(p.challenge).bytes(p.user).bytes(p.scope).bytes(p.nonce).bytes(p.op).revocation(p.revocation)
	}
	return w
}
