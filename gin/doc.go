// Package stepupgin runs stepup's gate, and any other net/http middleware
// that decides whether a request goes on, in a Gin chain:
//
//	gate := su.RequireRecentReauth(5 * time.Minute)
//	router.POST("/account/password", stepupgin.Middleware(gate), changePassword)
//
// stepup's ceremony handlers are plain handlers: mount them with gin.WrapH.
//
// # Why not gin.WrapH or a few lines of your own
//
// gin.WrapH(gate(h)) works only when the whole route is one net/http
// handler. A gate in front of Gin handlers needs an adapter, and the obvious
// one fails open:
//
//	func(c *gin.Context) { // do not use
//		gate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { c.Next() })).ServeHTTP(c.Writer, c.Request)
//	}
//
// When the gate refuses, it writes its 403 and returns; the wrapper returns
// too, and Gin runs the next handler of the chain anyway: the password is
// changed under a 403. It needs c.Abort() when the gate did not call next.
// And a handler that does run does not see the grant, because the gate
// passes on a new request (its context carries the grant and the user) that
// the wrapper drops: it needs c.Request = r. [Middleware] does both and
// defines the cases in between (see its documentation).
//
// Echo needs no such package: echo.WrapMiddleware aborts and sets the
// request as it should (see docs/routers.md in the stepup repository).
package stepupgin
