package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// Chromium through chromedp and the DevTools protocol; see driver_test.go.

type chromium struct{ ctx context.Context }

// startChromium starts one headless Chromium with a fresh profile (chromedp
// makes and removes it) for the rest of t.
func startChromium(t *testing.T, path string) browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(windowWidth, windowHeight),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	// The first Do binds the browser's life to its context, so it gets no
	// deadline; a watchdog bounds the start instead.
	watchdog := time.AfterFunc(browserStartTimeout, cancelBrowser)
	start := time.Now()
	err := chromedp.Do(ctx)
	watchdog.Stop()
	if err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	t.Logf("Chromium started in %v", time.Since(start).Round(time.Millisecond))
	return &chromium{ctx: ctx}
}

// chromiumPage is a tab in a browser context of its own, or a popup it
// opened.
type chromiumPage struct {
	ctx    context.Context // the tab, bounded by testTimeout
	auth   webauthn.AuthenticatorID
	opener context.Context // the tab that opened this popup; nil for a tab

	mu      sync.Mutex
	console []string
}

func (b *chromium) open(t *testing.T) page {
	t.Helper()
	tab, cancelTab := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancelTab)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	ctx, cancel := context.WithTimeout(tab, testTimeout)
	t.Cleanup(cancel)
	p := &chromiumPage{ctx: ctx}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			p.mu.Lock()
			p.console = append(p.console, m.String())
			p.mu.Unlock()
		}
	}()

	if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatalf("WebAuthn.enable: %v", err)
	}
	res, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
		Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol:            webauthn.AuthenticatorProtocolCtap2,
			Ctap2version:        webauthn.Ctap2versionCtap21,
			Transport:           webauthn.AuthenticatorTransportInternal,
			HasResidentKey:      true,
			HasUserVerification: true,
			IsUserVerified:      true,
			// Without it every ceremony waits for a touch that never comes.
			AutomaticPresenceSimulation: true,
		},
	})
	if err != nil {
		t.Fatalf("WebAuthn.addVirtualAuthenticator: %v", err)
	}
	p.auth = res.AuthenticatorID
	return p
}

func (p *chromiumPage) navigate(url string) error {
	return chromedp.Do(p.ctx, chromedp.Navigate(url))
}

// click clicks the middle of the element with the mouse.
func (p *chromiumPage) click(sel string) error {
	raw, err := p.eval(fmt.Sprintf(`(() => {
		const el = document.querySelector(%q);
		if (!el) return null;
		el.scrollIntoView({ block: "center" });
		const r = el.getBoundingClientRect();
		return { x: r.left + r.width / 2, y: r.top + r.height / 2 };
	})()`, sel))
	if err != nil {
		return err
	}
	var at *struct{ X, Y float64 }
	if err := json.Unmarshal(raw, &at); err != nil || at == nil {
		return fmt.Errorf("no element %s to click", sel)
	}
	return chromedp.Do(p.ctx, chromedp.MouseClickXY(at.X, at.Y))
}

func (p *chromiumPage) eval(expr string) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(p.ctx, evalTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		return nil, err
	}
	if len(v) == 0 { // undefined
		return json.RawMessage("null"), nil
	}
	return v, nil
}

func (p *chromiumPage) addScript(src string) error {
	_, err := chromedp.Call(p.ctx, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: src})
	return err
}

func (p *chromiumPage) credentials() ([]credential, error) {
	res, err := chromedp.Call(p.ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: p.auth})
	if err != nil {
		return nil, err
	}
	var creds []credential
	for _, c := range res.Credentials {
		creds = append(creds, credential{
			ID:         c.CredentialID,
			RPID:       c.RpID,
			Resident:   c.IsResidentCredential,
			UserHandle: c.UserHandle,
			SignCount:  int64(c.SignCount),
		})
	}
	return creds, nil
}

func (p *chromiumPage) addCredential(c credential) error {
	// cdproto's Credential always sends generateCmtgKeyOnNextOperation,
	// which this authenticator refuses ("CMTG is not supported"); send the
	// command with only the fields it needs. Binary fields are standard
	// base64 in the DevTools protocol.
	std := base64.StdEncoding.EncodeToString
	return chromedp.Do(p.ctx, chromedp.Func(func(ctx context.Context, tab *chromedp.Target) error {
		return tab.Call(ctx, webauthn.CommandAddCredential, map[string]any{
			"authenticatorId": p.auth,
			"credential": map[string]any{
				"credentialId":         std(c.ID),
				"isResidentCredential": c.Resident,
				"rpId":                 c.RPID,
				"privateKey":           std(c.PrivateKey),
				"userHandle":           std(c.UserHandle),
				"signCount":            c.SignCount,
			},
		}, nil)
	}))
}

func (p *chromiumPage) setUserVerified(ok bool) error {
	_, err := chromedp.Call(p.ctx, webauthn.SetUserVerified, webauthn.SetUserVerifiedParams{AuthenticatorID: p.auth, IsUserVerified: ok})
	return err
}

// press sends the key's down and up events (and a char event for a
// character) through the DevTools protocol: trusted events, with their
// default actions (Tab moves the focus, Enter activates).
func (p *chromiumPage) press(key string) error {
	var opts []chromedp.KeyOption
	switch key {
	case "Tab":
		key = kb.Tab
	case "Shift+Tab":
		key = kb.Tab
		opts = append(opts, chromedp.KeyModifiers(chromedp.ModifierShift))
	case "Enter":
		key = kb.Enter
	case "Escape":
		key = kb.Escape
	default:
		if utf8.RuneCountInString(key) != 1 {
			return fmt.Errorf("press: unknown key %q", key)
		}
	}
	return chromedp.Do(p.ctx, chromedp.KeyEvent(key, opts...))
}

// resize emulates a viewport of width by height CSS pixels for this tab.
// (Firefox has no such emulation over Marionette, and will not make a
// window narrower than 500 pixels.)
func (p *chromiumPage) resize(width, height int) error {
	return chromedp.Do(p.ctx, chromedp.EmulateViewport(int64(width), int64(height)))
}

// watchPopup listens for a new target whose opener is this page, from now
// on; the function it returns attaches to it.
func (p *chromiumPage) watchPopup() func() (page, error) {
	ctx, stop := context.WithTimeout(p.ctx, waitTimeout)
	ids := chromedp.WaitNewTarget(ctx, func(info *target.Info) bool { return info.Type == "page" })
	return func() (page, error) {
		defer stop()
		id, ok := <-ids
		if !ok || id == "" {
			return nil, fmt.Errorf("the page opened no window within %v", waitTimeout)
		}
		// Its life is the opener's: it goes when the test's tab does.
		popup, _ := chromedp.NewContext(p.ctx, chromedp.WithTargetID(id))
		if err := chromedp.Do(popup); err != nil {
			return nil, fmt.Errorf("attach to the popup: %w", err)
		}
		return &chromiumPage{ctx: popup, opener: p.ctx}, nil
	}
}

// closed reports whether the page's target is gone from the browser's
// list.
func (p *chromiumPage) closed() (bool, error) {
	list := p.ctx
	if p.opener != nil {
		list = p.opener // a closed popup's own context may be done
	}
	targets, err := chromedp.Targets(list)
	if err != nil {
		return false, err
	}
	id := chromedp.FromContext(p.ctx).Target.TargetID
	for _, t := range targets {
		if t.TargetID == id {
			return false, nil
		}
	}
	return true, nil
}

func (p *chromiumPage) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.console, "\n")
}
