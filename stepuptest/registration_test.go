package stepuptest_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/passkey-stepup/stepup/stepuptest"
)

// register runs a registration through go-webauthn: BeginRegistration, the
// authenticator's answer, ParseCredentialCreationResponseBody and
// FinishRegistration. wrapped sends BeginRegistration's CredentialCreation as
// it is; otherwise only its "publicKey" options.
func register(t *testing.T, wa *webauthn.WebAuthn, auth *stepuptest.Authenticator, user webauthn.User, wrapped bool, regOpts []webauthn.RegistrationOption, createOpts ...stepuptest.CreateOption) (*webauthn.Credential, []byte) {
	t.Helper()
	creation, session, err := wa.BeginRegistration(user, regOpts...)
	if err != nil {
		t.Fatal(err)
	}
	var options []byte
	if wrapped {
		options, err = json.Marshal(creation)
	} else {
		options, err = json.Marshal(creation.Response)
	}
	if err != nil {
		t.Fatal(err)
	}
	body, err := auth.Create(options, createOpts...)
	if err != nil {
		t.Fatalf("Create: %v\n%s", err, options)
	}
	if _, err := protocol.ParseCredentialCreationResponseBody(bytes.NewReader(body)); err != nil {
		t.Fatalf("toJSON shape rejected: %v\n%s", err, body)
	}
	cred, err := wa.FinishRegistration(user, *session, httptest.NewRequest(http.MethodPost, "/register/finish", bytes.NewReader(body)))
	if err != nil {
		var pe *protocol.Error
		errors.As(err, &pe)
		t.Fatalf("FinishRegistration: %v (%+v)\n%s", err, pe, body)
	}
	return cred, body
}

func TestCreateRegistersWithGoWebAuthnThenStepsUp(t *testing.T) {
	t.Parallel()
	required := webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
		ResidentKey: protocol.ResidentKeyRequirementRequired, UserVerification: protocol.VerificationRequired,
	})
	discouraged := webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{UserVerification: protocol.VerificationDiscouraged})
	for _, tc := range []struct {
		name       string
		wrapped    bool
		regOpts    []webauthn.RegistrationOption
		createOpts []stepuptest.CreateOption
		format     string // attestation format recorded
		attType    string // attestation type recorded
		uv, synced bool
	}{
		{"none wrapped pass", true, nil, nil, "none", "none", true, false},
		{"none bare pass", false, nil, nil, "none", "none", true, false},
		{"packed wrapped pass", true, nil, []stepuptest.CreateOption{stepuptest.WithAttestation("packed")}, "packed", "basic_surrogate", true, false},
		{"packed direct UV required pass", false, []webauthn.RegistrationOption{required, webauthn.WithConveyancePreference(protocol.PreferDirectAttestation)},
			[]stepuptest.CreateOption{stepuptest.WithAttestation("packed")}, "packed", "basic_surrogate", true, false},
		{"synced none pass", true, nil, []stepuptest.CreateOption{stepuptest.Synced()}, "none", "none", true, true},
		{"synced packed pass", false, nil, []stepuptest.CreateOption{stepuptest.Synced(), stepuptest.WithAttestation("packed")}, "packed", "basic_surrogate", true, true},
		{"UV discouraged pass", true, []webauthn.RegistrationOption{discouraged}, nil, "none", "none", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			users := stepuptest.NewUsers()
			ada := users.Add("ada")
			auth := stepuptest.New(origin)
			cred, _ := register(t, newWebAuthn(t), auth, &ada, tc.wrapped, tc.regOpts, tc.createOpts...)

			switch {
			case cred.AttestationFormat != tc.format || cred.AttestationType != tc.attType:
				t.Fatalf("attestation %s/%s, want %s/%s", cred.AttestationFormat, cred.AttestationType, tc.format, tc.attType)
			case !cred.Flags.UserPresent || cred.Flags.UserVerified != tc.uv:
				t.Fatalf("flags %+v, want UP and UV=%v", cred.Flags, tc.uv)
			case cred.Flags.BackupEligible != tc.synced || cred.Flags.BackupState != tc.synced:
				t.Fatalf("flags %+v, want BE=BS=%v", cred.Flags, tc.synced)
			case !slices.Equal(cred.Transport, []protocol.AuthenticatorTransport{protocol.Internal}):
				t.Fatalf("transports %v", cred.Transport)
			case cred.Authenticator.Attachment != protocol.Platform || cred.Authenticator.SignCount != 0:
				t.Fatalf("authenticator %+v", cred.Authenticator)
			case !bytes.Equal(cred.Authenticator.AAGUID, make([]byte, 16)):
				t.Fatalf("AAGUID %x, want zero", cred.Authenticator.AAGUID)
			}
			users.AddCredential("ada", *cred)

			// Step up with the new passkey through a real StepUp.
			su := newStepUp(t, users)
			mux := http.NewServeMux()
			mux.Handle("POST /api/reauth/options", su.OptionsHandler())
			mux.Handle("POST /api/reauth/verify", su.VerifyHandler())
			mux.Handle("POST /account/password", su.RequireRecentReauth(5*time.Minute)(http.HandlerFunc(
				func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "changed") })))
			srv := serve(t, mux)
			client, _ := newClient(t, users, srv, "ada")
			post := func() int {
				t.Helper()
				resp, err := client.Post(srv.URL+"/account/password", "text/plain", nil)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			if got := post(); got != http.StatusForbidden {
				t.Fatalf("before step-up: %d, want 403", got)
			}
			if err := auth.Reauthenticate(context.Background(), client, srv.URL); err != nil {
				t.Fatal(err)
			}
			if got := post(); got != http.StatusOK {
				t.Fatalf("after step-up: %d, want 200", got)
			}
			if u, _ := users.User("ada"); u.Credentials[0].Authenticator.SignCount != 1 {
				t.Fatalf("stored sign count %d, want 1", u.Credentials[0].Authenticator.SignCount)
			}
		})
	}
}

func TestCreateResponseShape(t *testing.T) {
	t.Parallel()
	users := stepuptest.NewUsers()
	ada := users.Add("ada")
	auth := stepuptest.New(origin)
	cred, body := register(t, newWebAuthn(t), auth, &ada, true,
		[]webauthn.RegistrationOption{webauthn.WithExtensions(webauthn.WithExtensionCredProps())})
	if cred.Extensions.RK == nil || !*cred.Extensions.RK {
		t.Fatalf("credProps: rk %v, want true", cred.Extensions.RK)
	}

	var got struct {
		ID, RawID, Type, AuthenticatorAttachment string
		Response                                 struct {
			ClientDataJSON, AttestationObject, PublicKey, AuthenticatorData string
			Transports                                                      []string
			PublicKeyAlgorithm                                              int
		}
		ClientExtensionResults map[string]any
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != b64(cred.ID) || got.RawID != got.ID || got.Type != "public-key" || got.AuthenticatorAttachment != "platform" {
		t.Fatalf("id %q rawId %q type %q attachment %q", got.ID, got.RawID, got.Type, got.AuthenticatorAttachment)
	}
	if !slices.Equal(got.Response.Transports, []string{"internal"}) || got.Response.PublicKeyAlgorithm != -7 {
		t.Fatalf("transports %v alg %d", got.Response.Transports, got.Response.PublicKeyAlgorithm)
	}
	if _, ok := got.ClientExtensionResults["credProps"]; !ok || len(got.ClientExtensionResults) != 1 {
		t.Fatalf("clientExtensionResults %v", got.ClientExtensionResults)
	}
	var cd struct{ Type, Challenge, Origin string }
	if err := json.Unmarshal(unb64(t, got.Response.ClientDataJSON), &cd); err != nil {
		t.Fatal(err)
	}
	if cd.Type != "webauthn.create" || cd.Origin != origin || cd.Challenge == "" {
		t.Fatalf("client data %+v", cd)
	}
	// publicKey is the SubjectPublicKeyInfo of the attested COSE key.
	spki, err := x509.ParsePKIXPublicKey(unb64(t, got.Response.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	cose, err := webauthncose.ParsePublicKey(cred.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ec := cose.(webauthncose.EC2PublicKeyData)
	pub := spki.(*ecdsa.PublicKey)
	raw, _ := pub.Bytes()
	if !bytes.Equal(raw[1:33], ec.XCoord) || !bytes.Equal(raw[33:], ec.YCoord) {
		t.Fatal("publicKey is not the attested key")
	}
	// authenticatorData: rpIdHash, flags UP|UV|AT, counter 0, zero AAGUID,
	// the ID and the key.
	ad := unb64(t, got.Response.AuthenticatorData)
	if !bytes.Equal(ad[:32], sha([]byte(rpID))) || ad[32] != 0x45 || !bytes.Equal(ad[33:53], make([]byte, 20)) ||
		int(ad[53])<<8|int(ad[54]) != len(cred.ID) || !bytes.Equal(ad[55:55+len(cred.ID)], cred.ID) || !bytes.Equal(ad[55+len(cred.ID):], cred.PublicKey) {
		t.Fatalf("authenticatorData %x", ad)
	}
}

// creationOptions returns go-webauthn's registration options for a fresh
// user, as a JSON object to change.
func creationOptions(t *testing.T, regOpts ...webauthn.RegistrationOption) map[string]any {
	t.Helper()
	users := stepuptest.NewUsers()
	ada := users.Add("ada")
	creation, _, err := newWebAuthn(t).BeginRegistration(&ada, regOpts...)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(creation.Response)
	var o map[string]any
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestCreateRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		origin string
		change func(t *testing.T, a *stepuptest.Authenticator, o map[string]any)
		want   error // nil: succeeds; errAny: any error
	}{
		{"excluded passkey reject", origin, func(t *testing.T, a *stepuptest.Authenticator, o map[string]any) {
			id := createdID(t, a)
			o["excludeCredentials"] = []any{
				map[string]any{"type": "public-key", "id": b64([]byte("someone else's"))},
				map[string]any{"type": "public-key", "id": id, "transports": []string{"internal"}},
			}
		}, stepuptest.ErrCredentialExcluded},
		{"registered passkey excluded reject", origin, func(t *testing.T, a *stepuptest.Authenticator, o map[string]any) {
			o["excludeCredentials"] = []any{map[string]any{"type": "public-key", "id": b64(a.Register(rpID, []byte("ada")).ID)}}
		}, stepuptest.ErrCredentialExcluded},
		{"exclusion of another site's passkey pass", origin, func(t *testing.T, a *stepuptest.Authenticator, o map[string]any) {
			o["excludeCredentials"] = []any{map[string]any{"type": "public-key", "id": b64(a.Register("other.example", []byte("ada")).ID)}}
		}, nil},
		{"exclusion of unknown passkeys pass", origin, func(t *testing.T, a *stepuptest.Authenticator, o map[string]any) {
			createdID(t, a)
			o["excludeCredentials"] = []any{map[string]any{"type": "public-key", "id": b64([]byte("unknown"))}}
		}, nil},
		{"no ES256 reject", origin, func(t *testing.T, a *stepuptest.Authenticator, o map[string]any) {
			o["pubKeyCredParams"] = []any{map[string]any{"type": "public-key", "alg": -257}, map[string]any{"type": "public-key", "alg": -8}}
		}, stepuptest.ErrUnsupportedAlgorithm},
		{"ES256 of another type reject", origin, func(t *testing.T, a *stepuptest.Authenticator, o map[string]any) {
			o["pubKeyCredParams"] = []any{map[string]any{"type": "password", "alg": -7}}
		}, stepuptest.ErrUnsupportedAlgorithm},
		{"ES256 last pass", origin, func(t *testing.T, a *stepuptest.Authenticator, o map[string]any) {
			o["pubKeyCredParams"] = []any{map[string]any{"type": "public-key", "alg": -257}, map[string]any{"type": "public-key", "alg": -7}}
		}, nil},
		{"empty pubKeyCredParams pass", origin, func(t *testing.T, a *stepuptest.Authenticator, o map[string]any) {
			o["pubKeyCredParams"] = []any{}
		}, nil},
		{"missing pubKeyCredParams reject", origin, func(t *testing.T, a *stepuptest.Authenticator, o map[string]any) {
			delete(o, "pubKeyCredParams")
		}, errAny},
		{"missing challenge reject", origin, func(t *testing.T, a *stepuptest.Authenticator, o map[string]any) {
			delete(o, "challenge")
		}, errAny},
		{"missing user.id reject", origin, func(t *testing.T, a *stepuptest.Authenticator, o map[string]any) {
			delete(o["user"].(map[string]any), "id")
		}, errAny},
		{"user.id of 65 bytes reject", origin, func(t *testing.T, a *stepuptest.Authenticator, o map[string]any) {
			o["user"].(map[string]any)["id"] = b64(make([]byte, 65))
		}, errAny},
		{"missing rp.name reject", origin, func(t *testing.T, a *stepuptest.Authenticator, o map[string]any) {
			delete(o["rp"].(map[string]any), "name")
		}, errAny},
		{"rp.id of another site reject", origin, func(t *testing.T, a *stepuptest.Authenticator, o map[string]any) {
			o["rp"].(map[string]any)["id"] = "evil.example"
		}, errAny},
		{"rp.id a mere suffix reject", "https://myapp.example", func(t *testing.T, a *stepuptest.Authenticator, o map[string]any) {}, errAny},
		{"rp.id parent of origin pass", "https://login.app.example", func(t *testing.T, a *stepuptest.Authenticator, o map[string]any) {}, nil},
		{"rp.id absent pass", "https://login.app.example", func(t *testing.T, a *stepuptest.Authenticator, o map[string]any) {
			delete(o["rp"].(map[string]any), "id")
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := stepuptest.New(tc.origin)
			o := creationOptions(t)
			tc.change(t, a, o)
			options, _ := json.Marshal(o)
			body, err := a.Create(options)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("got %v, want success", err)
			case tc.want == errAny && err == nil, tc.want != nil && tc.want != errAny && !errors.Is(err, tc.want):
				t.Fatalf("got %v, want %v", err, tc.want)
			case err != nil:
				return
			}
			parsed, err := protocol.ParseCredentialCreationResponseBytes(body)
			if err != nil {
				t.Fatal(err)
			}
			// The rp ID hashed is rp.id, or the origin's host without one.
			want := rpID
			if rp := o["rp"].(map[string]any); rp["id"] == nil {
				want = "login.app.example"
			}
			if !bytes.Equal(parsed.Response.AttestationObject.AuthData.RPIDHash, sha([]byte(want))) {
				t.Fatalf("rpIdHash is not SHA-256(%q)", want)
			}
		})
	}
}

var errAny = errors.New("any error")

// createdID makes a passkey for rpID with Create and returns its ID.
func createdID(t *testing.T, a *stepuptest.Authenticator) string {
	t.Helper()
	options, _ := json.Marshal(creationOptions(t))
	body, err := a.Create(options)
	if err != nil {
		t.Fatal(err)
	}
	var r struct{ ID string }
	json.Unmarshal(body, &r)
	return r.ID
}

func TestCreatedPasskeyAnswersGet(t *testing.T) {
	t.Parallel()
	a := stepuptest.New(origin)
	id := createdID(t, a)
	var o map[string]any
	json.Unmarshal([]byte(options), &o)
	o["allowCredentials"] = []map[string]string{{"type": "public-key", "id": id}}
	opts, _ := json.Marshal(o)
	body, err := a.Get(opts)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		t.Fatal(err)
	}
	if b64(parsed.RawID) != id || string(parsed.Response.UserHandle) != "handle-ada" {
		t.Fatalf("answered with %x for user %q", parsed.RawID, parsed.Response.UserHandle)
	}
	if !a.Forget(parsed.RawID) {
		t.Fatal("Forget of a created passkey")
	}
}

func TestWithAttestationPanicsOnUnknownFormat(t *testing.T) {
	t.Parallel()
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "WithAttestation") {
			t.Fatalf("recovered %v, want a WithAttestation panic", r)
		}
	}()
	stepuptest.WithAttestation("tpm")
}

func unb64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCreateRejectsWhatIsNotOptions(t *testing.T) {
	t.Parallel()
	a := stepuptest.New(origin)
	for _, in := range []string{``, `not json`, `[]`, `{"publicKey": 1}`, `{"publicKey": {}}`, `{"challenge": 5}`} {
		if _, err := a.Create([]byte(in)); err == nil {
			t.Errorf("Create(%q) succeeded", in)
		}
	}
}
