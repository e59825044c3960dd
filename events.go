package stepup

import (
	"encoding/base64"
	"log/slog"
	"net/http"
)

// event logs a security event. Event names are stable ("stepup." followed
// by the event) and attributes never carry challenges, signatures or cookie
// values; user handles and credential IDs are base64url.
func (s *StepUp) event(r *http.Request, level slog.Level, name string, attrs ...slog.Attr) {
	s.log.LogAttrs(r.Context(), level, name, attrs...)
}

func userAttr(handle []byte) slog.Attr { return slog.String("user", b64(handle)) }

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
