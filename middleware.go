package stepup

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// RequireRecentReauth returns middleware that calls the wrapped handler only
// when the step-up session holds a grant of the signed-in user that is at
// most maxAge old by Config.Now. Ages are whole seconds and the boundary is
// inclusive: a grant exactly maxAge old passes, one a second older does not.
// A grant stamped more than a few seconds in the future is refused.
//
// It fails closed and never calls the wrapped handler on a refusal:
//   - nobody signed in: 401 no_active_session;
//   - the UserStore fails: 500 internal_error;
//   - no fresh grant for this user (none, too old, another user's, or a step-up
//     cookie that does not decode): 403 reauthentication_required with
//     "max_age" in whole seconds, or, when Config.ReauthURL is set and the
//     request is a browser navigation (GET or HEAD accepting text/html), a 303
//     to ReauthURL with return_to set to the request's path and query.
//
// It answers 403 rather than 401 so that clients do not take the refusal
// for a sign-out. It panics if maxAge <= 0.
func (s *StepUp) RequireRecentReauth(maxAge time.Duration) func(http.Handler) http.Handler {
	if maxAge <= 0 {
		panic("stepup: RequireRecentReauth expects maxAge > 0")
	}
	maxAgeSeconds := int64(maxAge / time.Second)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, ok := s.currentUser(w, r)
			if !ok {
				return
			}
			if _, fresh := freshGrant(s.session(r), p.handle, p.signIn, s.now(), maxAge); fresh {
				next.ServeHTTP(w, r)
				return
			}
			s.event(r, slog.LevelInfo, EventGateDenied, userAttr(p.handle), slog.String("path", r.URL.Path))
			if s.reauthURL != nil && isNavigation(r) {
				s.redirectToReauth(w, r)
				return
			}
			writeJSON(w, errReauthNeeded.status, errorBody{
				Error:   errReauthNeeded.code,
				Message: errReauthNeeded.message,
				MaxAge:  &maxAgeSeconds,
			})
		})
	}
}

// isNavigation reports whether r looks like a browser loading a page.
func isNavigation(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		strings.Contains(r.Header.Get("Accept"), "text/html")
}

// LastReauth returns the time of the signed-in user's step-up grant, if the
// step-up session holds one for that user (and sign-in session, see
// [SignInIdentifier]). It does not judge freshness.
func (s *StepUp) LastReauth(r *http.Request) (time.Time, bool) {
	p, ok := s.currentUser(discardWriter{}, r)
	if !ok {
		return time.Time{}, false
	}
	g, ok := readGrant(s.session(r))
	if !ok || !bytes.Equal(g.user, p.handle) || !bytes.Equal(g.signIn, p.signIn) {
		return time.Time{}, false
	}
	return time.Unix(g.at, 0), true
}

// discardWriter lets LastReauth reuse currentUser without answering.
type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}

// Revoke drops the step-up grant from the session and saves it. Call it at
// sign-out, and after a one-off action (such as deleting the account) whose
// grant must not be reused. It returns the session store's error, if any.
func (s *StepUp) Revoke(w http.ResponseWriter, r *http.Request) error {
	sess := s.session(r)
	if _, ok := sess.Values[keyGrant]; !ok {
		return nil
	}
	delete(sess.Values, keyGrant)
	return s.save(w, r, sess)
}
