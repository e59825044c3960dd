package stepup

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The JWK Set of the step-up token keys: JWKSHandler publishes it, a
// TokenVerifier with VerifierConfig.JWKSURL fetches and caches it.

const (
	// jwkSetType is the media type of a JWK Set (RFC 7517 §8.5.1).
	jwkSetType = "application/jwk-set+json"
	// jwksCacheControl is what JWKSHandler answers: a verifier refetches
	// after 5 minutes, so a key added to Tokens.Keys is known everywhere
	// 5 minutes after the instances run with it.
	jwksCacheControl = "public, max-age=300"
	// maxJWKSBytes: a JWK Set response over 64 KiB is refused.
	maxJWKSBytes = 64 << 10
	// defaultJWKSMaxAge is the cache lifetime of a response without a
	// max-age; minJWKSMaxAge and maxJWKSMaxAge bound the one it gives.
	defaultJWKSMaxAge = 5 * time.Minute
	minJWKSMaxAge     = time.Minute
	maxJWKSMaxAge     = time.Hour
	// keepJWKS is how long after the last successful fetch the cached keys
	// are used while fetches fail; after that the verifier answers 503.
	keepJWKS = time.Hour
	// unknownKIDRefetch is the least time between a fetch and the next one
	// made because a token names a kid the set lacks.
	unknownKIDRefetch = time.Minute
	// retryJWKS is the least time between a failed fetch and the next.
	retryJWKS = 10 * time.Second
	// jwksTimeout bounds a fetch when VerifierConfig.Client has no timeout.
	jwksTimeout = 10 * time.Second
)

var errJWKSMethod = refusal{status: http.StatusMethodNotAllowed, code: codeMethodNotAllowed, message: "Use GET."}

// JWKSHandler returns the handler that publishes the public halves of
// Config.Tokens.Keys as an RFC 7517 JWK Set, for the services that check
// step-up tokens with [NewTokenVerifier]: each key with "kid" (its RFC
// 7638 thumbprint, the kid of the tokens it signs), "kty", "crv", "x" (and
// "y" for P-256), "alg" and "use": "sig". Mount it where those services can
// fetch it, such as GET /.well-known/stepup-jwks.json.
//
// It answers GET and HEAD with Content-Type application/jwk-set+json (the
// type RFC 7517 registers; JWKS clients read the body whatever the type)
// and Cache-Control "public, max-age=300": the set is public and the same
// for everyone, and a verifier refetches it after 5 minutes. Any other
// method is 405 method_not_allowed.
//
// It panics without Config.Tokens: a key set that cannot exist is a wiring
// mistake, found when the routes are mounted rather than by the first
// service that fetches it.
func (s *StepUp) JWKSHandler() http.Handler {
	if s.tokens == nil {
		panic("stepup: JWKSHandler needs Config.Tokens")
	}
	set := struct {
		Keys []jwk `json:"keys"`
	}{}
	for _, k := range s.tokens.keys {
		set.Keys = append(set.Keys, k.jwk)
	}
	body, err := json.Marshal(set)
	if err != nil {
		panic("stepup: JWKSHandler: " + err.Error())
	}
	length := strconv.Itoa(len(body))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			writeError(w, errJWKSMethod)
			return
		}
		h.Set("Content-Type", jwkSetType)
		h.Set("Cache-Control", jwksCacheControl)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Length", length)
		if r.Method == http.MethodGet {
			w.Write(body)
		}
	})
}

// jwkJSON is a key of a fetched JWK Set, as far as a verifier reads it.
type jwkJSON struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// parseJWKS reads a JWK Set and returns its signing keys by kid: Ed25519
// keys (kty OKP) for EdDSA and P-256 keys (kty EC) for ES256, each with no
// alg or that one, and no use or "sig". Keys of another type, curve,
// algorithm or use are skipped; a key without a kid is named by its
// thumbprint. A body that is not a JWK Set, a usable key with an invalid
// point, a kid naming two different keys, or a set with no usable key is
// an error.
func parseJWKS(body []byte) (map[string]tokenKey, error) {
	var set struct {
		Keys []jwkJSON `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("not a JWK Set: %v", err)
	}
	keys := make(map[string]tokenKey, len(set.Keys))
	for i, j := range set.Keys {
		k, ok, err := j.key()
		if err != nil {
			return nil, fmt.Errorf("key %d: %v", i, err)
		}
		if !ok {
			continue
		}
		if j.Kid != "" {
			k.kid = j.Kid
		}
		if old, dup := keys[k.kid]; dup && old.jwk.X+old.jwk.Y != k.jwk.X+k.jwk.Y {
			return nil, fmt.Errorf("kid %q names two keys", k.kid)
		}
		keys[k.kid] = k
	}
	if len(keys) == 0 {
		return nil, errors.New("no Ed25519 or P-256 signing key")
	}
	return keys, nil
}

// key returns the verifying key j describes, false for a key a step-up
// token cannot be signed with.
func (j jwkJSON) key() (tokenKey, bool, error) {
	if j.Use != "" && j.Use != "sig" {
		return tokenKey{}, false, nil
	}
	switch {
	case j.Kty == "OKP" && j.Crv == "Ed25519" && (j.Alg == "" || j.Alg == "EdDSA"):
		x, err := strictB64.DecodeString(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return tokenKey{}, false, errors.New("an Ed25519 key's x is not 32 bytes of base64url")
		}
		k, err := publicTokenKey(ed25519.PublicKey(x))
		return k, err == nil, err
	case j.Kty == "EC" && j.Crv == "P-256" && (j.Alg == "" || j.Alg == "ES256"):
		x, err1 := strictB64.DecodeString(j.X)
		y, err2 := strictB64.DecodeString(j.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return tokenKey{}, false, errors.New("a P-256 key's x or y is not 32 bytes of base64url")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return tokenKey{}, false, fmt.Errorf("a P-256 key: %v", err)
		}
		k, err := publicTokenKey(pub)
		return k, err == nil, err
	}
	return tokenKey{}, false, nil
}

// errKeysUnavailable is a JWK Set that could not be had: never fetched, or
// not fetched for keepJWKS. The verifier answers 503.
var errKeysUnavailable = errors.New("the issuer's keys are unavailable")

// remoteKeys is the issuer's JWK Set as a verifier caches it. Requests
// fetch it, one fetch at a time (the others wait for it): when there is
// none, when it is older than its max-age (unless a fetch failed less than
// retryJWKS ago), and when a token names a kid it lacks (if no fetch
// started in the last minute). A successful fetch replaces the set; a failed
// one keeps it until keepJWKS after the last success.
type remoteKeys struct {
	url    *url.URL
	client *http.Client
	now    func() time.Time
	log    *slog.Logger

	mu        sync.Mutex
	keys      map[string]tokenKey // nil before the first successful fetch
	fetched   time.Time           // the last successful fetch, by now
	maxAge    time.Duration       // its response's max-age
	attempted time.Time           // when the last fetch started
	failed    bool                // the last fetch failed
	flight    chan struct{}       // closed when the fetch in progress ends; nil when none
}

// newRemoteKeys checks rawURL (https; http only for localhost and
// 127.0.0.1) and makes the cache; client's redirects are kept to the URL's
// origin.
func newRemoteKeys(rawURL string, client *http.Client, now func() time.Time, log *slog.Logger) (*remoteKeys, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("%q is not an absolute URL", rawURL)
	}
	switch host := u.Hostname(); {
	case u.Scheme == "https":
	case u.Scheme == "http" && (host == "localhost" || host == "127.0.0.1"):
	default:
		return nil, fmt.Errorf("%q must be https (http only for localhost and 127.0.0.1)", rawURL)
	}
	c := &http.Client{Timeout: jwksTimeout}
	if client != nil {
		copied := *client
		c = &copied
	}
	c.CheckRedirect = sameOrigin(u, c.CheckRedirect)
	return &remoteKeys{url: u, client: c, now: now, log: log}, nil
}

// sameOrigin refuses a redirect to another scheme, host or port than
// those of u, then asks next (or allows 10 redirects, as net/http does).
func sameOrigin(u *url.URL, next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if origin(req.URL) != origin(u) {
			return fmt.Errorf("a redirect to another origin (%s) is not followed", origin(req.URL))
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
}

// origin is u's scheme, host and port, the port written out.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return strings.ToLower(u.Scheme) + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// key returns the key named kid, fetching the set first when it must. It
// returns errUnknownKID when the set lacks kid, and an error wrapping
// errKeysUnavailable when there is no set to ask.
func (rk *remoteKeys) key(ctx context.Context, kid string) (tokenKey, error) {
	if wait := rk.fetchFor(kid); wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			return tokenKey{}, fmt.Errorf("%w: %v", errKeysUnavailable, ctx.Err())
		}
	}
	rk.mu.Lock()
	defer rk.mu.Unlock()
	if rk.keys == nil || rk.now().Sub(rk.fetched) >= keepJWKS {
		return tokenKey{}, errKeysUnavailable
	}
	k, ok := rk.keys[kid]
	if !ok {
		return tokenKey{}, errUnknownKID
	}
	return k, nil
}

// fetchFor returns the fetch to wait for before kid is looked up, starting
// it when none is in progress, or nil when the cached set answers.
func (rk *remoteKeys) fetchFor(kid string) <-chan struct{} {
	rk.mu.Lock()
	defer rk.mu.Unlock()
	now := rk.now()
	_, known := rk.keys[kid]
	since := now.Sub(rk.attempted)
	switch {
	case rk.keys == nil || now.Sub(rk.fetched) >= rk.maxAge: // none, or stale
		if rk.flight == nil && rk.failed && since < retryJWKS {
			return nil
		}
	case !known:
		if rk.flight == nil && since < unknownKIDRefetch {
			return nil
		}
	default:
		return nil
	}
	if rk.flight == nil {
		rk.flight = make(chan struct{})
		rk.attempted = now
		go rk.fetch(rk.flight)
	}
	return rk.flight
}

// fetch gets the set, records the outcome and closes done.
func (rk *remoteKeys) fetch(done chan struct{}) {
	defer close(done)
	keys, maxAge, err := rk.get()
	rk.mu.Lock()
	defer rk.mu.Unlock()
	rk.flight = nil
	rk.failed = err != nil
	if err != nil {
		rk.log.LogAttrs(context.Background(), slog.LevelError, EventStoreFailed, slog.String("store", "jwks"),
			slog.String("url", rk.url.Redacted()), errAttr(err))
		return
	}
	rk.keys, rk.fetched, rk.maxAge = keys, rk.now(), maxAge
}

// get fetches and parses the set, and returns its keys and max-age.
func (rk *remoteKeys) get() (map[string]tokenKey, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), jwksTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rk.url.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", jwkSetType+", application/json")
	resp, err := rk.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	if resp.ContentLength > maxJWKSBytes {
		return nil, 0, fmt.Errorf("a JWK Set over %d bytes", maxJWKSBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, 0, err
	}
	if len(body) > maxJWKSBytes {
		return nil, 0, fmt.Errorf("a JWK Set over %d bytes", maxJWKSBytes)
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return nil, 0, err
	}
	return keys, cacheMaxAge(resp.Header.Values("Cache-Control")), nil
}

// cacheMaxAge is the max-age of Cache-Control values, default 5 minutes,
// between 1 minute and 1 hour (no-store and no-cache count as 0).
func cacheMaxAge(values []string) time.Duration {
	age := defaultJWKSMaxAge
	for _, v := range values {
		for d := range strings.SplitSeq(v, ",") {
			name, arg, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				return minJWKSMaxAge
			case "max-age":
				if n, err := strconv.ParseInt(strings.Trim(arg, `"`), 10, 64); err == nil && n >= 0 {
					age = time.Duration(min(n, int64(maxJWKSMaxAge/time.Second))) * time.Second
				}
			}
		}
	}
	return min(max(age, minJWKSMaxAge), maxJWKSMaxAge)
}
