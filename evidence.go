package stepup

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-webauthn/webauthn/protocol/webauthncose"
)

// ErrEvidenceInvalid is wrapped by the error [Evidence.Verify] returns when
// the evidence does not prove the confirmation.
var ErrEvidenceInvalid = errors.New("stepup: evidence does not verify")

// Evidence is what proves, later and offline, that a user confirmed one
// bound operation with a passkey: the signed assertion and the values its
// challenge commits to. The challenge was
// SHA-256("stepup/bind/v2" ‖ Nonce ‖ User ‖ Scope ‖ OperationDigest ‖
// SHA-256(Description)) (each variable-length field preceded by its
// length), or, with Config.Tokens, a self-contained challenge that holds
// that commitment; either way the authenticator's signature covers the
// user, the scope, the operation and the description the user was shown. At is the only field
// the signature does not cover: it is the server's record of when.
type Evidence struct {
	User              []byte    // the user handle (signed, through the challenge)
	CredentialID      []byte    // the passkey that signed (its key verifies the signature)
	Scope             string    // the grant's scope, "" if none (signed, through the challenge)
	OperationDigest   []byte    // SHA-256 of the operation's canonical bytes (signed)
	Description       string    // the description shown to the user, as cleaned by the gate (signed, hashed)
	Nonce             []byte    // the 32 random bytes of the challenge
	ClientDataJSON    []byte    // as signed
	AuthenticatorData []byte    // as signed
	Signature         []byte    // ASN.1 or raw, as the authenticator made it
	At                time.Time // when the grant was made, by Config.Now: NOT signed
}

// EvidencePolicy is what [Evidence.Verify] accepts: the relying party and the
// origins the assertion may come from.
type EvidencePolicy struct {
	// RPID is the relying party ID; the authenticator data must carry its
	// SHA-256. Required.
	RPID string
	// Origins are the exact origins (such as "https://bank.example") the
	// client data may name. Required: an assertion made on any other origin,
	// a sibling subdomain included, does not verify.
	Origins []string
	// AllowCrossOrigin accepts client data with crossOrigin true (made in a
	// cross-origin iframe). Default: refused, as the verify handler does.
	AllowCrossOrigin bool
	// TopOrigins are the top-level origins accepted when AllowCrossOrigin is
	// set. Client data with a topOrigin not listed here is refused.
	TopOrigins []string
}

// Verify checks the evidence with only the credential's stored public key
// (COSE, as in webauthn.Credential.PublicKey) and policy: the signature over
// the authenticator data and client data, the RP ID hash, the user present
// and verified flags, the ceremony type, the origin (and crossOrigin and
// topOrigin), and that the signed challenge commits to Nonce, User, Scope,
// OperationDigest and Description. To check that it confirmed a given operation, also
// compare OperationDigest with SHA-256 of that operation's canonical bytes.
func (e Evidence) Verify(publicKey []byte, policy EvidencePolicy) error {
	if policy.RPID == "" || len(policy.Origins) == 0 {
		return fmt.Errorf("%w: the policy needs an RP ID and at least one origin", ErrEvidenceInvalid)
	}
	key, err := webauthncose.ParsePublicKey(publicKey)
	if err != nil {
		return fmt.Errorf("%w: public key: %v", ErrEvidenceInvalid, err)
	}
	ad := e.AuthenticatorData
	rpHash := sha256.Sum256([]byte(policy.RPID))
	const flagsUPUV = 0x01 | 0x04
	if len(ad) < 37 || !bytes.Equal(ad[:32], rpHash[:]) || ad[32]&flagsUPUV != flagsUPUV {
		return fmt.Errorf("%w: authenticator data (RP ID hash or UP/UV flags)", ErrEvidenceInvalid)
	}
	cdHash := sha256.Sum256(e.ClientDataJSON)
	signed := append(append([]byte(nil), ad...), cdHash[:]...)
	if ok, err := webauthncose.VerifySignature(key, signed, e.Signature); !ok || err != nil {
		return fmt.Errorf("%w: signature", ErrEvidenceInvalid)
	}
	var cd struct {
		Type        string `json:"type"`
		Challenge   string `json:"challenge"`
		Origin      string `json:"origin"`
		CrossOrigin bool   `json:"crossOrigin"`
		TopOrigin   string `json:"topOrigin"`
	}
	if err := json.Unmarshal(e.ClientDataJSON, &cd); err != nil || cd.Type != "webauthn.get" {
		return fmt.Errorf("%w: client data", ErrEvidenceInvalid)
	}
	if !slices.Contains(policy.Origins, cd.Origin) {
		return fmt.Errorf("%w: origin %q is not allowed", ErrEvidenceInvalid, cd.Origin)
	}
	if cd.CrossOrigin && !policy.AllowCrossOrigin {
		return fmt.Errorf("%w: made in a cross-origin frame", ErrEvidenceInvalid)
	}
	if cd.TopOrigin != "" && (!cd.CrossOrigin || !slices.Contains(policy.TopOrigins, cd.TopOrigin)) {
		return fmt.Errorf("%w: top origin %q is not allowed", ErrEvidenceInvalid, cd.TopOrigin)
	}
	if len(e.OperationDigest) != sha256.Size || len(e.Nonce) == 0 || len(e.User) == 0 ||
		!commits(cd.Challenge, boundChallenge(e.Nonce, e.User, e.Scope, e.OperationDigest, e.Description)) {
		return fmt.Errorf("%w: the challenge does not commit to this user, scope, operation and description", ErrEvidenceInvalid)
	}
	return nil
}

// commits reports whether the signed challenge (base64url, as in the client
// data) is the commitment, or a self-contained challenge holding it (see
// challenge.go: with Config.Tokens, challenges carry their state).
func commits(signed string, commitment []byte) bool {
	if signed == b64(commitment) {
		return true
	}
	raw, err := strictB64.DecodeString(signed)
	if err != nil {
		return false
	}
	got, ok := sealedCommitment(raw)
	return ok && bytes.Equal(got, commitment)
}
