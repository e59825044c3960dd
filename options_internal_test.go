package stepup

import (
	"bytes"
	"encoding/json"
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
		got, err := json.Marshal(optionsResponse{newRequestOptionsJSON(&a.Response), op})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	}
}

type optionsTestUser struct{ creds []webauthn.Credential }

func (optionsTestUser) WebAuthnID() []byte                           { return []byte("handle") }
func (optionsTestUser) WebAuthnName() string                         { return "name" }
func (optionsTestUser) WebAuthnDisplayName() string                  { return "name" }
func (u optionsTestUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }
