package app

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
)

// DevProvider is an OpenID provider for trying SSO without a real one:
// zitadel's example provider, running in this process, with one user whose
// password is made at start. It is for a demo on this machine only.
type DevProvider struct {
	// Issuer is the provider's URL, such as http://localhost:53211.
	Issuer string
	// Username and Password are those of its one user.
	Username, Password string
	// SSO is what Options.SSO needs to use it.
	SSO SSO

	srv *http.Server
}

// devClientID is the demo's client at the dev provider.
const devClientID = "stepup-demo"

// StartDevProvider starts a dev provider on a free port of localhost, whose
// client may send the browser back to the demo at origin (its sign-in and
// step-up callbacks). Close stops it.
func StartDevProvider(origin string) (*DevProvider, error) {
	ln, err := net.Listen("tcp", "localhost:0")
	if err != nil {
		return nil, fmt.Errorf("app: dev provider: %w", err)
	}
	p := &DevProvider{
		Issuer:   "http://" + ln.Addr().String(),
		Username: "sam@sso.example",
		Password: rand.Text()[:12],
	}
	secret := rand.Text()
	users := devUsers{"sso-sam": {ID: "sso-sam", Username: p.Username, Password: p.Password,
		FirstName: "Sam", LastName: "Sso", Email: p.Username, EmailVerified: true}}
	client := storage.WebClient(devClientID, secret, origin+ssoSignInCallback, origin+ssoStepUpCallback)
	stor := storage.NewStorageWithClients(users, map[string]*storage.Client{devClientID: client})
	p.srv = &http.Server{Handler: exampleop.SetupServer(p.Issuer, stor, nil, false), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = p.srv.Serve(ln) }() // ErrServerClosed after Close
	p.SSO = SSO{Issuer: p.Issuer, ClientID: devClientID, ClientSecret: secret}
	return p, nil
}

// Close stops the provider.
func (p *DevProvider) Close() error { return p.srv.Close() }

// devUsers are the dev provider's users, by ID (the subject).
type devUsers map[string]*storage.User

func (u devUsers) GetUserByID(id string) *storage.User { return u[id] }

func (u devUsers) GetUserByUsername(name string) *storage.User {
	for _, user := range u {
		if user.Username == name {
			return user
		}
	}
	return nil
}

func (devUsers) ExampleClientID() string { return "service" }
