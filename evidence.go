package stepup

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-webauthn/webauthn/protocol/webauthncose"
)

// ErrEvidenceInvalid is wrapped by the error [Evidence.Verify] returns when
// the evidence does not prove the confirmation.
var ErrEvidenceInvalid = errors.New("stepup: evidence does not verify")

// Evidence is what proves, later and offline, that a user confirmed one
// bound operation with a passkey: the signed assertion and the values its
// challenge commits to. The challenge was SHA-256(Nonce ‖ OperationDigest),
// so the authenticator's signature covers the operation itself.
type Evidence struct {
	User              []byte    // the user handle
	CredentialID      []byte    // the passkey that signed
	Scope             string    // the grant's scope, "" if none
	OperationDigest   []byte    // SHA-256 of the operation's canonical bytes
	Nonce             []byte    // the 32 random bytes of the challenge
	ClientDataJSON    []byte    // as signed
	AuthenticatorData []byte    // as signed
	Signature         []byte    // ASN.1 or raw, as the authenticator made it
	At                time.Time // when the grant was made, by Config.Now
}

// Verify checks the evidence with only the credential's stored public key
// (COSE, as in webauthn.Credential.PublicKey) and the relying party ID: the
// signature over the authenticator data and client data, the RP ID hash, the
// user present and verified flags, the ceremony type, and that the signed
// challenge is SHA-256(Nonce ‖ OperationDigest). To check that it confirmed a
// given operation, also compare OperationDigest with SHA-256 of that
// operation's canonical bytes.
func (e Evidence) Verify(publicKey []byte, rpID string) error {
	key, err := webauthncose.ParsePublicKey(publicKey)
	if err != nil {
		return fmt.Errorf("%w: public key: %v", ErrEvidenceInvalid, err)
	}
	ad := e.AuthenticatorData
	rpHash := sha256.Sum256([]byte(rpID))
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
		Type      string `json:"type"`
		Challenge string `json:"challenge"`
	}
	if err := json.Unmarshal(e.ClientDataJSON, &cd); err != nil || cd.Type != "webauthn.get" {
		return fmt.Errorf("%w: client data", ErrEvidenceInvalid)
	}
	if len(e.OperationDigest) != sha256.Size || cd.Challenge != b64(boundChallenge(e.Nonce, e.OperationDigest)) {
		return fmt.Errorf("%w: the challenge does not commit to the operation", ErrEvidenceInvalid)
	}
	return nil
}

// boundChallenge is the challenge of a bound ceremony: SHA-256(nonce ‖ digest).
func boundChallenge(nonce, digest []byte) []byte {
	h := sha256.New()
	h.Write(nonce)
	h.Write(digest)
	return h.Sum(nil)
}
