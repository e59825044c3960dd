package stepup

import (
	"encoding/base64"
	"log/slog"
	"net/http"
)

// Security events, the message of each record logged to Config.Logger. The
// names are stable. Attributes: "user" (the user handle, base64url),
// "credential_id" (base64url), "reason" (the error code of a refusal),
// "cause" (a diagnostic for the operator) and "path" (for gate_denied).
// Challenges, signatures and cookie values are never logged.
const (
	EventReauthSucceeded    = "reauth_succeeded" // a grant was recorded
	EventReauthFailed       = "reauth_failed"    // a verify attempt was refused; "reason" says why
	EventGateDenied         = "gate_denied"      // the gate refused a request without a fresh grant
	EventRateLimited        = "rate_limited"     // options or verify refused with 429
	EventCrossOriginRefused = "cross_origin_refused"
	EventStoreFailed        = "store_failed" // a store failed: the UserStore, the session store, the Registry, RecordEvidence or a token key; "store" says which
	EventOptionsIssued      = "options_issued"
	// EventSessionUnreadable: the step-up session did not decode (tampered,
	// expired, an old key) and counts as empty; logged at DEBUG.
	EventSessionUnreadable = "session_unreadable"
	EventCloneDetected     = "clone_detected" // a sign counter did not advance, or a counter value came twice: possibly a cloned authenticator
	EventGrantsRevoked     = "grants_revoked" // Revoke or RevokeUser ended grants
	// EventMethodError: a Method's Available or Check returned an error
	// other than ErrWrongSecret (logged at ERROR; "function" says which).
	// The attempt keeps its units of the limits.
	EventMethodError = "method_error"
	// EventWebAuthnFailed: go-webauthn could not make request options.
	EventWebAuthnFailed = "webauthn_failed"
	// EventDescriptionCleaned: a Bind function's description held format
	// or control characters, which were removed before it was shown.
	EventDescriptionCleaned = "description_cleaned"
	// EventUnknownMethod: a gate names a method that was never registered
	// (logged at ERROR at the gate's first request): nobody can pass it
	// with that method.
	EventUnknownMethod = "unknown_method"
)

// event logs a security event.
func (s *StepUp) event(r *http.Request, level slog.Level, name string, attrs ...slog.Attr) {
	s.log.LogAttrs(r.Context(), level, name, attrs...)
}

// storeFailed logs a failure of the application's or stepup's storage.
func (s *StepUp) storeFailed(r *http.Request, store string, err error, attrs ...slog.Attr) {
	s.event(r, slog.LevelError, EventStoreFailed, append(attrs, slog.String("store", store), errAttr(err))...)
}

const levelDebug = slog.LevelDebug

func errAttr(err error) slog.Attr { return slog.String("cause", err.Error()) }

func userAttr(handle []byte) slog.Attr { return slog.String("user", b64(handle)) }

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Deprecated names of events, kept until v1: each constant is now named
// after its value.
const (
	// Deprecated: use EventCrossOriginRefused.
	EventCrossOrigin = EventCrossOriginRefused
	// Deprecated: use EventGrantsRevoked.
	EventRevoked = EventGrantsRevoked
)
