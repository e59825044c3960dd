package stepupoidc_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// provider is a real OpenID provider running in-process: zitadel's
// example OP (authorization code flow with PKCE, a login form, RS256 ID
// tokens), over a storage that can be made to misbehave.
type provider struct {
	srv   *httptest.Server
	stor  *misbehaving
	issue atomic.Bool // discovery says it sends RFC 9207's iss
}

// idpUsers are the provider's users: alice and bob, with their subjects.
type idpUsers map[string]*storage.User

func (u idpUsers) GetUserByID(id string) *storage.User { return u[id] }

func (u idpUsers) GetUserByUsername(name string) *storage.User {
	for _, user := range u {
		if user.Username == name {
			return user
		}
	}
	return nil
}

func (idpUsers) ExampleClientID() string { return "service" }

const (
	clientID     = "app"
	clientSecret = "app-secret"
	idpPassword  = "correct horse"
)

// newProvider starts a provider whose client "app" may redirect to
// redirectURL.
func newProvider(t *testing.T, redirectURL string) *provider {
	t.Helper()
	p := &provider{}
	var handler http.Handler
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(p.srv.Close)
	users := idpUsers{
		"sub-alice": {ID: "sub-alice", Username: "alice@idp.example", Password: idpPassword, Email: "alice@example.com", EmailVerified: true},
		"sub-bob":   {ID: "sub-bob", Username: "bob@idp.example", Password: idpPassword, Email: "bob@example.com", EmailVerified: true},
	}
	clients := map[string]*storage.Client{clientID: storage.WebClient(clientID, clientSecret, redirectURL)}
	p.stor = &misbehaving{Storage: storage.NewStorageWithClients(users, clients)}
	router := exampleop.SetupServer(p.srv.URL, p.stor, nil, false)
	handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			p.discovery(router, w, r)
		case "/oauth/token":
			p.token(router, w, r)
		default:
			router.ServeHTTP(w, r)
		}
	})
	return p
}

// discovery serves the OP's discovery document, saying it sends RFC
// 9207's iss when p.issue is set.
func (p *provider) discovery(next http.Handler, w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	var doc map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	if p.issue.Load() {
		doc["authorization_response_iss_parameter_supported"] = true
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(doc)
}

// token serves the OP's token endpoint; when the tweak asks, the ID token's
// claims are edited and signed again with the provider's own key, as a
// provider that issues such tokens would.
func (p *provider) token(next http.Handler, w http.ResponseWriter, r *http.Request) {
	tw := p.stor.tw.Load()
	if tw == nil || tw.claims == nil {
		next.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	var resp map[string]any
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &resp) != nil {
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
		return
	}
	raw, _ := resp["id_token"].(string)
	resp["id_token"] = p.resign(r.Context(), raw, tw.claims, tw.foreignKey)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

func (p *provider) resign(ctx context.Context, raw string, edit func(map[string]any), foreign bool) string {
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		panic(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &claims); err != nil {
		panic(err)
	}
	edit(claims)
	payload, _ := json.Marshal(claims)
	key, err := p.stor.SigningKey(ctx)
	if err != nil {
		panic(err)
	}
	signWith := key.Key()
	if foreign {
		signWith, _ = rsa.GenerateKey(rand.Reader, 2048)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: key.SignatureAlgorithm(), Key: signWith},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", key.ID()))
	if err != nil {
		panic(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		panic(err)
	}
	out, _ := obj.CompactSerialize()
	return out
}

// tweak is how the provider misbehaves; the zero value behaves.
type tweak struct {
	authTime func(real time.Time) time.Time // the auth_time it reports (zero: none)
	acr      *string
	nonce    *string
	amr      *[]string
	audience []string
	deny     bool                 // the authorization request is answered with access_denied
	claims   func(map[string]any) // the ID token's claims, edited at the token endpoint
	// foreignKey signs the edited ID token with a key that is not the
	// provider's (same kid).
	foreignKey bool
}

// misbehaving is zitadel's example storage, wrapped so that the auth
// request it hands the token endpoint reports what the tweak says.
type misbehaving struct {
	*storage.Storage
	tw atomic.Pointer[tweak]
}

func (s *misbehaving) CreateAuthRequest(ctx context.Context, req *oidc.AuthRequest, userID string) (op.AuthRequest, error) {
	if tw := s.tw.Load(); tw != nil && tw.deny {
		return nil, oidc.ErrAccessDenied().WithDescription("the user canceled")
	}
	return s.Storage.CreateAuthRequest(ctx, req, userID)
}

func (s *misbehaving) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	ar, err := s.Storage.AuthRequestByCode(ctx, code)
	if tw := s.tw.Load(); err == nil && tw != nil {
		return tweaked{ar, tw}, nil
	}
	return ar, err
}

type tweaked struct {
	op.AuthRequest
	tw *tweak
}

func (t tweaked) GetAuthTime() time.Time {
	if t.tw.authTime != nil {
		return t.tw.authTime(t.AuthRequest.GetAuthTime())
	}
	return t.AuthRequest.GetAuthTime()
}

func (t tweaked) GetACR() string {
	if t.tw.acr != nil {
		return *t.tw.acr
	}
	return t.AuthRequest.GetACR()
}

func (t tweaked) GetNonce() string {
	if t.tw.nonce != nil {
		return *t.tw.nonce
	}
	return t.AuthRequest.GetNonce()
}

func (t tweaked) GetAMR() []string {
	if t.tw.amr != nil {
		return *t.tw.amr
	}
	return t.AuthRequest.GetAMR()
}

func (t tweaked) GetAudience() []string {
	if t.tw.audience != nil {
		return t.tw.audience
	}
	return t.AuthRequest.GetAudience()
}

// browser is a user agent with its own cookies, following no redirect by
// itself.
type browser struct {
	t *testing.T
	c *http.Client
}

// get requests u and returns the status, Location and body.
func (b browser) get(u string) (int, string, string) {
	b.t.Helper()
	req, err := http.NewRequestWithContext(b.t.Context(), http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

func (b browser) do(req *http.Request) (int, string, string) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	loc := resp.Header.Get("Location")
	if loc != "" {
		if u, err := resp.Request.URL.Parse(loc); err == nil {
			loc = u.String()
		}
	}
	return resp.StatusCode, loc, string(body)
}

// signInAtProvider follows the authorization URL to the provider's login
// form, signs in as username and returns the URL the provider sends the
// browser back to (the app's callback with code and state, or an error).
func (b browser) signInAtProvider(authURL, username string) string {
	b.t.Helper()
	status, loc, body := b.get(authURL)
	if status != http.StatusFound || !strings.Contains(loc, "/login/username?authRequestID=") {
		if status == http.StatusFound { // the provider answered at once (an error)
			return loc
		}
		b.t.Fatalf("authorize: %d %s %s", status, loc, body)
	}
	id := loc[strings.Index(loc, "authRequestID=")+len("authRequestID="):]
	if status, _, body = b.get(loc); status != 200 || !strings.Contains(body, "password") {
		b.t.Fatalf("login page: %d %s", status, body)
	}
	form := "id=" + id + "&username=" + username + "&password=" + strings.ReplaceAll(idpPassword, " ", "+")
	req, _ := http.NewRequestWithContext(b.t.Context(), http.MethodPost, loc[:strings.Index(loc, "?")], bytes.NewBufferString(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	status, loc, body = b.do(req)
	if status != http.StatusFound {
		b.t.Fatalf("login: %d %s", status, body)
	}
	status, loc, body = b.get(loc) // the provider's /authorize/callback
	if status != http.StatusFound {
		b.t.Fatalf("authorize callback: %d %s", status, body)
	}
	return loc
}
