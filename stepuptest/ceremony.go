package stepuptest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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

// Options posts to optionsURL with client (whose cookie jar carries the
// application's sign-in and step-up cookies) and returns the options JSON.
// A non-200 answer is an *HTTPError.
func Options(ctx context.Context, client *http.Client, optionsURL string) ([]byte, error) {
	return post(ctx, client, "options", optionsURL, nil)
}

// Verify posts the assertion JSON to verifyURL and returns the success body.
// A non-200 answer is an *HTTPError.
func Verify(ctx context.Context, client *http.Client, verifyURL string, assertion []byte) ([]byte, error) {
	return post(ctx, client, "verify", verifyURL, assertion)
}

// Reauthenticate runs the whole step-up ceremony as the browser client does:
// it fetches options from baseURL+"/api/reauth/options", answers them with a
// passkey of a, and posts the assertion to baseURL+"/api/reauth/verify".
// opts change the assertion (see [Option]). It returns nil when the server
// granted the step-up, and an *HTTPError or [ErrNoCredential] otherwise.
func (a *Authenticator) Reauthenticate(ctx context.Context, client *http.Client, baseURL string, opts ...Option) error {
	options, err := Options(ctx, client, baseURL+"/api/reauth/options")
	if err != nil {
		return err
	}
	assertion, err := a.Get(options, opts...)
	if err != nil {
		return err
	}
	_, err = Verify(ctx, client, baseURL+"/api/reauth/verify", assertion)
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
