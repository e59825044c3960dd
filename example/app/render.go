package app

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
)

// pageNames are the templates in templates/, each drawn inside layout.html.
var pageNames = []string{"home.html", "account.html", "reauth.html", "data.html"}

func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.ParseFS(files, "templates/layout.html", "templates/"+name)
		if err != nil {
			return nil, fmt.Errorf("app: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// render draws a page into a buffer first, so that a template error is a
// clean 500 and not half a page.
func (s *server) render(w http.ResponseWriter, name string, p page) {
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		s.log.Error("demo.render_failed", "page", name, "cause", err.Error())
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", "no-store")
	}
	_, _ = buf.WriteTo(w)
}
