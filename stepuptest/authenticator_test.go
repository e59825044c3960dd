package stepuptest_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"

	"github.com/passkey-stepup/stepup/stepuptest"
)

const options = `{"challenge":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8","rpId":"app.example","userVerification":"required","allowCredentials":[]}`

func TestAssertionParsesAndVerifies(t *testing.T) {
	a := stepuptest.New("https://app.example")
	// Many keys: a coordinate with a leading zero byte must still encode at
	// 32 bytes (about 1 key in 128 has one).
	for i := range 300 {
		cred := a.Register("app.example", []byte("user"))
		key, err := webauthncose.ParsePublicKey(cred.PublicKey)
		if err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
		body, err := a.Get([]byte(options), stepuptest.WithCredential(cred.ID))
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
		if err != nil {
			t.Fatalf("toJSON shape rejected: %v\n%s", err, body)
		}
		data := append([]byte(nil), parsed.Raw.AssertionResponse.AuthenticatorData...)
		ok, err := webauthncose.VerifySignature(key, append(data, sha(parsed.Raw.AssertionResponse.ClientDataJSON)...), parsed.Response.Signature)
		if !ok || err != nil {
			t.Fatalf("key %d: signature does not verify: %v", i, err)
		}
		if !parsed.Response.AuthenticatorData.Flags.HasUserVerified() || parsed.Response.AuthenticatorData.Counter != 1 {
			t.Fatalf("flags %v counter %d", parsed.Response.AuthenticatorData.Flags, parsed.Response.AuthenticatorData.Counter)
		}
	}
}

func TestGetHonoursAllowCredentials(t *testing.T) {
	a := stepuptest.New("https://app.example")
	mine := a.Register("app.example", []byte("me"))
	a.Register("app.example", []byte("other"))
	var o map[string]any
	json.Unmarshal([]byte(options), &o)
	o["allowCredentials"] = []map[string]string{{"type": "public-key", "id": b64(mine.ID)}}
	opts, _ := json.Marshal(o)
	for range 3 {
		body, err := a.Get(opts)
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ ID string }
		json.Unmarshal(body, &got)
		if got.ID != b64(mine.ID) {
			t.Fatalf("answered with %s, want the allowed passkey", got.ID)
		}
	}
	o["allowCredentials"] = []map[string]string{{"type": "public-key", "id": b64([]byte("nope"))}}
	opts, _ = json.Marshal(o)
	if _, err := a.Get(opts); !errors.Is(err, stepuptest.ErrNoCredential) {
		t.Fatalf("got %v, want ErrNoCredential", err)
	}
	if !a.Forget(mine.ID) || a.Forget(mine.ID) {
		t.Fatal("Forget")
	}
}

// Get answers go-webauthn's BeginLogin output as it is ({"publicKey": ...,
// "mediation": ...}), and ValidateLogin accepts the assertion.
func TestGetAnswersBeginLoginWrapper(t *testing.T) {
	t.Parallel()
	wa := newWebAuthn(t)
	a := stepuptest.New(origin)
	users := stepuptest.NewUsers()
	ada := users.Add("ada")
	users.AddCredential("ada", a.Register(rpID, ada.Handle))
	ada, _ = users.User("ada")
	assertion, session, err := wa.BeginLogin(&ada)
	if err != nil {
		t.Fatal(err)
	}
	options, _ := json.Marshal(assertion)
	body, err := a.Get(options)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wa.ValidateLogin(&ada, *session, parsed); err != nil {
		t.Fatal(err)
	}
}
