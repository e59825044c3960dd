package stepup

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"
)

// TestDescribeNeverLogsAChallenge: go-webauthn's DevInfo goes to the log
// for every error but a challenge error, whose DevInfo holds the expected
// challenge.
func TestDescribeNeverLogsAChallenge(t *testing.T) {
	challenge := &protocol.Error{Type: "verification_error", Details: "Error validating challenge", DevInfo: "Expected b Value: \"c2VjcmV0\""}
	if got := describe(challenge); strings.Contains(got, "c2VjcmV0") || !strings.Contains(got, "Error validating challenge") {
		t.Errorf("challenge error logged as %q", got)
	}
	origin := &protocol.Error{Type: "verification_error", Details: "Error validating origin", DevInfo: "Expected Values: [https://a], Received: https://b"}
	if got := describe(origin); !strings.Contains(got, "Received: https://b") {
		t.Errorf("origin error logged as %q, want its DevInfo", got)
	}
}

// TestCleanDescription: what a Bind description keeps and loses.
func TestCleanDescription(t *testing.T) {
	for in, want := range map[string]string{
		"Send 5 EUR to Ada":                  "Send 5 EUR to Ada",
		"Send\u202e 5\u2066 EUR\u2069\u200b": "Send 5 EUR",
		"a\x00b\tc\r\nd\x7fe\u0085f":         "a b c  d e f",
		"bad \xff\xfe utf-8":                 "bad \uFFFD utf-8",
		"\u00e9t\u00e9 \U0001F600":           "\u00e9t\u00e9 \U0001F600",
		strings.Repeat("\u00e9", 61):         strings.Repeat("\u00e9", 60), // cut at 120 bytes, on a rune
	} {
		if got := cleanDescription(in); got != want {
			t.Errorf("cleanDescription(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestVerifyResultJSON holds verifyResult.appendJSON to what encoding/json
// writes for it, with and without a token, and for strings that need
// escaping.
func TestVerifyResultJSON(t *testing.T) {
	for _, v := range []verifyResult{
		{Status: "ok", ReauthenticatedAt: "2026-12-03T13:05:37Z"},
		{Status: "ok", ReauthenticatedAt: "2026-12-03T13:05:37Z", Token: "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1In0.c2ln", TokenExpiresAt: "2026-12-03T13:10:37Z"},
		{Status: "<ok>", ReauthenticatedAt: "\u2028&\"\\\x01\xff", Token: "", TokenExpiresAt: "x"},
	} {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if got := v.appendJSON(nil); string(got) != string(want)+"\n" {
			t.Errorf("appendJSON wrote %s\nwant %s", got, want)
		}
	}
}
