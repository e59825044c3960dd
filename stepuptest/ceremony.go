package stepuptest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// HTTPError is a non-200 answer of the options or verify endpoint, with the
// stepup error code from its JSON body.
type HTTPError struct {
	Step    string // "options" or "verify"
	Status  int
	Code    string // the body's "error"
	Message string // the body's "message"
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("stepuptest: %s answered %d %s: %s", e.Step, e.Status, e.Code, e.Message)
}

// Request is what a client may ask of the options handler (or a method
// handler): a grant for a scope, or for a bound operation (its digest from
// the gate's 403 body), and a step-up token too (with Config.Tokens), for
// all of the token audiences or one.
type Request struct {
	Scope     string `json:"scope,omitempty"`
	Operation string `json:"operation,omitempty"`
	Token     bool   `json:"token,omitempty"`
	Audience  string `json:"audience,omitempty"`
}

// Options posts to optionsURL with client (whose cookie jar carries the
// application's sign-in and step-up cookies) and returns the options JSON.
// A non-200 answer is an *HTTPError.
func Options(ctx context.Context, client *http.Client, optionsURL string) ([]byte, error) {
	return OptionsFor(ctx, client, optionsURL, Request{})
}

// OptionsFor is [Options] for a scoped or bound grant.
func OptionsFor(ctx context.Context, client *http.Client, optionsURL string, req Request) ([]byte, error) {
	var body []byte
	if req != (Request{}) {
		body, _ = json.Marshal(req)
	}
	return post(ctx, client, "options", optionsURL, body)
}

// Verify posts the assertion JSON to verifyURL and returns the success body.
// A non-200 answer is an *HTTPError.
func Verify(ctx context.Context, client *http.Client, verifyURL string, assertion []byte) ([]byte, error) {
	return post(ctx, client, "verify", verifyURL, assertion)
}

// Endpoints are the absolute URLs at which an application mounts stepup's
// ceremony handlers: Options for [stepup.StepUp.OptionsHandler] and Verify
// for [stepup.StepUp.VerifyHandler]. Use [DefaultEndpoints] for the paths the
// stepup documentation mounts them at, or set both for an application that
// mounts them elsewhere.
type Endpoints struct {
	Options string // such as "https://app.example/api/reauth/options"
	Verify  string // such as "https://app.example/api/reauth/verify"
}

// DefaultEndpoints returns the endpoints at the documented paths under
// baseURL (such as an httptest server's URL, without a final slash):
// baseURL+"/api/reauth/options" and baseURL+"/api/reauth/verify". They are
// the endpoints [Authenticator.Reauthenticate], [Authenticator.ReauthenticateFor]
// and [Authenticator.Do] use.
func DefaultEndpoints(baseURL string) Endpoints {
	return Endpoints{Options: baseURL + "/api/reauth/options", Verify: baseURL + "/api/reauth/verify"}
}

// Reauthenticate runs the whole step-up ceremony as the browser client does:
// it fetches options from baseURL+"/api/reauth/options", answers them with a
// passkey of a, and posts the assertion to baseURL+"/api/reauth/verify".
// opts change the assertion (see [Option]). It returns nil when the server
// granted the step-up, and an *HTTPError or [ErrNoCredential] otherwise.
// For handlers mounted elsewhere, use [Authenticator.ReauthenticateAt].
func (a *Authenticator) Reauthenticate(ctx context.Context, client *http.Client, baseURL string, opts ...Option) error {
	return a.ReauthenticateAt(ctx, client, DefaultEndpoints(baseURL), Request{}, opts...)
}

// ReauthenticateFor is [Authenticator.Reauthenticate] for a scoped or bound
// grant.
func (a *Authenticator) ReauthenticateFor(ctx context.Context, client *http.Client, baseURL string, req Request, opts ...Option) error {
	return a.ReauthenticateAt(ctx, client, DefaultEndpoints(baseURL), req, opts...)
}

// ReauthenticateAt is [Authenticator.ReauthenticateFor] against the handlers
// at ep: it posts req to ep.Options (an empty body for the zero Request),
// answers the options with a passkey of a, and posts the assertion to
// ep.Verify. It returns nil when the server granted the step-up, and an
// *HTTPError or [ErrNoCredential] otherwise.
func (a *Authenticator) ReauthenticateAt(ctx context.Context, client *http.Client, ep Endpoints, req Request, opts ...Option) error {
	options, err := OptionsFor(ctx, client, ep.Options, req)
	if err != nil {
		return err
	}
	assertion, err := a.Get(options, opts...)
	if err != nil {
		return err
	}
	_, err = Verify(ctx, client, ep.Verify, assertion)
	return err
}

func post(ctx context.Context, client *http.Client, step, url string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		e := &HTTPError{Step: step, Status: resp.StatusCode}
		var eb struct{ Error, Message string }
		if json.Unmarshal(b, &eb) == nil {
			e.Code, e.Message = eb.Error, eb.Message
		}
		return nil, e
	}
	return b, nil
}

// Do sends req with client the way the JS client's fetchWithStepUp does:
// when the answer is 403 reauthentication_required, it runs the ceremony
// against baseURL for the scope and operation the refusal names, then sends
// the identical request once more. req's body must be replayable
// (http.NewRequest sets GetBody for in-memory bodies). For handlers mounted
// elsewhere, use [Authenticator.DoAt].
func (a *Authenticator) Do(client *http.Client, req *http.Request, baseURL string, opts ...Option) (*http.Response, error) {
	return a.DoAt(client, req, DefaultEndpoints(baseURL), opts...)
}

// DoAt is [Authenticator.Do] with the ceremony run against the handlers at
// ep (see [Authenticator.ReauthenticateAt]). Any other answer than a 403
// reauthentication_required is returned as it is, and so is the answer to
// the retried request. A failed ceremony is an *HTTPError or
// [ErrNoCredential], and the request is not sent again.
func (a *Authenticator) DoAt(client *http.Client, req *http.Request, ep Endpoints, opts ...Option) (*http.Response, error) {
	return doWithStepUp(client, req, func(sr Request) error {
		return a.ReauthenticateAt(req.Context(), client, ep, sr, opts...)
	})
}

// doWithStepUp sends req; when the answer is a gate's refusal
// (reauthentication_required: 403, or 401 to a bearer request), it runs
// stepUp for the scope and operation the refusal names and sends the
// identical request once more.
func doWithStepUp(client *http.Client, req *http.Request, stepUp func(Request) error) (*http.Response, error) {
	// Cloned before sending: a client with a cookie jar adds the cookies of
	// the moment to the request it sends, and the retry needs fresh ones.
	retry := req.Clone(req.Context())
	resp, err := client.Do(req)
	if err != nil || (resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusUnauthorized) {
		return resp, err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var refusal struct {
		Error     string `json:"error"`
		Scope     string `json:"scope"`
		Operation *struct {
			Digest string `json:"digest"`
		} `json:"operation"`
	}
	if json.Unmarshal(b, &refusal) != nil || refusal.Error != "reauthentication_required" {
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return resp, nil
	}
	sr := Request{Scope: refusal.Scope}
	if refusal.Operation != nil {
		sr.Operation = refusal.Operation.Digest
	}
	if err := stepUp(sr); err != nil {
		return nil, err
	}
	if req.GetBody != nil {
		if retry.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	return client.Do(retry)
}

// Token is a step-up token a ceremony answered with.
type Token struct {
	Value     string    // the compact JWS, for the Stepup-Token header
	ExpiresAt time.Time // its exp
}

// StepUpToken runs the ceremony at baseURL as [Authenticator.ReauthenticateFor]
// does, asking for a step-up token (req.Token is set for you), and returns
// the token. client may keep no cookies at all (see [Users.BearerClient]):
// with Config.Tokens the challenge carries its own state.
func (a *Authenticator) StepUpToken(ctx context.Context, client *http.Client, baseURL string, req Request, opts ...Option) (Token, error) {
	return a.StepUpTokenAt(ctx, client, DefaultEndpoints(baseURL), req, opts...)
}

// StepUpTokenAt is [Authenticator.StepUpToken] for handlers mounted at ep.
func (a *Authenticator) StepUpTokenAt(ctx context.Context, client *http.Client, ep Endpoints, req Request, opts ...Option) (Token, error) {
	req.Token = true
	options, err := OptionsFor(ctx, client, ep.Options, req)
	if err != nil {
		return Token{}, err
	}
	assertion, err := a.Get(options, opts...)
	if err != nil {
		return Token{}, err
	}
	body, err := Verify(ctx, client, ep.Verify, assertion)
	if err != nil {
		return Token{}, err
	}
	return readToken(body)
}

// readToken reads the token of a successful ceremony's body.
func readToken(body []byte) (Token, error) {
	var res struct {
		Token          string `json:"token"`
		TokenExpiresAt string `json:"token_expires_at"`
	}
	if err := json.Unmarshal(body, &res); err != nil || res.Token == "" {
		return Token{}, fmt.Errorf("stepuptest: the ceremony answered no token: %s", body)
	}
	exp, err := time.Parse(time.RFC3339, res.TokenExpiresAt)
	if err != nil {
		return Token{}, fmt.Errorf("stepuptest: token_expires_at %q: %v", res.TokenExpiresAt, err)
	}
	return Token{Value: res.Token, ExpiresAt: exp}, nil
}
