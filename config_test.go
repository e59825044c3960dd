package stepup_test

import (
	"errors"
	"testing"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

func TestNewRejectsIncompleteConfig(t *testing.T) {
	t.Parallel()
	wa, err := webauthn.New(&webauthn.Config{RPID: testRPID, RPDisplayName: "T", RPOrigins: []string{testOrigin}})
	if err != nil {
		t.Fatal(err)
	}
	store := sessions.NewCookieStore([]byte("0123456789abcdef0123456789abcdef"))
	users := stepuptest.NewUsers()
	for _, tc := range []struct {
		name string
		cfg  stepup.Config
	}{
		{"empty reject", stepup.Config{}},
		{"no WebAuthn reject", stepup.Config{Store: store, Users: users}},
		{"no Store reject", stepup.Config{WebAuthn: wa, Users: users}},
		{"no Users reject", stepup.Config{WebAuthn: wa, Store: store}},
		{"negative TTL reject", stepup.Config{WebAuthn: wa, Store: store, Users: users, ChallengeTTL: -1}},
		{"sub-second TTL reject", stepup.Config{WebAuthn: wa, Store: store, Users: users, ChallengeTTL: 10}},
		{"absolute ReauthURL reject", stepup.Config{WebAuthn: wa, Store: store, Users: users, ReauthURL: "https://evil.example/reauth"}},
		{"protocol-relative ReauthURL reject", stepup.Config{WebAuthn: wa, Store: store, Users: users, ReauthURL: "//evil.example/reauth"}},
		{"relative ReauthURL reject", stepup.Config{WebAuthn: wa, Store: store, Users: users, ReauthURL: "reauth"}},
		{"negative MaxStepUps reject", stepup.Config{WebAuthn: wa, Store: store, Users: users, MaxStepUps: -1}},
		// A store that could never save: today's 500 on every options call,
		// found at start instead.
		{"cookie store without keys reject", stepup.Config{WebAuthn: wa, Store: sessions.NewCookieStore(), Users: users}},
		{"cookie store with an empty hash key reject", stepup.Config{WebAuthn: wa, Store: sessions.NewCookieStore([]byte{}), Users: users}},
		{"cookie store with a wrong-sized block key reject", stepup.Config{WebAuthn: wa, Store: sessions.NewCookieStore(
			[]byte("0123456789abcdef0123456789abcdef"), []byte("a 17-byte key....")), Users: users}},
		{"filesystem store with a wrong-sized block key reject", stepup.Config{WebAuthn: wa, Store: sessions.NewFilesystemStore(
			t.TempDir(), []byte("0123456789abcdef0123456789abcdef"), []byte("short")), Users: users}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			su, err := stepup.New(tc.cfg)
			if su != nil || !errors.Is(err, stepup.ErrInvalidConfig) {
				t.Fatalf("New = %v, %v; want ErrInvalidConfig", su, err)
			}
		})
	}
	if _, err := stepup.New(stepup.Config{WebAuthn: wa, Store: store, Users: users, ReauthURL: "/reauth"}); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	encrypted := sessions.NewCookieStore([]byte("0123456789abcdef0123456789abcdef"), []byte("0123456789abcdef"))
	if _, err := stepup.New(stepup.Config{WebAuthn: wa, Store: encrypted, Users: users}); err != nil {
		t.Fatalf("a store with both keys: %v", err)
	}
}
