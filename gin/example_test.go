package stepupgin_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
	stepupgin "github.com/passkey-stepup/stepup/gin"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// Example gates a Gin route with stepup: the ceremony handlers are mounted
// with gin.WrapH, the gate with Middleware, and the handler reads the grant
// from c.Request. A software passkey plays the browser.
func Example() {
	users := stepuptest.NewUsers() // your stepup.UserStore
	wa, _ := webauthn.New(&webauthn.Config{RPID: "app.example", RPDisplayName: "App", RPOrigins: []string{"https://app.example"}})
	su, err := stepup.New(stepup.Config{WebAuthn: wa, Store: sessions.NewCookieStore(bytes.Repeat([]byte("k"), 32)), Users: users})
	if err != nil {
		panic(err)
	}

	router := gin.New()
	router.POST("/api/reauth/options", gin.WrapH(su.OptionsHandler()))
	router.POST("/api/reauth/verify", gin.WrapH(su.VerifyHandler()))
	router.POST("/account/password", stepupgin.Middleware(su.RequireRecentReauth(5*time.Minute)), func(c *gin.Context) {
		grant, _ := stepup.GrantFrom(c.Request.Context())
		user, _ := stepup.UserFrom(c.Request.Context())
		c.String(http.StatusOK, "password of %s changed after a %s step-up", user.WebAuthnName(), grant.Method)
	})

	srv := httptest.NewServer(router)
	defer srv.Close()
	auth := stepuptest.New("https://app.example")
	ada := users.Add("ada")
	users.AddCredential("ada", auth.Register("app.example", ada.Handle))
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	users.SignIn(client, srv.URL, "ada")

	resp, _ := client.Post(srv.URL+"/account/password", "application/json", nil)
	resp.Body.Close()
	fmt.Println("before step-up:", resp.Status)
	if err := auth.Reauthenticate(context.Background(), client, srv.URL); err != nil {
		fmt.Println(err)
	}
	resp, _ = client.Post(srv.URL+"/account/password", "application/json", nil)
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	fmt.Println("after step-up:", resp.Status, body.String())
	// Output:
	// before step-up: 403 Forbidden
	// after step-up: 200 OK password of ada changed after a passkey step-up
}
