// Package redisstore is a [stepup.Registry] kept in Redis, for applications
// that run stepup on more than one instance. It works on a single Redis
// server, with a failover client, and on Redis Cluster.
//
// # What it is for
//
// stepup keeps server-side state in a [stepup.Registry]: which challenges,
// single-use grants and sign-counter values were used, which grants were
// revoked, and how much of each user's limits (failed attempts, step-ups)
// is taken. The default, [stepup.MemoryRegistry], lives in one process:
// behind a load balancer, a challenge consumed on one instance could be
// answered again on another, a revoked grant would still open another
// instance's gates, and each instance would count attempts on its own. Give
// every instance a [Registry] on the same Redis instead, as Config.Registry,
// with the same session keys (see the example). It lives in its own module
// so that the stepup module itself does not depend on a Redis client.
//
// # Operations
//
// Each method is one Redis command or one Lua script, so each is atomic
// across any number of instances and clients:
//
//	Consume  SET key 1 NX PX ttl+skew; exactly one of concurrent calls gets true
//	Take     script: the first take makes the count 1 with the window as its
//	         expiry; later ones add 1 while under the limit, else refuse
//	         without counting; the window is never extended
//	Give     script: DECR only when the key exists and holds more than 0;
//	         never makes a key
//	Count    script: GET and PTTL together
//	Reset    DEL
//	Mark     script: keeps the greater value (compared exactly, as int64)
//	         and the later expiry, ttl+skew
//	Lookup   MGET; a missing key reads 0, a value that is not an integer is
//	         an error
//
// Take is how stepup bounds each user: every verify takes a unit of the
// user's failure limit and of the step-up limit before anything is checked.
// Because the check and the increment are one script, never more than limit
// calls get a unit in one window, however many instances ask at once.
//
// # Keys and Redis Cluster
//
// stepup's keys have the form "stepup:{tag}:kind:...", where tag is the
// user's handle in base64url: the failure and step-up counts
// ("stepup:{tag}:fail", "stepup:{tag}:stepups"), consumed challenges and
// sign-counter values (only hashes of them), used and revoked grants, and
// the user's revocation time ("stepup:{tag}:revoked"). [WithKeyPrefix] puts
// a prefix in front; it may not hold braces, so the hash tag stays the
// user's.
//
// Redis Cluster hashes only the part between braces, so every key of one
// user lives in one hash slot, on one master, and the keys of different
// users spread over all masters. Every script touches one key, and every
// Lookup stepup makes reads keys of one user (the gate: a grant and the
// user's revocation; the options handler: the user's two counts), so no
// operation ever spans two slots. A Lookup of keys with different tags would
// be refused by Redis Cluster with CROSSSLOT; redisstore refuses it first,
// on every deployment, with [ErrCrossSlot], so that such a mistake shows on a
// single server too.
//
// Every key has an expiry: the registry needs no clean-up. Under any
// maxmemory-policy but noeviction (the default), Redis may evict a consumed
// challenge or grant before it expires, which would let it be used again:
// keep the registry in a Redis that does not evict. Unlike
// [stepup.MemoryRegistry], which refuses the heaviest users first when it is
// nearly full, Redis at maxmemory refuses every write (OOM), and stepup then
// answers 503 to everyone; what one user can write is bounded by stepup's
// per-user limits (MaxStepUps verifies per StepUpWindow).
//
// # Clocks
//
// stepup computes the TTLs of consumed keys and marks on the calling
// instance's clock, from times written in a cookie (a challenge's expiry, a
// grant's time). An instance whose clock runs behind still takes a challenge
// or grant for valid a little after another instance's TTL for it has
// ended. So Consume and Mark keep their keys for ttl plus a margin,
// [WithClockSkew], one minute by default ([DefaultClockSkew]): enough for
// instances whose clocks agree within a minute. Keep clocks in sync (NTP)
// and the margin above their worst difference; use 0 only for a single
// instance. Take windows get no margin: a window is a length that Redis
// measures from the first Take, on no instance's clock.
//
// # Failing closed
//
// Every Redis error is returned to stepup, which answers 503
// service_unavailable and grants nothing; the next request works once Redis
// answers again. Every gate reads the registry (was this grant used or
// revoked since the cookie was copied?), so while Redis is unreachable,
// gated routes answer 503 as well as new step-ups; a failed verify that was
// our fault gives its units of the limits back. Set the client's timeouts
// and retries (DialTimeout, ReadTimeout, WriteTimeout, MaxRetries,
// DialerRetries) so that an outage fails fast.
//
// go-redis retries a command whose reply was lost. A retried Consume finds
// its own key and reports the challenge or grant as used, and a retried
// Take takes two units: both can only refuse. A retried Give gives back
// twice: the user may get one more attempt in that window. Mark, Reset and
// Lookup can be repeated without effect.
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
