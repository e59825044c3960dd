// Texts: message and label resolution, and no built-in method names.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";

import { LABELS, MESSAGES } from "../src/index.js";
import { messagesFrom, serverFailure, text, thrownFailure } from "../src/reasons.js";
import { describe, labelsFrom, methodLabels } from "../src/labels.js";

test("messages: English by default, the page's over them, a function of the status", () => {
  const m = messagesFrom({ cancelled: "Abgebrochen.", server: (s) => `Fehler ${s}` });
  assert.equal(text(m, "cancelled"), "Abgebrochen.");
  assert.equal(text(m, "aborted"), MESSAGES.aborted);
  assert.equal(text(m, "server", 502), "Fehler 502");
  assert.equal(text(messagesFrom(), "server", 502), "The server gave an unexpected answer (HTTP 502). Try again.");
  assert.equal(text(messagesFrom({ server: "Kaputt." }), "server", 502), "Kaputt.", "a string works too");
  assert.equal(text(m, "no_such_key"), MESSAGES.failed);
  assert.equal(text(messagesFrom({ network: "" }), "network"), MESSAGES.failed, "an empty message is no message");
  assert.ok(Object.isFrozen(MESSAGES));
});

test("messages: a server code keeps the server's message unless the page has one for it", () => {
  const answer = { status: 400, data: { error: "wrong_secret", message: "That is not right." } };
  assert.deepEqual(serverFailure(answer, messagesFrom()), { ok: false, reason: "wrong_secret", message: "That is not right." });
  assert.deepEqual(serverFailure(answer, messagesFrom({ wrong_secret: "Falsch." })), { ok: false, reason: "wrong_secret", message: "Falsch." });
  // No message from the server: the page's failed.
  assert.deepEqual(serverFailure({ status: 400, data: { error: "x" } }, messagesFrom({ failed: "Nein." })), { ok: false, reason: "x", message: "Nein." });
  // No code: "error", with the status.
  assert.deepEqual(serverFailure({ status: 500, data: null }, messagesFrom()), {
    ok: false,
    reason: "error",
    message: "The server gave an unexpected answer (HTTP 500). Try again.",
  });
  // A server code that is a client key, or a name from Object.prototype,
  // never takes a client default or an inherited value.
  assert.equal(serverFailure({ status: 400, data: { error: "network", message: "srv" } }, messagesFrom()).message, "srv");
  assert.equal(serverFailure({ status: 400, data: { error: "constructor", message: "srv" } }, messagesFrom()).message, "srv");
});

test("reasons: what a ceremony throws", () => {
  const m = messagesFrom();
  const live = new AbortController().signal;
  const dead = AbortSignal.abort();
  /** @type {Array<[unknown, AbortSignal, string, string]>} */
  const cases = [
    [new DOMException("x", "NotAllowedError"), live, "cancelled", MESSAGES.cancelled],
    [new DOMException("x", "SecurityError"), live, "error", MESSAGES.security],
    [new TypeError("Failed to fetch"), live, "error", MESSAGES.network],
    [new Error("other"), live, "error", MESSAGES.failed],
    ["not even an error", live, "error", MESSAGES.failed],
    [new DOMException("x", "NotAllowedError"), dead, "aborted", MESSAGES.aborted],
    [new TypeError("x"), dead, "aborted", MESSAGES.aborted],
  ];
  for (const [err, signal, reason, message] of cases) {
    assert.deepEqual(thrownFailure(err, signal, m), { ok: false, reason, message }, String(err));
  }
});

test("labels: no method is built in; a generic set from the server's name", () => {
  assert.deepEqual(Object.keys(LABELS.methods), []);
  assert.ok(Object.isFrozen(LABELS));
  const labels = labelsFrom();
  assert.deepEqual(methodLabels(labels, "password"), {
    name: "password",
    field: "Password",
    instead: "Use your password instead",
    button: "Confirm it's you",
    type: "password",
    autocomplete: "off",
  });
  assert.equal(methodLabels(labels, "passkey").instead, "Use your passkey instead");
  assert.deepEqual(methodLabels(labels, "sms_code"), {
    name: "sms code",
    field: "Sms code",
    instead: "Use your sms code instead",
    button: "Confirm it's you",
    type: "password",
    autocomplete: "off",
  });
  // A name from Object.prototype is a name like any other.
  assert.equal(methodLabels(labels, "constructor").field, "Constructor");
});

test("labels: the page's for a method, over its own method(), over the generic set", () => {
  const labels = labelsFrom({
    methods: { totp: { name: "Code", autocomplete: "one-time-code", type: "text" } },
    method: (name) => ({ instead: `Stattdessen ${name}` }),
  });
  assert.deepEqual(methodLabels(labels, "totp"), {
    name: "Code",
    field: "Totp",
    instead: "Stattdessen totp",
    button: "Confirm it's you",
    type: "text",
    autocomplete: "one-time-code",
  });
  assert.equal(methodLabels(labels, "password").instead, "Stattdessen password");
  assert.equal(labels.cancel, "Cancel", "left out: English");
});

test("labels: a method that finishes elsewhere speaks of the sign-in provider, whatever its name", () => {
  const labels = labelsFrom();
  for (const name of ["sso", "okta"]) {
    const m = methodLabels(labels, name, true);
    assert.equal(m.name, "sign-in provider");
    assert.equal(m.button, "Continue with your sign-in provider");
    assert.equal(m.instead, "Use your sign-in provider instead");
  }
  assert.equal(labels.externalPrompt("sign-in provider", "continue"), "Sign in again at your sign-in provider to continue.");
  // The page's, for the method, over its own externalMethod(), over the provider's.
  const own = labelsFrom({
    methods: { sso: { button: "Weiter mit Okta" } },
    externalMethod: (name) => ({ name: `Anmeldung (${name})`, instead: "Stattdessen anmelden" }),
  });
  assert.deepEqual(
    [methodLabels(own, "sso", true).button, methodLabels(own, "sso", true).name, methodLabels(own, "sso", true).instead],
    ["Weiter mit Okta", "Anmeldung (sso)", "Stattdessen anmelden"],
  );
  assert.equal(methodLabels(own, "other", true).button, "Continue with your sign-in provider");
  // A page's method() is for the methods that take a secret.
  assert.equal(methodLabels(labelsFrom({ method: () => ({ button: "X" }) }), "sso", true).button, "Continue with your sign-in provider");
  assert.equal(methodLabels(labelsFrom({ confirm: "Bestätigen" }), "password").button, "Bestätigen", "a secret's button is labels.confirm");
});

test("labels: noMethod is the page's label, else its no_method message, else English", () => {
  assert.equal(labelsFrom().noMethod, MESSAGES.no_method);
  assert.equal(labelsFrom({}, "Erst einrichten.").noMethod, "Erst einrichten.");
  assert.equal(labelsFrom({ noMethod: "Label." }, "Message.").noMethod, "Label.");
});

test("labels: the sentence says what, and for how long", () => {
  const labels = labelsFrom();
  assert.equal(describe({}, labels, labels.passkeyPrompt), "Use your passkey to continue.");
  assert.equal(
    describe({ action: "delete your account", max_age: 300 }, labels, labels.passkeyPrompt),
    "Use your passkey to delete your account. The confirmation is good for 5 minutes.",
  );
  assert.equal(describe({ max_age: 3600 }, labels, (a) => a), "continue The confirmation is good for 1 hour.");
  assert.equal(describe({ max_age: 90 }, labels, (a) => a), "continue The confirmation is good for 90 seconds.");
  assert.equal(
    describe({ max_age: 300, operation: { digest: "d" } }, labels, (a) => a),
    "continue The confirmation is for this request only.",
  );
  const de = labelsFrom({ defaultAction: "fortzufahren", goodFor: (n, unit) => `${n} ${unit}` });
  assert.equal(describe({ max_age: 120 }, de, (a) => `Um ${a}.`), "Um fortzufahren. 2 minute");
});

test("no method name but passkey in the source", () => {
  /** @type {string[]} */
  const literals = [];
  for (const file of readdirSync(new URL("../src/", import.meta.url))) {
    const code = readFileSync(new URL(`../src/${file}`, import.meta.url), "utf8")
      .split("\n")
      .filter((line) => !/^\s*(\/\/|\*|\/\*)/.test(line)) // not comments
      .join("\n");
    literals.push(...[...code.matchAll(/"([\w-]+)"/g)].map((m) => m[1]));
  }
  for (const name of ["totp", "otp", "sms", "one-time-code", "current-password"]) {
    assert.ok(!literals.includes(name), `the source names ${name}`);
  }
  // "password" once: the secret field's default input type, not a method.
  assert.equal(literals.filter((l) => l === "password").length, 1);
  assert.ok(literals.includes("passkey"));
});
