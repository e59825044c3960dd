// The ceremonies over a stubbed server and a stubbed WebAuthn: what they
// send, what each answer becomes, and one ceremony at a time.

import { test } from "node:test";
import assert from "node:assert/strict";

import { reauthenticate, reauthenticateWithSecret } from "../src/index.js";
import { assertion, domError, json, never, serve, tick, waitingGet, webauthn } from "../testing.js";

const options = { challenge: "Y2hhbGxlbmdl", rpId: "app.test", allowCredentials: [{ type: "public-key", id: "Y3JlZA" }], userVerification: "required" };
const granted = { reauthenticated_at: "2026-12-03T10:00:00Z" };

test("passkey: options, get, verify, granted", async (t) => {
  const sent = serve(t, {
    "POST /api/reauth/options": () => json(200, options),
    "POST /api/reauth/verify": () => json(200, granted),
  });
  const { gets } = webauthn(t);
  const result = await reauthenticate({ scope: "billing", operation: { digest: "op-digest" } });
  assert.deepEqual(result, { ok: true, reauthenticatedAt: "2026-12-03T10:00:00Z" });

  assert.deepEqual(sent.map((s) => `${s.method} ${s.path}`), ["POST /api/reauth/options", "POST /api/reauth/verify"]);
  assert.deepEqual(JSON.parse(sent[0].body), { scope: "billing", operation: "op-digest" });
  assert.equal(sent[0].headers["content-type"], "application/json");

  // The browser got the options decoded, modal (nothing but publicKey and
  // the signal).
  assert.equal(gets.length, 1);
  assert.deepEqual(Object.keys(gets[0]).sort(), ["publicKey", "signal"]);
  const publicKey = /** @type {PublicKeyCredentialRequestOptions} */ (gets[0].publicKey);
  assert.equal(Buffer.from(/** @type {ArrayBuffer} */ (publicKey.challenge)).toString(), "challenge");
  assert.equal(Buffer.from(/** @type {ArrayBuffer} */ (publicKey.allowCredentials?.[0].id)).toString(), "cred");
  assert.equal(publicKey.userVerification, "required");

  // The assertion went as WebAuthn's JSON, base64url.
  assert.deepEqual(JSON.parse(sent[1].body), {
    id: "Y3JlZA",
    rawId: "Y3JlZA",
    type: "public-key",
    authenticatorAttachment: "platform",
    response: { clientDataJSON: "Y2xpZW50", authenticatorData: "YXV0aA", signature: "c2ln", userHandle: "YWRh" },
    clientExtensionResults: {},
  });
});

test("passkey: no scope or operation posts no body; the URLs are the page's", async (t) => {
  const sent = serve(t, {
    "POST /api/reauth/options": () => json(200, options),
    "POST /api/reauth/verify": () => json(200, granted),
    "POST /my/options": () => json(200, options),
    "POST /my/verify": () => json(200, granted),
  });
  webauthn(t);
  assert.equal((await reauthenticate()).ok, true);
  assert.equal(sent[0].body, "");
  assert.equal(sent[0].headers["content-type"], undefined);
  assert.equal((await reauthenticate({ optionsURL: "/my/options", verifyURL: "/my/verify" })).ok, true);
  assert.deepEqual(sent.slice(2).map((s) => s.path), ["/my/options", "/my/verify"]);
});

test("passkey: what goes wrong becomes a reason", async (t) => {
  /** @type {Array<[string, (t: import("node:test").TestContext) => void, {reason: string, message: RegExp}]>} */
  const cases = [
    ["prompt dismissed is cancelled", (t) => webauthn(t, domError("NotAllowedError")), { reason: "cancelled", message: /cancelled/ }],
    ["SecurityError is error", (t) => webauthn(t, domError("SecurityError")), { reason: "error", message: /not allowed to use passkeys/ }],
    ["no WebAuthn is error", () => {}, { reason: "error", message: /cannot use passkeys/ }],
    ["an unknown failure is error", (t) => webauthn(t, domError("UnknownError")), { reason: "error", message: /did not work/ }],
  ];
  for (const [name, setup, want] of cases) {
    await t.test(name, async (t) => {
      serve(t, { "POST /api/reauth/options": () => json(200, options), "POST /api/reauth/verify": () => json(200, granted) });
      setup(t);
      const result = await reauthenticate();
      assert.equal(result.ok, false);
      assert.equal(!result.ok && result.reason, want.reason);
      assert.match(!result.ok ? result.message : "", want.message);
    });
  }
});

test("passkey: a server's refusal is its code and message; the page's message for a code wins", async (t) => {
  serve(t, {
    "POST /api/reauth/options": () => json(200, options),
    "POST /api/reauth/verify": () => json(400, { error: "challenge_expired", message: "The confirmation expired." }),
  });
  webauthn(t);
  assert.deepEqual(await reauthenticate(), { ok: false, reason: "challenge_expired", message: "The confirmation expired." });
  assert.deepEqual(await reauthenticate({ messages: { challenge_expired: "Zu spät." } }), {
    ok: false,
    reason: "challenge_expired",
    message: "Zu spät.",
  });
});

test("passkey: an answer that is not JSON is error with its status", async (t) => {
  serve(t, { "POST /api/reauth/options": () => new Response("<html>bad gateway</html>", { status: 502 }) });
  const { gets } = webauthn(t);
  const result = await reauthenticate({ messages: { server: (status) => `Serverfehler ${status}` } });
  assert.deepEqual(result, { ok: false, reason: "error", message: "Serverfehler 502" });
  assert.equal(gets.length, 0, "no prompt without options");
});

test("passkey: a network failure is error (network)", async (t) => {
  const real = globalThis.fetch;
  globalThis.fetch = async () => {
    throw new TypeError("Failed to fetch");
  };
  t.after(() => {
    globalThis.fetch = real;
  });
  webauthn(t);
  const result = await reauthenticate({ messages: { network: "Offline." } });
  assert.deepEqual(result, { ok: false, reason: "error", message: "Offline." });
});

test("passkey: 404 unknown_credential tells the browser; 403 credential_not_owned does not", async (t) => {
  for (const [status, code, signalled] of /** @type {const} */ ([
    [404, "unknown_credential", true],
    [403, "credential_not_owned", false],
  ])) {
    await t.test(code, async (t) => {
      serve(t, { "POST /api/reauth/options": () => json(200, options), "POST /api/reauth/verify": () => json(status, { error: code, message: "no" }) });
      const { signals } = webauthn(t);
      const result = await reauthenticate();
      assert.equal(!result.ok && result.reason, code);
      assert.deepEqual(signals, signalled ? [{ rpId: "app.test", credentialId: "Y3JlZA" }] : []);
    });
  }
});

test("secret: posts the secret and the grant; wrong_secret and too_many_attempts are the server's", async (t) => {
  let answer = json(200, granted);
  const sent = serve(t, { "POST /api/reauth/password": () => answer });
  const ok = await reauthenticateWithSecret("/api/reauth/password", "hunter2", { scope: "billing", operation: "d1" });
  assert.deepEqual(ok, { ok: true, reauthenticatedAt: "2026-12-03T10:00:00Z" });
  assert.deepEqual(JSON.parse(sent[0].body), { secret: "hunter2", scope: "billing", operation: "d1" });

  answer = json(400, { error: "wrong_secret", message: "That is not right. Try again." });
  assert.deepEqual(await reauthenticateWithSecret("/api/reauth/password", "x"), {
    ok: false,
    reason: "wrong_secret",
    message: "That is not right. Try again.",
  });
  answer = json(429, { error: "too_many_attempts", message: "Too many attempts." });
  const limited = await reauthenticateWithSecret("/api/reauth/password", "x");
  assert.equal(!limited.ok && limited.reason, "too_many_attempts");
});

// One ceremony at a time: the newest wins, whatever the kind.

test("one at a time: a secret aborts a passkey prompt still open", async (t) => {
  serve(t, {
    "POST /api/reauth/options": () => json(200, options),
    "POST /api/reauth/password": () => json(200, granted),
  });
  const { gets } = webauthn(t, waitingGet);
  const passkey = reauthenticate();
  while (gets.length === 0) {
    await tick();
  }
  const secret = await reauthenticateWithSecret("/api/reauth/password", "hunter2");
  assert.equal(secret.ok, true);
  const first = await passkey;
  assert.equal(!first.ok && first.reason, "aborted");
  assert.equal(/** @type {AbortSignal} */ (gets[0].signal).aborted, true, "the prompt's signal was aborted");
});

test("one at a time: a passkey aborts a secret in flight, and its request", async (t) => {
  /** @type {AbortSignal | null} */
  let secretSignal = null;
  serve(t, {
    "POST /api/reauth/password": (_, signal) => {
      secretSignal = signal;
      return never(signal);
    },
    "POST /api/reauth/options": () => json(200, options),
    "POST /api/reauth/verify": () => json(200, granted),
  });
  webauthn(t);
  const secret = reauthenticateWithSecret("/api/reauth/password", "hunter2");
  while (!secretSignal) {
    await tick();
  }
  assert.equal((await reauthenticate()).ok, true);
  assert.deepEqual(await secret, { ok: false, reason: "aborted", message: "A newer confirmation replaced this one." });
  assert.equal(/** @type {AbortSignal} */ (/** @type {unknown} */ (secretSignal)).aborted, true);
});

test("one at a time: a second secret aborts the first", async (t) => {
  let n = 0;
  serve(t, {
    "POST /api/reauth/password": (_, signal) => (++n === 1 ? never(signal) : json(200, granted)),
  });
  const first = reauthenticateWithSecret("/api/reauth/password", "a");
  await tick();
  const second = await reauthenticateWithSecret("/api/reauth/password", "b");
  assert.equal(second.ok, true);
  assert.equal((await first).ok, false);
  assert.equal(/** @type {{reason: string}} */ (await first).reason, "aborted");
});

test("one at a time: a finished ceremony leaves nothing to abort", async (t) => {
  serve(t, { "POST /api/reauth/password": () => json(200, granted) });
  const first = reauthenticateWithSecret("/api/reauth/password", "a");
  assert.equal((await first).ok, true);
  assert.equal((await reauthenticateWithSecret("/api/reauth/password", "b")).ok, true);
  assert.equal((await first).ok, true, "the first stays granted");
});

test("one at a time: the page's signal aborts its ceremony", async (t) => {
  serve(t, { "POST /api/reauth/password": (_, signal) => never(signal) });
  const controller = new AbortController();
  const pending = reauthenticateWithSecret("/api/reauth/password", "a", { signal: controller.signal, messages: { aborted: "Abgebrochen." } });
  await tick();
  controller.abort();
  assert.deepEqual(await pending, { ok: false, reason: "aborted", message: "Abgebrochen." });

  // Already aborted: nothing is sent.
  const sent = serve(t, {});
  const again = await reauthenticateWithSecret("/api/reauth/password", "a", { signal: controller.signal });
  assert.equal(!again.ok && again.reason, "aborted");
  assert.equal(sent.length, 0);
});
