package stepupgin

import (
	"context"
	"net/http"
	"sync/atomic"

	"github.com/gin-gonic/gin"
)

// Where one request is in its passage through Middleware.
const (
	inMiddleware int32 = iota // mw is running and has not called next
	passed                    // mw called next and the rest of the chain ran (or runs)
	answered                  // mw called next after it wrote to the response: refused
	returned                  // mw returned
)

// chain is one request's passage through Middleware. It is also the context
// of the request given to mw, so that the next handler, made once, finds the
// gin.Context of the request it is called for.
type chain struct {
	context.Context
	c       *gin.Context
	state   atomic.Int32
	status  int  // c.Writer.Status() before mw ran
	written bool // c.Writer.Written() before mw ran
}

type chainKey struct{}

// Value returns ch for chainKey and asks the parent context otherwise.
func (ch *chain) Value(key any) any {
	if key == (chainKey{}) {
		return ch
	}
	return ch.Context.Value(key)
}

// Middleware adapts a net/http middleware, such as su.RequireRecentReauth(...), to Gin:
// the rest of the chain runs only when mw calls its next handler, with the request mw passed
// on (so GrantFrom and UserFrom work through c.Request); otherwise the chain is aborted.
//
// mw is applied once, here, to a next handler that continues Gin's chain.
// For each request, mw gets c.Writer, so that a status and body it writes
// reach the client and Gin's writer counts them (Status, Written), and
// c.Request with a context derived from the request's. Then:
//
//   - mw does not call next: c.Abort(). No later handler runs, whether it
//     was added to the route, to its group or with a later router.Use. The
//     response is what mw wrote.
//   - mw calls next: c.Request becomes the request mw passed on (it stays so
//     after the chain returns) and c.Next() runs the rest of the chain
//     inside mw's call. Use stepup.GrantFrom(c.Request.Context()); with
//     engine.ContextWithFallback set, stepup.GrantFrom(c) works too. A body
//     that mw read and replaced, as a Bind gate does, is the body the
//     handlers read.
//   - mw calls next after it wrote a status or a body: the chain does not
//     run and is aborted. A middleware that answered has refused; it is
//     not asked whether it meant otherwise.
//   - mw calls next a second time: that call panics, a bug in mw.
//   - mw calls next after it returned: nothing runs. mw must call next, if
//     at all, before it returns, and must not return before next returns.
//
// The rest of the chain writes to c.Writer: a ResponseWriter that mw wraps
// around the one it got and passes to next is not used. Middleware is for
// middleware that decides whether a request goes on and may add to it
// (gates, authentication); adapt one that rewrites responses otherwise.
//
// Middleware recovers nothing: a panic in mw or in the rest of the chain
// goes on up to gin.Recovery or the server. It panics if mw is nil or
// returns a nil handler.
func Middleware(mw func(http.Handler) http.Handler) gin.HandlerFunc {
	if mw == nil {
		panic("stepupgin: Middleware(nil)")
	}
	h := mw(http.HandlerFunc(next))
	if h == nil {
		panic("stepupgin: Middleware: the middleware returned a nil handler")
	}
	return func(c *gin.Context) {
		ch := &chain{Context: c.Request.Context(), c: c, status: c.Writer.Status(), written: c.Writer.Written()}
		h.ServeHTTP(c.Writer, c.Request.WithContext(ch))
		if ch.state.Swap(returned) != passed {
			c.Abort()
		}
	}
}

// next is the handler mw wraps: it runs the rest of the Gin chain of the
// request it is called for, at most once.
func next(_ http.ResponseWriter, r *http.Request) {
	ch, ok := r.Context().Value(chainKey{}).(*chain)
	if !ok {
		panic("stepupgin: the middleware passed on a request whose context does not derive from the one it got")
	}
	if !ch.state.CompareAndSwap(inMiddleware, passed) {
		if ch.state.Load() == returned {
			return // too late: the chain was aborted
		}
		panic("stepupgin: the middleware called its next handler twice")
	}
	c := ch.c
	if c.Writer.Status() != ch.status || c.Writer.Written() != ch.written {
		ch.state.Store(answered)
		return
	}
	c.Request = r
	c.Next()
}
