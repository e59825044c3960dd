// Package stepuptest is a test kit for applications that use stepup: a
// software WebAuthn authenticator that makes real ES256 passkeys (directly
// with [Authenticator.Register], or by answering the application's own
// registration options with [Authenticator.Create]) and signs real
// assertions, and helpers that run the step-up ceremony against a server
// with an *http.Client, at the documented paths or wherever the application
// mounts the handlers ([Endpoints]).
//
// The registrations and assertions it makes are the JSON a browser's
// PublicKeyCredential.toJSON() produces, signed over the options the server
// actually returned, so they go through the same go-webauthn verification as
// a browser's. It is for tests only: its keys live in memory.
package stepuptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// ErrNoCredential is returned by [Authenticator.Get] when the authenticator
// holds no passkey the options allow, as a browser rejects the request with
// NotAllowedError.
var ErrNoCredential = errors.New("stepuptest: no matching passkey")

// Authenticator flag bits (WebAuthn §6.1 authenticator data).
const (
	flagUP = 0x01 // user present
	flagUV = 0x04 // user verified
	flagBE = 0x08 // backup eligible
	flagBS = 0x10 // backed up
	flagAT = 0x40 // attested credential data included
)

// Authenticator is a software, user-verifying ES256 authenticator with a
// signature counter per passkey, together with the browser's part of the
// ceremony (client data with the page's origin). It is safe for concurrent
// use. The zero value is not usable; create one with [New].
type Authenticator struct {
	origin string

	mu       sync.Mutex
	passkeys []*passkey
}

type passkey struct {
	id      []byte
	user    []byte
	rpID    string
	key     *ecdsa.PrivateKey
	counter uint32
	backup  bool // synced: BE and BS in every assertion (see Synced)
}

// New returns an authenticator used from a page at origin (such as
// "https://app.example"), the value it writes into clientDataJSON.
func New(origin string) *Authenticator {
	return &Authenticator{origin: origin}
}

// Register creates a passkey for the user with handle userHandle at the
// relying party rpID and returns the credential record the application
// stores, as go-webauthn's FinishRegistration would: ID, COSE public key,
// transports, flags (user present and verified, not backup eligible) and a
// sign count of zero.
func (a *Authenticator) Register(rpID string, userHandle []byte) webauthn.Credential {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic("stepuptest: " + err.Error())
	}
	id := make([]byte, 64) // long IDs keep size tests honest
	rand.Read(id)
	a.mu.Lock()
	a.passkeys = append(a.passkeys, &passkey{id: id, user: append([]byte(nil), userHandle...), rpID: rpID, key: key})
	a.mu.Unlock()
	return webauthn.Credential{
		ID:                id,
		PublicKey:         coseES256(&key.PublicKey),
		AttestationType:   "none",
		AttestationFormat: "none",
		Transport:         []protocol.AuthenticatorTransport{protocol.Internal, protocol.Hybrid},
		Flags:             webauthn.CredentialFlags{UserPresent: true, UserVerified: true},
		Authenticator:     webauthn.Authenticator{AAGUID: make([]byte, 16)},
	}
}

// coseES256 encodes an ECDSA P-256 public key as a COSE_Key (RFC 9053 §7.1):
// {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}.
func coseES256(pub *ecdsa.PublicKey) []byte {
	raw, err := pub.Bytes() // 0x04 || x || y, fixed 32-byte coordinates
	if err != nil {
		panic("stepuptest: " + err.Error())
	}
	b := []byte{0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20}
	b = append(b, raw[1:33]...)
	b = append(b, 0x22, 0x58, 0x20)
	return append(b, raw[33:65]...)
}

// Option changes one assertion, to test how a server handles a bad one.
type Option func(*assertion)

type assertion struct {
	credentialID []byte
	origin       string
	rpID         string
	flags        byte
	counter      *uint32
	userHandle   []byte
	noUserHandle bool
	challenge    []byte
	badSignature bool
	clientData   func(*ClientData)
}

// ClientData is the collected client data an assertion signs
// (CollectedClientData, WebAuthn §5.8.1).
type ClientData struct {
	Type        string `json:"type"`
	Challenge   string `json:"challenge"` // base64url, as the browser writes it
	Origin      string `json:"origin"`
	CrossOrigin bool   `json:"crossOrigin"`
	TopOrigin   string `json:"topOrigin,omitempty"`
}

// WithClientData lets edit change the client data before it is signed, for
// what no other option makes: a challenge spelled differently, an assertion
// made in a cross-origin frame (CrossOrigin and TopOrigin), another type.
func WithClientData(edit func(*ClientData)) Option {
	return func(o *assertion) { o.clientData = edit }
}

// WithCredential answers with the passkey whose ID is id, whether or not the
// options allow it, as a client posting an assertion by hand could.
func WithCredential(id []byte) Option { return func(o *assertion) { o.credentialID = id } }

// WithOrigin puts origin into the client data instead of the page's.
func WithOrigin(origin string) Option { return func(o *assertion) { o.origin = origin } }

// WithRPIDHash hashes rpID into the authenticator data instead of the
// options' rpId.
func WithRPIDHash(rpID string) Option { return func(o *assertion) { o.rpID = rpID } }

// WithoutUserVerification clears the UV flag: the user was present but not
// verified.
func WithoutUserVerification() Option { return func(o *assertion) { o.flags &^= flagUV } }

// WithCounter signs with sign count n instead of the passkey's next one (and
// leaves the passkey's counter as it is).
func WithCounter(n uint32) Option { return func(o *assertion) { o.counter = &n } }

// WithUserHandle sends h as the response's userHandle.
func WithUserHandle(h []byte) Option { return func(o *assertion) { o.userHandle = h } }

// WithoutUserHandle sends a null userHandle, as authenticators may for
// non-discoverable credentials.
func WithoutUserHandle() Option { return func(o *assertion) { o.noUserHandle = true } }

// WithChallenge signs challenge instead of the options' challenge.
func WithChallenge(challenge []byte) Option { return func(o *assertion) { o.challenge = challenge } }

// WithBadSignature corrupts the signature.
func WithBadSignature() Option { return func(o *assertion) { o.badSignature = true } }

// requestOptions is the part of PublicKeyCredentialRequestOptionsJSON the
// authenticator reads.
type requestOptions struct {
	Challenge        protocol.URLEncodedBase64 `json:"challenge"`
	RPID             string                    `json:"rpId"`
	UserVerification string                    `json:"userVerification"`
	AllowCredentials []struct {
		Type string                    `json:"type"`
		ID   protocol.URLEncodedBase64 `json:"id"`
	} `json:"allowCredentials"`
}

// Get answers the PublicKeyCredentialRequestOptionsJSON in optionsJSON (as the
// options handler returned it, or as go-webauthn's CredentialAssertion from
// BeginLogin with the options under "publicKey") the way
// navigator.credentials.get() followed by toJSON() does, and returns that
// JSON. It picks the first passkey it holds
// for the options' rpId that allowCredentials lists, or any passkey for the
// rpId when allowCredentials is empty (a discoverable request). It returns
// ErrNoCredential when none matches. Each assertion advances the passkey's
// sign counter. The assertion's flags are UP and UV (see
// [WithoutUserVerification]), and BE and BS for a passkey made with [Synced].
func (a *Authenticator) Get(optionsJSON []byte, opts ...Option) ([]byte, error) {
	var ro requestOptions
	if err := json.Unmarshal(unwrapPublicKey(optionsJSON), &ro); err != nil {
		return nil, fmt.Errorf("stepuptest: options are not PublicKeyCredentialRequestOptionsJSON: %w", err)
	}
	if len(ro.Challenge) == 0 || ro.RPID == "" {
		return nil, errors.New("stepuptest: options lack challenge or rpId")
	}
	as := assertion{origin: a.origin, rpID: ro.RPID, flags: flagUP | flagUV, challenge: ro.Challenge}
	for _, opt := range opts {
		opt(&as)
	}

	a.mu.Lock()
	pk := a.pick(ro, as.credentialID)
	if pk == nil {
		a.mu.Unlock()
		return nil, ErrNoCredential
	}
	if pk.backup {
		as.flags |= flagBE | flagBS
	}
	counter := pk.counter + 1
	if as.counter != nil {
		counter = *as.counter
	} else {
		pk.counter = counter
	}
	a.mu.Unlock()

	cd := ClientData{Type: "webauthn.get", Challenge: base64.RawURLEncoding.EncodeToString(as.challenge), Origin: as.origin}
	if as.clientData != nil {
		as.clientData(&cd)
	}
	clientData, err := json.Marshal(cd)
	if err != nil {
		return nil, err
	}
	rpHash := sha256.Sum256([]byte(as.rpID))
	authData := append(rpHash[:], as.flags)
	authData = binary.BigEndian.AppendUint32(authData, counter)
	cdHash := sha256.Sum256(clientData)
	sig, err := ecdsa.SignASN1(rand.Reader, pk.key, sha256Sum(authData, cdHash[:]))
	if err != nil {
		return nil, err
	}
	if as.badSignature {
		sig[len(sig)-1] ^= 0x01
	}

	userHandle := pk.user
	if as.userHandle != nil {
		userHandle = as.userHandle
	}
	var uh *string
	if !as.noUserHandle {
		s := base64.RawURLEncoding.EncodeToString(userHandle)
		uh = &s
	}
	id := base64.RawURLEncoding.EncodeToString(pk.id)
	return json.Marshal(assertionJSON{
		ID:                      id,
		RawID:                   id,
		Type:                    "public-key",
		AuthenticatorAttachment: "platform",
		Response: assertionResponseJSON{
			ClientDataJSON:    base64.RawURLEncoding.EncodeToString(clientData),
			AuthenticatorData: base64.RawURLEncoding.EncodeToString(authData),
			Signature:         base64.RawURLEncoding.EncodeToString(sig),
			UserHandle:        uh,
		},
		ClientExtensionResults: struct{}{},
	})
}

func (a *Authenticator) pick(ro requestOptions, forced []byte) *passkey {
	for _, pk := range a.passkeys {
		if forced != nil {
			if string(pk.id) == string(forced) {
				return pk
			}
			continue
		}
		if pk.rpID != ro.RPID {
			continue
		}
		if len(ro.AllowCredentials) == 0 {
			return pk
		}
		for _, c := range ro.AllowCredentials {
			if string(c.ID) == string(pk.id) {
				return pk
			}
		}
	}
	return nil
}

// Forget deletes the passkey with the given ID from the authenticator, as
// PublicKeyCredential.signalUnknownCredential() lets a browser do. It reports
// whether there was one.
func (a *Authenticator) Forget(id []byte) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, pk := range a.passkeys {
		if string(pk.id) == string(id) {
			a.passkeys = append(a.passkeys[:i], a.passkeys[i+1:]...)
			return true
		}
	}
	return false
}

func sha256Sum(parts ...[]byte) []byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// assertionJSON is AuthenticationResponseJSON (WebAuthn §5.1.4), what
// PublicKeyCredential.toJSON() returns for an assertion.
type assertionJSON struct {
	ID                      string                `json:"id"`
	RawID                   string                `json:"rawId"`
	Type                    string                `json:"type"`
	AuthenticatorAttachment string                `json:"authenticatorAttachment"`
	Response                assertionResponseJSON `json:"response"`
	ClientExtensionResults  struct{}              `json:"clientExtensionResults"`
}

type assertionResponseJSON struct {
	ClientDataJSON    string  `json:"clientDataJSON"`
	AuthenticatorData string  `json:"authenticatorData"`
	Signature         string  `json:"signature"`
	UserHandle        *string `json:"userHandle"`
}
