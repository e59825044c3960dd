package stepuptest

import (
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
)

// NewClient returns a browser-like client for srv, made by
// httptest.NewTLSServer (or NewServer): it trusts srv's certificate, keeps
// cookies in a jar (the step-up cookie is Secure and HttpOnly, and a TLS
// server gets it back whatever its host name), and does not follow
// redirects, so a test sees the gate's 303. Sign it in with
// [Users.SignIn](client, srv.URL, name).
//
// Prefer httptest.NewTLSServer with it: the step-up cookie's Secure flag
// then means what it means in production. Go's cookie jar sends Secure
// cookies over plain http only to loopback hosts (127.0.0.1, localhost); a
// test server reached by another name over http never gets the step-up
// cookie back, and every step-up seems to be forgotten.
func NewClient(srv *httptest.Server) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		panic("stepuptest: " + err.Error())
	}
	c := srv.Client()
	out := &http.Client{
		Transport: c.Transport,
		Jar:       jar,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return out
}
