package stepup

import (
	"net/http"
	"net/url"
	"strings"
)

// returnToParam is the query parameter in which the gate passes the refused
// page's path and query to Config.ReauthURL.
const returnToParam = "return_to"

// ReturnTo returns where the reauthentication page at Config.ReauthURL
// should send the user back to: the return_to query parameter of r when it
// is a path on this site, and "/" otherwise. It never returns a URL with a
// scheme or host, or one a browser would read as such ("//host",
// "/\host"), so it is safe to redirect to.
func ReturnTo(r *http.Request) string {
	if p := r.URL.Query().Get(returnToParam); isLocalPath(p) {
		return p
	}
	return "/"
}

// isLocalPath reports whether p is an absolute path on this site that every
// browser resolves to this site: it starts with one slash, holds no
// backslash and no control character, and parses without scheme or host.
func isLocalPath(p string) bool {
	if p == "" || p[0] != '/' || strings.HasPrefix(p, "//") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c == '\\' || c < 0x20 || c == 0x7f {
			return false
		}
	}
	u, err := url.Parse(p)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil
}

// redirectToReauth answers a refused browser navigation with a 303 to the
// reauthentication page, carrying the request's own path and query.
func (s *StepUp) redirectToReauth(w http.ResponseWriter, r *http.Request) {
	back := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		back += "?" + r.URL.RawQuery
	}
	if !isLocalPath(back) {
		back = "/"
	}
	u := *s.reauthURL
	q := u.Query()
	q.Set(returnToParam, back)
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// isNavigation reports whether r looks like a browser loading a page.
func isNavigation(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		strings.Contains(r.Header.Get("Accept"), "text/html")
}
