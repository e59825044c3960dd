package stepup

import (
	"encoding/json"
	"log/slog"
	"net/http"
)

// Error codes of the HTTP contract, sent as {"error": code, "message": ...}.
// The codes are stable; the messages are fixed, short and for people.
const (
	CodeMethodNotAllowed         = "method_not_allowed"
	CodeCrossOriginRequest       = "cross_origin_request"
	CodeNoActiveSession          = "no_active_session"
	CodeInternalError            = "internal_error"
	CodeNoCredentials            = "no_credentials"
	CodeInvalidRequest           = "invalid_request"
	CodeRequestTooLarge          = "request_too_large"
	CodeChallengeExpired         = "challenge_expired"
	CodeUnknownCredential        = "unknown_credential"
	CodeVerificationFailed       = "verification_failed"
	CodeCredentialNotOwned       = "credential_not_owned"
	CodeReauthenticationRequired = "reauthentication_required"
	CodeTooManyAttempts          = "too_many_attempts"
	CodeServiceUnavailable       = "service_unavailable"
	CodeUnknownOperation         = "unknown_operation"
	CodeWrongSecret              = "wrong_secret"
	CodeMethodUnavailable        = "method_unavailable"
)

// apiError is a refusal: the status and code the client sees. The cause,
// when there is one, goes to the log only.
type apiError struct {
	status  int
	code    string
	message string
}

var (
	errMethod            = apiError{http.StatusMethodNotAllowed, CodeMethodNotAllowed, "Use POST."}
	errCrossOrigin       = apiError{http.StatusForbidden, CodeCrossOriginRequest, "Cross-origin requests are not allowed."}
	errNoSession         = apiError{http.StatusUnauthorized, CodeNoActiveSession, "Sign in first."}
	errInternal          = apiError{http.StatusInternalServerError, CodeInternalError, "Something went wrong on our side. Try again."}
	errNoCreds           = apiError{http.StatusConflict, CodeNoCredentials, "This account has no passkey to confirm with."}
	errBadRequest        = apiError{http.StatusBadRequest, CodeInvalidRequest, "The request is not a passkey assertion."}
	errTooLarge          = apiError{http.StatusRequestEntityTooLarge, CodeRequestTooLarge, "The request body is too large."}
	errExpired           = apiError{http.StatusBadRequest, CodeChallengeExpired, "The confirmation expired or was already used. Start again."}
	errUnknownCred       = apiError{http.StatusNotFound, CodeUnknownCredential, "This passkey is not registered here."}
	errVerifyFailed      = apiError{http.StatusBadRequest, CodeVerificationFailed, "The passkey could not be verified."}
	errNotOwned          = apiError{http.StatusForbidden, CodeCredentialNotOwned, "Credential does not belong to the active user."}
	errTooMany           = apiError{http.StatusTooManyRequests, CodeTooManyAttempts, "Too many attempts. Try again later."}
	errUnavailable       = apiError{http.StatusServiceUnavailable, CodeServiceUnavailable, "Confirmation is unavailable right now. Try again in a moment."}
	errBadRequestBody    = apiError{http.StatusBadRequest, CodeInvalidRequest, "The request body is not valid."}
	errUnknownScope      = apiError{http.StatusBadRequest, CodeInvalidRequest, "There is no such scope."}
	errBadOperation      = apiError{http.StatusBadRequest, CodeInvalidRequest, "The request does not describe a valid operation."}
	errUnknownOp         = apiError{http.StatusBadRequest, CodeUnknownOperation, "There is no such operation waiting for confirmation."}
	errReauthNeeded      = apiError{http.StatusForbidden, CodeReauthenticationRequired, "Confirm it's you to continue."}
	errWrongSecret       = apiError{http.StatusBadRequest, CodeWrongSecret, "That is not right. Try again."}
	errBadSecretBody     = apiError{http.StatusBadRequest, CodeInvalidRequest, "The request body is not valid: send {\"secret\": \"...\"}."}
	errMethodUnavailable = apiError{http.StatusConflict, CodeMethodUnavailable, "This way of confirming is not set up for this account."}
)

// writeJSON sends v as JSON with status. Every answer of stepup refuses or
// grants something, so none may be cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type errorBody struct {
	Error     string     `json:"error"`
	Message   string     `json:"message"`
	MaxAge    *int64     `json:"max_age,omitempty"`
	Scope     string     `json:"scope,omitempty"`
	Operation *Operation `json:"operation,omitempty"`
	Methods   *[]string  `json:"methods,omitempty"`
}

func writeError(w http.ResponseWriter, e apiError) {
	writeJSON(w, e.status, errorBody{Error: e.code, Message: e.message})
}

const levelDebug = slog.LevelDebug

func errAttr(err error) slog.Attr { return slog.String("cause", err.Error()) }
