package stepup_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/passkey-stepup/stepup"
)

func TestReturnTo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"/settings/password?x=1", "/settings/password?x=1"},
		{"/", "/"},
		{"", "/"},
		{"//evil.example/x", "/"},
		{"/\\evil.example", "/"},
		{"https://evil.example/", "/"},
		{"javascript:alert(1)", "/"},
		{"settings", "/"},
		{"/a\nb", "/"},
		{"/\t/evil.example", "/"},
	} {
		r, _ := http.NewRequest(http.MethodGet, "/reauth?"+url.Values{"return_to": {tc.in}}.Encode(), nil)
		if got := stepup.ReturnTo(r); got != tc.want {
			t.Errorf("ReturnTo(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
