package stepup

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// TestOptionsJSONIsGoWebAuthns checks that the options the handler writes are
// byte for byte what encoding/json writes for go-webauthn's type.
func TestOptionsJSONIsGoWebAuthns(t *testing.T) {
	wa, err := webauthn.New(&webauthn.Config{RPID: "app.example", RPDisplayName: "Test", RPOrigins: []string{"https://app.example"}})
	if err != nil {
		t.Fatal(err)
	}
	u := optionsTestUser{}
	for i := range 3 {
		u.creds = append(u.creds, webauthn.Credential{
			ID:        bytes.Repeat([]byte{byte(250 + i)}, 64),
			Transport: []protocol.AuthenticatorTransport{protocol.Internal, protocol.Hybrid},
		})
	}
	u.creds = append(u.creds, webauthn.Credential{ID: []byte{0xfb, 0xff}}) // no transports
	a, _, err := wa.BeginLogin(u, webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []*Operation{nil, {Digest: "ZGlnZXN0", Description: "Pay <€5> & \"co\""}} {
		want, err := json.Marshal(struct {
			protocol.PublicKeyCredentialRequestOptions
			Operation *Operation `json:"operation,omitempty"`
		}{a.Response, op})
		if err != nil {
			t.Fatal(err)
		}
		if got := writtenOptions(&a.Response, op); !bytes.Equal(got, append(want, '\n')) {
			t.Fatalf("writeOptions wrote %s\nwant %s", got, want)
		}
	}
}

// writtenOptions is the body writeOptions writes for o and op, after
// checking its status and headers.
func writtenOptions(o *protocol.PublicKeyCredentialRequestOptions, op *Operation) []byte {
	w := httptest.NewRecorder()
	writeOptions(w, o, op)
	h := w.Header()
	if w.Code != 200 || h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" || h.Get("X-Content-Type-Options") != "nosniff" {
		return []byte(fmt.Sprintf("status %d, headers %v", w.Code, h))
	}
	return w.Body.Bytes()
}

// FuzzOptionsJSON holds writeOptions, which appends the options JSON by hand
// on its common path, to what encoding/json writes for go-webauthn's own
// type beside the bound operation, byte for byte, whatever the strings (HTML
// characters, control characters, invalid UTF-8), the lengths, the empty
// fields and the extensions (left to encoding/json).
func FuzzOptionsJSON(f *testing.F) {
	f.Add([]byte("challenge"), 120000, "app.example", []byte{0xfb, 0xff}, []byte("id2"), "internal", "hybrid", "required", "", "ZGlnZXN0", "Pay <€5> & \"co\"", true, "")
	f.Add([]byte{}, 0, "", []byte{}, []byte{}, "", "", "", "security-key", "", "", false, "https://legacy.example")
	f.Add([]byte{1}, -5, "a\u2028b\x7f\xff", []byte{0}, []byte{}, "\x00", "usb", "discouraged", "client-device", "\\", "\n\t\u0085", true, "")
	f.Add([]byte("c"), 1, "x<y>&z", []byte("i"), []byte("j"), "\"q\"", "a\\b", "<required>", "&", "<", "1 < 2 & 3 > 2", true, "")
	f.Fuzz(func(t *testing.T, challenge []byte, timeout int, rpID string, id1, id2 []byte, tr1, tr2, uv, hint, digest, description string, bound bool, appID string) {
		o := protocol.PublicKeyCredentialRequestOptions{Challenge: challenge, Timeout: timeout, RelyingPartyID: rpID,
			UserVerification: protocol.UserVerificationRequirement(uv)}
		if len(id1) > 0 {
			o.AllowedCredentials = append(o.AllowedCredentials, protocol.CredentialDescriptor{Type: protocol.PublicKeyCredentialType, CredentialID: id1})
		}
		if len(id2) > 0 {
			var ts []protocol.AuthenticatorTransport
			for _, x := range []string{tr1, tr2} {
				if x != "" {
					ts = append(ts, protocol.AuthenticatorTransport(x))
				}
			}
			o.AllowedCredentials = append(o.AllowedCredentials, protocol.CredentialDescriptor{Type: protocol.CredentialType(tr2), CredentialID: id2, Transport: ts})
		}
		if hint != "" {
			o.Hints = []protocol.PublicKeyCredentialHints{protocol.PublicKeyCredentialHints(hint), "hybrid"}
		}
		o.Extensions.AppID = appID
		var op *Operation
		if bound {
			op = &Operation{Digest: digest, Description: description}
		}
		want, err := json.Marshal(struct {
			protocol.PublicKeyCredentialRequestOptions
			Operation *Operation `json:"operation,omitempty"`
		}{o, op})
		if err != nil {
			t.Fatal(err)
		}
		if got := writtenOptions(&o, op); !bytes.Equal(got, append(want, '\n')) {
			t.Fatalf("writeOptions wrote %s\nwant %s", got, want)
		}
	})
}

type optionsTestUser struct{ creds []webauthn.Credential }

func (optionsTestUser) WebAuthnID() []byte                           { return []byte("handle") }
func (optionsTestUser) WebAuthnName() string                         { return "name" }
func (optionsTestUser) WebAuthnDisplayName() string                  { return "name" }
func (u optionsTestUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }
