// @ts-check
// The texts of the dialogs --------------------------------------------------
//
// Every text the dialogs show comes from the page's labels, else LABELS
// (English). The client knows one method by name, "passkey", the ceremony
// it runs itself; every other method is a name the server sent, and its
// texts come from labels.methods[name], else from labels.method(name), a
// generic one built from the name ("password" → "Password", "Use your
// password instead"); for a method that finishes elsewhere (the 403's
// "external"), from labels.externalMethod(name), which speaks of "your
// sign-in provider".

import { MESSAGES, hasOwn } from "./reasons.js";

/**
 * The texts (and field settings) of one method. type and autocomplete are
 * the secret's field's (default "password" and "off"): pass
 * autocomplete: "current-password" for a password, "one-time-code" for a
 * code.
 *
 * button is the text of the dialog's confirm button while the method is
 * shown: labels.confirm by default, "Continue with your sign-in provider"
 * for a method that finishes elsewhere.
 *
 * @typedef {{name?: string, field?: string, instead?: string, button?: string, type?: string, autocomplete?: string}} MethodLabels
 */

/**
 * @typedef {object} Labels
 * @property {string} title
 * @property {string} confirm
 * @property {string} cancel
 * @property {string} close
 * @property {string} defaultAction
 * @property {(action: string) => string} passkeyPrompt
 * @property {(method: string, action: string) => string} secretPrompt
 * @property {(method: string, action: string) => string} externalPrompt
 * @property {string} externalWaiting
 * @property {string} forThisRequest
 * @property {(n: number, unit: "hour" | "minute" | "second") => string} goodFor
 * @property {string} noMethod
 * @property {string} wrongSecret
 * @property {string} working
 * @property {Record<string, MethodLabels>} methods
 * @property {(name: string) => MethodLabels} method
 * @property {(name: string) => MethodLabels} externalMethod
 */

/**
 * The texts of the dialogs, in English. Pass your own as options.labels (to
 * fetchWithStepUp, stepUpDialog or confirmDialog): any text left out keeps
 * its English default. Functions get what they need to build a sentence.
 *
 * @type {Readonly<Labels>}
 */
export const LABELS = Object.freeze({
  title: "Confirm it's you",
  confirm: "Confirm it's you",
  cancel: "Cancel",
  close: "Close",
  // The sentence before the confirmation; action is info.action or
  // defaultAction.
  defaultAction: "continue",
  passkeyPrompt: (action) => `Use your passkey to ${action}.`,
  secretPrompt: (method, action) => `Enter your ${method} to ${action}.`,
  // A method that finishes elsewhere (method is its name in a sentence),
  // and what the dialog says while the popup is open.
  externalPrompt: (method, action) => `Sign in again at your ${method} to ${action}.`,
  externalWaiting: "Waiting for you to sign in, in the window that opened…",
  forThisRequest: "The confirmation is for this request only.",
  goodFor: (n, unit) => `The confirmation is good for ${n === 1 ? `1 ${unit}` : `${n} ${unit}s`}.`, // unit: "hour", "minute" or "second"
  // Without labels.noMethod, the dialog says messages.no_method.
  noMethod: MESSAGES.no_method,
  wrongSecret: "That is not right. Try again.",
  working: "Checking…",
  // Per method name, as the server sends it: its name in a sentence, the
  // label of its field, the button that switches to it, and the field's
  // type and autocomplete. None is built in: see method.
  methods: Object.freeze({}),
  // For a method not in methods: texts built from its name.
  method: genericLabels,
  // For a method that finishes elsewhere and is not in methods: the
  // provider's texts, whatever its name.
  externalMethod: providerLabels,
});

/**
 * genericLabels are the texts of a method that the page has none for,
 * built from the name the server sent: "password" is "password" in a
 * sentence, "Password" on its field and "Use your password instead" on the
 * button; "-" and "_" are spaces.
 *
 * @param {string} name
 * @returns {{name: string, field: string, instead: string}}
 */
function genericLabels(name) {
  const words = name.replace(/[-_]+/g, " ").trim() || name;
  return { name: words, field: words.charAt(0).toUpperCase() + words.slice(1), instead: `Use your ${words} instead` };
}

/**
 * providerLabels are the texts of a method that finishes elsewhere (a
 * sign-in at the user's identity provider) that the page has none for.
 *
 * @param {string} _name
 * @returns {{name: string, instead: string, button: string}}
 */
function providerLabels(_name) {
  return { name: "sign-in provider", instead: "Use your sign-in provider instead", button: "Continue with your sign-in provider" };
}

/**
 * labelsFrom is LABELS with the page's own over it. A page's noMethod
 * wins; without it the dialog says noMethod, the page's message for the
 * reason no_method when it has one.
 *
 * @param {Partial<Labels>} [custom]
 * @param {string} [noMethod] the page's messages.no_method, if any
 * @returns {Labels}
 */
export function labelsFrom(custom = {}, noMethod) {
  const own = custom && typeof custom === "object" ? custom : {};
  return {
    ...LABELS,
    ...(noMethod ? { noMethod } : {}),
    ...own,
    methods: { ...(own.methods || {}) },
  };
}

/**
 * methodLabels are the texts of the method name: the page's for it, over
 * labels.method(name), over the generic ones of LABELS.method(name); for a
 * method that finishes elsewhere (external), over
 * labels.externalMethod(name), over the provider's texts.
 *
 * @param {Labels} labels
 * @param {string} name
 * @param {boolean} [external]
 * @returns {Required<MethodLabels>}
 */
export function methodLabels(labels, name, external = false) {
  const own = hasOwn(labels.methods, name) ? labels.methods[name] : {};
  const of = external ? labels.externalMethod : labels.method;
  const m = { ...(typeof of === "function" ? of(name) : {}), ...own };
  /** @type {MethodLabels} */
  const g = external ? providerLabels(name) : genericLabels(name);
  return {
    name: m.name || g.name || name,
    field: m.field || g.field || name,
    instead: m.instead || g.instead || name,
    button: m.button || g.button || labels.confirm,
    type: m.type || "password",
    autocomplete: m.autocomplete || "off",
  };
}

/**
 * describe is the dialog's sentence: prompt(action), then for how long the
 * confirmation lasts (info.max_age, in seconds) or that it is for this
 * request only (a bound operation).
 *
 * @param {{action?: string, max_age?: number, operation?: unknown}} info
 * @param {Labels} labels
 * @param {(action: string) => string} prompt
 * @returns {string}
 */
export function describe(info, labels, prompt) {
  const action = typeof info.action === "string" && info.action ? info.action : labels.defaultAction;
  let s = prompt(action);
  const seconds = Number(info.max_age);
  if (info.operation && typeof info.operation === "object") {
    s += " " + labels.forThisRequest;
  } else if (Number.isFinite(seconds) && seconds > 0) {
    s += " " + duration(seconds, labels);
  }
  return s;
}

/**
 * @param {number} seconds
 * @param {Labels} labels
 * @returns {string}
 */
function duration(seconds, labels) {
  if (seconds % 3600 === 0) {
    return labels.goodFor(seconds / 3600, "hour");
  }
  if (seconds % 60 === 0) {
    return labels.goodFor(seconds / 60, "minute");
  }
  return labels.goodFor(seconds, "second");
}
