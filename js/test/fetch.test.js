// fetchWithStepUp over a stubbed server, with the page's own confirm (the
// default dialog needs a browser: e2e/), and a stubbed WebAuthn where the
// confirm picks the passkey.

import { test } from "node:test";
import assert from "node:assert/strict";

import { fetchWithStepUp, reauthenticateWithSecret } from "../src/index.js";
import { json, never, serve, stepUpRequired, tick, webauthn } from "../testing.js";

const granted = { reauthenticated_at: "2026-12-03T10:00:00Z" };
const options = { challenge: "Y2hhbGxlbmdl", rpId: "app.test" };
const PAY = "http://app.test/pay";

/**
 * gate answers 403 reauthentication_required (with extra in its body)
 * until a confirmation succeeds, then 200 with what it was sent.
 *
 * @param {object} [extra]
 */
function gate(extra) {
  const state = { fresh: false };
  return {
    state,
    route: (/** @type {import("../testing.js").Sent} */ req) =>
      state.fresh ? json(200, { sent: req.body, type: req.headers["content-type"] }) : stepUpRequired(extra),
    grant: () => {
      state.fresh = true;
      return json(200, granted);
    },
  };
}

/**
 * recorder is an onReauth that keeps the results.
 */
function recorder() {
  /** @type {import("../src/reasons.js").Result[]} */
  const results = [];
  return { results, onReauth: (/** @type {import("../src/reasons.js").Result} */ r) => results.push(r) };
}

test("retry: a secret confirmed, the identical request once more", async (t) => {
  const g = gate({ methods: ["password"], scope: "billing", operation: { digest: "d1", description: "Pay 5" } });
  const sent = serve(t, { "POST /pay": g.route, "POST /api/reauth/password": g.grant });
  /** @type {unknown[]} */
  const asked = [];
  const { results, onReauth } = recorder();
  const res = await fetchWithStepUp(
    PAY,
    { method: "POST", headers: { "Content-Type": "application/json", "X-Token": "t" }, body: JSON.stringify({ cents: 500 }) },
    {
      confirm: (info) => {
        asked.push(info);
        return { method: "password", secret: "hunter2" };
      },
      onReauth,
    },
  );
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { sent: '{"cents":500}', type: "application/json" });
  assert.deepEqual(results, [{ ok: true, reauthenticatedAt: "2026-12-03T10:00:00Z" }]);
  assert.equal(asked.length, 1);
  assert.deepEqual(/** @type {{methods: string[]}} */ (asked[0]).methods, ["password"]);

  assert.deepEqual(sent.map((s) => `${s.method} ${s.path}`), ["POST /pay", "POST /api/reauth/password", "POST /pay"]);
  assert.deepEqual(JSON.parse(sent[1].body), { secret: "hunter2", scope: "billing", operation: "d1" });
  // The same request, twice: method, headers, body.
  assert.deepEqual(sent[2], sent[0]);
  assert.equal(sent[2].headers["x-token"], "t");
});

test("retry: the passkey confirmed, with the 403's grant", async (t) => {
  const g = gate({ methods: ["passkey", "password"], scope: "billing" });
  const sent = serve(t, { "PUT /pay": g.route, "POST /api/reauth/options": () => json(200, options), "POST /api/reauth/verify": g.grant });
  const { gets } = webauthn(t);
  const res = await fetchWithStepUp(PAY, { method: "PUT", body: "x" }, { confirm: async () => true });
  assert.equal(res.status, 200);
  assert.equal(gets.length, 1);
  assert.deepEqual(JSON.parse(sent[1].body), { scope: "billing" });
  assert.deepEqual(sent.map((s) => s.path), ["/pay", "/api/reauth/options", "/api/reauth/verify", "/pay"]);
});

test("retry: once only; a second 403 is the answer", async (t) => {
  const sent = serve(t, { "POST /pay": () => stepUpRequired({ methods: ["password"] }), "POST /api/reauth/password": () => json(200, granted) });
  let asked = 0;
  const res = await fetchWithStepUp(PAY, { method: "POST" }, { confirm: () => (asked++, { method: "password", secret: "s" }) });
  assert.equal(res.status, 403);
  assert.equal(asked, 1);
  assert.deepEqual(sent.map((s) => s.path), ["/pay", "/api/reauth/password", "/pay"]);
});

test("no retry: answers other than 403 reauthentication_required are returned as they are", async (t) => {
  /** @type {Array<[string, () => Response]>} */
  const answers = [
    ["200", () => json(200, { ok: true })],
    ["403 of another kind", () => json(403, { error: "csrf", message: "no" })],
    ["403 not JSON", () => new Response("reauthentication_required", { status: 403 })],
    ["401", () => json(401, { error: "reauthentication_required" })],
  ];
  for (const [name, answer] of answers) {
    await t.test(name, async (t) => {
      const sent = serve(t, { "GET /pay": answer });
      let asked = 0;
      const res = await fetchWithStepUp(PAY, undefined, { confirm: () => (asked++, true) });
      assert.equal(res.status, answer().status);
      assert.equal(asked, 0);
      assert.equal(sent.length, 1);
    });
  }
});

test("no retry: a confirmation that did not succeed returns the first answer, and says why", async (t) => {
  /** @type {Array<[string, {methods?: string[]}, () => unknown, string, string[]]>} */
  const cases = [
    ["declined", { methods: ["passkey"] }, () => false, "cancelled", ["/pay"]],
    ["confirm throws", { methods: ["passkey"] }, () => Promise.reject(new Error("boom")), "cancelled", ["/pay"]],
    ["a passkey the gate does not take", { methods: ["password"] }, () => true, "no_method", ["/pay"]],
    ["a wrong secret", { methods: ["password"] }, () => ({ method: "password", secret: "nope" }), "wrong_secret", ["/pay", "/api/reauth/password"]],
  ];
  for (const [name, extra, confirm, reason, paths] of cases) {
    await t.test(name, async (t) => {
      const sent = serve(t, {
        "POST /pay": () => stepUpRequired(extra),
        "POST /api/reauth/password": () => json(400, { error: "wrong_secret", message: "That is not right. Try again." }),
      });
      webauthn(t);
      const { results, onReauth } = recorder();
      const res = await fetchWithStepUp(PAY, { method: "POST" }, { confirm: /** @type {any} */ (confirm), onReauth });
      assert.equal(res.status, 403);
      assert.deepEqual(await res.json(), { error: "reauthentication_required", message: "Confirm it's you to continue.", max_age: 300, ...extra }, "the first answer, unread");
      assert.equal(results.length, 1);
      assert.equal(!results[0].ok && results[0].reason, reason);
      assert.deepEqual(sent.map((s) => s.path), paths);
    });
  }
});

test("messages: the page's, for the client's reasons", async (t) => {
  serve(t, { "POST /pay": () => stepUpRequired({ methods: ["password"] }) });
  const { results, onReauth } = recorder();
  await fetchWithStepUp(PAY, { method: "POST" }, { confirm: () => true, onReauth, messages: { no_method: "Kein Weg." } });
  await fetchWithStepUp(PAY, { method: "POST" }, { confirm: () => false, onReauth, messages: { cancelled: "Abgebrochen." } });
  assert.deepEqual(results, [
    { ok: false, reason: "no_method", message: "Kein Weg." },
    { ok: false, reason: "cancelled", message: "Abgebrochen." },
  ]);
});

test("methodURL: where a secret goes", async (t) => {
  const g = gate({ methods: ["totp"] });
  const sent = serve(t, { "POST /pay": g.route, "POST /mfa/t%20otp": g.grant });
  const res = await fetchWithStepUp(PAY, { method: "POST" }, {
    confirm: () => ({ method: "t otp", secret: "123456" }),
    methodURL: (name) => `/mfa/${encodeURIComponent(name)}`,
  });
  assert.equal(res.status, 200);
  assert.equal(sent[1].path, "/mfa/t%20otp");
});

test("one at a time: a newer ceremony aborts the confirmation, and the first answer stands", async (t) => {
  const sent = serve(t, {
    "POST /pay": () => stepUpRequired({ methods: ["password"] }),
    "POST /api/reauth/password": (req, signal) => (JSON.parse(req.body).secret === "slow" ? never(signal) : json(200, granted)),
  });
  const { results, onReauth } = recorder();
  const pending = fetchWithStepUp(PAY, { method: "POST" }, { confirm: () => ({ method: "password", secret: "slow" }), onReauth });
  while (sent.length < 2) {
    await tick(); // until the slow secret is in flight
  }
  assert.equal((await reauthenticateWithSecret("/api/reauth/password", "fast")).ok, true);
  const res = await pending;
  assert.equal(res.status, 403);
  assert.equal(results.length, 1);
  assert.equal(!results[0].ok && results[0].reason, "aborted");
  assert.deepEqual(sent.map((s) => s.path), ["/pay", "/api/reauth/password", "/api/reauth/password"], "no retry");
});

test("one at a time: aborting the request aborts its confirmation", async (t) => {
  const sent = serve(t, {
    "POST /pay": () => stepUpRequired({ methods: ["password"] }),
    "POST /api/reauth/password": (_, signal) => never(signal),
  });
  const controller = new AbortController();
  /** @type {AbortSignal[]} */
  const confirmSignals = [];
  const { results, onReauth } = recorder();
  const pending = fetchWithStepUp(PAY, { method: "POST", signal: controller.signal }, {
    confirm: (_, { signal }) => {
      confirmSignals.push(signal);
      return { method: "password", secret: "s" };
    },
    onReauth,
  });
  while (sent.length < 2) {
    await tick();
  }
  controller.abort();
  const res = await pending;
  assert.equal(res.status, 403);
  assert.equal(!results[0].ok && results[0].reason, "aborted");
  assert.equal(confirmSignals.length, 1);
  assert.equal(confirmSignals[0].aborted, true, "confirm was given the request's signal");
});
