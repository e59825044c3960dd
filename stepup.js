// stepup.js: the browser half of github.com/passkey-stepup/stepup.
//
// A dependency-free ES module, served by StepUp.ScriptHandler. Import it from
// the page:
//
//	import { fetchWithStepUp, reauthenticate, bindReauthButton } from "/stepup.js";
//
// Nothing runs when the module loads: no request, no passkey prompt. A
// ceremony starts only when the page calls reauthenticate(), directly or
// through bindReauthButton() or fetchWithStepUp(). The passkey prompt is
// always the modal one, started by the user; this module never asks the
// browser for autofill.

const DEFAULT_OPTIONS_URL = "/api/reauth/options";
const DEFAULT_VERIFY_URL = "/api/reauth/verify";

// The endpoint of a Method other than a passkey: StepUp.MethodHandler,
// mounted at /api/reauth/{name} unless the page says otherwise.
const defaultMethodURL = (name) => `/api/reauth/${encodeURIComponent(name)}`;

const MESSAGES = {
  cancelled: "The confirmation was cancelled.",
  aborted: "A newer confirmation replaced this one.",
  unsupported: "This browser cannot use passkeys.",
  network: "Could not reach the server. Check your connection and try again.",
  security: "This page is not allowed to use passkeys.",
  server: "The server gave an unexpected answer. Try again.",
  failed: "The passkey check did not work. Try again.",
  noMethod: "This action needs a passkey or another way to confirm it's you. Set one up first, then try again.",
};

// The AbortController of the ceremony that has not finished yet, if any.
// A new call of reauthenticate() aborts it: one ceremony at a time per page.
let current = null;

/**
 * Confirms with a passkey that the signed-in user is at the keyboard, and so
 * gives the session a fresh step-up grant.
 *
 * It POSTs to optionsURL for request options, asks the browser for an
 * assertion with navigator.credentials.get(), and POSTs the assertion as JSON
 * to verifyURL. It aborts the previous unfinished call, if any.
 *
 * scope and operation ask for a grant that a scoped or operation-bound gate
 * accepts: pass the "scope" and "operation" of the gate's 403 body (the
 * operation object or its digest). They are posted to optionsURL as
 * {"scope": ..., "operation": digest}; without them the options request has
 * no body. fetchWithStepUp does this for you.
 *
 * The promise never rejects. It resolves to {ok: true, reauthenticatedAt},
 * the server's RFC 3339 time of the grant, or to {ok: false, reason, message}
 * where reason is:
 *   - the server's error code, such as "unknown_credential" or
 *     "credential_not_owned", with the server's message;
 *   - "cancelled" when the user dismissed the prompt or no passkey matched
 *     (NotAllowedError): show no error for it;
 *   - "aborted" when a newer call replaced this one;
 *   - "error" for anything else (network, an answer that is not JSON,
 *     SecurityError, no WebAuthn in this browser).
 *
 * When the server answers 404 unknown_credential, the passkey is not
 * registered for any account, and the browser is told so with
 * PublicKeyCredential.signalUnknownCredential() where it exists, so that it
 * may stop offering it. On any other answer it is not: a 403
 * credential_not_owned means the passkey belongs to another account on this
 * device, and it must stay.
 *
 * @param {{optionsURL?: string, verifyURL?: string, scope?: string,
 *          operation?: string | {digest: string}}} [options]
 * @returns {Promise<{ok: true, reauthenticatedAt: string} | {ok: false, reason: string, message: string}>}
 */
export async function reauthenticate({
  optionsURL = DEFAULT_OPTIONS_URL,
  verifyURL = DEFAULT_VERIFY_URL,
  scope,
  operation,
} = {}) {
  if (current) {
    current.abort(new DOMException(MESSAGES.aborted, "AbortError"));
  }
  const attempt = new AbortController();
  current = attempt;
  try {
    return await ceremony(optionsURL, verifyURL, optionsRequest(scope, operation), attempt.signal);
  } catch (err) {
    if (attempt.signal.aborted) {
      return failure("aborted", MESSAGES.aborted);
    }
    switch (err && err.name) {
      case "NotAllowedError":
        return failure("cancelled", MESSAGES.cancelled);
      case "SecurityError":
        return failure("error", MESSAGES.security);
      case "TypeError":
        return failure("error", MESSAGES.network);
      default:
        return failure("error", MESSAGES.failed);
    }
  } finally {
    if (current === attempt) {
      current = null;
    }
  }
}

// optionsRequest is the body of the options request: what grant to make.
function optionsRequest(scope, operation) {
  const request = {};
  if (typeof scope === "string" && scope !== "") {
    request.scope = scope;
  }
  const digest = typeof operation === "string" ? operation : operation && operation.digest;
  if (typeof digest === "string" && digest !== "") {
    request.operation = digest;
  }
  return Object.keys(request).length > 0 ? request : undefined;
}

async function ceremony(optionsURL, verifyURL, request, signal) {
  if (typeof PublicKeyCredential === "undefined" || !navigator.credentials) {
    return failure("error", MESSAGES.unsupported);
  }
  const options = await postJSON(optionsURL, request, signal);
  if (!options.ok || !options.data || typeof options.data.challenge !== "string") {
    return serverFailure(options);
  }
  const publicKey = parseRequestOptions(options.data);
  const credential = await navigator.credentials.get({ publicKey, signal });
  if (!credential) {
    return failure("error", MESSAGES.failed);
  }
  const verify = await postJSON(verifyURL, credentialToJSON(credential), signal);
  if (verify.ok && verify.data && typeof verify.data.reauthenticated_at === "string") {
    return { ok: true, reauthenticatedAt: verify.data.reauthenticated_at };
  }
  if (verify.status === 404 && verify.data && verify.data.error === "unknown_credential") {
    await signalUnknownCredential(options.data.rpId || location.hostname, credential.id);
  }
  return serverFailure(verify);
}

// postJSON POSTs body (as JSON, unless undefined) with the page's cookies and
// returns the status and the decoded JSON answer (null if it is not JSON).
async function postJSON(url, body, signal) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
  }
  const res = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    cache: "no-store",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  let data = null;
  if ((res.headers.get("Content-Type") || "").includes("application/json")) {
    try {
      data = await res.json();
    } catch (err) {
      if (signal.aborted) {
        throw err;
      }
    }
  }
  return { ok: res.ok, status: res.status, data };
}

function serverFailure({ status, data }) {
  if (data && typeof data.error === "string" && data.error !== "") {
    return failure(data.error, typeof data.message === "string" && data.message ? data.message : MESSAGES.failed);
  }
  return failure("error", `${MESSAGES.server} (HTTP ${status})`);
}

function failure(reason, message) {
  return { ok: false, reason, message };
}

async function signalUnknownCredential(rpId, credentialId) {
  if (typeof PublicKeyCredential.signalUnknownCredential !== "function") {
    return;
  }
  try {
    await PublicKeyCredential.signalUnknownCredential({ rpId, credentialId });
  } catch {
    // Only a hint to the browser; nothing to tell the user.
  }
}

// parseRequestOptions turns PublicKeyCredentialRequestOptionsJSON into the
// options navigator.credentials.get() takes, by hand where the browser has
// no PublicKeyCredential.parseRequestOptionsFromJSON().
function parseRequestOptions(json) {
  if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function") {
    return PublicKeyCredential.parseRequestOptionsFromJSON(json);
  }
  const options = { ...json, challenge: fromBase64URL(json.challenge) };
  if (Array.isArray(json.allowCredentials)) {
    options.allowCredentials = json.allowCredentials.map((c) => ({ ...c, id: fromBase64URL(c.id) }));
  }
  return options;
}

// credentialToJSON is PublicKeyCredential.prototype.toJSON() for an
// assertion, by hand where the browser lacks it.
function credentialToJSON(credential) {
  if (typeof credential.toJSON === "function") {
    return credential.toJSON();
  }
  const r = credential.response;
  const json = {
    id: credential.id,
    rawId: toBase64URL(credential.rawId),
    type: credential.type,
    response: {
      clientDataJSON: toBase64URL(r.clientDataJSON),
      authenticatorData: toBase64URL(r.authenticatorData),
      signature: toBase64URL(r.signature),
      userHandle: r.userHandle ? toBase64URL(r.userHandle) : null,
    },
    clientExtensionResults:
      typeof credential.getClientExtensionResults === "function" ? credential.getClientExtensionResults() : {},
  };
  if (credential.authenticatorAttachment) {
    json.authenticatorAttachment = credential.authenticatorAttachment;
  }
  return json;
}

function toBase64URL(buffer) {
  const bytes = new Uint8Array(buffer);
  let s = "";
  for (let i = 0; i < bytes.length; i++) {
    s += String.fromCharCode(bytes[i]);
  }
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64URL(s) {
  const b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
  const bytes = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) {
    bytes[i] = b.charCodeAt(i);
  }
  return bytes.buffer;
}

/**
 * Makes button start a confirmation when clicked: the click runs
 * reauthenticate(opts) and passes its result to opts.onResult. The button is
 * disabled (and aria-busy) while the ceremony runs. Only a click starts it.
 *
 * @param {HTMLButtonElement} button
 * @param {{optionsURL?: string, verifyURL?: string, onResult?: (result: object) => void}} [opts]
 * @returns {() => void} a function that removes the click handler
 */
export function bindReauthButton(button, opts = {}) {
  const onClick = async (event) => {
    event.preventDefault();
    if (button.disabled) {
      return;
    }
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    let result;
    try {
      result = await reauthenticate(opts);
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
    if (typeof opts.onResult === "function") {
      opts.onResult(result);
    }
  };
  button.addEventListener("click", onClick);
  return () => button.removeEventListener("click", onClick);
}

/**
 * Confirms with a secret (a password, a code from an authenticator app) that
 * the signed-in user is at the keyboard, through the handler of a Method
 * (StepUp.MethodHandler). It POSTs {"secret", "scope", "operation"} to url.
 * Like reauthenticate(), it never rejects: it resolves to
 * {ok: true, reauthenticatedAt} or {ok: false, reason, message}, where reason
 * is the server's code (such as "wrong_secret" or "too_many_attempts") or
 * "error".
 *
 * @param {string} url
 * @param {string} secret
 * @param {{scope?: string, operation?: string | {digest: string}}} [grant]
 * @returns {Promise<{ok: true, reauthenticatedAt: string} | {ok: false, reason: string, message: string}>}
 */
export async function reauthenticateWithSecret(url, secret, { scope, operation } = {}) {
  const attempt = new AbortController();
  try {
    const res = await postJSON(url, { secret, ...(optionsRequest(scope, operation) || {}) }, attempt.signal);
    if (res.ok && res.data && typeof res.data.reauthenticated_at === "string") {
      return { ok: true, reauthenticatedAt: res.data.reauthenticated_at };
    }
    return serverFailure(res);
  } catch (err) {
    return failure("error", err && err.name === "TypeError" ? MESSAGES.network : MESSAGES.failed);
  }
}

/**
 * fetch() for a route behind RequireRecentReauth. When the answer is 403
 * with the JSON error "reauthentication_required", it lets the user confirm
 * it's them with one of the methods the 403 names ("methods": the gate's
 * accepted methods that this user can use, in the gate's order) and, on
 * success, sends the identical request once more (same URL, method, headers
 * and body; the body is read into memory before the first send).
 *
 * By default the confirmation is stepUpDialog(info): a passkey first when
 * the gate lists it (with the next method offered as "Use your password
 * instead"), a field for the secret of another method, or, when the user has
 * no usable method, a message that one must be set up. Pass confirm to use
 * your own: confirm(info) resolves to false (declined), true (run the
 * passkey ceremony) or {method, secret} (post the secret to that method).
 *
 * It resolves to the response of the retry, or to the first response when
 * there was nothing to confirm, the user declined, or the confirmation
 * failed. It rejects only where fetch() would. options.onReauth, if given,
 * receives the result of the confirmation ({ok: false, reason: "cancelled"}
 * when the user declined, "no_method" when there was nothing to confirm
 * with).
 *
 * When the default dialog closes, the focus goes back to the element that
 * had it when fetchWithStepUp was called (the button that was pressed,
 * say), as soon as that element can take it again: see stepUpDialog's
 * returnFocus, which options.returnFocus is passed to.
 *
 * @param {RequestInfo | URL} input
 * @param {RequestInit} [init]
 * @param {{confirm?: (info: object) => Promise<boolean | {method: string, secret: string}> | boolean,
 *          onReauth?: (result: object) => void,
 *          optionsURL?: string, verifyURL?: string,
 *          methodURL?: (name: string) => string,
 *          labels?: object,
 *          returnFocus?: Element | (() => Element | null) | false}} [options]
 * @returns {Promise<Response>}
 */
export async function fetchWithStepUp(input, init, options = {}) {
  const { confirm, onReauth } = options;
  // Read before anything is awaited: the button that started this is often
  // disabled by the page meanwhile, and then no longer has the focus.
  const returnFocus = options.returnFocus !== undefined ? options.returnFocus : focused();
  const base = new Request(input, init);
  const body =
    base.method === "GET" || base.method === "HEAD" || base.body === null ? undefined : await base.arrayBuffer();
  const send = () => fetch(copyRequest(base, body));

  const first = await send();
  const info = await stepUpInfo(first);
  if (!info) {
    return first;
  }
  const result =
    typeof confirm === "function" ? await confirmWith(confirm, info, options) : await stepUpDialog(info, { ...options, returnFocus });
  if (typeof onReauth === "function") {
    onReauth(result);
  }
  if (!result.ok) {
    return first;
  }
  if (first.body) {
    first.body.cancel().catch(() => {});
  }
  return send();
}

// confirmWith runs the page's own confirm and what it chose.
async function confirmWith(confirm, info, { optionsURL, verifyURL, methodURL = defaultMethodURL }) {
  let answer = false;
  try {
    answer = await confirm(info);
  } catch {
    answer = false;
  }
  const grant = { scope: info.scope, operation: info.operation };
  if (answer && typeof answer === "object" && typeof answer.method === "string" && answer.method !== "passkey") {
    return reauthenticateWithSecret(methodURL(answer.method), String(answer.secret || ""), grant);
  }
  if (!answer) {
    return failure("cancelled", MESSAGES.cancelled);
  }
  if (Array.isArray(info.methods) && !info.methods.includes("passkey")) {
    return failure("no_method", MESSAGES.noMethod);
  }
  return reauthenticate({ optionsURL, verifyURL, ...grant });
}

function copyRequest(base, body) {
  return new Request(base.url, {
    method: base.method,
    headers: base.headers,
    body,
    mode: base.mode,
    credentials: base.credentials,
    cache: base.cache,
    redirect: base.redirect,
    referrer: base.referrer,
    referrerPolicy: base.referrerPolicy,
    integrity: base.integrity,
    keepalive: base.keepalive,
    signal: base.signal,
  });
}

// stepUpInfo returns the body of a 403 reauthentication_required answer, or
// null for any other answer. It leaves res unread.
async function stepUpInfo(res) {
  if (res.status !== 403 || !(res.headers.get("Content-Type") || "").includes("application/json")) {
    return null;
  }
  try {
    const data = await res.clone().json();
    return data && data.error === "reauthentication_required" ? data : null;
  } catch {
    return null;
  }
}

/**
 * The texts of the dialogs, in English. Pass your own as options.labels (to
 * fetchWithStepUp, stepUpDialog or confirmDialog): any text left out keeps
 * its English default. Functions get what they need to build a sentence.
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
  forThisRequest: "The confirmation is for this request only.",
  goodFor: (n, unit) => `The confirmation is good for ${n === 1 ? `1 ${unit}` : `${n} ${unit}s`}.`, // unit: "hour", "minute" or "second"
  noMethod: MESSAGES.noMethod,
  wrongSecret: "That is not right. Try again.",
  working: "Checking…",
  // Per method: its name in a sentence, the label of its field, and the
  // button that switches to it.
  methods: {
    passkey: { name: "passkey", instead: "Use your passkey instead" },
    password: { name: "password", field: "Password", instead: "Use your password instead" },
    totp: { name: "authenticator app code", field: "Code from your authenticator app", instead: "Use your authenticator app instead" },
  },
  // For a method not in methods.
  method: (name) => ({ name, field: name, instead: `Use ${name} instead` }),
});

function labelsFrom(custom = {}) {
  return { ...LABELS, ...custom, methods: { ...LABELS.methods, ...(custom.methods || {}) } };
}

function methodLabels(labels, name) {
  const fallback = (labels.method || LABELS.method)(name);
  return { ...fallback, ...((labels.methods || {})[name] || {}) };
}

let dialogCount = 0;

// newDialog makes the modal <dialog class="stepup-confirm"> with a title and
// a text, and returns its parts. The dialog is labelled by its title and
// described by its text (and, see appendOperation, by the operation).
function newDialog(labels) {
  const id = `stepup-confirm-${++dialogCount}`;
  const dialog = document.createElement("dialog");
  dialog.className = "stepup-confirm";
  dialog.setAttribute("aria-labelledby", `${id}-title`);
  dialog.setAttribute("aria-describedby", `${id}-text`);
  const title = document.createElement("h2");
  title.id = `${id}-title`;
  title.textContent = labels.title;
  const text = document.createElement("p");
  text.id = `${id}-text`;
  const actions = document.createElement("div");
  actions.className = "stepup-confirm-actions";
  dialog.append(title, text);
  return { id, dialog, text, actions };
}

function button(className, label) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = label;
  return b;
}

// focused is the element that has the focus, if any but the page itself.
function focused() {
  if (typeof document === "undefined") {
    return null;
  }
  const el = document.activeElement;
  return el && el !== document.body && el !== document.documentElement ? el : null;
}

// tabStops lists the controls of dialog that Tab stops at, in order.
function tabStops(dialog) {
  return [...dialog.querySelectorAll("button, input, select, textarea, a[href], [tabindex]")].filter(
    (el) => el.tabIndex >= 0 && !el.disabled && el.getClientRects().length > 0,
  );
}

// showDialog opens dialog as a modal and focuses focus(); setup(finish)
// wires its buttons. finish(value) closes it once, gives the focus to
// returnFocus (see focusBack) and resolves the promise showDialog returns.
//
// A modal <dialog> makes the rest of the page inert, but Tab from its last
// control goes on to the browser's own toolbar (and, in Firefox, Shift+Tab
// from the first one): here Tab and Shift+Tab cycle through the dialog's
// controls, as WAI-ARIA's modal dialog pattern says.
function showDialog(dialog, returnFocus, focus, setup) {
  return new Promise((resolve) => {
    let done = false;
    const finish = (value) => {
      if (done) {
        return;
      }
      done = true;
      if (dialog.open) {
        dialog.close();
      }
      dialog.remove();
      focusBack(returnFocus);
      resolve(value);
    };
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      finish(undefined);
    });
    dialog.addEventListener("close", () => finish(undefined));
    dialog.addEventListener("keydown", (event) => {
      if (event.key !== "Tab" || event.altKey || event.ctrlKey || event.metaKey) {
        return;
      }
      const stops = tabStops(dialog);
      const at = stops.indexOf(document.activeElement);
      if (stops.length > 0 && (event.shiftKey ? at <= 0 : at === -1 || at === stops.length - 1)) {
        event.preventDefault();
        stops[event.shiftKey ? stops.length - 1 : 0].focus();
      }
    });
    setup(finish);
    document.body.append(dialog);
    dialog.showModal();
    focus().focus();
  });
}

// The longest time focusBack waits for its element to take the focus.
const FOCUS_WAIT_MS = 10000;

// focusBack gives the focus to target when a dialog closes: an element, a
// function called then that returns one, or false (leave the focus where
// the browser puts it). Pages often keep the button that started an action
// disabled until its request is done, and a disabled element takes no
// focus: then focusBack waits until target takes it (a MutationObserver on
// the disabled, hidden and inert attributes of the page), for up to
// FOCUS_WAIT_MS. It never takes the focus from where the user put it: it
// stops waiting as soon as the focus moves or the user clicks anything, or
// target leaves the page.
function focusBack(returnFocus) {
  let target = returnFocus;
  if (typeof returnFocus === "function") {
    try {
      target = returnFocus();
    } catch {
      target = null;
    }
  }
  if (!target || typeof target.focus !== "function" || !target.isConnected) {
    return;
  }
  target.focus();
  const start = document.activeElement;
  if (start === target) {
    return;
  }
  const observer = new MutationObserver(() => {
    if (!target.isConnected || document.activeElement !== start) {
      stop();
      return;
    }
    target.focus();
  });
  const moved = () => document.activeElement !== start && stop();
  const timer = setTimeout(stop, FOCUS_WAIT_MS);
  function stop() {
    observer.disconnect();
    clearTimeout(timer);
    document.removeEventListener("focusin", moved, true);
    document.removeEventListener("pointerdown", stop, true);
  }
  observer.observe(document.documentElement, {
    attributes: true,
    subtree: true,
    attributeFilter: ["disabled", "hidden", "inert"],
  });
  document.addEventListener("focusin", moved, true);
  document.addEventListener("pointerdown", stop, true);
}

/**
 * A confirm for fetchWithStepUp that only asks "Confirm it's you?": a modal
 * <dialog> with a confirm and a Cancel button. It resolves to true on
 * confirm, false on Cancel or Escape, and gives the focus back (see
 * stepUpDialog's returnFocus). Style it with the class "stepup-confirm"
 * (and stepup-confirm-actions, stepup-confirm-ok, stepup-confirm-cancel,
 * stepup-confirm-operation); it brings no styles of its own. stepUpDialog,
 * the default, also handles methods other than a passkey.
 *
 * The text says what the page is about to do, if it passes info.action
 * (such as "delete your account"), shows the description of the operation
 * of a Bind gate (info.operation.description), and says how long the
 * confirmation lasts (info.max_age, in seconds) or that it is for this
 * request only (a bound operation).
 *
 * @param {{action?: string, max_age?: number, operation?: {description?: string}}} [info]
 * @param {{labels?: object, returnFocus?: Element | (() => Element | null) | false}} [options]
 * @returns {Promise<boolean>}
 */
export async function confirmDialog(info = {}, { labels: custom, returnFocus = focused() } = {}) {
  const labels = labelsFrom(custom);
  const { id, dialog, text, actions } = newDialog(labels);
  text.textContent = describe(info, labels, labels.passkeyPrompt);
  appendOperation(dialog, id, info);
  const ok = button("stepup-confirm-ok", labels.confirm);
  const cancel = button("stepup-confirm-cancel", labels.cancel);
  actions.append(ok, cancel);
  dialog.append(actions);
  const value = await showDialog(dialog, returnFocus, () => ok, (finish) => {
    ok.addEventListener("click", () => finish(true));
    cancel.addEventListener("click", () => finish(false));
  });
  return value === true;
}

// appendOperation shows the description of a bound operation, such as
// "Send 99.95 EUR to Alan Turing", and adds it to the dialog's description,
// so that a screen reader says it with the title. It comes from the server
// and may hold any text (a payee's name): it is set as text, never as HTML,
// in an element with dir="auto", which isolates it (unicode-bidi: isolate)
// so that right-to-left text in it cannot reorder what surrounds it.
function appendOperation(dialog, id, info) {
  const operation = info.operation && typeof info.operation.description === "string" ? info.operation.description : "";
  if (operation) {
    const what = document.createElement("p");
    what.id = `${id}-operation`;
    what.className = "stepup-confirm-operation";
    what.dir = "auto";
    what.textContent = operation;
    dialog.append(what);
    dialog.setAttribute("aria-describedby", `${dialog.getAttribute("aria-describedby")} ${what.id}`);
  }
}

/**
 * The default confirmation of fetchWithStepUp, for the 403 body info: a
 * modal <dialog> that runs the whole confirmation and resolves to its result
 * ({ok: true, reauthenticatedAt} or {ok: false, reason, message}).
 *
 * With info.methods starting with "passkey", it asks to confirm with the
 * passkey; the confirm button (a click: never autofill) starts the passkey
 * prompt, and the next method, if any, is offered as a button such as "Use
 * your password instead". With another method first, it shows a field for
 * its secret and posts it to methodURL(name) (default /api/reauth/{name});
 * a wrong secret is said in the dialog and the user may try again until
 * the server's limit. With no method, it says that one must be set up and
 * resolves to {ok: false, reason: "no_method"}. Cancel or Escape resolves
 * to {ok: false, reason: "cancelled"}, as does a dismissed passkey prompt,
 * and shows no error.
 *
 * For assistive technology: the dialog is labelled by its title and
 * described by its text and, for a Bind gate, the operation's description
 * (shown as text, isolated with dir="auto"). While a secret is checked,
 * labels.working is put in a polite status region (stepup-confirm-status,
 * role="status"), never in the alert; a wrong secret is put in the alert
 * (stepup-confirm-error, role="alert"), and the field gets
 * aria-invalid="true" and aria-describedby pointing to it until the user
 * types again or switches method. The dialog is modal (the rest of the
 * page is inert): Tab and Shift+Tab cycle through its controls, and Escape
 * closes it (cancelled).
 *
 * When it closes, the focus goes to options.returnFocus: by default the
 * element that had the focus when stepUpDialog was called (fetchWithStepUp
 * passes the one focused when it was called); an element; a function,
 * called then, that returns one; or false to leave the focus where the
 * browser puts it. If that element cannot take the focus yet (the page
 * still has the button disabled), it gets it as soon as it can, within 10
 * seconds, unless the user has moved on to another element meanwhile.
 *
 * Every text comes from options.labels (see LABELS). The field is
 * stepup-confirm-secret; the switch button stepup-confirm-instead.
 *
 * @param {{action?: string, max_age?: number, scope?: string, methods?: string[],
 *          operation?: {digest: string, description?: string}}} info
 * @param {{labels?: object, optionsURL?: string, verifyURL?: string,
 *          methodURL?: (name: string) => string,
 *          returnFocus?: Element | (() => Element | null) | false}} [options]
 * @returns {Promise<{ok: true, reauthenticatedAt: string} | {ok: false, reason: string, message: string}>}
 */
export async function stepUpDialog(info = {}, options = {}) {
  const { optionsURL, verifyURL, methodURL = defaultMethodURL } = options;
  const returnFocus = options.returnFocus !== undefined ? options.returnFocus : focused();
  const labels = labelsFrom(options.labels);
  const methods = Array.isArray(info.methods) ? info.methods.filter((m) => typeof m === "string") : ["passkey"];
  const grant = { scope: info.scope, operation: info.operation };
  const { id, dialog, text, actions } = newDialog(labels);

  if (methods.length === 0) {
    text.textContent = labels.noMethod;
    const close = button("stepup-confirm-cancel", labels.close);
    actions.append(close);
    dialog.append(actions);
    await showDialog(dialog, returnFocus, () => close, (finish) => close.addEventListener("click", () => finish()));
    return failure("no_method", labels.noMethod);
  }

  appendOperation(dialog, id, info);
  const form = document.createElement("form");
  form.className = "stepup-confirm-form";
  form.noValidate = true;
  const fieldLabel = document.createElement("label");
  fieldLabel.htmlFor = `${id}-secret`;
  const field = document.createElement("input");
  field.id = `${id}-secret`;
  field.className = "stepup-confirm-secret";
  field.required = true;
  // Errors only: a screen reader interrupts the user to say them.
  const error = document.createElement("p");
  error.id = `${id}-error`;
  error.className = "stepup-confirm-error";
  error.setAttribute("role", "alert");
  error.hidden = true;
  // Progress ("Checking…"): said when the user pauses. It stays in the page,
  // empty when idle, so that assistive technology notices what is put in it.
  const status = document.createElement("div");
  status.id = `${id}-status`;
  status.className = "stepup-confirm-status";
  status.setAttribute("role", "status");
  status.setAttribute("aria-live", "polite");
  const ok = button("stepup-confirm-ok", labels.confirm);
  ok.type = "submit";
  const cancel = button("stepup-confirm-cancel", labels.cancel);
  const instead = button("stepup-confirm-instead", "");
  actions.append(ok, cancel);
  form.append(fieldLabel, field, error, status, actions, instead);
  dialog.append(form);

  const showError = (message) => {
    error.textContent = message;
    error.hidden = false;
    field.setAttribute("aria-invalid", "true");
    field.setAttribute("aria-describedby", error.id);
  };
  const clearError = () => {
    error.hidden = true;
    error.textContent = "";
    field.removeAttribute("aria-invalid");
    field.removeAttribute("aria-describedby");
  };
  field.addEventListener("input", () => {
    if (!error.hidden) {
      clearError();
    }
  });

  let index = 0;
  const show = () => {
    const name = methods[index];
    const m = methodLabels(labels, name);
    const passkey = name === "passkey";
    text.textContent = describe(info, labels, passkey ? labels.passkeyPrompt : (action) => labels.secretPrompt(m.name, action));
    fieldLabel.textContent = passkey ? "" : m.field;
    fieldLabel.hidden = field.hidden = passkey;
    field.disabled = passkey;
    field.value = "";
    field.type = name === "password" ? "password" : "text";
    field.autocomplete = name === "password" ? "current-password" : name === "totp" ? "one-time-code" : "off";
    clearError();
    status.textContent = "";
    const next = methods[(index + 1) % methods.length];
    instead.hidden = methods.length < 2;
    instead.textContent = methodLabels(labels, next).instead;
    instead.dataset.method = next;
    dialog.dataset.method = name;
  };
  show();

  let checking = false;
  const outcome = await showDialog(dialog, returnFocus, () => (methods[0] === "passkey" ? ok : field), (finish) => {
    cancel.addEventListener("click", () => finish());
    instead.addEventListener("click", () => {
      index = (index + 1) % methods.length;
      show();
      (methods[index] === "passkey" ? ok : field).focus();
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (checking) {
        return;
      }
      const name = methods[index];
      if (name === "passkey") {
        finish({ passkey: true });
        return;
      }
      if (field.value === "") {
        field.focus();
        return;
      }
      // The field stays enabled (read-only), so that it keeps the focus.
      checking = true;
      ok.disabled = instead.disabled = field.readOnly = true;
      form.setAttribute("aria-busy", "true");
      clearError();
      status.textContent = labels.working;
      const result = await reauthenticateWithSecret(methodURL(name), field.value, grant);
      checking = false;
      ok.disabled = instead.disabled = field.readOnly = false;
      form.removeAttribute("aria-busy");
      status.textContent = "";
      if (result.ok || result.reason !== "wrong_secret") {
        finish({ result });
        return;
      }
      field.value = "";
      showError(labels.wrongSecret);
      field.focus();
    });
  });
  if (!outcome) {
    return failure("cancelled", MESSAGES.cancelled);
  }
  if (outcome.passkey) {
    return reauthenticate({ optionsURL, verifyURL, ...grant });
  }
  return outcome.result;
}

function describe(info, labels, prompt) {
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

function duration(seconds, labels) {
  if (seconds % 3600 === 0) {
    return labels.goodFor(seconds / 3600, "hour");
  }
  if (seconds % 60 === 0) {
    return labels.goodFor(seconds / 60, "minute");
  }
  return labels.goodFor(seconds, "second");
}
