package stepup

import (
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
