package stepup

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
)

// Error codes of the HTTP contract, sent as {"error": code, "message": ...}.
// The codes are stable; the messages are fixed, short and for people.
const (
	codeMethodNotAllowed         = "method_not_allowed"
	codeCrossOriginRequest       = "cross_origin_request"
	codeNoActiveSession          = "no_active_session"
	codeInternalError            = "internal_error"
	codeNoCredentials            = "no_credentials"
	codeInvalidRequest           = "invalid_request"
	codeRequestTooLarge          = "request_too_large"
	codeChallengeExpired         = "challenge_expired"
	codeUnknownCredential        = "unknown_credential"
	codeVerificationFailed       = "verification_failed"
	codeCredentialNotOwned       = "credential_not_owned"
	codeReauthenticationRequired = "reauthentication_required"
	codeTooManyAttempts          = "too_many_attempts"
	codeServiceUnavailable       = "service_unavailable"
	codeUnknownOperation         = "unknown_operation"
	codeWrongSecret              = "wrong_secret"
	codeMethodUnavailable        = "method_unavailable"
)

// refusal is stepup's one error type: what the client sees (status, code
// and a fixed message) and, for the log only, its level, cause and
// attributes. The err* values are the templates; refuse makes one for a
// step that failed.
type refusal struct {
	status  int
	code    string
	message string

	level   slog.Level
	cause   string
	attrs   []slog.Attr
	retry   int64 // Retry-After in seconds, for a 429
	limited bool  // a 429: logged as rate_limited, not as a failed attempt
}

// Error returns the code and the cause, for the log.
func (f *refusal) Error() string {
	if f.cause != "" {
		return f.code + ": " + f.cause
	}
	return f.code
}

// refuse returns refusal e for the log at level, with cause and attrs.
func refuse(e refusal, level slog.Level, cause string, attrs ...slog.Attr) *refusal {
	e.level, e.cause, e.attrs = level, cause, attrs
	return &e
}

var (
	errMethod            = refusal{status: http.StatusMethodNotAllowed, code: codeMethodNotAllowed, message: "Use POST."}
	errCrossOrigin       = refusal{status: http.StatusForbidden, code: codeCrossOriginRequest, message: "Cross-origin requests are not allowed."}
	errNoSession         = refusal{status: http.StatusUnauthorized, code: codeNoActiveSession, message: "Sign in first."}
	errInternal          = refusal{status: http.StatusInternalServerError, code: codeInternalError, message: "Something went wrong on our side. Try again."}
	errNoCreds           = refusal{status: http.StatusConflict, code: codeNoCredentials, message: "This account has no passkey to confirm with."}
	errBadRequest        = refusal{status: http.StatusBadRequest, code: codeInvalidRequest, message: "The request is not a passkey assertion."}
	errTooLarge          = refusal{status: http.StatusRequestEntityTooLarge, code: codeRequestTooLarge, message: "The request body is too large."}
	errExpired           = refusal{status: http.StatusBadRequest, code: codeChallengeExpired, message: "The confirmation expired or was already used. Start again."}
	errUnknownCred       = refusal{status: http.StatusNotFound, code: codeUnknownCredential, message: "This passkey is not registered here."}
	errVerifyFailed      = refusal{status: http.StatusBadRequest, code: codeVerificationFailed, message: "The passkey could not be verified."}
	errNotOwned          = refusal{status: http.StatusForbidden, code: codeCredentialNotOwned, message: "Credential does not belong to the active user."}
	errTooMany           = refusal{status: http.StatusTooManyRequests, code: codeTooManyAttempts, message: "Too many attempts. Try again later."}
	errUnavailable       = refusal{status: http.StatusServiceUnavailable, code: codeServiceUnavailable, message: "Confirmation is unavailable right now. Try again in a moment."}
	errBadRequestBody    = refusal{status: http.StatusBadRequest, code: codeInvalidRequest, message: "The request body is not valid."}
	errUnknownScope      = refusal{status: http.StatusBadRequest, code: codeInvalidRequest, message: "There is no such scope."}
	errBadOperation      = refusal{status: http.StatusBadRequest, code: codeInvalidRequest, message: "The request does not describe a valid operation."}
	errNoTokens          = refusal{status: http.StatusBadRequest, code: codeInvalidRequest, message: "Step-up tokens are not enabled."}
	errUnknownAudience   = refusal{status: http.StatusBadRequest, code: codeInvalidRequest, message: "There is no such audience for step-up tokens."}
	errUnknownOp         = refusal{status: http.StatusBadRequest, code: codeUnknownOperation, message: "There is no such operation waiting for confirmation."}
	errReauthNeeded      = refusal{status: http.StatusForbidden, code: codeReauthenticationRequired, message: "Confirm it's you to continue."}
	errWrongSecret       = refusal{status: http.StatusBadRequest, code: codeWrongSecret, message: "That is not right. Try again."}
	errBadSecretBody     = refusal{status: http.StatusBadRequest, code: codeInvalidRequest, message: "The request body is not valid: send {\"secret\": \"...\"}."}
	errMethodUnavailable = refusal{status: http.StatusConflict, code: codeMethodUnavailable, message: "This way of confirming is not set up for this account."}
)

// writeRefusal writes f as the answer: the error, and Retry-After for a 429.
func writeRefusal(w http.ResponseWriter, f *refusal) {
	if f.retry > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(f.retry, 10))
	}
	writeError(w, *f)
}

func writeError(w http.ResponseWriter, e refusal) {
	writeJSON(w, e.status, errorBody{Error: e.code, Message: e.message})
}

// writeJSON sends v as JSON with status. Every answer of stepup refuses or
// grants something, so none may be cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	writeJSONHeader(w, status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeJSONBytes sends b, JSON already encoded, as writeJSON sends a value.
func writeJSONBytes(w http.ResponseWriter, status int, b []byte) {
	writeJSONHeader(w, status)
	_, _ = w.Write(b)
}

// writeJSONHeader writes the header of a JSON answer with status.
func writeJSONHeader(w http.ResponseWriter, status int) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
}

type errorBody struct {
	Error     string     `json:"error"`
	Message   string     `json:"message"`
	MaxAge    *int64     `json:"max_age,omitempty"`
	Scope     string     `json:"scope,omitempty"`
	Operation *Operation `json:"operation,omitempty"`
	Methods   *[]string  `json:"methods,omitempty"`
	External  []string   `json:"external,omitempty"` // of Methods, those that finish at another party
}

// appendJSONStrings appends a JSON array of strings.
func appendJSONStrings[S ~string](b []byte, xs []S) []byte {
	b = append(b, '[')
	for i, x := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, string(x))
	}
	return append(b, ']')
}

// appendJSONString appends s as encoding/json writes it (HTML characters
// escaped, invalid UTF-8 replaced): directly when s is printable ASCII
// needing no escape, else through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	return append(append(append(b, '"'), s...), '"')
}
