package stepup

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestReadJSONBodyWhateverTheDeclaredLength: the body read is the body sent,
// whether the request declares its length exactly, not at all, too short or
// too long; more than max is 413 whatever it declares; and a non-empty body
// must be application/json (parameters allowed).
func TestReadJSONBodyWhateverTheDeclaredLength(t *testing.T) {
	const max = 64
	bad := refusal{status: 400, code: "bad"}
	for _, n := range []int{1, 2, 63, 64, 65, 200} {
		body := []byte(`"` + strings.Repeat("x", n-1))[:n]
		for _, declared := range []int64{int64(n), -1, 0, int64(n / 2), int64(2 * n), max, max - 1} {
			r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			r.ContentLength = declared
			got, f := readJSONBody(httptest.NewRecorder(), r, max, bad)
			switch {
			case n > max && (f == nil || f.code != errTooLarge.code):
				t.Errorf("%d bytes declared %d: refusal %v, want %s", n, declared, f, errTooLarge.code)
			case n <= max && (f != nil || !bytes.Equal(got, body)):
				t.Errorf("%d bytes declared %d: read %q, %v", n, declared, got, f)
			}
		}
	}
	for ct, ok := range map[string]bool{"application/json": true, "application/json; charset=utf-8": true, "Application/JSON": true,
		"text/plain": false, "": false, "application/jsonx": false} {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{}`))
		r.Header.Set("Content-Type", ct)
		if _, f := readJSONBody(httptest.NewRecorder(), r, max, bad); (f == nil) != ok {
			t.Errorf("Content-Type %q: refusal %v, want ok %v", ct, f, ok)
		}
	}
}
