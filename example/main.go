// Command example runs the stepup demo: a pretend bank with passkey and
// password sign-up and sign-in, whose sensitive actions ask you to confirm
// it's you.
//
// From the repository root:
//
//	go -C example run .
//
// then open http://localhost:8080. Nothing needs configuring: the accounts
// are kept in a SQLite file in your cache folder, so they are still there
// after a restart. Flags:
//
//	-addr     address to listen on (default localhost:8080)
//	-origin   the address the browser uses, if not http://<addr>
//	-db       the SQLite database file (default <user cache dir>/stepup-example/bank.db,
//	          or under the temporary folder); ":memory:" keeps everything in memory
//	-sso-dev  also run an OpenID provider in this process (its user and password are
//	          printed at start): sign in with SSO, then confirm at the provider to
//	          add a first passkey
//
// The step-up cookie keys come from STEPUP_HASH_KEY (32 or 64 bytes) and
// STEPUP_BLOCK_KEY (16, 24 or 32 bytes), hex-encoded, or are made at start.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/passkey-stepup/stepup/example/app"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "address to listen on")
	origin := flag.String("origin", "", "the origin the browser uses (default http://<addr>, with localhost for a loopback or empty host)")
	dbPath := flag.String("db", "", `the SQLite database file, or ":memory:" (default <user cache dir>/stepup-example/bank.db)`)
	ssoDev := flag.Bool("sso-dev", false, "also run an OpenID provider in this process, to sign in with SSO and confirm there")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*addr, *origin, *dbPath, *ssoDev, log); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}

func run(addr, origin, dbPath string, ssoDev bool, log *slog.Logger) error {
	if origin == "" {
		origin = originOf(addr)
	}
	if dbPath == "" {
		var err error
		if dbPath, err = defaultDBPath(); err != nil {
			return err
		}
	}
	db, err := app.OpenDB(dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	if dbPath == app.Memory {
		log.Info("accounts are kept in memory: they go when the demo stops")
	} else {
		log.Info("accounts are kept in a SQLite file (-db chooses another, -db :memory: none)", "db", dbPath)
	}
	hashKey, blockKey, err := keysFromEnv()
	if err != nil {
		return err
	}
	if hashKey == nil {
		log.Info("made new cookie keys: a restart signs everyone out; set STEPUP_HASH_KEY and STEPUP_BLOCK_KEY (hex) to stay signed in, and keep confirmations, across restarts")
	}
	opts := app.Options{Origin: origin, HashKey: hashKey, BlockKey: blockKey, DB: db, Logger: log}
	if ssoDev {
		slog.SetLogLoggerLevel(slog.LevelWarn) // the dev provider logs every request at INFO
		idp, err := app.StartDevProvider(origin)
		if err != nil {
			return err
		}
		defer idp.Close()
		opts.SSO = &idp.SSO
		fmt.Fprintf(os.Stderr, "SSO dev provider at %s: sign in as %s with the password %s\n", idp.Issuer, idp.Username, idp.Password)
	}
	handler, err := app.New(opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	fmt.Fprintf(os.Stderr, "Step-up demo: open %s in your browser (Ctrl-C stops it)\n", origin)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// originOf is the origin a browser uses for addr: http, with localhost for
// a loopback or empty host (WebAuthn refuses IP addresses as relying party).
func originOf(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// defaultDBPath is bank.db in a stepup-example folder of the user's cache
// folder (such as ~/.cache on Linux), or of the temporary folder when there
// is no cache folder. It makes the folder, readable only by the user.
func defaultDBPath() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "stepup-example")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("the database folder: %w", err)
	}
	return filepath.Join(dir, "bank.db"), nil
}

// keysFromEnv reads the step-up cookie keys, or returns nil keys when
// neither variable is set.
func keysFromEnv() (hashKey, blockKey []byte, err error) {
	h, b := os.Getenv("STEPUP_HASH_KEY"), os.Getenv("STEPUP_BLOCK_KEY")
	if h == "" && b == "" {
		return nil, nil, nil
	}
	if h == "" || b == "" {
		return nil, nil, errors.New("set both STEPUP_HASH_KEY and STEPUP_BLOCK_KEY, or neither")
	}
	if hashKey, err = hex.DecodeString(h); err != nil {
		return nil, nil, fmt.Errorf("STEPUP_HASH_KEY is not hex: %w", err)
	}
	if blockKey, err = hex.DecodeString(b); err != nil {
		return nil, nil, fmt.Errorf("STEPUP_BLOCK_KEY is not hex: %w", err)
	}
	return hashKey, blockKey, nil
}
