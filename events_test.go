package stepup_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// TestChallengeNeverReachesTheLog answers with the pending challenge spelled
// with other unused bits in its last character: the same bytes to a lenient
// decoder. It must not match (or consume) the pending challenge, and no
// failure may log a challenge.
func TestChallengeNeverReachesTheLog(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	options := h.options(c)
	var o struct{ Challenge string }
	json.Unmarshal(options, &o)
	alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, o.Challenge[len(o.Challenge)-1])
	respelled := o.Challenge[:len(o.Challenge)-1] + string(alphabet[last^1]) // 32 bytes: the last 2 bits are unused
	if b1, _ := base64.RawURLEncoding.DecodeString(respelled); !bytes.Equal(b1, unb64(t, o.Challenge)) {
		t.Fatal("the respelled challenge decodes to other bytes")
	}
	r := h.verify(c, h.assert(options, stepuptest.WithClientData(func(d *stepuptest.ClientData) { d.Challenge = respelled })))
	expectError(t, r, 400, "challenge_expired")

	// Other failures that involve the challenge.
	c2 := h.client("alice")
	o2 := h.options(c2)
	expectError(t, h.verify(c2, h.assert(o2, stepuptest.WithChallenge([]byte("0123456789abcdef0123456789abcdef")))), 400, "challenge_expired")
	c3 := h.client("alice")
	o3 := h.options(c3)
	expectError(t, h.verify(c3, h.assert(o3, stepuptest.WithOrigin("https://evil.example"))), 400, "verification_failed")

	for _, opts := range [][]byte{options, o2, o3} {
		var oo struct{ Challenge string }
		json.Unmarshal(opts, &oo)
		raw := unb64(t, oo.Challenge)
		for _, spelled := range []string{oo.Challenge, base64.StdEncoding.EncodeToString(raw), fmt.Sprintf("%#v", oo.Challenge)} {
			if strings.Contains(h.log.String(), spelled) {
				t.Fatalf("the log holds a challenge: %s", h.log)
			}
		}
	}
	if !strings.Contains(h.log.String(), "Error validating origin") {
		t.Error("the origin failure's cause is not logged; the test no longer shows DevInfo is logged where safe")
	}
}

func TestNotOwnedIsASecurityEventWithTheContractMessage(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	bob := h.users.cred("bob", 0).ID
	r := h.verify(c, h.assert(h.options(c), stepuptest.WithCredential(bob)))
	expectError(t, r, 403, "credential_not_owned")
	if r.body["message"] != "Credential does not belong to the active user." {
		t.Errorf("message %q", r.body["message"])
	}
	ev := h.log.events(stepup.EventReauthFailed)
	if len(ev) != 1 || ev[0]["reason"] != "credential_not_owned" || ev[0]["level"] != "WARN" ||
		ev[0]["credential_id"] != base64.RawURLEncoding.EncodeToString(bob) {
		t.Errorf("events %v", ev)
	}
}

// TestEveryEventIsDocumented: every Event constant's value has a row in
// docs/events.md and is named in doc.go, so that log consumers can rely on
// the list.
func TestEveryEventIsDocumented(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "events.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	table, _ := os.ReadFile("docs/events.md")
	pkgdoc, _ := os.ReadFile("doc.go")
	n := 0
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || !strings.HasPrefix(name.Name, "Event") {
					continue // an alias of another constant
				}
				value, _ := strconv.Unquote(lit.Value)
				n++
				if !strings.Contains(string(table), "| `"+value+"` |") {
					t.Errorf("%s (%q) has no row in docs/events.md", name.Name, value)
				}
				if !strings.Contains(string(pkgdoc), value) {
					t.Errorf("%s (%q) is not named in doc.go", name.Name, value)
				}
			}
		}
	}
	if n < 14 {
		t.Errorf("found %d events in events.go", n)
	}
}
