package stepup

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gorilla/sessions"
)

// maxBindBody is the largest request body a Bind gate buffers.
const maxBindBody = 1 << 20

// operationTTL is how long a refused bound operation stays pending for
// confirmation.
const operationTTL = 10 * time.Minute

// Bind binds the grant to one operation ("what you confirm is what runs"):
// fn returns the canonical bytes of the operation a request would perform
// (such as amount, currency and payee) and a short description for the
// person confirming it. The gate buffers the request body (up to 1 MiB) so
// that fn and the wrapped handler can both read it.
//
// Refused, the gate records SHA-256(op) as a pending operation and adds
// {"digest", "description"} as "operation" to its 403 body. The client posts
// {"operation": digest} to the options handler, whose challenge then commits
// to the digest; the grant it yields is single use (as with [Once]) and opens
// only a request whose fn yields the same digest. A plain grant never opens a
// Bind gate. An error from fn is a 400 invalid_request with a fixed message,
// unless it is (or wraps) an [*OperationError], whose status and message the
// client sees.
func Bind(fn func(r *http.Request) (op []byte, description string, err error)) GateOption {
	return func(g *gate) { g.bind = fn }
}

// Operation is a bound operation waiting for confirmation: the unpadded
// base64url SHA-256 digest of its canonical bytes and its description.
type Operation struct {
	Digest      string `json:"digest"`
	Description string `json:"description"`
}

// OperationError is an error a [Bind] function returns to tell the client
// what is wrong with its request, in the application's words:
//
//	return nil, "", &stepup.OperationError{Status: 422, Message: "Enter an amount above zero."}
//
// The client gets Status (400 if it is not a 4xx status) and
// {"error": Code, "message": Message}; Code defaults to "invalid_request".
// Any other error from a Bind function is a 400 invalid_request with a fixed
// message. Err, if set, is logged with the refusal and never sent.
type OperationError struct {
	Status  int
	Code    string // 1 to 64 characters of a-z, 0-9 and '_'; default "invalid_request"
	Message string
	Err     error
}

func (e *OperationError) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

// Unwrap returns Err.
func (e *OperationError) Unwrap() error { return e.Err }

func (e *OperationError) refusal() *refusal {
	out := refusal{status: e.Status, code: e.Code, message: e.Message}
	if out.status < 400 || out.status > 499 {
		out.status = http.StatusBadRequest
	}
	if !validCode(out.code) {
		out.code = codeInvalidRequest
	}
	if out.message == "" {
		out.message = errBadOperation.message
	}
	return &out
}

func validCode(code string) bool { return validName(code, 64, "_") }

// bindOperation buffers the body, asks the gate's Bind function for the
// operation and returns its digest and description; log receives the
// refusal's cause. A StepUp's gates and a TokenVerifier's share it.
func bindOperation(log *slog.Logger, g *gate, w http.ResponseWriter, r *http.Request) ([]byte, string, *refusal) {
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		var err error
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxBindBody))
		r.Body.Close()
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				return nil, "", &errTooLarge
			}
			return nil, "", &errBadRequest
		}
	}
	rewind := func() {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	rewind()
	op, description, err := g.bind(r)
	rewind()
	if err != nil {
		log.LogAttrs(r.Context(), slog.LevelInfo, EventGateDenied, slog.String("reason", "invalid_operation"), errAttr(err))
		var oe *OperationError
		if errors.As(err, &oe) {
			return nil, "", oe.refusal()
		}
		return nil, "", &errBadOperation
	}
	sum := sha256.Sum256(op)
	if clean := cleanDescription(description); clean != description {
		log.LogAttrs(r.Context(), slog.LevelWarn, EventDescriptionCleaned, slog.String("path", r.URL.Path),
			slog.Int("bytes", len(description)), slog.Int("kept", len(clean)))
		description = clean
	}
	return sum[:], description, nil
}

// cleanDescription makes a bound operation's description safe to show as
// what the user confirms: invisible format characters (Unicode category Cf,
// the bidirectional controls U+202A-U+202E and U+2066-U+2069 among them)
// are dropped, so that the text cannot be made to read otherwise than it
// runs; control characters (Cc) and the line and paragraph separators
// (Zl, Zp: a native text view breaks the line there) become spaces; invalid
// UTF-8 becomes U+FFFD; and it is cut to maxDescriptionLen bytes at a rune
// boundary.
func cleanDescription(d string) string {
	clean := true
	for _, r := range d {
		if r == utf8.RuneError || unicode.In(r, unicode.Cf, unicode.Cc, unicode.Zl, unicode.Zp) {
			clean = false
			break
		}
	}
	if clean {
		return truncate(d, maxDescriptionLen)
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(d, "\uFFFD") {
		switch {
		case unicode.Is(unicode.Cf, r):
		case unicode.In(r, unicode.Cc, unicode.Zl, unicode.Zp):
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return truncate(b.String(), maxDescriptionLen)
}

// truncate cuts s to at most n bytes at a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// addOperation records a refused bound operation as pending for p, so that
// the options handler accepts its digest.
func (s *StepUp) addOperation(w http.ResponseWriter, r *http.Request, sess *sessions.Session, p principal, digest []byte, description string, now time.Time) error {
	var keep []pendingOp
	for _, o := range readOperations(sess) {
		if o.expires >= now.Unix() && !(bytes.Equal(o.user, p.handle) && bytes.Equal(o.digest, digest)) {
			keep = append(keep, o)
		}
	}
	keep = append(keep, pendingOp{
		expires:     now.Add(operationTTL).Unix(),
		user:        p.handle,
		digest:      digest,
		description: []byte(description), // cleaned and cut by bindOperation
	})
	writeOperations(sess, newest(keep, maxOperations))
	return s.save(w, r, sess)
}

// findOperation returns the unexpired operation pending for user whose
// digest is the base64url digest, or nil.
func findOperation(ops []pendingOp, user []byte, digest string, now time.Time) *pendingOp {
	d, err := base64.RawURLEncoding.DecodeString(digest)
	if err != nil {
		return nil
	}
	for i, o := range ops {
		if o.expires >= now.Unix() && bytes.Equal(o.user, user) && bytes.Equal(o.digest, d) {
			return &ops[i]
		}
	}
	return nil
}

// boundChallenge is the challenge of a bound ceremony: it commits to the
// nonce, the user, the scope, the operation digest and the description
// shown.
func boundChallenge(nonce, user []byte, scope string, digest []byte, description string) []byte {
	h := sha256.New()
	h.Write([]byte("stepup/bind/v2"))
	for _, field := range [][]byte{nonce, user, []byte(scope)} {
		h.Write([]byte{byte(len(field))})
		h.Write(field)
	}
	h.Write(digest)
	d := sha256.Sum256([]byte(description))
	h.Write(d[:])
	return h.Sum(nil)
}
