// Package stepup gates sensitive net/http routes (password change, payments,
// account deletion) behind a fresh passkey re-verification of the user who
// is already signed in: "step-up" or "sudo mode".
//
// # What it protects
//
// A signed-in session is not proof that the person at the keyboard is the
// account holder right now: a borrowed laptop, a stolen session cookie or an
// XSS-driven request all ride on an existing session. stepup asks for a
// passkey assertion of the signed-in user before a sensitive action, and only
// that user's passkeys can give it:
//
//   - the request options list exactly the signed-in user's credentials in
//     allowCredentials, never an empty list, which would make the ceremony
//     discoverable so that anyone's passkey on a shared device would pass;
//   - user verification is required, and enforced on the server
//     (go-webauthn only enforces it when asked);
//   - after the signature verifies, the verify handler checks that the
//     credential belongs to the signed-in user (403 credential_not_owned
//     otherwise);
//   - a challenge answers at most once and only within Config.ChallengeTTL
//     by Config.Now;
//   - a sign counter that does not advance is refused as a clone signal, and
//     a counter value is accepted once per credential across instances.
//
// It also holds against a signed-in user with a working passkey who abuses
// what is shared: every user's attempts are limited (failures, and step-ups
// as such), the limits are taken atomically before anything is verified,
// and the in-memory registry refuses its heaviest users first rather than
// everyone.
//
// The browser side is button-triggered only: reauthentication is never
// offered through autofill (conditional mediation).
//
// # Words
//
// One word per concept, in names, docs and events: a user steps up (the
// act: a passkey ceremony or a [Method]), which records a grant (what opens
// gates, [Grant]); a gate ([StepUp.RequireRecentReauth]) passes or refuses
// a request; the user confirms (in the browser's words only). "Reauth"
// survives in names kept for compatibility (RequireRecentReauth,
// ReauthRequired, the reauth_* events, /api/reauth/ paths): it means step
// up.
//
// # Freshness
//
// A successful ceremony records a grant in the step-up session and in the
// [Registry]: the user's handle and the time by Config.Now, in whole Unix
// seconds. [StepUp.RequireRecentReauth] passes a request when the grant
// belongs to the signed-in user, its age is at most maxAge (age == maxAge
// passes, one second more does not) and the Registry still holds it. A grant
// stamped more than 5 seconds in the future is refused.
//
// # Revocation
//
// [StepUp.Revoke] ends the session's grants and [StepUp.RevokeUser] every
// grant of a user. Neither compares clocks: each user, and each step-up
// session, has a random revocation state in the Registry that every ceremony
// copies when it starts and its grant keeps; the gate passes a grant only
// while the Registry holds the same state, and revoking replaces it. So no
// older copy of the cookie passes, on any instance, whatever its clock; a
// ceremony in flight records no grant; the next ceremony passes at once.
//
// # Scopes, single use and transaction binding
//
// Gate options narrow the window: [Scope] makes a grant open only gates of
// its scope, [Once] consumes the grant before the handler runs (recorded in
// the [Registry], so exactly one of concurrent requests passes), and [Bind]
// binds the grant to the digest of one operation: the ceremony's challenge
// commits to the nonce, the user, the scope, the digest and the hash of the
// description shown (cleaned of format and control characters), so the
// signature proves who confirmed what, and [Evidence] lets the application
// verify that later.
//
// # Other methods
//
// Users without a passkey step up with a [Method] (a password re-entry, an
// authenticator-app code) through [StepUp.MethodHandler]: the application
// checks the secret, stepup runs the rest exactly as for a passkey, with one
// failure limit across all methods. A gate accepts passkey grants only,
// unless [Methods] names others; its 403 lists the accepted methods the
// signed-in user can use ("methods", never null), and those of them that
// finish at another party ("external", left out when none). The wrapped
// handler reads what the grant proved with [GrantFrom] and the gate's user
// with [UserFrom].
//
// A method that finishes on another request, such as a sign-in at the
// company's identity provider, is an [External] ([StepUp.ExternalMethod]):
// [External.Start] makes a start pending in this browser (the limits, the
// revocation state and a single-use key in the Registry, as for a passkey
// ceremony) and [External.Finish] ends it when the user comes back, with
// the method's own check in between; the method writes the answers (a
// redirect, a popup page). The oidc module is one.
//
// # Step-up tokens
//
// With Config.Tokens, a client may ask a ceremony for a step-up token as
// well: the same grant in a signed envelope (a compact JWS, see
// [TokenConfig]), for clients that keep no cookies and for other services.
// Every challenge is then self-contained, so such a client finishes a
// ceremony with nothing but the assertion. Gates accept the token in the
// [TokenHeader] header under the rules of cookie grants; a refused bearer
// request gets 401 with an RFC 9470 challenge. Other services check tokens
// with [NewTokenVerifier] and the keys [StepUp.JWKSHandler] publishes.
//
// # Storage
//
// The step-up state lives in a gorilla/sessions session named
// Config.SessionName in Config.Store: at most three pending challenges (so
// that two tabs can each finish) and the grant, each a few dozen bytes
// whatever the number of passkeys. The cookie is always HttpOnly and
// SameSite=Lax; its other attributes come from the store. A session that fails
// to decode (tampered, expired, made under a retired key) counts as empty.
// Because a client can always send an older copy of its cookie, challenges,
// grants (and their single use) and revocation states are recorded
// server-side in Config.Registry, which the gate reads (failing closed with
// 503); every expiry there is measured by the Registry's own clock. Failed
// attempts and started ceremonies are counted there too (429 after
// Config.MaxFailures or Config.MaxStepUps).
//
// # Errors
//
// [New] returns errors wrapping [ErrInvalidConfig]. The application's
// [UserStore] wraps [ErrNoActiveSession] and [ErrUnknownCredential] to say
// "nobody signed in" and "nobody has this credential"; every other error it
// returns is an internal failure, answered with 500 and logged, and never
// turned into a 404 that would let the browser delete a user's passkey.
//
// # HTTP contract
//
// Every refusal is JSON {"error": code, "message": text} with
// Content-Type application/json and Cache-Control no-store. Messages are fixed
// and short; causes go to Config.Logger, never to the client.
//
//	every    405 method_not_allowed      not POST (options, verify, method handlers)
//	         403 cross_origin_request    cross-origin browser request
//	         401 no_active_session       nobody signed in
//	         500 internal_error          UserStore or session store failure
//	         429 too_many_attempts       over a per-user limit (Retry-After)
//	         503 service_unavailable     the Registry failed
//	options  400 invalid_request         a body that is not {"scope", "operation"} JSON, or an unknown scope
//	         400 unknown_operation       an operation digest not pending for this user
//	         409 no_credentials          the user has no passkey
//	         200 PublicKeyCredentialRequestOptionsJSON
//	verify   400 invalid_request         not a JSON assertion (413 request_too_large over 16 KiB)
//	         400 challenge_expired       no pending challenge matches, another user's, expired, used, or revoked meanwhile
//	         404 unknown_credential      no user has the credential
//	         500 internal_error          CredentialByID, UpdateCredential or session save failed
//	         400 verification_failed     the assertion does not verify, or its counter did not advance or was used
//	         403 credential_not_owned    the credential belongs to another user
//	         200 {"status": "ok", "reauthenticated_at": RFC 3339}
//	method   400 invalid_request         a body that is not {"secret", "scope", "operation"} JSON
//	         400 unknown_operation       as for options
//	         409 method_unavailable      the user cannot use this method
//	         400 wrong_secret            Check said so (counts as a failure)
//	         400 challenge_expired       revoked while Check ran
//	         500 internal_error          Available or Check failed (a Check error keeps its unit)
//	         200 as for verify
//	external start: as options (405, 403, 401, 400, 429, 503), then
//	         409 method_unavailable      the user cannot use this method
//	         200 (written by the method) the start is pending in this browser
//	external finish (GET; the method writes the answer from Finish's *ExternalError):
//	         400 challenge_expired       no start of this method pending here, expired, used, or revoked meanwhile (counts nothing)
//	         403 credential_not_owned    started by another user or sign-in (counts a failure)
//	         4xx the check's code        the method's check refused (counts a failure)
//	         500 internal_error          the check failed on its own (logged as method_error)
//	         303 (written by the method) to the start's return_to
//	gate     401 no_active_session, 500 internal_error
//	         503 service_unavailable     the Registry cannot be read
//	         403 reauthentication_required with "max_age" in seconds, "methods"
//	                                     (and "external": those of them that finish at another party),
//	         or 303 to Config.ReauthURL?return_to=... for a browser navigation
//
// # Security events
//
// Config.Logger receives one record per event, its message the event name
// (the Event constants): reauth_succeeded, reauth_failed (attribute "reason"
// is the error code, or "canceled" when an [External]'s other party did
// not sign the user in), gate_denied, rate_limited, cross_origin_refused,
// store_failed, method_error, webauthn_failed, description_cleaned,
// unknown_method, options_issued, session_unreadable, clone_detected and
// grants_revoked,
// with the user handle and credential ID in base64url. Challenges,
// signatures, secrets and cookie values are never logged.
package stepup
