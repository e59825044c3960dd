package app

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/webauthn"
	"golang.org/x/crypto/argon2"

	"github.com/passkey-stepup/stepup"
)

// Password rules.
const (
	minPasswordLen = 8
	maxPasswordLen = 128
)

var passwordRule = fmt.Sprintf("Choose a password of %d to %d characters.", minPasswordLen, maxPasswordLen)

func validPassword(pw string) bool {
	n := utf8.RuneCountInString(pw)
	return n >= minPasswordLen && n <= maxPasswordLen && strings.TrimSpace(pw) != ""
}

// argonParams are the argon2id parameters of new hashes.
type argonParams struct {
	time, memory uint32 // iterations; memory in KiB
	threads      uint8
}

// passwordParams are OWASP's first recommendation for argon2id (19 MiB, 2
// iterations, 1 lane; about 0.1 s here). Stored hashes carry their own
// parameters, so raising these later leaves old hashes working. Tests
// lower them.
var passwordParams = argonParams{time: 2, memory: 19 * 1024, threads: 1}

const (
	saltLen = 16
	keyLen  = 32
)

var b64std = base64.RawStdEncoding

// hashPassword returns the argon2id hash of pw with a fresh salt, in the
// PHC string format: $argon2id$v=19$m=19456,t=2,p=1$salt$key.
func hashPassword(pw string) string {
	p := passwordParams
	salt := make([]byte, saltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(pw), salt, p.time, p.memory, p.threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memory, p.time, p.threads,
		b64std.EncodeToString(salt), b64std.EncodeToString(key))
}

// checkPassword reports whether pw matches the hash encoded, comparing the
// keys in constant time. An error means that encoded is not a hash this
// code made.
func checkPassword(encoded, pw string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false, errors.New("not an argon2id hash")
	}
	var p argonParams
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.time, &p.threads); err != nil {
		return false, fmt.Errorf("argon2id parameters: %w", err)
	}
	// Bounds, so that a damaged row cannot make one check take minutes.
	if p.time < 1 || p.time > 10 || p.memory < 8 || p.memory > 256*1024 || p.threads < 1 || p.threads > 16 {
		return false, fmt.Errorf("argon2id parameters out of range: %s", parts[3])
	}
	salt, err1 := b64std.DecodeString(parts[4])
	key, err2 := b64std.DecodeString(parts[5])
	if err := errors.Join(err1, err2); err != nil || len(salt) < 8 || len(key) < 16 || len(key) > 64 {
		return false, errors.New("argon2id salt or key malformed")
	}
	got := argon2.IDKey([]byte(pw), salt, p.time, p.memory, p.threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// dummyHash is checked against when a sign-in names no account, so that
// the answer takes as long as for a wrong password.
var dummyHash = sync.OnceValue(func() string { return hashPassword("no account has this password") })

// passwordMethod is stepup's "password" step-up method: re-entering the
// password confirms it's the user. stepup runs everything around the check
// (the per-user failure limit shared with passkeys, the grant, the events);
// the demo only says who has a password and whether it is right.
func passwordMethod() stepup.Method {
	return stepup.Method{
		Name: "password",
		AMR:  []string{"pwd"},
		Available: func(_ context.Context, u webauthn.User) (bool, error) {
			user, ok := u.(*User)
			return ok && user.hasPassword(), nil
		},
		Check: func(_ context.Context, u webauthn.User, secret string) error {
			user, ok := u.(*User)
			if !ok || !user.hasPassword() {
				return errors.New("password method: the user has no password")
			}
			match, err := checkPassword(user.PasswordHash, secret)
			if err != nil {
				return fmt.Errorf("password of %s: %w", b64(user.ID), err)
			}
			if !match {
				return fmt.Errorf("password of %s: %w", b64(user.ID), stepup.ErrWrongSecret)
			}
			return nil
		},
	}
}

// signInLimiter limits failed password sign-ins per account name: after
// maxSignInFailures in signInWindow (from the first failure), that name
// must wait for the window to end. stepup limits step-ups; the demo's own
// sign-in needs its own limit. It keeps at most maxLimitedNames names; past
// that, new names go unlimited until entries expire (good enough for a
// demo; a real service adds a limit per client address).
type signInLimiter struct {
	now func() time.Time

	mu       sync.Mutex
	failures map[string]failures
}

type failures struct {
	n     int
	until time.Time // the end of the window
}

const (
	maxSignInFailures = 5
	signInWindow      = 15 * time.Minute
	maxLimitedNames   = 10_000
)

// blocked reports whether name may not try now, and for how long.
func (l *signInLimiter) blocked(name string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.failures[foldName(name)]
	now := l.now()
	if !ok || !now.Before(f.until) || f.n < maxSignInFailures {
		return false, 0
	}
	return true, f.until.Sub(now)
}

// failed counts a failed sign-in of name.
func (l *signInLimiter) failed(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	key := foldName(name)
	f, ok := l.failures[key]
	if !ok || !now.Before(f.until) {
		if len(l.failures) >= maxLimitedNames {
			for k, v := range l.failures {
				if !now.Before(v.until) {
					delete(l.failures, k)
				}
			}
			if len(l.failures) >= maxLimitedNames {
				return
			}
		}
		f = failures{until: now.Add(signInWindow)}
	}
	f.n++
	l.failures[key] = f
}

// succeeded forgets the failures of name.
func (l *signInLimiter) succeeded(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failures, foldName(name))
}
