package stepup

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"time"
)

// script is the browser client, stepup.js: a dependency-free ES module that
// exports reauthenticate, reauthenticateWithSecret, reauthenticateExternal,
// bindReauthButton, fetchWithStepUp, confirmDialog, stepUpDialog, LABELS
// and MESSAGES. It is
// built from js/src (see docs/browser-client.md).
//
//go:embed stepup.js
var script []byte

// scriptETag is the strong entity tag of script, computed once.
var scriptETag = func() string {
	sum := sha256.Sum256(script)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
}()

// ScriptHandler serves the browser client, stepup.js, an ES module with no
// dependencies. Mount it at a path of your choice, such as GET /stepup.js,
// and import it from the page:
//
//	import { fetchWithStepUp } from "/stepup.js";
//
// It answers GET and HEAD with Content-Type text/javascript; charset=utf-8, a
// strong ETag derived from the content, Cache-Control: no-cache (browsers
// revalidate, so an upgrade of this module reaches them at once) and 304 Not
// Modified for a matching If-None-Match. Other methods get 405.
func (s *StepUp) ScriptHandler() http.Handler {
	return http.HandlerFunc(serveScript)
}

func serveScript(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", scriptETag)
	h.Set("X-Content-Type-Options", "nosniff")
	// ServeContent answers If-None-Match (304), HEAD and Range requests.
	http.ServeContent(w, r, "stepup.js", time.Time{}, bytes.NewReader(script))
}
