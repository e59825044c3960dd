// The methods that finish elsewhere (the oidc module's "sso"), over a stubbed
// server, window and location: the start, the popup, the callback page's
// message (a window message or the BroadcastChannel), the full-page
// fallback, and one ceremony at a time.

import { test } from "node:test";
import assert from "node:assert/strict";

import { fetchWithStepUp, reauthenticateExternal, reauthenticateWithSecret } from "../src/index.js";
import { readMessage } from "../src/external.js";
import { messagesFrom } from "../src/reasons.js";
import { browser, json, never, serve, stepUpRequired, until } from "../testing.js";

const AUTHORIZE = "https://idp.test/authorize?state=s1";
const started = { redirect: AUTHORIZE, state: "s1" };
const at = "2026-12-03T10:00:00Z";
const granted = { type: "stepup:external", method: "sso", state: "s1", ok: true, return_to: "/account", reauthenticated_at: at };

test("popup: the start, the popup sent to the provider, the callback's message", async (t) => {
  const sent = serve(t, { "POST /api/reauth/sso": () => json(200, started) });
  const { popups, post } = browser(t);
  const pending = reauthenticateExternal("sso", { scope: "billing", operation: { digest: "d1" } });
  assert.equal(popups.length, 1, "the popup opens at once, before anything is awaited");
  await until(() => popups[0].href !== "");
  assert.equal(popups[0].href, AUTHORIZE);
  assert.deepEqual(JSON.parse(sent[0].body), { scope: "billing", operation: "d1", return_to: "/account?tab=keys", popup: true });

  // Not ours: another origin, another start, another kind of message.
  post(granted, "https://idp.test");
  post({ ...granted, state: "s2" });
  post({ ...granted, type: "other" });
  post("stepup:external");
  post(granted);
  assert.deepEqual(await pending, { ok: true, reauthenticatedAt: at });
  assert.equal(popups[0].closed, true);
});

test("popup: the message on the BroadcastChannel, for when the provider cut window.opener", async (t) => {
  serve(t, { "POST /api/reauth/sso": () => json(200, started) });
  const { popups } = browser(t);
  const pending = reauthenticateExternal("sso");
  await until(() => popups[0].href !== "");
  const channel = new BroadcastChannel("stepup");
  t.after(() => channel.close());
  channel.postMessage({ ...granted, state: "s2" }); // another tab's
  channel.postMessage(granted);
  assert.deepEqual(await pending, { ok: true, reauthenticatedAt: at });
});

test("popup: what the callback page reports becomes a reason", async (t) => {
  /** @type {Array<[string, object, boolean, object]>} */
  const cases = [
    ["the provider's error is cancelled", { ok: false, error: "canceled", message: "You did not sign in." }, true, { reason: "cancelled", message: "The confirmation was cancelled." }],
    ["a refusal is its code and message", { ok: false, error: "verification_failed", message: "Sign in again." }, true, { reason: "verification_failed", message: "Sign in again." }],
    ["a refusal without a code is error", { ok: false }, true, { reason: "error", message: "The confirmation did not work. Try again." }],
  ];
  for (const [name, message, _, want] of cases) {
    await t.test(name, async (t) => {
      serve(t, { "POST /api/reauth/sso": () => json(200, started) });
      const { popups, post } = browser(t);
      const pending = reauthenticateExternal("sso");
      await until(() => popups[0].href !== "");
      post({ type: "stepup:external", method: "sso", state: "s1", ...message });
      assert.deepEqual(await pending, { ok: false, ...want });
      assert.equal(popups[0].closed, true);
    });
  }
});

test("popup: a refusal of a callback that found no start counts only from the popup", async (t) => {
  serve(t, { "POST /api/reauth/sso": () => json(200, started) });
  const { popups, post } = browser(t);
  const pending = reauthenticateExternal("sso");
  await until(() => popups[0].href !== "");
  const unknown = { type: "stepup:external", method: "sso", state: "", ok: false, error: "challenge_expired", message: "Start again." };
  post(unknown, undefined, {}); // another window of this site
  const channel = new BroadcastChannel("stepup");
  t.after(() => channel.close());
  channel.postMessage(unknown); // any tab of this site
  post({ ...unknown, ok: true }); // never a grant without its state
  post(unknown);
  assert.deepEqual(await pending, { ok: false, reason: "challenge_expired", message: "Start again." });
});

test("popup: closed without a message is cancelled", async (t) => {
  serve(t, { "POST /api/reauth/sso": () => json(200, started) });
  const { popups } = browser(t);
  const pending = reauthenticateExternal("sso", { messages: { cancelled: "Abgebrochen." } });
  await until(() => popups[0].href !== "");
  popups[0].close();
  assert.deepEqual(await pending, { ok: false, reason: "cancelled", message: "Abgebrochen." });
});

test("popup: a message sent just before the popup closed still counts", async (t) => {
  serve(t, { "POST /api/reauth/sso": () => json(200, started) });
  const { popups, post } = browser(t);
  const pending = reauthenticateExternal("sso");
  await until(() => popups[0].href !== "");
  popups[0].close();
  await new Promise((resolve) => setTimeout(resolve, 400)); // the popup is seen closed
  post(granted);
  assert.equal((await pending).ok, true);
});

test("popup: a refused start closes the popup and says why", async (t) => {
  /** @type {Array<[string, () => Response, string]>} */
  const cases = [
    ["409", () => json(409, { error: "method_unavailable", message: "Not set up." }), "method_unavailable"],
    ["not JSON", () => new Response("<html>", { status: 502 }), "error"],
    ["no state", () => json(200, { redirect: AUTHORIZE }), "error"],
    ["a redirect that is not a web URL", () => json(200, { redirect: "javascript:alert(1)", state: "s1" }), "error"],
  ];
  for (const [name, answer, reason] of cases) {
    await t.test(name, async (t) => {
      serve(t, { "POST /api/reauth/sso": answer });
      const { popups } = browser(t);
      const result = await reauthenticateExternal("sso");
      assert.equal(!result.ok && result.reason, reason);
      assert.equal(popups[0].closed, true);
      assert.equal(popups[0].href, "", "the popup went nowhere");
    });
  }
});

test("blocked popup: the start says popup false, and the page goes to the provider", async (t) => {
  const sent = serve(t, { "POST /mfa/sso": () => json(200, started) });
  const { assigned } = browser(t, { blocked: true });
  const result = await reauthenticateExternal("sso", { methodURL: (name) => `/mfa/${name}`, returnTo: "/settings#keys" });
  assert.deepEqual(result, { ok: false, reason: "redirected", message: "Taking you to your sign-in provider…" });
  assert.deepEqual(JSON.parse(sent[0].body), { return_to: "/settings#keys", popup: false });
  assert.deepEqual(assigned, [AUTHORIZE]);
});

test("popup false: no popup, the page goes to the provider", async (t) => {
  const sent = serve(t, { "POST /api/reauth/sso": () => json(200, started) });
  const { assigned, popups } = browser(t);
  const result = await reauthenticateExternal("sso", { popup: false });
  assert.equal(!result.ok && result.reason, "redirected");
  assert.equal(popups.length, 0);
  assert.deepEqual(JSON.parse(sent[0].body), { return_to: "/account?tab=keys", popup: false });
  assert.deepEqual(assigned, [AUTHORIZE]);
});

test("one at a time: a newer ceremony closes the popup", async (t) => {
  serve(t, { "POST /api/reauth/sso": () => json(200, started), "POST /api/reauth/password": () => json(200, { reauthenticated_at: at }) });
  const { popups } = browser(t);
  const pending = reauthenticateExternal("sso");
  await until(() => popups[0].href !== "");
  assert.equal((await reauthenticateWithSecret("/api/reauth/password", "pw")).ok, true);
  const result = await pending;
  assert.equal(!result.ok && result.reason, "aborted");
  assert.equal(popups[0].closed, true);
});

test("one at a time: the page's signal closes the popup, also while the start is in flight", async (t) => {
  serve(t, { "POST /api/reauth/sso": (_, signal) => never(signal) });
  const { popups } = browser(t);
  const controller = new AbortController();
  const pending = reauthenticateExternal("sso", { signal: controller.signal });
  controller.abort();
  const result = await pending;
  assert.equal(!result.ok && result.reason, "aborted");
  assert.equal(popups[0].closed, true);

  // Already aborted: no popup, no request.
  const sent = serve(t, {});
  const again = await reauthenticateExternal("sso", { signal: controller.signal });
  assert.equal(!again.ok && again.reason, "aborted");
  assert.equal(popups.length, 1);
  assert.equal(sent.length, 0);
});

test("fetchWithStepUp: a confirm that picks a method the 403 lists as external, then the retry", async (t) => {
  for (const [name, extra, options] of [
    ["from the 403", { methods: ["sso"], external: ["sso"], scope: "keys" }, {}],
    ["from the page", { methods: ["passkey", "sso"], scope: "keys" }, { external: ["sso"] }],
  ]) {
    await t.test(name, async (t) => {
      let fresh = false;
      const sent = serve(t, {
        "POST /keys": () => (fresh ? json(200, { added: true }) : stepUpRequired(extra)),
        "POST /api/reauth/sso": () => json(200, started),
      });
      const { popups, post } = browser(t);
      /** @type {unknown[]} */
      const results = [];
      const pending = fetchWithStepUp("http://app.test/keys", { method: "POST", body: "k" }, {
        ...options,
        confirm: () => ({ method: "sso" }),
        onReauth: (r) => results.push(r),
      });
      await until(() => popups.length === 1 && popups[0].href !== "");
      assert.deepEqual(JSON.parse(sent[1].body), { scope: "keys", return_to: "/account?tab=keys", popup: true });
      fresh = true; // the callback made the grant
      post(granted);
      const res = await pending;
      assert.equal(res.status, 200);
      assert.deepEqual(results, [{ ok: true, reauthenticatedAt: at }]);
      assert.deepEqual(sent.map((s) => s.path), ["/keys", "/api/reauth/sso", "/keys"]);
    });
  }
});

test("fetchWithStepUp: a method not listed as external is a secret's", async (t) => {
  const sent = serve(t, { "POST /keys": () => stepUpRequired({ methods: ["sso"] }), "POST /api/reauth/sso": () => json(400, { error: "invalid_request", message: "no" }) });
  const { popups } = browser(t);
  await fetchWithStepUp("http://app.test/keys", { method: "POST" }, { confirm: () => ({ method: "sso", secret: "x" }) });
  assert.equal(popups.length, 0);
  assert.deepEqual(JSON.parse(sent[1].body), { secret: "x" });
});

test("readMessage: only a stepup:external message about this start", () => {
  const m = messagesFrom();
  assert.equal(readMessage(null, "s1", true, m), null);
  assert.equal(readMessage({ ...granted, state: undefined }, "s1", true, m), null);
  assert.equal(readMessage({ ...granted, state: "" }, "s1", true, m), null, "a grant always names its start");
  assert.deepEqual(readMessage(granted, "s1", false, m), { ok: true, reauthenticatedAt: at });
  const without = readMessage({ ...granted, reauthenticated_at: undefined }, "s1", false, m);
  assert.ok(without && without.ok && !Number.isNaN(Date.parse(without.reauthenticatedAt)), "a page without the time: now");
  assert.deepEqual(readMessage({ type: "stepup:external", state: "", ok: false, error: "x", message: "y" }, "s1", true, m), { ok: false, reason: "x", message: "y" });
  assert.equal(readMessage({ type: "stepup:external", state: "", ok: false, error: "x" }, "s1", false, m), null);
});
