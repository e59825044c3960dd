package adapters_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/fiber/v3/middleware/adaptor"
)

type withValueKey struct{}

type ownTypeKey struct{}

// ownType is a context of its own type that answers ownTypeKey itself, as
// stepup's gate context answers its key.
type ownType struct{ context.Context }

func (c ownType) Value(key any) any {
	if key == (ownTypeKey{}) {
		return "own type"
	}
	return c.Context.Value(key)
}

// TestFiberCopiesOnlyWithValue shows why a Fiber handler finds no grant
// (TestRouters): adaptor.HTTPMiddleware (Fiber v3.1.0) runs the Fiber chain
// after the net/http middleware returned and hands it only the context
// values it copies by reflection from the standard library's context
// types. A context.WithValue value arrives; a value that a context type of
// its own answers, as stepup's gate context does, does not.
func TestFiberCopiesOnlyWithValue(t *testing.T) {
	f := fiber.New()
	f.Use(adaptor.HTTPMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := context.WithValue(r.Context(), withValueKey{}, "with value")
			next.ServeHTTP(w, r.WithContext(ownType{ctx}))
		})
	}))
	f.Get("/", func(c fiber.Ctx) error {
		return c.SendString(fmt.Sprintf("%v, %v", c.RequestCtx().Value(withValueKey{}), c.RequestCtx().Value(ownTypeKey{})))
	})
	resp, err := f.Test(httptest.NewRequest(http.MethodGet, "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if want := "with value, <nil>"; string(body) != want {
		t.Errorf("the Fiber handler found %q, want %q: has Fiber's adaptor changed? See docs/routers.md", body, want)
	}
}
