package app

import (
	"bytes"
	"errors"
	"log/slog"
	"mime"
	"net/http"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/passkey-stepup/stepup/sqlstore"
)

// Adding a passkey to a signed-in account: the first one of a user who
// signed up with a password, or another one (a second device). It runs
// behind a gate (see routes): begin answers the creation options, finish
// checks and stores the new passkey.

// addPasskeyBegin answers the PublicKeyCredentialCreationOptionsJSON for a
// new passkey of the signed-in user, excluding the passkeys the user has
// (so that a device does not register twice). It runs behind
// RequireRecentReauth(AddPasskeyMaxAge, Methods("passkey", "password")).
func (s *server) addPasskeyBegin(w http.ResponseWriter, r *http.Request) {
	user, ok := userOf(r)
	if !ok {
		s.failed(w, r, "add passkey", errNoGateUser)
		return
	}
	exclude := make([]webauthn.RegistrationOption, 0, len(registrationOptions)+1)
	exclude = append(exclude, registrationOptions...)
	exclude = append(exclude, webauthn.WithExclusions(webauthn.Credentials(user.WebAuthnCredentials()).CredentialDescriptors()))
	creation, data, err := s.wa.BeginRegistration(user, exclude...)
	if err != nil {
		s.failed(w, r, "add passkey", err)
		return
	}
	sess := s.signIn.get(r)
	putJSON(sess, keyAddPasskey, pendingSignUp{Name: user.Name, Data: *data, Expires: s.now().Add(ceremonyTTL).Unix()})
	if !s.save(w, r, sess) {
		return
	}
	writeJSON(w, http.StatusOK, creation.Response)
}

// addPasskeyFinish checks the new passkey and stores it for the signed-in
// user. It is not gated itself: it only finishes what addPasskeyBegin, which
// is, started in this sign-in session for this user (the pending
// registration is in the sign-in session, answers once and expires with
// ceremonyTTL).
func (s *server) addPasskeyFinish(w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		apiError(w, http.StatusBadRequest, "invalid_request", "The request must be JSON.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	user, err := s.accounts.current(r)
	if errors.Is(err, errSignedOut) {
		apiError(w, http.StatusUnauthorized, "no_active_session", "Sign in first.")
		return
	} else if err != nil {
		s.failed(w, r, "add passkey", err)
		return
	}
	sess := s.signIn.get(r)
	var p pendingSignUp
	found := getJSON(sess, keyAddPasskey, &p)
	delete(sess.Values, keyAddPasskey) // one attempt per start
	if !found || p.Expires < s.now().Unix() || !bytes.Equal(p.Data.UserID, user.ID) {
		s.saveOrLog(w, r, sess)
		apiError(w, http.StatusBadRequest, "expired", "That took too long. Start again.")
		return
	}
	cred, err := s.wa.FinishRegistration(user, p.Data, r)
	if err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "demo.add_passkey_refused", slog.String("cause", describe(err)))
		s.saveOrLog(w, r, sess)
		apiError(w, http.StatusBadRequest, "verification_failed", "The new passkey could not be verified. Try again.")
		return
	}
	if err := s.users.addPasskey(r.Context(), user.ID, *cred, s.now()); errors.Is(err, sqlstore.ErrDuplicateCredential) {
		s.saveOrLog(w, r, sess)
		apiError(w, http.StatusConflict, "passkey_exists", "That passkey is registered already.")
		return
	} else if err != nil {
		s.failed(w, r, "add passkey", err)
		return
	}
	if !s.save(w, r, sess) {
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "demo.passkey_added", slog.String("user", b64(user.ID)),
		slog.Int("passkeys", len(user.Passkeys)+1), slog.Bool("backup_eligible", cred.Flags.BackupEligible))
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "message": "Your passkey was added."})
}
