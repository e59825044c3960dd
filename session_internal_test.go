package stepup

import (
	"bytes"
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
