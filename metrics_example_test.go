package stepup_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// eventCounter is a slog.Handler that counts stepup's security events by
// name (the record's message), for metrics: export the counts to your
// monitoring (Prometheus counters, expvar, ...).
type eventCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *eventCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *eventCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *eventCounter) WithGroup(string) slog.Handler            { return c }
func (c *eventCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[r.Message]++
	return nil
}

// Metrics from the audit events: a slog.Handler that counts them.
func Example_metrics() {
	counter := &eventCounter{counts: map[string]int{}}
	wa, _ := webauthn.New(&webauthn.Config{RPID: "example.com", RPDisplayName: "Example", RPOrigins: []string{"https://example.com"}})
	passkey := stepuptest.New("https://example.com").Register("example.com", []byte("user-ada"))
	users := appUsers{signedIn: map[string]*stepuptest.User{"ada": {Handle: []byte("user-ada"), Name: "ada", Credentials: []webauthn.Credential{passkey}}}}
	su, _ := stepup.New(stepup.Config{
		WebAuthn: wa,
		Store:    sessions.NewCookieStore([]byte("hash-key-of-32-bytes-from-config")),
		Users:    users,
		Logger:   slog.New(counter),
	})
	gate := su.RequireRecentReauth(5 * time.Minute)(http.NotFoundHandler())
	for range 3 {
		req := httptest.NewRequest(http.MethodPost, "/account/password", nil)
		req.Header.Set("X-Demo-User", "ada")
		gate.ServeHTTP(httptest.NewRecorder(), req)
	}
	fmt.Println(stepup.EventGateDenied, counter.counts[stepup.EventGateDenied])
	// Output:
	// gate_denied 3
}
