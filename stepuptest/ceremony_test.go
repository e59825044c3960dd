package stepuptest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// An application that mounts the ceremony handlers at its own paths, with a
// scoped gate and a bound gate.
const (
	beginPath  = "/auth/stepup/begin"
	finishPath = "/auth/stepup/finish"
)

func newCustomPathsApp(t *testing.T, users *stepuptest.Users, calls *atomic.Int32) http.Handler {
	t.Helper()
	su := newStepUp(t, users)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "done "+string(b))
	})
	transfer := func(r *http.Request) ([]byte, string, error) {
		b, err := io.ReadAll(r.Body)
		return b, "transfer " + string(b), err
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+beginPath, su.OptionsHandler())
	mux.Handle("POST "+finishPath, su.VerifyHandler())
	mux.Handle("POST /settings/email", su.RequireRecentReauth(5*time.Minute, stepup.Scope("email"))(ok))
	mux.Handle("POST /payments", su.RequireRecentReauth(5*time.Minute, stepup.Bind(transfer))(ok))
	return mux
}

func TestDoAtCustomEndpointsRefusedThenAllowed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, path, body string
	}{
		{"scope gate pass", "/settings/email", "ada@new.example"},
		{"bind gate pass", "/payments", `{"amount":"12.00","to":"bob"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			users := stepuptest.NewUsers()
			var calls atomic.Int32
			srv := serve(t, newCustomPathsApp(t, users, &calls))
			auth := stepuptest.New(origin)
			ada := users.Add("ada")
			users.AddCredential("ada", auth.Register(rpID, ada.Handle))
			client, rec := newClient(t, users, srv, "ada")
			ep := stepuptest.Endpoints{Options: srv.URL + beginPath, Verify: srv.URL + finishPath}

			req, err := http.NewRequest(http.MethodPost, srv.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := auth.DoAt(client, req, ep)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != "done "+tc.body {
				t.Fatalf("got %d %q, want 200 from the handler with the replayed body", resp.StatusCode, body)
			}
			want := []string{
				"POST " + tc.path + " 403",
				"POST " + beginPath + " 200",
				"POST " + finishPath + " 200",
				"POST " + tc.path + " 200",
			}
			if got := rec.requests(); !slices.Equal(got, want) {
				t.Fatalf("requests\n%q\nwant\n%q", got, want)
			}
			if calls.Load() != 1 {
				t.Fatalf("handler ran %d times, want 1", calls.Load())
			}
		})
	}
}

func TestDoAtFailedCeremonyIsNotRetried(t *testing.T) {
	t.Parallel()
	users := stepuptest.NewUsers()
	var calls atomic.Int32
	srv := serve(t, newCustomPathsApp(t, users, &calls))
	auth := stepuptest.New(origin)
	ada := users.Add("ada")
	users.AddCredential("ada", auth.Register(rpID, ada.Handle))
	client, rec := newClient(t, users, srv, "ada")

	// The documented paths are not mounted: the options post is a 404.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/settings/email", strings.NewReader("x"))
	_, err := auth.Do(client, req, srv.URL)
	var he *stepuptest.HTTPError
	if !errors.As(err, &he) || he.Step != "options" || he.Status != http.StatusNotFound {
		t.Fatalf("Do at default paths: got %v, want options 404", err)
	}
	// Right paths, but an authenticator without a passkey the options allow.
	stranger := stepuptest.New(origin)
	stranger.Register(rpID, ada.Handle)
	ep := stepuptest.Endpoints{Options: srv.URL + beginPath, Verify: srv.URL + finishPath}
	req, _ = http.NewRequest(http.MethodPost, srv.URL+"/settings/email", strings.NewReader("x"))
	if _, err := stranger.DoAt(client, req, ep); !errors.Is(err, stepuptest.ErrNoCredential) {
		t.Fatalf("DoAt with an unknown passkey: got %v, want ErrNoCredential", err)
	}
	want := []string{
		"POST /settings/email 403",
		"POST /api/reauth/options 404",
		"POST /settings/email 403",
		"POST " + beginPath + " 200",
	}
	if got := rec.requests(); !slices.Equal(got, want) {
		t.Fatalf("requests\n%q\nwant\n%q (no retry after a failed ceremony)", got, want)
	}
	if calls.Load() != 0 {
		t.Fatalf("handler ran %d times, want 0", calls.Load())
	}
}

func TestReauthenticateAtCustomEndpoints(t *testing.T) {
	t.Parallel()
	users := stepuptest.NewUsers()
	var calls atomic.Int32
	srv := serve(t, newCustomPathsApp(t, users, &calls))
	auth := stepuptest.New(origin)
	ada := users.Add("ada")
	users.AddCredential("ada", auth.Register(rpID, ada.Handle))
	client, _ := newClient(t, users, srv, "ada")
	ep := stepuptest.Endpoints{Options: srv.URL + beginPath, Verify: srv.URL + finishPath}

	if err := auth.ReauthenticateAt(context.Background(), client, ep, stepuptest.Request{Scope: "email"}); err != nil {
		t.Fatal(err)
	}
	resp, err := client.Post(srv.URL+"/settings/email", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after ReauthenticateAt: %d, want 200", resp.StatusCode)
	}
}

func TestDefaultEndpoints(t *testing.T) {
	t.Parallel()
	got := stepuptest.DefaultEndpoints("http://127.0.0.1:8080")
	want := stepuptest.Endpoints{Options: "http://127.0.0.1:8080/api/reauth/options", Verify: "http://127.0.0.1:8080/api/reauth/verify"}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}
