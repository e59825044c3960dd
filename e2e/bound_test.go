package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	gowebauthn "github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
)

// The example app uses plain gates. This test drives stepup.js against
// scoped and operation-bound gates of stepup itself, on a bare server with
// one signed-in user whose passkey the test puts on the authenticator.

// bareUser is always signed in; it is enough for stepup.
type bareUser struct {
	mu     sync.Mutex
	handle []byte
	cred   gowebauthn.Credential
}

func (u *bareUser) WebAuthnID() []byte          { return u.handle }
func (u *bareUser) WebAuthnName() string        { return "ada" }
func (u *bareUser) WebAuthnDisplayName() string { return "Ada" }
func (u *bareUser) WebAuthnCredentials() []gowebauthn.Credential {
	u.mu.Lock()
	defer u.mu.Unlock()
	return []gowebauthn.Credential{u.cred}
}

func (u *bareUser) CurrentUser(*http.Request) (gowebauthn.User, error) { return u, nil }

func (u *bareUser) CredentialByID(_ context.Context, id []byte) (gowebauthn.Credential, []byte, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !bytes.Equal(id, u.cred.ID) {
		return gowebauthn.Credential{}, nil, stepup.ErrUnknownCredential
	}
	return u.cred, u.handle, nil
}

func (u *bareUser) UpdateCredential(_ context.Context, _ []byte, c gowebauthn.Credential) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.cred = c
	return nil
}

// newBareEnv serves stepup with these gates: POST /pay (scope "payments",
// bound to the payment in the body), POST /password (scope "password"),
// POST /plain (no scope), POST /either (passkey or password; Ada's password
// is "pw-ada") and POST /totp-only (a method nobody has).
func newBareEnv(t *testing.T, eng engine, b browser) *env {
	t.Helper()
	e := &env{t: t, engine: eng, clock: newClock()}
	ln := e.listen()

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	user := &bareUser{handle: []byte("user-ada"), cred: gowebauthn.Credential{
		ID:        make([]byte, 32),
		PublicKey: coseES256(t, &key.PublicKey),
		Flags:     gowebauthn.CredentialFlags{UserPresent: true, UserVerified: true},
	}}
	rand.Read(user.cred.ID)

	wa, err := gowebauthn.New(&gowebauthn.Config{RPID: "localhost", RPDisplayName: "Bare", RPOrigins: []string{e.base}})
	if err != nil {
		t.Fatal(err)
	}
	store := sessions.NewCookieStore(securecookie.GenerateRandomKey(32), securecookie.GenerateRandomKey(32))
	store.Options.Secure = false
	logs := &syncBuffer{}
	su, err := stepup.New(stepup.Config{
		WebAuthn: wa, Store: store, Users: user, Now: e.clock.Now,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	type payment struct {
		To    string `json:"to"`
		Cents int64  `json:"cents"`
	}
	bindPayment := stepup.Bind(func(r *http.Request) ([]byte, string, error) {
		var p payment
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			return nil, "", err
		}
		op, _ := json.Marshal(p)
		return op, fmt.Sprintf("Send €%d.%02d to %s", p.Cents/100, p.Cents%100, p.To), nil
	})
	done := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "done %s %s", r.URL.Path, b)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<!doctype html><title>bare</title><p>stepup without the example app</p>")
	})
	mux.Handle("GET /stepup.js", su.ScriptHandler())
	mux.Handle("POST /api/reauth/options", su.OptionsHandler())
	mux.Handle("POST /api/reauth/verify", su.VerifyHandler())
	mux.Handle("POST /pay", su.RequireRecentReauth(time.Minute, stepup.Scope("payments"), bindPayment)(http.HandlerFunc(done)))
	mux.Handle("POST /password", su.RequireRecentReauth(5*time.Minute, stepup.Scope("password"))(http.HandlerFunc(done)))
	mux.Handle("POST /plain", su.RequireRecentReauth(5*time.Minute)(http.HandlerFunc(done)))
	// Ada also has a password, "pw-ada": a gate that takes either, and one
	// that takes only a method she has not set up.
	mux.Handle("POST /api/reauth/password", su.MethodHandler(stepup.Method{
		Name: "password", AMR: []string{"pwd"},
		Available: func(context.Context, gowebauthn.User) (bool, error) { return true, nil },
		Check: func(_ context.Context, _ gowebauthn.User, secret string) error {
			if secret != "pw-ada" {
				return stepup.ErrWrongSecret
			}
			return nil
		},
	}))
	mux.Handle("POST /either", su.RequireRecentReauth(5*time.Minute, stepup.Methods(stepup.MethodPasskey, "password"))(http.HandlerFunc(done)))
	mux.Handle("POST /totp-only", su.RequireRecentReauth(5*time.Minute, stepup.Methods("totp"))(http.HandlerFunc(done)))
	e.serve(ln, http.NewCrossOriginProtection().Handler(mux))
	e.open(b, logs)

	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	err = e.page.addCredential(credential{
		ID:         user.cred.ID,
		RPID:       "localhost",
		UserHandle: user.handle,
		PrivateKey: pkcs8,
	})
	if err != nil {
		t.Fatalf("put the passkey on the authenticator: %v", err)
	}
	return e
}

// coseES256 encodes a P-256 public key as a COSE_Key:
// {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}.
func coseES256(t *testing.T, pub *ecdsa.PublicKey) []byte {
	raw, err := pub.Bytes() // 0x04 || x || y
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20}
	b = append(b, raw[1:33]...)
	b = append(b, 0x22, 0x58, 0x20)
	return append(b, raw[33:65]...)
}

// stepUpFetch runs fetchWithStepUp in the page for a JSON POST and returns
// the answer and the info confirm was given (confirm always says yes).
const stepUpFetch = `(async (url, body) => {
	const { fetchWithStepUp } = await import("/stepup.js");
	let info = null;
	const res = await fetchWithStepUp(url, {
		method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
	}, { confirm: async (i) => { info = i; return true; } });
	return { status: res.status, text: await res.text(), info };
})`

type fetchResult struct {
	Status int    `json:"status"`
	Text   string `json:"text"`
	Info   *struct {
		Error     string `json:"error"`
		MaxAge    int    `json:"max_age"`
		Scope     string `json:"scope"`
		Operation *struct {
			Digest      string `json:"digest"`
			Description string `json:"description"`
		} `json:"operation"`
	} `json:"info"`
}

func (e *env) stepUpFetch(url string, body any) fetchResult {
	e.t.Helper()
	return eval[fetchResult](e, fmt.Sprintf(`%s(%q, %s)`, stepUpFetch, url, toJSON(body)))
}

func testScopedAndBoundGates(t *testing.T, e *env) {
	e.navigate("/")
	grace := map[string]any{"to": "Grace", "cents": 1250}

	// A bound gate: the 403 names the scope and the operation, the client
	// asks for a grant of both, and the identical request then passes.
	r := e.stepUpFetch("/pay", grace)
	if r.Status != http.StatusOK || r.Text != `done /pay {"cents":1250,"to":"Grace"}` {
		t.Fatalf("bound payment: %d %q", r.Status, r.Text)
	}
	if r.Info == nil || r.Info.Error != "reauthentication_required" || r.Info.Scope != "payments" || r.Info.MaxAge != 60 ||
		r.Info.Operation == nil || r.Info.Operation.Description != "Send €12.50 to Grace" || r.Info.Operation.Digest == "" {
		t.Fatalf("confirm got %s, want the scope and the operation of the gate", toJSON(r.Info))
	}
	// Single use: the same payment again needs a new confirmation.
	if r := e.stepUpFetch("/pay", grace); r.Status != http.StatusOK || r.Info == nil {
		t.Fatalf("second bound payment: %d, info %s; want a new confirmation and 200", r.Status, toJSON(r.Info))
	}

	// The default dialog shows what is being confirmed.
	e.run(`void (window.__pending = import("/stepup.js").then(({ fetchWithStepUp }) =>
		fetchWithStepUp("/pay", { method: "POST", headers: { "Content-Type": "application/json" }, body: '{"to":"Bob","cents":300}' })
			.then(async (res) => ({ status: res.status, text: await res.text() }))))`)
	e.waitFor(dialogOpen)
	if got := e.text("dialog.stepup-confirm[open] .stepup-confirm-operation"); got != "Send €3.00 to Bob" {
		t.Errorf("the dialog shows the operation %q", got)
	}
	if got := e.text("dialog.stepup-confirm[open] p"); !strings.Contains(got, "this request only") {
		t.Errorf("the dialog says %q, want it to say the confirmation is for this request only", got)
	}
	e.confirm()
	if r := eval[fetchResult](e, `window.__pending`); r.Status != http.StatusOK || r.Text != `done /pay {"to":"Bob","cents":300}` {
		t.Fatalf("payment through the dialog: %d %q", r.Status, r.Text)
	}

	// A scoped gate, then an unscoped one: a grant of one scope opens no
	// other gate.
	if r := e.stepUpFetch("/password", map[string]any{}); r.Status != http.StatusOK || r.Info == nil || r.Info.Scope != "password" || r.Info.Operation != nil {
		t.Fatalf("scoped gate: %d, info %s", r.Status, toJSON(r.Info))
	}
	if r := e.stepUpFetch("/plain", map[string]any{}); r.Status != http.StatusOK || r.Info == nil || r.Info.Scope != "" {
		t.Fatalf("plain gate after a scoped grant: %d, info %s; want a confirmation of its own", r.Status, toJSON(r.Info))
	}
	if r := e.stepUpFetch("/plain", map[string]any{}); r.Status != http.StatusOK || r.Info != nil {
		t.Fatalf("plain gate with a fresh grant: %d, info %s; want no confirmation", r.Status, toJSON(r.Info))
	}
	if n := len(e.gets()); n != 5 {
		t.Errorf("got %d ceremonies, want 5", n)
	}
}
