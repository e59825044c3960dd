package stepup_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// requestOptionsJSON is what the options handler must return.
type requestOptionsJSON struct {
	Challenge        string `json:"challenge"`
	Timeout          int    `json:"timeout"`
	RPID             string `json:"rpId"`
	UserVerification string `json:"userVerification"`
	AllowCredentials []struct {
		Type       string   `json:"type"`
		ID         string   `json:"id"`
		Transports []string `json:"transports"`
	} `json:"allowCredentials"`
}

func TestOptionsContract(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	r := h.do(c, http.MethodPost, "/api/reauth/options", nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("got %d %s", r.status, r.raw)
	}
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", r.header)
	}
	for _, forbidden := range []string{"publicKey", "mediation", "conditional"} {
		if strings.Contains(r.raw, forbidden) {
			t.Errorf("options contain %q: %s", forbidden, r.raw)
		}
	}
	var o requestOptionsJSON
	if err := json.Unmarshal([]byte(r.raw), &o); err != nil {
		t.Fatal(err)
	}
	ch, err := base64.RawURLEncoding.DecodeString(o.Challenge)
	if err != nil || len(ch) < 32 {
		t.Errorf("challenge %q: %d bytes, %v; want at least 32 base64url bytes", o.Challenge, len(ch), err)
	}
	if o.RPID != testRPID || o.UserVerification != "required" || o.Timeout != 120000 {
		t.Errorf("rpId %q userVerification %q timeout %d", o.RPID, o.UserVerification, o.Timeout)
	}
	alice, _ := h.users.User("alice")
	if len(o.AllowCredentials) != 1 {
		t.Fatalf("allowCredentials %+v, want exactly alice's one passkey", o.AllowCredentials)
	}
	ac := o.AllowCredentials[0]
	if ac.Type != "public-key" || ac.ID != base64.RawURLEncoding.EncodeToString(alice.Credentials[0].ID) ||
		strings.Join(ac.Transports, ",") != "internal,hybrid" {
		t.Errorf("allowCredentials[0] = %+v", ac)
	}

	// The step-up cookie: HttpOnly and SameSite=Lax although the store's
	// defaults (sessions v1.4) say neither.
	sc := r.header.Values("Set-Cookie")
	if len(sc) != 1 || !strings.Contains(sc[0], "HttpOnly") || !strings.Contains(sc[0], "SameSite=Lax") || !strings.HasPrefix(sc[0], "stepup=") {
		t.Errorf("Set-Cookie %q", sc)
	}

	// Each call has a fresh challenge.
	var o2 requestOptionsJSON
	json.Unmarshal(h.options(c), &o2)
	if o2.Challenge == o.Challenge {
		t.Error("challenge reused across options calls")
	}
}

func TestOptionsRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		user   string
		method string
		header http.Header
		fault  func(*harness)
		status int
		code   string
	}{
		{"GET reject", "alice", http.MethodGet, nil, nil, 405, "method_not_allowed"},
		{"cross-site fetch reject", "alice", http.MethodPost, http.Header{"Sec-Fetch-Site": {"cross-site"}}, nil, 403, "cross_origin_request"},
		{"foreign Origin reject", "alice", http.MethodPost, http.Header{"Origin": {"https://evil.example"}}, nil, 403, "cross_origin_request"},
		{"nobody signed in reject", "", http.MethodPost, nil, nil, 401, "no_active_session"},
		{"user store down reject", "alice", http.MethodPost, nil, func(h *harness) { h.users.failCurrent.Store(true) }, 500, "internal_error"},
		{"no passkeys reject", "alice", http.MethodPost, nil, func(h *harness) { h.users.SetCredentials("alice", nil) }, 409, "no_credentials"},
		{"session save fails reject", "alice", http.MethodPost, nil, func(h *harness) { h.store.failSave.Store(true) }, 500, "internal_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			c := h.client(tc.user)
			if tc.fault != nil {
				tc.fault(h)
			}
			r := h.do(c, tc.method, "/api/reauth/options", nil, tc.header)
			expectError(t, r, tc.status, tc.code)
			if tc.status == 405 && r.header.Get("Allow") != "POST" {
				t.Errorf("Allow %q", r.header.Get("Allow"))
			}
			if len(r.header.Values("Set-Cookie")) != 0 {
				t.Errorf("a refused options call set a cookie: %q", r.header.Values("Set-Cookie"))
			}
		})
	}
}

func TestNoCredentialsIsNeverADiscoverableCeremony(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.users.SetCredentials("alice", []webauthn.Credential{})
	_, err := stepuptest.Options(h.ctx(), c, h.srv.URL+"/api/reauth/options")
	if e, ok := err.(*stepuptest.HTTPError); !ok || e.Status != 409 || e.Code != "no_credentials" {
		t.Fatalf("got %v, want 409 no_credentials", err)
	}
	h.expectNoGrant(c)
}
