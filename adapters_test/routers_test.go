package adapters_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/go-chi/chi/v5"
	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/fiber/v3/middleware/adaptor"
	"github.com/labstack/echo/v4"

	"github.com/passkey-stepup/stepup"
	stepupgin "github.com/passkey-stepup/stepup/gin"
)

func init() { gin.SetMode(gin.TestMode) }

func httpServer(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// The net/http handlers of the standard mux and chi.

func (a *app) laterHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.sawLater(r.Context())
		next.ServeHTTP(w, r)
	})
}

func (a *app) passwordHTTP(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, a.sawHandler(r.Context()))
}

func (a *app) paymentHTTP(w http.ResponseWriter, r *http.Request) {
	var p payment
	err := json.NewDecoder(r.Body).Decode(&p)
	status, msg := a.paid(p, err)
	w.WriteHeader(status)
	io.WriteString(w, msg)
}

func serveMux(t *testing.T, a *app) string {
	mux := http.NewServeMux()
	mux.Handle("POST /api/reauth/options", a.su.OptionsHandler())
	mux.Handle("POST /api/reauth/verify", a.su.VerifyHandler())
	mux.Handle("POST /account/password", a.passwordGate()(a.laterHTTP(http.HandlerFunc(a.passwordHTTP))))
	mux.Handle("POST /payments", a.paymentGate()(http.HandlerFunc(a.paymentHTTP)))
	return httpServer(t, mux)
}

func serveChi(t *testing.T, a *app) string {
	r := chi.NewRouter()
	r.Method(http.MethodPost, "/api/reauth/options", a.su.OptionsHandler())
	r.Method(http.MethodPost, "/api/reauth/verify", a.su.VerifyHandler())
	r.With(a.passwordGate(), a.laterHTTP).Post("/account/password", a.passwordHTTP)
	r.With(a.paymentGate()).Post("/payments", a.paymentHTTP)
	return httpServer(t, r)
}

func serveGin(t *testing.T, a *app) string {
	r := gin.New()
	r.POST("/api/reauth/options", gin.WrapH(a.su.OptionsHandler()))
	r.POST("/api/reauth/verify", gin.WrapH(a.su.VerifyHandler()))
	r.POST("/payments", stepupgin.Middleware(a.paymentGate()), func(c *gin.Context) {
		var p payment
		err := c.ShouldBindJSON(&p)
		c.String(a.paid(p, err))
	})
	account := r.Group("/account")
	account.Use(stepupgin.Middleware(a.passwordGate()))
	account.Use(func(c *gin.Context) { a.sawLater(c.Request.Context()) })
	account.POST("/password", func(c *gin.Context) {
		c.String(http.StatusOK, a.sawHandler(c.Request.Context()))
	})
	return httpServer(t, r)
}

func serveEcho(t *testing.T, a *app) string {
	e := echo.New()
	e.POST("/api/reauth/options", echo.WrapHandler(a.su.OptionsHandler()))
	e.POST("/api/reauth/verify", echo.WrapHandler(a.su.VerifyHandler()))
	e.POST("/payments", func(c echo.Context) error {
		var p payment
		err := c.Bind(&p)
		return c.String(a.paid(p, err))
	}, echo.WrapMiddleware(a.paymentGate()))
	account := e.Group("/account")
	account.Use(echo.WrapMiddleware(a.passwordGate()))
	account.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			a.sawLater(c.Request().Context())
			return next(c)
		}
	})
	account.POST("/password", func(c echo.Context) error {
		return c.String(http.StatusOK, a.sawHandler(c.Request().Context()))
	})
	return httpServer(t, e)
}

// fiberContext returns where a Fiber handler could find the gate's grant:
// c.RequestCtx(), into which adaptor.HTTPMiddleware copies the values of
// the net/http request's context that it can find, else c.Context().
func fiberContext(c fiber.Ctx) context.Context {
	if _, ok := stepup.GrantFrom(c.RequestCtx()); ok {
		return c.RequestCtx()
	}
	return c.Context()
}

func serveFiber(t *testing.T, a *app) string {
	f := fiber.New()
	f.Post("/api/reauth/options", adaptor.HTTPHandler(a.su.OptionsHandler()))
	f.Post("/api/reauth/verify", adaptor.HTTPHandler(a.su.VerifyHandler()))
	f.Post("/payments", adaptor.HTTPMiddleware(a.paymentGate()), func(c fiber.Ctx) error {
		var p payment
		err := c.Bind().JSON(&p)
		status, msg := a.paid(p, err)
		return c.Status(status).SendString(msg)
	})
	account := f.Group("/account")
	account.Use(adaptor.HTTPMiddleware(a.passwordGate()))
	account.Use(func(c fiber.Ctx) error {
		a.sawLater(fiberContext(c))
		return c.Next()
	})
	account.Post("/password", func(c fiber.Ctx) error {
		return c.SendString(a.sawHandler(fiberContext(c)))
	})
	return fiberServer(t, f)
}

// serveFiberHTTP mounts each gated route as one net/http handler, gate and
// handlers together, with adaptor.HTTPHandler.
func serveFiberHTTP(t *testing.T, a *app) string {
	f := fiber.New()
	f.Post("/api/reauth/options", adaptor.HTTPHandler(a.su.OptionsHandler()))
	f.Post("/api/reauth/verify", adaptor.HTTPHandler(a.su.VerifyHandler()))
	f.Post("/account/password", adaptor.HTTPHandler(a.passwordGate()(a.laterHTTP(http.HandlerFunc(a.passwordHTTP)))))
	f.Post("/payments", adaptor.HTTPHandler(a.paymentGate()(http.HandlerFunc(a.paymentHTTP))))
	return fiberServer(t, f)
}

// fiberServer serves f on a loopback port until the test ends.
func fiberServer(t *testing.T, f *fiber.App) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go f.Listener(ln, fiber.ListenConfig{DisableStartupMessage: true})
	t.Cleanup(func() { f.Shutdown() })
	return "http://" + ln.Addr().String()
}
