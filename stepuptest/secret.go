package stepuptest

import (
	"context"
	"encoding/json"
	"net/http"
)

// StepUpWithSecret steps up through a method handler (a stepup.Method such
// as a password or an authenticator-app code) mounted at methodURL, with
// secret, for req's scope and bound operation. It returns nil when the
// server granted the step-up, and an *HTTPError (Step "method") otherwise,
// such as 400 wrong_secret or 409 method_unavailable.
func StepUpWithSecret(ctx context.Context, client *http.Client, methodURL, secret string, req Request) error {
	_, err := postSecret(ctx, client, methodURL, secret, req)
	return err
}

// MethodToken steps up through the method handler at methodURL as
// [StepUpWithSecret] does, asking for a step-up token (req.Token is set for
// you; the server needs Config.Tokens), and returns it.
func MethodToken(ctx context.Context, client *http.Client, methodURL, secret string, req Request) (Token, error) {
	req.Token = true
	body, err := postSecret(ctx, client, methodURL, secret, req)
	if err != nil {
		return Token{}, err
	}
	return readToken(body)
}

// DoWithSecret is [Authenticator.Do] for a method: it sends req with client
// and, when a gate refuses it (403 reauthentication_required, or 401 to a
// bearer request), steps up with secret through the method handler at
// methodURL for the scope and operation the refusal names, then sends the
// identical request once more. req's body must be replayable. A failed step-up
// is an *HTTPError, and the request is not sent again.
func DoWithSecret(client *http.Client, req *http.Request, methodURL, secret string) (*http.Response, error) {
	return doWithStepUp(client, req, func(sr Request) error {
		return StepUpWithSecret(req.Context(), client, methodURL, secret, sr)
	})
}

// postSecret posts {"secret", "scope", "operation", "token", "audience"} to
// a method handler.
func postSecret(ctx context.Context, client *http.Client, methodURL, secret string, req Request) ([]byte, error) {
	body, err := json.Marshal(struct {
		Secret string `json:"secret"`
		Request
	}{secret, req})
	if err != nil {
		return nil, err
	}
	return post(ctx, client, "method", methodURL, body)
}
