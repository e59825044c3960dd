package stepup_test

// The floors: what a careful developer writes by hand for the same job with
// the same libraries (go-webauthn, gorilla/sessions, securecookie), keeping
// a session of its own. A floor shares nothing with stepup but the
// CookieStore's keys, the WebAuthn configuration, the user and the benchmark
// writer: its cookie has its own name and holds its own small records, so
// that stepup's cookie (its size, its records, its encoding) is part of what
// is measured, not a cost both sides carry.
//
// Its session holds at most two values, each one []byte:
//
//	floorGrantKey:     at (8 bytes, Unix seconds) | user handle
//	floorChallengeKey: challenge (32 bytes) | expires (8 bytes, Unix seconds) | user handle
//
// Single use needs server state (a client can always send an older copy of
// its cookie), so a floor makes one Registry call per ceremony step, as
// stepup's design needs at least that: options issues the challenge, verify
// claims it (the same MemoryRegistry type stepup uses by default). It does
// not limit attempts, check the origin, bind grants to a sign-in, revoke,
// keep several tabs' challenges, or log: that is stepup's own work, and part
// of what the ratio measures.

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/securecookie"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

const (
	floorSession      = "floor"     // the floors' own cookie
	floorGrantKey     = "grant"     // at | user handle
	floorChallengeKey = "challenge" // challenge | expires | user handle
	floorTTL          = 2 * time.Minute
	floorMaxBody      = 16 << 10
)

// floor is one hand-written relying party: its own Registry and its own
// copy of the user's credentials (verify keeps the updated sign counts).
type floor struct {
	e    *benchEnv
	reg  *stepup.MemoryRegistry
	user *stepuptest.User
}

func newFloor(e *benchEnv) *floor {
	return &floor{
		e:    e,
		reg:  stepup.NewMemoryRegistry(stepup.DefaultRegistrySize, nil),
		user: &stepuptest.User{Handle: e.user.Handle, Name: e.user.Name, Credentials: slices.Clone(e.user.Credentials)},
	}
}

// floorGrantRecord is the floor's grant: when, and who.
func floorGrantRecord(at int64, handle []byte) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(handle)), uint64(at)), handle...)
}

// grantCookie returns a floor cookie ("floor=...") holding a grant made now,
// as the floor's verify leaves it.
func (f *floor) grantCookie(tb testing.TB) string {
	tb.Helper()
	values := map[any]any{floorGrantKey: floorGrantRecord(time.Now().Unix(), f.user.Handle)}
	encoded, err := securecookie.EncodeMulti(floorSession, values, f.e.cookies.Codecs...)
	if err != nil {
		tb.Fatal(err)
	}
	return floorSession + "=" + encoded
}

// floorOptionsJSON is the PublicKeyCredentialRequestOptionsJSON a
// hand-written options handler writes: the fields BeginLogin fills, the
// binary ones base64url-encoded first, so that encoding/json writes plain
// strings.
type floorOptionsJSON struct {
	Challenge        string                               `json:"challenge"`
	Timeout          int                                  `json:"timeout,omitempty"`
	RPID             string                               `json:"rpId,omitempty"`
	AllowCredentials []floorDescriptorJSON                `json:"allowCredentials,omitempty"`
	UserVerification protocol.UserVerificationRequirement `json:"userVerification,omitempty"`
}

type floorDescriptorJSON struct {
	Type       protocol.CredentialType           `json:"type"`
	ID         string                            `json:"id"`
	Transports []protocol.AuthenticatorTransport `json:"transports,omitempty"`
}

func newFloorOptionsJSON(o *protocol.PublicKeyCredentialRequestOptions) floorOptionsJSON {
	out := floorOptionsJSON{
		Challenge:        base64.RawURLEncoding.EncodeToString(o.Challenge),
		Timeout:          o.Timeout,
		RPID:             o.RelyingPartyID,
		UserVerification: o.UserVerification,
		AllowCredentials: make([]floorDescriptorJSON, len(o.AllowedCredentials)),
	}
	for i, d := range o.AllowedCredentials {
		out.AllowCredentials[i] = floorDescriptorJSON{Type: d.Type, ID: base64.RawURLEncoding.EncodeToString(d.CredentialID), Transports: d.Transport}
	}
	return out
}

// floorRegistryKey names an issued challenge in the Registry, in the form
// the MemoryRegistry expects (the user's tag in braces, so that it accounts
// the entry to the user; see stepup.Registry): the user handle and the
// challenge, as the client will send it, base64url-encoded.
func floorRegistryKey(handle []byte, challenge string) string {
	return "floor:{" + base64.RawURLEncoding.EncodeToString(handle) + "}:" + challenge
}

// options is the least a correct options handler does: load its session,
// BeginLogin with the user's credentials and user verification required,
// issue the challenge in the Registry (one Update), keep the challenge, the
// user and the expiry in its session (one record, replacing any earlier
// one), save, and write the options JSON (Content-Type, Cache-Control:
// no-store). With webauthnJSON it encodes go-webauthn's own type instead, a
// common hand-written choice, for reference.
func (f *floor) options(webauthnJSON bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, _ := f.e.cookies.Get(r, floorSession)
		a, _, err := f.e.wa.BeginLogin(f.e.user, webauthn.WithUserVerification(protocol.VerificationRequired))
		if err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		challenge := []byte(a.Response.Challenge)
		var res [1]stepup.Result
		issue := []stepup.Op{{Kind: stepup.OpPut, Key: floorRegistryKey(f.e.user.Handle, a.Response.Challenge.String()), Value: 1, TTL: floorTTL}}
		if failed, err := f.reg.Update(r.Context(), issue, res[:]); err != nil || failed >= 0 {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		rec := make([]byte, 0, len(challenge)+8+len(f.e.user.Handle))
		rec = append(binary.BigEndian.AppendUint64(append(rec, challenge...), uint64(time.Now().Add(floorTTL).Unix())), f.e.user.Handle...)
		sess.Values[floorChallengeKey] = rec
		if err := f.e.cookies.Save(r, w, sess); err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		if webauthnJSON {
			_ = json.NewEncoder(w).Encode(a.Response)
		} else {
			_ = json.NewEncoder(w).Encode(newFloorOptionsJSON(&a.Response))
		}
	})
}

// floorVerifyOK is the floor's answer to a verify that succeeded.
var floorVerifyOK = []byte(`{"status":"ok"}` + "\n")

// verify is the least a correct verify handler does: read the body (at most
// 16 KiB, as stepup), parse the assertion, load its session, match the
// client's challenge against its one pending record (constant time, same
// user, unexpired), claim the challenge in the Registry (one Update: single
// use even for a replayed older cookie), ValidateLogin with user
// verification required, refuse a sign counter that did not advance, keep
// the updated credential, save its session with a grant and without the
// challenge, and answer 200 with a small JSON body. It finds the credential
// among the user's own (go-webauthn does, given the user); stepup asks its
// UserStore.
func (f *floor) verify() http.Handler {
	bad := func(w http.ResponseWriter) { http.Error(w, "bad request", http.StatusBadRequest) }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, floorMaxBody))
		if err != nil {
			bad(w)
			return
		}
		parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
		if err != nil {
			bad(w)
			return
		}
		sess, _ := f.e.cookies.Get(r, floorSession)
		rec, _ := sess.Values[floorChallengeKey].([]byte)
		encoded := parsed.Response.CollectedClientData.Challenge
		challenge, err := base64.RawURLEncoding.Strict().DecodeString(encoded)
		now := time.Now().Unix()
		if err != nil || len(rec) < 40 || subtle.ConstantTimeCompare(rec[:32], challenge) != 1 ||
			!bytes.Equal(rec[40:], f.user.Handle) || int64(binary.BigEndian.Uint64(rec[32:40])) < now {
			bad(w)
			return
		}
		var res [1]stepup.Result
		claim := []stepup.Op{{Kind: stepup.OpSwap, Key: floorRegistryKey(f.user.Handle, encoded), Value: 1, New: 0}}
		if failed, err := f.reg.Update(r.Context(), claim, res[:]); err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		} else if failed >= 0 {
			bad(w)
			return
		}
		cred, err := f.e.wa.ValidateLogin(f.user, webauthn.SessionData{
			Challenge:        encoded,
			RelyingPartyID:   testRPID,
			UserID:           f.user.Handle,
			UserVerification: protocol.VerificationRequired,
		}, parsed)
		if err != nil {
			bad(w)
			return
		}
		i := slices.IndexFunc(f.user.Credentials, func(c webauthn.Credential) bool { return bytes.Equal(c.ID, cred.ID) })
		if got, had := parsed.Response.AuthenticatorData.Counter, f.user.Credentials[i].Authenticator.SignCount; got <= had && (got != 0 || had != 0) {
			bad(w)
			return
		}
		f.user.Credentials[i] = *cred
		sess.Values[floorGrantKey] = floorGrantRecord(now, f.user.Handle)
		delete(sess.Values, floorChallengeKey)
		if err := f.e.cookies.Save(r, w, sess); err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(floorVerifyOK)
	})
}

// gate is the least a correct gate does: ask for the user, load its session
// (a cookie decode on a new request, nothing once the application loaded
// it), read the grant and the clock, compare.
func (f *floor) gate(maxAge time.Duration, next http.Handler) http.Handler {
	limit := int64(maxAge / time.Second)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := f.e.users.CurrentUser(r)
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		sess, _ := f.e.cookies.Get(r, floorSession)
		raw, _ := sess.Values[floorGrantKey].([]byte)
		if len(raw) < 9 || !bytes.Equal(raw[8:], u.WebAuthnID()) {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		if age := time.Now().Unix() - int64(binary.BigEndian.Uint64(raw)); age > limit || age < -5 {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
