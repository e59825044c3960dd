package stepup_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// An External method finishes on another request. Here the other party is
// a stand-in that sends back the nonce it was given; the oidc module's
// callback checks an ID token instead.
func ExampleExternal() {
	wa, _ := webauthn.New(&webauthn.Config{RPID: "example.com", RPDisplayName: "Example", RPOrigins: []string{"https://example.com"}})
	users := appUsers{signedIn: map[string]*stepuptest.User{"ada": {Handle: []byte("user-ada"), Name: "ada"}}}
	su, _ := stepup.New(stepup.Config{
		WebAuthn: wa,
		Store:    sessions.NewCookieStore([]byte("hash-key-of-32-bytes-from-config")),
		Users:    users,
	})
	linked := func(ctx context.Context, u webauthn.User) (bool, error) { return true, nil } // ada has an account there
	sso, err := su.ExternalMethod("sso", linked)
	if err != nil {
		panic(err)
	}
	// The method's secrets come from the start's Secret, one per purpose.
	nonce := func(st stepup.ExternalStart) string {
		m := hmac.New(sha256.New, st.Secret)
		m.Write([]byte("nonce"))
		return hex.EncodeToString(m.Sum(nil))
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/reauth/sso", func(w http.ResponseWriter, r *http.Request) {
		st, ok := sso.Start(w, r)
		if !ok {
			return // Start wrote the refusal
		}
		q := url.Values{"state": {st.State}, "nonce": {nonce(st)}}
		fmt.Fprintf(w, `{"redirect": "/other-party?%s"}`, q.Encode())
	})
	mux.HandleFunc("GET /other-party", func(w http.ResponseWriter, r *http.Request) { // the stand-in
		q := url.Values{"state": {r.FormValue("state")}, "answer": {r.FormValue("nonce")}}
		http.Redirect(w, r, "/sso/callback?"+q.Encode(), http.StatusSeeOther)
	})
	mux.HandleFunc("GET /sso/callback", func(w http.ResponseWriter, r *http.Request) {
		st, err := sso.Finish(w, r, r.FormValue("state"), func(ctx context.Context, st stepup.ExternalStart, now time.Time) ([]string, error) {
			if !hmac.Equal([]byte(r.FormValue("answer")), []byte(nonce(st))) {
				return nil, &stepup.ExternalError{Status: http.StatusBadRequest, Code: "verification_failed", Message: "Try again."}
			}
			return []string{"fed"}, nil
		})
		var refused *stepup.ExternalError
		if errors.As(err, &refused) {
			http.Error(w, refused.Message, refused.Status)
			return
		}
		http.Redirect(w, r, st.ReturnTo, http.StatusSeeOther)
	})
	mux.Handle("POST /account/delete", su.RequireRecentReauth(5*time.Minute, stepup.Methods("sso"))(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			g, _ := stepup.GrantFrom(r.Context())
			fmt.Fprintf(w, "deleted after a step-up with %s %v", g.Method, g.AMR)
		})))
	mux.HandleFunc("GET /account", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "account page") })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(r *http.Request, via []*http.Request) error {
		fmt.Println("redirect to", r.URL.Path)
		r.Header.Set("X-Demo-User", "ada")
		return nil
	}}
	do := func(method, path, body string) string {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("X-Demo-User", "ada")
		req.Header.Set("Content-Type", "application/json")
		resp, err := browser.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprint(resp.StatusCode, " ", strings.TrimSpace(string(b)))
	}

	fmt.Println(do(http.MethodPost, "/account/delete", ""))
	start := do(http.MethodPost, "/api/reauth/sso", `{"return_to": "/account"}`)
	redirect := start[strings.Index(start, "/other-party"):strings.LastIndex(start, `"`)]
	fmt.Println(do(http.MethodGet, redirect, "")) // the browser goes to the other party and back
	fmt.Println(do(http.MethodPost, "/account/delete", ""))
	fmt.Println(do(http.MethodGet, redirect, "")) // the same round trip again: the start was used
	// Output:
	// 403 {"error":"reauthentication_required","message":"Confirm it's you to continue.","max_age":300,"methods":["sso"],"external":["sso"]}
	// redirect to /sso/callback
	// redirect to /account
	// 200 account page
	// 200 deleted after a step-up with sso [fed]
	// redirect to /sso/callback
	// 400 The confirmation expired or was already used. Start again.
}
