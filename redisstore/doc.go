// Package redisstore is a [stepup.Registry] kept in Redis, for applications
// that run stepup on more than one instance. It works on a single Redis
// server, with a failover client, and on Redis Cluster. It needs Redis 7.0
// or later.
//
// # What it is for
//
// stepup keeps server-side state in a [stepup.Registry]: which challenges
// are outstanding, which grants and sign-counter values were used, the
// revocation state of each user and step-up session, and how much of each
// user's limits (failed attempts, step-ups) is taken. The default,
// [stepup.MemoryRegistry], lives in one process: behind a load balancer, a
// challenge claimed on one instance could be answered again on another, a
// revoked grant would still open another instance's gates, and each instance
// would count attempts on its own. Give every instance a [Registry] on the
// same Redis instead, as Config.Registry, with the same session keys (see
// the example). It lives in its own module so that the stepup module itself
// does not depend on a Redis client.
//
// # One script per update
//
// The registry has one method, [Registry.Update], and each call is one run
// of one Lua script (EVALSHA; EVAL once after the script cache was flushed):
// one round trip, however many ops it holds, and atomic across any number
// of instances and clients. The script reads each key once (GET and PTTL),
// checks every condition against what it read, and only when all hold
// applies the ops in order and writes each key that changed once:
//
//	Get    reads; writes nothing
//	Take   count < Limit; the count + 1 (SET ... PX window for the first
//	       unit, SET ... KEEPTTL after: the window is never extended)
//	Below  count < Limit; writes nothing
//	Give   the count - 1 when above 0 (SET ... KEEPTTL); never makes a key
//	Put    SET value, PX TTL when that is later than the expiry it has
//	       (else KEEPTTL); a Value of 0 is DEL
//	Init   SET value PX TTL when absent; else only the later expiry
//	Swap   value == Value (0: absent); SET New as Put does (0: DEL)
//
// When a condition fails nothing is written and Update returns the index of
// the first failed op. Either way each result holds the value and the time
// left (PTTL) of its key before the update. Values are decimal int64
// strings, compared and counted up and down as strings, exactly over the
// whole int64 range (Lua's numbers are doubles, exact only to 2^53). A
// value that is not such a string (written by hand, say) is an error, never
// read as 0. TTLs are rounded up to whole milliseconds; an op that would make
// a key without a positive TTL is an error.
//
// Every condition is checked before the first write, and the script begins
// with "#!lua" (Redis 7.0 script flags), so Redis refuses it whole, before it
// runs, when it may not write: at maxmemory (OOM), or when the ACL user may
// not read and write one of its keys (NOPERM). An update is applied whole or
// not at all.
//
// Because each check and its write are one script, of concurrent updates
// never more than Limit get a unit of a limit in one window, and of
// concurrent claims of one challenge or grant (a Swap) exactly one wins,
// however many instances ask at once.
//
// # Keys and Redis Cluster
//
// stepup's keys have the form "stepup:{tag}:kind:...", where tag is the
// user's handle in base64url: the failure and step-up counts
// ("stepup:{tag}:fail", "stepup:{tag}:stepups"), outstanding challenges and
// used sign-counter values (only hashes of them), grants, and the
// revocation states of the user ("stepup:{tag}:epoch") and of each step-up
// session. [WithKeyPrefix] puts a prefix in front; it may not hold braces,
// so the hash tag stays the user's.
//
// Redis Cluster hashes only the part between braces, so every key of one
// user lives in one hash slot, on one master, and the keys of different
// users spread over all masters. All the keys of one Update stepup makes
// belong to one user, so no script ever spans two slots. An Update of keys
// with different tags would be refused by Redis Cluster with CROSSSLOT;
// redisstore refuses it first, before asking Redis, on every deployment,
// with [ErrCrossSlot], so that such a mistake shows on a single server too.
//
// Every key stepup makes has an expiry: the registry needs no clean-up. A
// key found without one (written by hand) counts as expiring now: an op that
// keeps a key for at least a TTL gives it that TTL, and a Take gives it its
// window at once, even when the update fails, so that such a count cannot
// lock a user out for good. Under any maxmemory-policy but noeviction (the
// default), Redis may evict a key before it expires. For challenges, grants
// and revocation states that fails closed (a missing key is never a pass:
// the user confirms again), but an evicted failure count or sign-counter
// value lets a user try more often than the limits say: keep the registry
// in a Redis that does not evict. Unlike [stepup.MemoryRegistry], which refuses
// the heaviest users first when it is nearly full, Redis at maxmemory
// refuses every update (OOM), and stepup then answers 503 to everyone; what
// one user can write is bounded by stepup's per-user limits.
//
// # Clocks
//
// Every expiry is a duration that Redis measures from the moment the script
// runs: a challenge's lifetime, a grant's, a Take's window. No time on an
// instance's clock is ever written to Redis or compared with one read from
// it, so single use and revocation do not depend on the clocks of the
// instances that share the registry, and no margin for clock skew is
// needed. (Earlier versions of this package added one, WithClockSkew; it is
// gone.) An instance's clock still judges what stepup keeps in the cookie,
// such as a grant's age at a gate.
//
// # Failing closed
//
// Every Redis error is returned to stepup, which answers 503
// service_unavailable and grants nothing; the next request works once Redis
// answers again. Every gate reads the registry, so while Redis is
// unreachable, gated routes answer 503 as well as new step-ups. Set the
// client's timeouts and retries (DialTimeout, ReadTimeout, WriteTimeout,
// MaxRetries, DialerRetries) so that an outage fails fast.
//
// go-redis retries a command whose reply was lost. A retried Update is
// checked again against what the first run left: a claim (Swap) finds its
// challenge or grant gone and refuses, so the user starts again, and a
// retried Take takes a second unit; both can only refuse. A retried Give
// gives a unit back twice: at most one more attempt in that window. Gets,
// and Puts of the same value, repeat without effect.
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
