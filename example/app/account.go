package app

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/passkey-stepup/stepup"
)

// Password rules and hashing (PBKDF2-HMAC-SHA256 with the iteration count
// OWASP recommends).
const (
	minPasswordLen   = 8
	maxPasswordLen   = 128
	pbkdf2Iterations = 600_000
)

// changePassword sets a new password. It runs behind
// RequireRecentReauth(PasswordMaxAge).
func (s *server) changePassword(w http.ResponseWriter, r *http.Request) {
	user, ok := s.accounts.current(r)
	if !ok {
		apiError(w, http.StatusUnauthorized, "no_active_session", "Sign in first.")
		return
	}
	var req struct {
		Password string `json:"password"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if n := utf8.RuneCountInString(req.Password); n < minPasswordLen || n > maxPasswordLen || strings.TrimSpace(req.Password) == "" {
		apiError(w, http.StatusBadRequest, "invalid_password", fmt.Sprintf("Choose a password of %d to %d characters.", minPasswordLen, maxPasswordLen))
		return
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	key, err := pbkdf2.Key(sha256.New, req.Password, salt, pbkdf2Iterations, 32)
	if err != nil {
		internalError(w)
		return
	}
	now := s.now()
	err = s.users.update(user.ID, func(u *User) error {
		u.PasswordHash = append(salt, key...)
		u.PasswordChanged = now
		return nil
	})
	if err != nil {
		internalError(w)
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "demo.password_changed", slog.String("user", b64(user.ID)))
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "message": "Your password was changed."})
}

var errInsufficientFunds = errors.New("insufficient funds")

// sendPayment sends money to someone. It runs behind
// RequireRecentReauth(PaymentMaxAge).
func (s *server) sendPayment(w http.ResponseWriter, r *http.Request) {
	user, ok := s.accounts.current(r)
	if !ok {
		apiError(w, http.StatusUnauthorized, "no_active_session", "Sign in first.")
		return
	}
	var req struct {
		To     string `json:"to"`
		Amount string `json:"amount"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	to := strings.Join(strings.Fields(req.To), " ")
	if to == "" || utf8.RuneCountInString(to) > 60 {
		apiError(w, http.StatusBadRequest, "invalid_recipient", "Say who gets the money (up to 60 characters).")
		return
	}
	cents, ok := parseAmount(req.Amount)
	if !ok || cents <= 0 {
		apiError(w, http.StatusBadRequest, "invalid_amount", "Enter an amount such as 12.50.")
		return
	}
	var balance int64
	err := s.users.update(user.ID, func(u *User) error {
		if cents > u.Balance {
			return errInsufficientFunds
		}
		u.Balance -= cents
		u.Payments = append(u.Payments, Payment{To: to, Amount: cents, At: s.now()})
		balance = u.Balance
		return nil
	})
	if errors.Is(err, errInsufficientFunds) {
		apiError(w, http.StatusBadRequest, "insufficient_funds", "You don't have that much money. Enter a smaller amount.")
		return
	} else if err != nil {
		internalError(w)
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "demo.payment_sent", slog.String("user", b64(user.ID)), slog.Int64("cents", cents))
	writeJSON(w, http.StatusOK, map[string]any{
		"ok":      true,
		"message": fmt.Sprintf("Sent %s to %s.", formatCents(cents), to),
		"balance": formatCents(balance),
		"payment": map[string]string{"to": to, "amount": formatCents(cents)},
	})
}

// deleteAccount deletes the signed-in account. It runs behind
// RequireRecentReauth(DeleteMaxAge), and the grant it used is revoked: a
// confirmation is never reused after a deletion.
func (s *server) deleteAccount(w http.ResponseWriter, r *http.Request) {
	user, ok := s.accounts.current(r)
	if !ok {
		apiError(w, http.StatusUnauthorized, "no_active_session", "Sign in first.")
		return
	}
	if !s.users.delete(user.ID) {
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
	return w*100 + f, true
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
}

type accountView struct {
	Name           string
	Created        string
	Passkeys       []passkeyView
	Password       string
	Balance        string
	Payments       []paymentView
	LastConfirmed  string
	PasswordMaxAge string
	PaymentMaxAge  string
	DeleteMaxAge   string
	DataMaxAge     string
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
}

func (s *server) home(w http.ResponseWriter, r *http.Request) {
	user, ok := s.accounts.current(r)
	if !ok {
		s.render(w, "home.html", page{Title: "Welcome", Page: "home", Flash: flashes[r.URL.Query().Get("m")]})
		return
	}
	s.render(w, "account.html", page{Title: "Your account", Page: "account", Account: s.accountView(r, user)})
}

func (s *server) accountView(r *http.Request, u *User) *accountView {
	v := &accountView{
		Name:           u.Name,
		Created:        s.ago(u.Created),
		Password:       "not set",
		Balance:        formatCents(u.Balance),
		PasswordMaxAge: lastPeriod(PasswordMaxAge),
		PaymentMaxAge:  lastPeriod(PaymentMaxAge),
		DeleteMaxAge:   lastPeriod(DeleteMaxAge),
		DataMaxAge:     lastPeriod(DataMaxAge),
	}
	if !u.PasswordChanged.IsZero() {
		v.Password = "changed " + s.ago(u.PasswordChanged)
	}
	for _, p := range u.Passkeys {
		pv := passkeyView{Created: s.ago(p.Created), LastUsed: "never", Synced: p.Credential.Flags.BackupEligible}
		if !p.LastUsed.IsZero() {
			pv.LastUsed = s.ago(p.LastUsed)
		}
		v.Passkeys = append(v.Passkeys, pv)
	}
	for i := len(u.Payments) - 1; i >= 0 && len(v.Payments) < 5; i-- {
		p := u.Payments[i]
		v.Payments = append(v.Payments, paymentView{To: p.To, Amount: formatCents(p.Amount), When: s.ago(p.At)})
	}
	if at, ok := s.su.LastReauth(r); ok {
		v.LastConfirmed = s.ago(at.At)
	}
	return v
}

// reauthPage is Config.ReauthURL: a gated page the browser navigated to
// sends the user here with return_to; after the confirmation the page goes
// back there.
func (s *server) reauthPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.accounts.current(r); !ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, "reauth.html", page{Title: "Confirm it's you", Page: "reauth", ReturnTo: stepup.ReturnTo(r)})
}

// dataPage shows what the demo stores about the user. It runs behind
// RequireRecentReauth(DataMaxAge); a browser without a fresh confirmation is
// redirected to /reauth.
func (s *server) dataPage(w http.ResponseWriter, r *http.Request) {
	u, ok := s.accounts.current(r)
	if !ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	type passkey struct {
		ID             string    `json:"id"`
		Created        time.Time `json:"created"`
		BackupEligible bool      `json:"backup_eligible"`
		Transports     []string  `json:"transports"`
		SignCount      uint32    `json:"sign_count"`
	}
	type payment struct {
		To     string    `json:"to"`
		Amount string    `json:"amount"`
		At     time.Time `json:"at"`
	}
	export := struct {
		Name        string    `json:"name"`
		Created     time.Time `json:"created"`
		PasswordSet bool      `json:"password_set"`
		Balance     string    `json:"balance"`
		Passkeys    []passkey `json:"passkeys"`
		Payments    []payment `json:"payments"`
	}{Name: u.Name, Created: u.Created.UTC(), PasswordSet: len(u.PasswordHash) > 0, Balance: formatCents(u.Balance),
		Passkeys: []passkey{}, Payments: []payment{}}
	for _, p := range u.Passkeys {
		pk := passkey{ID: b64(p.Credential.ID), Created: p.Created.UTC(), BackupEligible: p.Credential.Flags.BackupEligible,
			SignCount: p.Credential.Authenticator.SignCount, Transports: []string{}}
		for _, t := range p.Credential.Transport {
			pk.Transports = append(pk.Transports, string(t))
		}
		export.Passkeys = append(export.Passkeys, pk)
	}
	for _, p := range u.Payments {
		export.Payments = append(export.Payments, payment{To: p.To, Amount: formatCents(p.Amount), At: p.At.UTC()})
	}
	b, err := json.MarshalIndent(export, "", "  ")
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
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
