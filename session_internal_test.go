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

// TestSessionReadsEarlierLayout checks that a session written before the
// sections shared one value (one key per section) keeps its grants, its
// pending ceremonies and its ID: they are read as they are, and moved into
// the one value at the next write, the old keys dropped.
func TestSessionReadsEarlierLayout(t *testing.T) {
	sess := sessions.NewSession(nil, "stepup")
	sid := bytes.Repeat([]byte{7}, sessionIDLen)
	g := grantRecord{at: 1764072000, user: []byte("handle-alice"), id: bytes.Repeat([]byte{1}, 16), method: []byte(MethodPasskey)}
	p := pending{expires: 1764072120, challenge: bytes.Repeat([]byte{2}, 32), user: []byte("handle-alice")}
	sess.Values["stepup.grants"] = encodeGrants([]grantRecord{g})
	sess.Values["stepup.pending"] = encodePending([]pending{p})
	sess.Values["stepup.sid"] = sid
	sess.Values["app.user"] = "alice" // the application's own value, when it shares the session

	check := func(when string, wantPending int) {
		t.Helper()
		if gs := readGrants(nil, sess); len(gs) != 1 || gs[0].at != g.at || !bytes.Equal(gs[0].sid, sid) {
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
