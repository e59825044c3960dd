package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/passkey-stepup/stepup"
)

// errNoGateUser means a handler that needs a gate runs without one: a wiring
// mistake, answered 500.
var errNoGateUser = errors.New("no user from the gate")

// confirmedWith is what the wrapped handlers add to their answer: the method
// of the confirmation that let the request through, for the page's "You
// last confirmed it's you ... with your passkey".
func confirmedWith(r *http.Request) string {
	g, _ := stepup.GrantFrom(r.Context())
	return g.Method
}

// changePassword sets a new password (or a first one). It runs behind
// RequireRecentReauth(PasswordMaxAge, Methods("passkey", "password")).
// Every step-up grant of the user then ends, in every browser
// (RevokeUser): whoever confirmed with the old password elsewhere must
// confirm again.
func (s *server) changePassword(w http.ResponseWriter, r *http.Request) {
	user, ok := userOf(r)
	if !ok {
		s.failed(w, r, "change password", errNoGateUser)
		return
	}
	var req struct {
		Password string `json:"password"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if !validPassword(req.Password) {
		apiError(w, http.StatusBadRequest, "invalid_password", passwordRule)
		return
	}
	if err := s.users.setPassword(r.Context(), user.ID, hashPassword(req.Password), s.now()); err != nil {
		s.failed(w, r, "change password", err)
		return
	}
	with := confirmedWith(r)
	if err := s.su.RevokeUser(r.Context(), user.ID); err != nil {
		// The password is changed; the grants made with the old one may live
		// until they expire. Say so in the log, not to the user.
		s.log.LogAttrs(r.Context(), slog.LevelError, "demo.revoke_failed", slog.String("cause", err.Error()))
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "demo.password_changed", slog.String("user", b64(user.ID)))
	message := "Your password was changed."
	if !user.hasPassword() {
		message = "Your password is set. You can sign in with it too."
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "message": message, "confirmed_with": with})
}

// paymentRequest is the body of a payment.
type paymentRequest struct {
	To     string `json:"to"`
	Amount string `json:"amount"`
}

// payment is a checked payment request.
type payment struct {
	to    string
	cents int64
}

// readPayment reads and checks the payment request of r. Its errors are
// the gate's answer to the page (stepup.OperationError).
func readPayment(r *http.Request) (payment, error) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return payment{}, &stepup.OperationError{Status: http.StatusBadRequest, Message: "The request must be JSON."}
	}
	var req paymentRequest
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(b) > maxBody || json.Unmarshal(b, &req) != nil {
		return payment{}, &stepup.OperationError{Status: http.StatusBadRequest, Message: "The request is not what this page sends.", Err: err}
	}
	to := strings.Join(strings.Fields(req.To), " ")
	if to == "" || utf8.RuneCountInString(to) > 60 {
		return payment{}, &stepup.OperationError{Status: http.StatusBadRequest, Code: "invalid_recipient", Message: "Say who gets the money (up to 60 characters)."}
	}
	cents, ok := parseAmount(req.Amount)
	switch {
	case !ok:
		return payment{}, &stepup.OperationError{Status: http.StatusBadRequest, Code: "invalid_amount", Message: "Enter an amount such as 12.50."}
	case cents <= 0:
		return payment{}, &stepup.OperationError{Status: http.StatusUnprocessableEntity, Code: "invalid_amount", Message: "Enter an amount above zero."}
	}
	return payment{to: to, cents: cents}, nil
}

// paymentOperation is the payment gate's stepup.Bind function: the
// canonical bytes of the payment (amount in cents, currency, payee), which
// the confirmation signs, and what the dialog shows, such as "Send 99.95
// EUR to Alan Turing". A payment the account cannot make is refused here,
// before the user is asked to confirm it.
func (s *server) paymentOperation(r *http.Request) ([]byte, string, error) {
	p, err := readPayment(r)
	if err != nil {
		return nil, "", err
	}
	user, err := s.accounts.current(r)
	if err != nil {
		return nil, "", err // the gate has just found the user: a database fault
	}
	if p.cents > user.Balance {
		return nil, "", &stepup.OperationError{Status: http.StatusBadRequest, Code: "insufficient_funds",
			Message: "You don't have that much money. Enter a smaller amount."}
	}
	op := fmt.Sprintf("pay\x00%d\x00EUR\x00%s", p.cents, p.to)
	return []byte(op), fmt.Sprintf("Send %s EUR to %s", decimal(p.cents), p.to), nil
}

// sendPayment sends money to someone. It runs behind
// RequireRecentReauth(PaymentMaxAge, Bind(paymentOperation)): the request
// is exactly the payment the user confirmed with a passkey, and the
// confirmation is used up.
func (s *server) sendPayment(w http.ResponseWriter, r *http.Request) {
	user, ok := userOf(r)
	if !ok {
		s.failed(w, r, "pay", errNoGateUser)
		return
	}
	p, err := readPayment(r)
	if err != nil { // the gate's Bind function read the same body
		apiError(w, http.StatusBadRequest, "invalid_request", "The request is not what this page sends.")
		return
	}
	balance, err := s.users.pay(r.Context(), user.ID, p.to, p.cents, s.now())
	if errors.Is(err, errInsufficientFunds) {
		apiError(w, http.StatusBadRequest, "insufficient_funds", "You don't have that much money. Enter a smaller amount.")
		return
	} else if err != nil {
		s.failed(w, r, "pay", err)
		return
	}
	// The confirmation is used up; the account page still says when it was.
	if g, ok := stepup.GrantFrom(r.Context()); ok {
		sess := s.signIn.get(r)
		putJSON(sess, keyConfirmed, usedConfirmation{At: g.At.Unix(), Method: g.Method})
		s.saveOrLog(w, r, sess)
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "demo.payment_sent", slog.String("user", b64(user.ID)), slog.Int64("cents", p.cents))
	writeJSON(w, http.StatusOK, map[string]any{
		"ok":             true,
		"message":        fmt.Sprintf("Sent %s to %s.", formatCents(p.cents), p.to),
		"balance":        formatCents(balance),
		"payment":        map[string]string{"to": p.to, "amount": formatCents(p.cents)},
		"confirmed_with": confirmedWith(r),
	})
}

// deleteAccount deletes the signed-in account. It runs behind
// RequireRecentReauth(DeleteMaxAge, Once(), Methods("passkey",
// "password")): the confirmation is used up by the deletion, and the
// session's other grants are revoked with the sign-in.
func (s *server) deleteAccount(w http.ResponseWriter, r *http.Request) {
	user, ok := userOf(r)
	if !ok {
		s.failed(w, r, "delete account", errNoGateUser)
		return
	}
	if found, err := s.users.delete(r.Context(), user.ID); err != nil {
		s.failed(w, r, "delete account", err)
		return
	} else if !found {
		apiError(w, http.StatusUnauthorized, "no_active_session", "Sign in first.")
		return
	}
	if err := s.su.Revoke(w, r); err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "demo.revoke_failed", slog.String("cause", err.Error()))
	}
	sess := s.signIn.get(r)
	signOut(sess)
	if !s.save(w, r, sess) {
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "demo.account_deleted", slog.String("user", b64(user.ID)))
	// The page tells the browser that this user has no passkeys here any
	// more (PublicKeyCredential.signalAllAcceptedCredentials).
	writeJSON(w, http.StatusOK, map[string]any{
		"ok":      true,
		"message": "Your account was deleted.",
		"rpId":    s.rpID,
		"userId":  b64(user.ID),
	})
}

// parseAmount reads a decimal amount such as "12", "12.5" or "12.50" into
// cents.
func parseAmount(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	sign := int64(1)
	if rest, ok := strings.CutPrefix(s, "-"); ok {
		sign, s = -1, rest
	}
	whole, frac, hasFrac := strings.Cut(s, ".")
	if whole == "" || len(whole) > 9 || hasFrac && (len(frac) == 0 || len(frac) > 2) {
		return 0, false
	}
	for _, part := range []string{whole, frac} {
		for _, c := range part {
			if c < '0' || c > '9' {
				return 0, false
			}
		}
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, false
	}
	var f int64
	if hasFrac {
		f, _ = strconv.ParseInt(frac, 10, 64)
		if len(frac) == 1 {
			f *= 10
		}
	}
	if w > (math.MaxInt64-99)/100 {
		return 0, false
	}
	return sign * (w*100 + f), true
}

// decimal writes cents as a plain decimal amount: 99.95.
func decimal(c int64) string {
	sign := ""
	if c < 0 {
		sign, c = "-", -c
	}
	return fmt.Sprintf("%s%d.%02d", sign, c/100, c%100)
}

// formatCents writes cents as euros: €1,234.50.
func formatCents(c int64) string {
	sign := ""
	if c < 0 {
		sign, c = "-", -c
	}
	whole := strconv.FormatInt(c/100, 10)
	var b strings.Builder
	for i, d := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	return fmt.Sprintf("%s€%s.%02d", sign, b.String(), c%100)
}

// The pages.

type page struct {
	Title    string
	Page     string // body data-page, read by app.js
	Flash    string
	Account  *accountView
	ReturnTo string
	Data     string
	// The ways the signed-in user can confirm on the /reauth page.
	Passkey, Password bool
	// SSO: the home page offers signing in with SSO; the /reauth page
	// offers confirming at the provider.
	SSO bool
}

type accountView struct {
	Name             string
	Created          string
	Passkeys         []passkeyView
	HasPassword      bool
	Password         string
	Balance          string
	Payments         []paymentView
	LastConfirmed    string
	LastMethod       string
	PasswordMaxAge   string
	PaymentMaxAge    string
	DeleteMaxAge     string
	DataMaxAge       string
	AddPasskeyMaxAge string
	// SSO: the user is linked to the SSO provider and can confirm there;
	// SSOOnly: and has no other way to.
	SSO, SSOOnly bool
}

type passkeyView struct {
	Created, LastUsed string
	Synced            bool
}

type paymentView struct {
	To, Amount, When string
}

var flashes = map[string]string{
	"signedout": "You are signed out.",
	"deleted":   "Your account was deleted.",
	"ssofailed": "Signing in with SSO did not work. Try again.",
}

func (s *server) home(w http.ResponseWriter, r *http.Request) {
	user, err := s.accounts.current(r)
	if errors.Is(err, errSignedOut) {
		s.render(w, "home.html", page{Title: "Welcome", Page: "home", Flash: flashes[r.URL.Query().Get("m")], SSO: s.sso != nil})
		return
	} else if err != nil {
		s.pageFailed(w, r, err)
		return
	}
	v, err := s.accountView(r, user)
	if err != nil {
		s.pageFailed(w, r, err)
		return
	}
	s.render(w, "account.html", page{Title: "Your account", Page: "account", Account: v})
}

// methodNames say how a grant was made, after "with your".
var methodNames = map[string]string{"passkey": "passkey", "password": "password", "sso": "sign-in provider"}

func (s *server) accountView(r *http.Request, u *User) (*accountView, error) {
	payments, err := s.users.payments(r.Context(), u.ID, 5)
	if err != nil {
		return nil, err
	}
	v := &accountView{
		Name:             u.Name,
		Created:          s.ago(u.Created),
		HasPassword:      u.hasPassword(),
		Password:         "not set",
		Balance:          formatCents(u.Balance),
		PasswordMaxAge:   lastPeriod(PasswordMaxAge),
		PaymentMaxAge:    lastPeriod(PaymentMaxAge),
		DeleteMaxAge:     lastPeriod(DeleteMaxAge),
		DataMaxAge:       lastPeriod(DataMaxAge),
		AddPasskeyMaxAge: lastPeriod(AddPasskeyMaxAge),
	}
	if u.hasPassword() {
		v.Password = "set " + s.ago(u.PasswordChanged)
	}
	if s.ssoStepUp != nil {
		_, linked, err := s.users.ssoSubject(r.Context(), u.ID)
		if err != nil {
			return nil, err
		}
		v.SSO, v.SSOOnly = linked, linked && !u.hasPassword() && len(u.Passkeys) == 0
	}
	for _, p := range u.Passkeys {
		pv := passkeyView{Created: s.ago(p.Created), LastUsed: "never", Synced: p.Credential.Flags.BackupEligible}
		if !p.LastUsed.IsZero() {
			pv.LastUsed = s.ago(p.LastUsed)
		}
		v.Passkeys = append(v.Passkeys, pv)
	}
	for _, p := range payments {
		v.Payments = append(v.Payments, paymentView{To: p.To, Amount: formatCents(p.Amount), When: s.ago(p.At)})
	}
	// The newest confirmation: the newest grant the step-up session holds,
	// or a payment's, which its gate used up.
	var last usedConfirmation
	getJSON(s.signIn.get(r), keyConfirmed, &last)
	if g, ok := s.su.LatestGrant(r); ok && g.At.Unix() >= last.At {
		last = usedConfirmation{At: g.At.Unix(), Method: g.Method}
	}
	if last.At != 0 {
		v.LastConfirmed = s.ago(time.Unix(last.At, 0))
		v.LastMethod = methodNames[last.Method]
	}
	return v, nil
}

// pageFailed logs a fault of ours while drawing a page and answers 500.
func (s *server) pageFailed(w http.ResponseWriter, r *http.Request, err error) {
	s.log.LogAttrs(r.Context(), slog.LevelError, "demo.page_failed", slog.String("path", r.URL.Path), slog.String("cause", err.Error()))
	http.Error(w, "Something went wrong on our side. Try again.", http.StatusInternalServerError)
}

// reauthPage is Config.ReauthURL: a gated page the browser navigated to
// sends the user here with return_to; after the confirmation (with a
// passkey or the password, whichever the user has) the page goes back
// there.
func (s *server) reauthPage(w http.ResponseWriter, r *http.Request) {
	user, err := s.accounts.current(r)
	if errors.Is(err, errSignedOut) {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	} else if err != nil {
		s.pageFailed(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	linked := false
	if s.ssoStepUp != nil {
		if _, linked, err = s.users.ssoSubject(r.Context(), user.ID); err != nil {
			s.pageFailed(w, r, err)
			return
		}
	}
	s.render(w, "reauth.html", page{Title: "Confirm it's you", Page: "reauth", ReturnTo: stepup.ReturnTo(r),
		Passkey: len(user.Passkeys) > 0, Password: user.hasPassword(), SSO: linked})
}

// dataPage shows what the demo stores about the user. It runs behind
// RequireRecentReauth(DataMaxAge, Methods("passkey", "password")); a
// browser without a fresh confirmation is redirected to /reauth.
func (s *server) dataPage(w http.ResponseWriter, r *http.Request) {
	u, ok := userOf(r)
	if !ok {
		s.pageFailed(w, r, errNoGateUser)
		return
	}
	payments, err := s.users.payments(r.Context(), u.ID, 0)
	if err != nil {
		s.pageFailed(w, r, err)
		return
	}
	type passkey struct {
		ID             string    `json:"id"`
		Created        time.Time `json:"created"`
		BackupEligible bool      `json:"backup_eligible"`
		Transports     []string  `json:"transports"`
		SignCount      uint32    `json:"sign_count"`
	}
	type paymentJSON struct {
		To     string    `json:"to"`
		Amount string    `json:"amount"`
		At     time.Time `json:"at"`
	}
	export := struct {
		Name        string        `json:"name"`
		Created     time.Time     `json:"created"`
		PasswordSet bool          `json:"password_set"`
		Balance     string        `json:"balance"`
		Passkeys    []passkey     `json:"passkeys"`
		Payments    []paymentJSON `json:"payments"`
	}{Name: u.Name, Created: u.Created.UTC(), PasswordSet: u.hasPassword(), Balance: formatCents(u.Balance),
		Passkeys: []passkey{}, Payments: []paymentJSON{}}
	for _, p := range u.Passkeys {
		pk := passkey{ID: b64(p.Credential.ID), Created: p.Created.UTC(), BackupEligible: p.Credential.Flags.BackupEligible,
			SignCount: p.Credential.Authenticator.SignCount, Transports: []string{}}
		for _, t := range p.Credential.Transport {
			pk.Transports = append(pk.Transports, string(t))
		}
		export.Passkeys = append(export.Passkeys, pk)
	}
	for _, p := range payments {
		export.Payments = append(export.Payments, paymentJSON{To: p.To, Amount: formatCents(p.Amount), At: p.At.UTC()})
	}
	b, err := json.MarshalIndent(export, "", "  ")
	if err != nil {
		s.pageFailed(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, "data.html", page{Title: "Your data", Page: "data", Data: string(b)})
}

// ago says how long ago t was, by the demo's clock.
func (s *server) ago(t time.Time) string {
	d := s.now().Sub(t)
	switch {
	case d < 10*time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d seconds ago", int(d/time.Second))
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour") + " ago"
	default:
		return t.Format("2 January 2006")
	}
}

// lastPeriod names a period ending now: "minute", "5 minutes".
func lastPeriod(d time.Duration) string {
	s := plural(int(d/time.Second), "second")
	if d%time.Minute == 0 {
		s = plural(int(d/time.Minute), "minute")
	}
	return strings.TrimPrefix(s, "1 ")
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return strconv.Itoa(n) + " " + unit + "s"
}
