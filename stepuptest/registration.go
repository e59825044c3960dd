package stepuptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/go-webauthn/webauthn/protocol"
)

// ErrCredentialExcluded is returned by [Authenticator.Create] when the
// options' excludeCredentials lists a passkey the authenticator holds for the
// relying party, as a browser rejects create() with InvalidStateError.
var ErrCredentialExcluded = errors.New("stepuptest: a passkey of this authenticator is in excludeCredentials (InvalidStateError)")

// ErrUnsupportedAlgorithm is returned by [Authenticator.Create] when the
// options' pubKeyCredParams does not offer ES256 (COSE algorithm -7), the only
// algorithm the authenticator has, as a browser rejects create() with
// NotSupportedError.
var ErrUnsupportedAlgorithm = errors.New("stepuptest: pubKeyCredParams does not offer ES256 (NotSupportedError)")

// coseES256Alg is the COSE algorithm identifier of ES256 (RFC 9053 §2.1).
const coseES256Alg = -7

// CreateOption changes how [Authenticator.Create] makes a passkey.
type CreateOption func(*creation)

type creation struct {
	format string // "none" or "packed"
	synced bool
}

// WithAttestation sets the attestation statement format of the attestation
// object: "none" (the default), with an empty attStmt, or "packed" self
// attestation: {"alg": -7, "sig": ...}, the signature over authenticatorData
// ‖ SHA-256(clientDataJSON) made with the new credential's own key, without
// x5c. Self attestation goes to the server even when the options ask for
// attestation "none", as WebAuthn §5.1.3 lets a browser do when the AAGUID is
// zero. It panics on any other format.
func WithAttestation(format string) CreateOption {
	if format != "none" && format != "packed" {
		panic(fmt.Sprintf("stepuptest: WithAttestation expects \"none\" or \"packed\", got %q", format))
	}
	return func(c *creation) { c.format = format }
}

// Synced makes the passkey a synced one, as a password manager or a platform
// keychain makes: backup eligible and backed up (the BE and BS flags), at
// registration and in every assertion [Authenticator.Get] makes with it.
// Without it a passkey is device-bound, as [Authenticator.Register] makes.
func Synced() CreateOption { return func(c *creation) { c.synced = true } }

// creationOptions is the part of PublicKeyCredentialCreationOptionsJSON
// (WebAuthn §5.4) the authenticator reads. Pointers tell a missing required
// member from an empty one.
type creationOptions struct {
	RP *struct {
		ID   string  `json:"id"`
		Name *string `json:"name"`
	} `json:"rp"`
	User *struct {
		ID          *protocol.URLEncodedBase64 `json:"id"`
		Name        *string                    `json:"name"`
		DisplayName *string                    `json:"displayName"`
	} `json:"user"`
	Challenge        *protocol.URLEncodedBase64 `json:"challenge"`
	PubKeyCredParams *[]struct {
		Type string `json:"type"`
		Alg  int64  `json:"alg"`
	} `json:"pubKeyCredParams"`
	ExcludeCredentials []struct {
		Type string                    `json:"type"`
		ID   protocol.URLEncodedBase64 `json:"id"`
	} `json:"excludeCredentials"`
	AuthenticatorSelection struct {
		UserVerification string `json:"userVerification"`
	} `json:"authenticatorSelection"`
	Extensions struct {
		CredProps bool `json:"credProps"`
	} `json:"extensions"`
}

// Create answers the options of navigator.credentials.create() the way a
// browser with a platform authenticator does, followed by
// PublicKeyCredential.toJSON(), and returns that RegistrationResponseJSON
// (WebAuthn §5.1). optionsJSON is either the bare
// PublicKeyCredentialCreationOptionsJSON that
// PublicKeyCredential.parseCreationOptionsFromJSON() takes, or go-webauthn's
// protocol.CredentialCreation as BeginRegistration returns it, with the
// options under "publicKey".
//
// As a browser, it refuses options that lack a required member (rp, rp.name,
// user with id, name and displayName, challenge, pubKeyCredParams), a user.id
// longer than 64 bytes, or an rp.id that is neither the authenticator's
// origin host nor a parent domain of it; an absent rp.id means the origin
// host. It returns [ErrUnsupportedAlgorithm] when a non-empty
// pubKeyCredParams lacks ES256 (an empty one means ES256 and RS256), and
// [ErrCredentialExcluded] when excludeCredentials lists a passkey it holds
// for rp.id.
//
// Otherwise it makes a new ES256 key and a random 64-byte credential ID and
// answers with client data of type "webauthn.create" carrying the challenge
// and the authenticator's origin, and an attestation object (see
// [WithAttestation]) whose authenticator data has the flags UP, UV and AT (BE
// and BS too with [Synced]; UV is left out when the options'
// authenticatorSelection.userVerification is "discouraged"), a sign count of
// zero, and the attested credential data: a zero AAGUID, the credential ID
// and its COSE key. The response lists the transport "internal", the
// publicKeyAlgorithm -7, the SubjectPublicKeyInfo publicKey and the
// authenticatorData; the attachment is "platform", and clientExtensionResults
// answers credProps ({"rk": true}) when asked and is empty otherwise.
//
// The new passkey, bound to rp.id and user.id, joins the authenticator, so
// that [Authenticator.Get] and the ceremony helpers can use it. Unlike a real
// discoverable-credential authenticator, Create keeps earlier passkeys of the
// same user at the same relying party instead of replacing them.
func (a *Authenticator) Create(optionsJSON []byte, opts ...CreateOption) ([]byte, error) {
	co, err := parseCreationOptions(optionsJSON)
	if err != nil {
		return nil, err
	}
	rpID, err := a.creationRPID(co.RP.ID)
	if err != nil {
		return nil, err
	}
	if !offersES256(co) {
		return nil, ErrUnsupportedAlgorithm
	}
	c := creation{format: "none"}
	for _, opt := range opts {
		opt(&c)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 64) // as Register: long IDs keep size tests honest
	rand.Read(id)
	authData := creationAuthData(rpID, co, c, id, key)
	clientData, err := json.Marshal(struct {
		Type        string `json:"type"`
		Challenge   string `json:"challenge"`
		Origin      string `json:"origin"`
		CrossOrigin bool   `json:"crossOrigin"`
	}{"webauthn.create", base64.RawURLEncoding.EncodeToString(*co.Challenge), a.origin, false})
	if err != nil {
		return nil, err
	}
	var sig []byte
	if c.format == "packed" {
		cdHash := sha256.Sum256(clientData)
		if sig, err = ecdsa.SignASN1(rand.Reader, key, sha256Sum(authData, cdHash[:])); err != nil {
			return nil, err
		}
	}
	if err := a.keep(co, rpID, id, key, c.synced); err != nil {
		return nil, err
	}
	return registrationResponse(co, c, id, key, clientData, authData, sig)
}

// creationAuthData is the authenticator data of a new passkey: the RP ID
// hash, the flags (UV unless discouraged; BE and BS when synced), a zero
// sign count and the attested credential data.
func creationAuthData(rpID string, co *creationOptions, c creation, id []byte, key *ecdsa.PrivateKey) []byte {
	flags := byte(flagUP | flagUV | flagAT)
	if co.AuthenticatorSelection.UserVerification == string(protocol.VerificationDiscouraged) {
		flags &^= flagUV
	}
	if c.synced {
		flags |= flagBE | flagBS
	}
	rpHash := sha256.Sum256([]byte(rpID))
	authData := append(rpHash[:], flags)
	authData = binary.BigEndian.AppendUint32(authData, 0) // sign count
	authData = append(authData, make([]byte, 16)...)      // AAGUID
	authData = binary.BigEndian.AppendUint16(authData, uint16(len(id)))
	authData = append(authData, id...)
	return append(authData, coseES256(&key.PublicKey)...)
}

// keep stores the new passkey, unless one the options exclude is already
// held for the relying party.
func (a *Authenticator) keep(co *creationOptions, rpID string, id []byte, key *ecdsa.PrivateKey, synced bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, pk := range a.passkeys {
		if pk.rpID == rpID && excluded(co, pk.id) {
			return ErrCredentialExcluded
		}
	}
	a.passkeys = append(a.passkeys, &passkey{id: id, user: append([]byte(nil), *co.User.ID...), rpID: rpID, key: key, backup: synced})
	return nil
}

// registrationResponse is the JSON of the PublicKeyCredential, as the
// browser's toJSON() writes it.
func registrationResponse(co *creationOptions, c creation, id []byte, key *ecdsa.PrivateKey, clientData, authData, sig []byte) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	var ext any = struct{}{}
	if co.Extensions.CredProps {
		ext = map[string]any{"credProps": map[string]bool{"rk": true}}
	}
	b64 := base64.RawURLEncoding.EncodeToString
	return json.Marshal(registrationJSON{
		ID:    b64(id),
		RawID: b64(id),
		Type:  "public-key",
		Response: attestationResponseJSON{
			ClientDataJSON:     b64(clientData),
			AttestationObject:  b64(attestationObject(c.format, authData, sig)),
			Transports:         []string{string(protocol.Internal)},
			PublicKeyAlgorithm: coseES256Alg,
			PublicKey:          b64(spki),
			AuthenticatorData:  b64(authData),
		},
		AuthenticatorAttachment: "platform",
		ClientExtensionResults:  ext,
	})
}

// parseCreationOptions reads the options, unwrapped from "publicKey" if they
// are go-webauthn's CredentialCreation, and checks the required members as
// the WebIDL dictionary does.
func parseCreationOptions(optionsJSON []byte) (*creationOptions, error) {
	var co creationOptions
	if err := json.Unmarshal(unwrapPublicKey(optionsJSON), &co); err != nil {
		return nil, fmt.Errorf("stepuptest: options are not PublicKeyCredentialCreationOptionsJSON: %w", err)
	}
	var missing []string
	for _, m := range []struct {
		name   string
		absent bool
	}{
		{"rp", co.RP == nil},
		{"rp.name", co.RP != nil && co.RP.Name == nil},
		{"user", co.User == nil},
		{"user.id", co.User != nil && co.User.ID == nil},
		{"user.name", co.User != nil && co.User.Name == nil},
		{"user.displayName", co.User != nil && co.User.DisplayName == nil},
		{"challenge", co.Challenge == nil},
		{"pubKeyCredParams", co.PubKeyCredParams == nil},
	} {
		if m.absent {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("stepuptest: options lack %s (TypeError)", strings.Join(missing, ", "))
	}
	if n := len(*co.User.ID); n < 1 || n > 64 {
		return nil, fmt.Errorf("stepuptest: user.id is %d bytes, want 1 to 64 (TypeError)", n)
	}
	return &co, nil
}

// unwrapPublicKey returns the object under "publicKey" when optionsJSON is
// go-webauthn's CredentialCreation or CredentialAssertion, and optionsJSON
// itself otherwise (the options have no member of that name).
func unwrapPublicKey(optionsJSON []byte) []byte {
	var wrapper struct {
		PublicKey json.RawMessage `json:"publicKey"`
	}
	if json.Unmarshal(optionsJSON, &wrapper) == nil && len(wrapper.PublicKey) > 0 && wrapper.PublicKey[0] == '{' {
		return wrapper.PublicKey
	}
	return optionsJSON
}

// creationRPID returns the options' rp.id, or the origin's host if it is
// empty, after checking that it is the origin's host or a parent domain of
// it (WebAuthn §5.1.3 step 8; without the public suffix list).
func (a *Authenticator) creationRPID(rpID string) (string, error) {
	u, err := url.Parse(a.origin)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("stepuptest: authenticator origin %q has no host", a.origin)
	}
	host := u.Hostname()
	if rpID == "" {
		return host, nil
	}
	if host != rpID && !strings.HasSuffix(host, "."+rpID) {
		return "", fmt.Errorf("stepuptest: rp.id %q is not valid for origin %q (SecurityError)", rpID, a.origin)
	}
	return rpID, nil
}

// offersES256 reports whether pubKeyCredParams allows ES256; an empty list
// stands for ES256 and RS256 (WebAuthn §5.1.3 step 10).
func offersES256(co *creationOptions) bool {
	params := *co.PubKeyCredParams
	if len(params) == 0 {
		return true
	}
	for _, p := range params {
		if p.Type == string(protocol.PublicKeyCredentialType) && p.Alg == coseES256Alg {
			return true
		}
	}
	return false
}

func excluded(co *creationOptions, id []byte) bool {
	for _, c := range co.ExcludeCredentials {
		if c.Type == string(protocol.PublicKeyCredentialType) && string(c.ID) == string(id) {
			return true
		}
	}
	return false
}

// attestationObject encodes {"fmt", "attStmt", "authData"} in CBOR (RFC 8949)
// with the keys in CTAP2 canonical order, as authenticators send it. attStmt
// is empty for "none" and {"alg": -7, "sig": sig} for "packed".
func attestationObject(format string, authData, sig []byte) []byte {
	b := cborHead(nil, 5, 3)
	b = cborText(b, "fmt")
	b = cborText(b, format)
	b = cborText(b, "attStmt")
	if format == "packed" {
		b = cborHead(b, 5, 2)
		b = cborText(b, "alg")
		b = cborHead(b, 1, -1-coseES256Alg) // negative integer -7
		b = cborText(b, "sig")
		b = cborBytes(b, sig)
	} else {
		b = cborHead(b, 5, 0)
	}
	b = cborText(b, "authData")
	return cborBytes(b, authData)
}

// cborHead appends the head of a CBOR data item of major type major with
// argument n (RFC 8949 §3) in its shortest form.
func cborHead(b []byte, major byte, n int) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n < 1<<8:
		return append(b, m|24, byte(n))
	case n < 1<<16:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(n))
	}
}

func cborText(b []byte, s string) []byte  { return append(cborHead(b, 3, len(s)), s...) }
func cborBytes(b []byte, p []byte) []byte { return append(cborHead(b, 2, len(p)), p...) }

// registrationJSON is RegistrationResponseJSON (WebAuthn §5.1), what
// PublicKeyCredential.toJSON() returns for a new credential.
type registrationJSON struct {
	ID                      string                  `json:"id"`
	RawID                   string                  `json:"rawId"`
	Type                    string                  `json:"type"`
	Response                attestationResponseJSON `json:"response"`
	AuthenticatorAttachment string                  `json:"authenticatorAttachment"`
	ClientExtensionResults  any                     `json:"clientExtensionResults"`
}

type attestationResponseJSON struct {
	ClientDataJSON     string   `json:"clientDataJSON"`
	AttestationObject  string   `json:"attestationObject"`
	Transports         []string `json:"transports"`
	PublicKeyAlgorithm int      `json:"publicKeyAlgorithm"`
	PublicKey          string   `json:"publicKey,omitempty"`
	AuthenticatorData  string   `json:"authenticatorData,omitempty"`
}
