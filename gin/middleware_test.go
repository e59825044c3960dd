package stepupgin_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	stepupgin "github.com/passkey-stepup/stepup/gin"
)

func init() { gin.SetMode(gin.TestMode) }

type ctxKey struct{}

// recorded is what one request through serveThrough left behind.
type recorded struct {
	status    int
	body      string
	ran       []string // handlers after the adapter that ran, in order
	aborted   bool     // c.IsAborted() in the handler before the adapter, after c.Next()
	recovered any      // a panic that reached the recovery handler
	value     any      // ctxKey's value in the request the handler got
}

// serveThrough serves one GET through a Gin engine whose chain is: a
// recovery that records panics, a handler that records c.IsAborted() after
// c.Next(), prefix (handlers before the adapter), the adapted mw, a handler
// added with a later router.Use, and the route's handler, which answers
// 200 "handler ran".
func serveThrough(t *testing.T, mw func(http.Handler) http.Handler, prefix ...gin.HandlerFunc) recorded {
	t.Helper()
	var rec recorded
	r := gin.New()
	r.Use(gin.CustomRecovery(func(c *gin.Context, err any) {
		rec.recovered = err
		c.AbortWithStatus(http.StatusInternalServerError)
	}))
	r.Use(func(c *gin.Context) {
		c.Next()
		rec.aborted = c.IsAborted()
	})
	r.Use(prefix...)
	r.Use(stepupgin.Middleware(mw))
	r.Use(func(c *gin.Context) { rec.ran = append(rec.ran, "used later") })
	r.GET("/x", func(c *gin.Context) {
		rec.ran = append(rec.ran, "handler")
		rec.value = c.Request.Context().Value(ctxKey{})
		c.String(http.StatusOK, "handler ran")
	})
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/x", nil))
	rec.status, rec.body = w.Code, w.Body.String()
	return rec
}

// TestMiddlewareSemantics runs each documented case of Middleware with a
// small net/http middleware; the names end in the verdict.
func TestMiddlewareSemantics(t *testing.T) {
	tests := []struct {
		name     string
		mw       func(next http.Handler) http.Handler
		prefix   []gin.HandlerFunc
		wantRan  bool // the handler added later and the route's handler ran
		status   int
		body     string
		panicMsg string // a substring of the panic that reached recovery
		value    any
	}{
		{
			name:    "calls next: pass",
			mw:      func(next http.Handler) http.Handler { return next },
			wantRan: true, status: 200, body: "handler ran",
		},
		{
			name: "calls next with a request of its own: pass, the chain gets that request",
			mw: func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, "from mw")))
				})
			},
			wantRan: true, status: 200, body: "handler ran", value: "from mw",
		},
		{
			name: "an earlier handler set a status, mw calls next: pass",
			mw:   func(next http.Handler) http.Handler { return next },
			prefix: []gin.HandlerFunc{func(c *gin.Context) {
				c.Status(http.StatusAccepted)
			}},
			wantRan: true, status: 200, body: "handler ran",
		},
		{
			name: "writes a refusal, never calls next: abort",
			mw: func(http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					http.Error(w, "no", http.StatusForbidden)
				})
			},
			status: 403, body: "no\n",
		},
		{
			name: "writes nothing, never calls next: abort",
			mw: func(http.Handler) http.Handler {
				return http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
			},
			status: 200, body: "",
		},
		{
			name: "writes a body, then calls next: abort",
			mw: func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					http.Error(w, "no", http.StatusForbidden)
					next.ServeHTTP(w, r)
				})
			},
			status: 403, body: "no\n",
		},
		{
			name: "writes a status only, then calls next: abort",
			mw: func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.WriteHeader(http.StatusForbidden)
					next.ServeHTTP(w, r)
				})
			},
			status: 403, body: "",
		},
		{
			name: "calls next twice: panic",
			mw: func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					next.ServeHTTP(w, r)
					next.ServeHTTP(w, r)
				})
			},
			wantRan: true, status: 200, body: "handler ran", panicMsg: "called its next handler twice",
		},
		{
			name: "passes on a request with an unrelated context: panic",
			mw: func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					next.ServeHTTP(w, r.WithContext(context.Background()))
				})
			},
			status: 500, panicMsg: "does not derive",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := serveThrough(t, tt.mw, tt.prefix...)
			if rec.status != tt.status || rec.body != tt.body {
				t.Errorf("answered %d %q, want %d %q", rec.status, rec.body, tt.status, tt.body)
			}
			want := ""
			if tt.wantRan {
				want = "used later, handler"
			}
			if got := strings.Join(rec.ran, ", "); got != want {
				t.Errorf("after the adapter ran [%s], want [%s]", got, want)
			}
			if !tt.wantRan && tt.panicMsg == "" && !rec.aborted {
				t.Error("the chain was not aborted")
			}
			msg, _ := rec.recovered.(string)
			if tt.panicMsg == "" && rec.recovered != nil || !strings.Contains(msg, tt.panicMsg) {
				t.Errorf("recovered %v, want a panic with %q", rec.recovered, tt.panicMsg)
			}
			if rec.value != tt.value {
				t.Errorf("the handler's request carries %v, want %v", rec.value, tt.value)
			}
		})
	}
}

// TestNextAfterReturnRunsNothing: a middleware that keeps next and calls it
// after it returned runs nothing, and does not touch the gin.Context, which
// Gin hands to a later request: here the late call comes in the middle of
// the next request, which must still be served as itself. Gin's pool
// usually hands the same gin.Context back (the race detector's pool drops
// some), so the check is repeated.
func TestNextAfterReturnRunsNothing(t *testing.T) {
	var late func()
	var served []string
	r := gin.New()
	r.Use(stepupgin.Middleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if late != nil {
				late() // the previous request's next
			}
			late = func() { next.ServeHTTP(w, req) }
			if req.URL.Query().Get("pass") != "" {
				next.ServeHTTP(w, req)
			}
		})
	}))
	r.GET("/x", func(c *gin.Context) { served = append(served, c.Request.URL.RawQuery) })
	var want []string
	for i := range 20 {
		query := fmt.Sprintf("n=%d", i)
		if i%2 == 1 {
			query += "&pass=1"
			want = append(want, query)
		}
		r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x?"+query, nil))
	}
	if !slices.Equal(served, want) {
		t.Fatalf("the handler served %q, want %q", served, want)
	}
}

// TestWrappedWriterIsNotUsed documents that the chain writes to c.Writer,
// not to a ResponseWriter the middleware passes to next.
func TestWrappedWriterIsNotUsed(t *testing.T) {
	r := gin.New()
	r.Use(stepupgin.Middleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			next.ServeHTTP(upperWriter{w}, req)
		})
	}))
	r.GET("/x", func(c *gin.Context) { c.String(http.StatusOK, "lower") })
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/x", nil))
	if w.Body.String() != "lower" {
		t.Fatalf("body %q: the chain wrote through the middleware's writer", w.Body.String())
	}
}

type upperWriter struct{ http.ResponseWriter }

func (u upperWriter) Write(b []byte) (int, error) {
	return io.WriteString(u.ResponseWriter, strings.ToUpper(string(b)))
}

// TestMiddlewarePanicsAtWiring: a nil middleware, or one that returns a nil
// handler, panics when the route is built, not at the first request.
func TestMiddlewarePanicsAtWiring(t *testing.T) {
	for name, mw := range map[string]func(http.Handler) http.Handler{
		"nil middleware":      nil,
		"returns nil handler": func(http.Handler) http.Handler { return nil },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				msg, _ := recover().(string)
				if !strings.HasPrefix(msg, "stepupgin: Middleware") {
					t.Fatalf("recovered %q, want a stepupgin: Middleware panic", msg)
				}
			}()
			stepupgin.Middleware(mw)
		})
	}
}
