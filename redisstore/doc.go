// Package redisstore is a [stepup.Registry] kept in Redis, for applications
// that run stepup on more than one instance.
//
// # What it is for
//
// stepup makes each step-up challenge single use, and limits failed attempts
// per user, with a server-side [stepup.Registry]. The default,
// [stepup.MemoryRegistry], lives in one process: behind a load balancer, a
// challenge consumed on one instance could be answered again on another, and
// each instance would count failures on its own. Give every instance a
// [Registry] on the same Redis instead, as Config.Registry, with the same
// session keys (see the example). It lives in its own module so that the
// stepup module itself does not depend on a Redis client.
//
// # Keys
//
// stepup's keys are "stepup:challenge:" and a hash of a challenge (never the
// challenge itself), kept until shortly after the challenge expires;
// "stepup:grant:" and a grant's ID, for the single-use grants of Once and
// Bind gates, kept until shortly after the grant would have gone stale; and
// "stepup:fail:" and a user handle in base64url, kept for the failure window
// (15 minutes by default). [WithKeyPrefix] puts a prefix in front of them.
// Every key has an expiry: the registry needs no clean-up. Under any
// maxmemory-policy but noeviction (the default), Redis may evict a consumed
// challenge or grant before it expires, which would let it be used again:
// keep the registry in a Redis that does not evict.
//
// # Failing closed
//
// Every Redis error is returned to stepup, which answers 503
// service_unavailable and grants nothing; the next attempt works once Redis
// answers again. A plain gate (RequireRecentReauth without Once or Bind) does
// not use the registry, so a grant already made keeps opening it through an
// outage when the step-up session is in a cookie store; a single-use gate
// must record the use, and answers 503 until Redis is back. Set the client's
// timeouts and retries (DialTimeout, ReadTimeout, WriteTimeout, MaxRetries,
// DialerRetries) so that an outage fails fast. A command that go-redis
// retries after a lost reply can only refuse: a retried Consume finds its own
// key and reports the challenge or grant as used, and a retried AddFailure
// counts one failure twice.
//
// # Sessions in Redis
//
// The registry is independent of where the step-up session lives: a
// [sessions.CookieStore], or a server-side gorilla store backed by Redis such
// as github.com/boj/redistore. With a server-side store the step-up cookie
// holds only a session ID, but the registry is still needed: two requests
// with the same session that run at once (on two instances, say) both read
// the same pending challenge before either saves.
//
// [sessions.CookieStore]: https://pkg.go.dev/github.com/gorilla/sessions#CookieStore
package redisstore
