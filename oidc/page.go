package stepupoidc

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/passkey-stepup/stepup"
)

// message is the popup page's message to its opener.
type message struct {
	Type     string `json:"type"`
	Method   string `json:"method"`
	State    string `json:"state"`
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
	Message  string `json:"message,omitempty"`
	ReturnTo string `json:"return_to,omitempty"`
	// At is the grant's time, RFC 3339, as "reauthenticated_at" in the
	// answer of every other ceremony.
	At    string `json:"reauthenticated_at,omitempty"`
	Token string `json:"token,omitempty"`
}

// pageData is what the page's script reads: the message, whether to tell
// an opener (a popup, or a start unknown here) and whether the start was
// made for a popup (close the window even when window.opener was cut).
type pageData struct {
	Message message `json:"message"`
	Notify  bool    `json:"notify"`
	Popup   bool    `json:"popup"`
}

const messageType = "stepup:external"

// answer writes the callback's answer to start st and Finish's or Cancel's
// err.
func (m *Method) answer(w http.ResponseWriter, r *http.Request, st stepup.ExternalStart, err error, canceled bool) {
	msg := message{Type: messageType, Method: m.cfg.Name, State: st.State, OK: err == nil && !canceled,
		ReturnTo: st.ReturnTo, Token: st.Token}
	if msg.OK && !st.ReauthenticatedAt.IsZero() {
		msg.At = st.ReauthenticatedAt.UTC().Format(time.RFC3339)
	}
	d := pageData{Notify: st.Popup || st.State == "", Popup: st.Popup}
	status := http.StatusOK
	var refused *stepup.ExternalError
	switch {
	case errors.As(err, &refused):
		status, msg.Error, msg.Message = refused.Status, refused.Code, refused.Message
	case err != nil: // Finish and Cancel return only *ExternalError
		status, msg.Error, msg.Message = http.StatusInternalServerError, "internal_error", "Something went wrong on our side. Try again."
	case canceled:
		msg.Error, msg.Message = "canceled", "You did not sign in at your provider."
	}
	switch {
	case st.Popup:
		d.Message = msg
		writePage(w, status, d)
	case err == nil:
		http.Redirect(w, r, st.ReturnTo, http.StatusSeeOther)
	case strings.Contains(r.Header.Get("Accept"), "text/html"):
		d.Message = msg
		writePage(w, status, d)
	default:
		writeJSON(w, status, map[string]string{"error": msg.Error, "message": msg.Message})
	}
}

// pageScript tells the opener and closes the popup. It is fixed text, so
// the page's Content-Security-Policy allows it by its hash; the message is
// in the body's data-result attribute.
const pageScript = `(function () {
  var d = JSON.parse(document.body.getAttribute("data-result"));
  if (!d.notify) { return; }
  var m = d.message, told = false;
  try { if (window.opener && window.opener !== window) { window.opener.postMessage(m, location.origin); told = true; } } catch (e) {}
  try { var b = Object.assign({}, m); delete b.token; var c = new BroadcastChannel("stepup"); c.postMessage(b); c.close(); told = true; } catch (e) {}
  if (told && (d.popup || window.opener)) { window.close(); }
})();`

var pageCSP = func() string {
	sum := sha256.Sum256([]byte(pageScript))
	return "default-src 'none'; script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}()

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{{.Title}}</title></head>
<body data-result="{{.Result}}">
<main>
<h1>{{.Title}}</h1>
{{if .Message}}<p>{{.Message}}</p>{{end}}
<p><a href="{{.ReturnTo}}">Continue</a></p>
</main>
<script>` + pageScript + `</script>
</body>
</html>
`))

// writePage answers with the small page that shows the message and tells
// the opener.
func writePage(w http.ResponseWriter, status int, d pageData) {
	b, _ := json.Marshal(d)
	title := "Confirmed"
	if !d.Message.OK {
		title = "Not confirmed"
	}
	back := d.Message.ReturnTo
	if back == "" {
		back = "/"
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = page.Execute(w, struct{ Title, Message, ReturnTo, Result string }{title, d.Message.Message, back, string(b)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
