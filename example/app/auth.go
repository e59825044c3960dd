package app

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
)

// startingBalance is what a new account holds, in cents.
const startingBalance = 1000_00

// maxNameLen is the longest account name, in characters.
const maxNameLen = 40

// registrationOptions ask for a discoverable, user-verifying passkey
// without attestation, for sign-up and for adding a passkey.
var registrationOptions = []webauthn.RegistrationOption{
	webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
		ResidentKey:      protocol.ResidentKeyRequirementRequired,
		UserVerification: protocol.VerificationRequired,
	}),
	webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
	webauthn.WithCredentialParameters(webauthn.CredentialParametersRecommendedL3()),
	webauthn.WithConveyancePreference(protocol.PreferNoAttestation),
}

// signUpBegin starts a registration: POST {"name": ...} answers the
// PublicKeyCredentialCreationOptionsJSON for a new, discoverable passkey.
func (s *server) signUpBegin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	name, ok := cleanName(req.Name)
	if !ok {
		apiError(w, http.StatusBadRequest, "invalid_name", "Choose a name of 1 to 40 letters, digits or spaces.")
		return
	}
	if !s.nameFree(w, r, name) {
		return
	}
	handle := make([]byte, 32)
	rand.Read(handle)
	user := &User{ID: handle, Name: name}
	creation, data, err := s.wa.BeginRegistration(user, registrationOptions...)
	if err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "demo.signup_failed", slog.String("cause", err.Error()))
		internalError(w)
		return
	}
	sess := s.signIn.get(r)
	putJSON(sess, keySignUp, pendingSignUp{Name: name, Data: *data, Expires: s.now().Add(ceremonyTTL).Unix()})
	if !s.save(w, r, sess) {
		return
	}
	writeJSON(w, http.StatusOK, creation.Response)
}

// signUpFinish checks the new passkey, creates the account and signs it in.
// The body is the JSON of PublicKeyCredential.toJSON() for the new passkey.
func (s *server) signUpFinish(w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		apiError(w, http.StatusBadRequest, "invalid_request", "The request must be JSON.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	sess := s.signIn.get(r)
	var p pendingSignUp
	found := getJSON(sess, keySignUp, &p)
	delete(sess.Values, keySignUp) // one attempt per start
	if !found || p.Expires < s.now().Unix() {
		s.saveOrLog(w, r, sess)
		apiError(w, http.StatusBadRequest, "expired", "That took too long. Start again.")
		return
	}
	user := &User{ID: p.Data.UserID, Name: p.Name, Created: s.now(), Balance: startingBalance}
	cred, err := s.wa.FinishRegistration(user, p.Data, r)
	if err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "demo.signup_refused", slog.String("cause", describe(err)))
		s.saveOrLog(w, r, sess)
		apiError(w, http.StatusBadRequest, "verification_failed", "The new passkey could not be verified. Try again.")
		return
	}
	// The credential record keeps its flags (backup eligible and state) and
	// transports: later assertions are checked against them.
	user.Passkeys = []Passkey{{Credential: *cred, Created: s.now()}}
	if !s.createUser(w, r, sess, user) {
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "demo.signed_up", slog.String("user", b64(user.ID)),
		slog.Bool("backup_eligible", cred.Flags.BackupEligible))
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}

// signUpPassword creates an account with a password and no passkey, and
// signs it in: POST {"name", "password"}. Its owner can add a passkey later,
// after confirming with the password.
func (s *server) signUpPassword(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	name, ok := cleanName(req.Name)
	if !ok {
		apiError(w, http.StatusBadRequest, "invalid_name", "Choose a name of 1 to 40 letters, digits or spaces.")
		return
	}
	if !validPassword(req.Password) {
		apiError(w, http.StatusBadRequest, "invalid_password", passwordRule)
		return
	}
	if !s.nameFree(w, r, name) {
		return
	}
	handle := make([]byte, 32)
	rand.Read(handle)
	now := s.now()
	user := &User{ID: handle, Name: name, Created: now, Balance: startingBalance,
		PasswordHash: hashPassword(req.Password), PasswordChanged: now}
	if !s.createUser(w, r, s.signIn.get(r), user) {
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "demo.signed_up", slog.String("user", b64(user.ID)), slog.String("with", "password"))
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}

// signInPassword signs in with a name and password: POST {"name",
// "password"}. A wrong name and a wrong password get the same answer, in
// about the same time; after maxSignInFailures failures for a name in
// signInWindow, that name waits (429).
func (s *server) signInPassword(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	name := strings.Join(strings.Fields(req.Name), " ")
	if blocked, wait := s.signInLimit.blocked(name); blocked {
		w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		apiError(w, http.StatusTooManyRequests, "too_many_attempts", "Too many failed attempts. Wait a few minutes, then try again.")
		return
	}
	user, err := s.users.byName(r.Context(), name)
	if err != nil && !errors.Is(err, errNoUser) {
		s.failed(w, r, "find user", err)
		return
	}
	hash := dummyHash()
	if user != nil && user.hasPassword() {
		hash = user.PasswordHash
	}
	match, err := checkPassword(hash, req.Password)
	if err != nil {
		s.failed(w, r, "check password", err)
		return
	}
	if user == nil || !user.hasPassword() || !match {
		s.signInLimit.failed(name)
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "demo.signin_refused", slog.String("with", "password"))
		apiError(w, http.StatusUnauthorized, "wrong_password", "That name and password do not match an account.")
		return
	}
	s.signInLimit.succeeded(name)
	if !s.startSession(w, r, s.signIn.get(r), user.ID) {
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "demo.signed_in", slog.String("user", b64(user.ID)), slog.String("with", "password"))
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}

// nameFree answers 409 and returns false when name is taken.
func (s *server) nameFree(w http.ResponseWriter, r *http.Request, name string) bool {
	taken, err := s.users.nameTaken(r.Context(), name)
	if err != nil {
		s.failed(w, r, "check name", err)
		return false
	}
	if taken {
		apiError(w, http.StatusConflict, "name_taken", "That name is taken. Choose another one.")
		return false
	}
	return true
}

// createUser stores a new account and signs it in, or answers and returns
// false.
func (s *server) createUser(w http.ResponseWriter, r *http.Request, sess *sessions.Session, user *User) bool {
	if err := s.users.create(r.Context(), user); errors.Is(err, errNameTaken) {
		s.saveOrLog(w, r, sess)
		apiError(w, http.StatusConflict, "name_taken", "That name was just taken. Choose another one.")
		return false
	} else if err != nil {
		s.failed(w, r, "create user", err)
		return false
	}
	return s.startSession(w, r, sess, user.ID)
}

// signInBegin starts a discoverable sign-in: any passkey of this site.
func (s *server) signInBegin(w http.ResponseWriter, r *http.Request) {
	assertion, data, err := s.wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "demo.signin_failed", slog.String("cause", err.Error()))
		internalError(w)
		return
	}
	sess := s.signIn.get(r)
	var ps []pendingSignIn
	getJSON(sess, keySignIns, &ps)
	now := s.now().Unix()
	live := ps[:0]
	for _, p := range ps {
		if p.Expires >= now {
			live = append(live, p)
		}
	}
	live = append(live, pendingSignIn{Data: *data, Expires: s.now().Add(ceremonyTTL).Unix()})
	if len(live) > maxPendingSignIns {
		live = live[len(live)-maxPendingSignIns:]
	}
	putJSON(sess, keySignIns, live)
	if !s.save(w, r, sess) {
		return
	}
	writeJSON(w, http.StatusOK, assertion.Response)
}

// signInFinish checks a passkey assertion and signs its owner in.
func (s *server) signInFinish(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", "The browser's answer is not a passkey assertion.")
		return
	}
	sess := s.signIn.get(r)
	var ps []pendingSignIn
	getJSON(sess, keySignIns, &ps)
	i := -1
	for j, p := range ps {
		if subtle.ConstantTimeCompare([]byte(p.Data.Challenge), []byte(parsed.Response.CollectedClientData.Challenge)) == 1 {
			i = j
		}
	}
	if i < 0 || ps[i].Expires < s.now().Unix() {
		apiError(w, http.StatusBadRequest, "expired", "That took too long. Try again.")
		return
	}
	data := ps[i].Data
	putJSON(sess, keySignIns, append(ps[:i:i], ps[i+1:]...)) // each challenge answers once

	// A passkey that no account has is reported as such, so that the page
	// can tell the browser to forget it.
	stored, owner, err := s.accounts.CredentialByID(r.Context(), parsed.RawID)
	if errors.Is(err, stepup.ErrUnknownCredential) {
		s.saveOrLog(w, r, sess)
		apiError(w, http.StatusNotFound, "unknown_credential", "This passkey is not registered here. Its account may have been deleted.")
		return
	} else if err != nil {
		s.failed(w, r, "find passkey", err)
		return
	}
	handler := func(rawID, userHandle []byte) (webauthn.User, error) {
		if !bytes.Equal(userHandle, owner) {
			return nil, errors.New("user handle does not match the passkey's owner")
		}
		return s.users.get(r.Context(), owner)
	}
	_, cred, err := s.wa.ValidatePasskeyLogin(handler, data, parsed)
	if err == nil && cred.Authenticator.SignCount <= stored.Authenticator.SignCount &&
		(cred.Authenticator.SignCount != 0 || stored.Authenticator.SignCount != 0) {
		err = errors.New("sign counter did not advance (possible cloned authenticator)")
	}
	if err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "demo.signin_refused", slog.String("cause", describe(err)))
		s.saveOrLog(w, r, sess)
		apiError(w, http.StatusBadRequest, "verification_failed", "The passkey could not be verified. Try again.")
		return
	}
	if err := s.accounts.UpdateCredential(r.Context(), owner, *cred); err != nil {
		s.failed(w, r, "update passkey", err)
		return
	}
	if !s.startSession(w, r, sess, owner) {
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "demo.signed_in", slog.String("user", b64(owner)))
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}

// startSession signs id in. A step-up grant of whoever was signed in before
// is dropped with it.
func (s *server) startSession(w http.ResponseWriter, r *http.Request, sess *sessions.Session, id []byte) bool {
	if err := s.su.Revoke(w, r); err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "demo.revoke_failed", slog.String("cause", err.Error()))
		internalError(w)
		return false
	}
	signInAs(sess, id)
	return s.save(w, r, sess)
}

// signOut ends the sign-in session and drops the step-up grant.
func (s *server) signOut(w http.ResponseWriter, r *http.Request) {
	if err := s.su.Revoke(w, r); err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "demo.revoke_failed", slog.String("cause", err.Error()))
	}
	sess := s.signIn.get(r)
	signOut(sess)
	if !s.save(w, r, sess) {
		return
	}
	http.Redirect(w, r, "/?m=signedout", http.StatusSeeOther)
}

// failed logs a fault of ours and answers 500.
func (s *server) failed(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.log.LogAttrs(r.Context(), slog.LevelError, "demo.failed", slog.String("what", what), slog.String("cause", err.Error()))
	internalError(w)
}

// save writes the sign-in session, or answers 500 and returns false.
func (s *server) save(w http.ResponseWriter, r *http.Request, sess *sessions.Session) bool {
	if err := sess.Save(r, w); err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "demo.session_save_failed", slog.String("cause", err.Error()))
		internalError(w)
		return false
	}
	return true
}

// saveOrLog writes the sign-in session before a refusal; a failure is only
// logged, as the refusal stands anyway.
func (s *server) saveOrLog(w http.ResponseWriter, r *http.Request, sess *sessions.Session) {
	if err := sess.Save(r, w); err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "demo.session_save_failed", slog.String("cause", err.Error()))
	}
}

// cleanName trims name and checks that it is 1 to maxNameLen letters,
// digits, spaces, dots, dashes or apostrophes.
func cleanName(name string) (string, bool) {
	name = strings.Join(strings.Fields(name), " ")
	if name == "" || utf8.RuneCountInString(name) > maxNameLen {
		return "", false
	}
	for _, c := range name {
		if !unicode.IsLetter(c) && !unicode.IsDigit(c) && !strings.ContainsRune(" .-'", c) {
			return "", false
		}
	}
	return name, true
}

// describe turns a go-webauthn error into a log line; its DevInfo may hold
// expected values, so it goes to the log only.
func describe(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		if pe.DevInfo != "" {
			return pe.Details + " (" + pe.DevInfo + ")"
		}
		return pe.Details
	}
	return err.Error()
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
