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

const MESSAGES = {
  cancelled: "The confirmation was cancelled.",
  aborted: "A newer confirmation replaced this one.",
  unsupported: "This browser cannot use passkeys.",
  network: "Could not reach the server. Check your connection and try again.",
  security: "This page is not allowed to use passkeys.",
  server: "The server gave an unexpected answer. Try again.",
  failed: "The passkey check did not work. Try again.",
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
 * fetch() for a route behind RequireRecentReauth. When the answer is 403
 * with the JSON error "reauthentication_required", it awaits
 * confirm(info), where info is that JSON body (error, message, max_age in
 * seconds, and "scope" and "operation" when the gate has them). If confirm
 * resolves to a truthy value, it runs reauthenticate() for that scope and
 * operation and, on success, sends the identical request once more (same
 * URL, method, headers and body; the body is read into memory before the
 * first send).
 *
 * It resolves to the response of the retry, or to the first response when
 * there was nothing to confirm, the user declined, or the confirmation
 * failed. It rejects only where fetch() would. options.onReauth, if given,
 * receives the result of the confirmation ({ok: false, reason: "cancelled"}
 * when the user declined in confirm).
 *
 * @param {RequestInfo | URL} input
 * @param {RequestInit} [init]
 * @param {{confirm?: (info: object) => Promise<boolean> | boolean,
 *          onReauth?: (result: object) => void,
 *          optionsURL?: string, verifyURL?: string}} [options]
 * @returns {Promise<Response>}
 */
export async function fetchWithStepUp(input, init, options = {}) {
  const { confirm = confirmDialog, onReauth, optionsURL, verifyURL } = options;
  const base = new Request(input, init);
  const body =
    base.method === "GET" || base.method === "HEAD" || base.body === null ? undefined : await base.arrayBuffer();
  const send = () => fetch(copyRequest(base, body));

  const first = await send();
  const info = await stepUpInfo(first);
  if (!info) {
    return first;
  }
  let confirmed = false;
  try {
    confirmed = await confirm(info);
  } catch {
    confirmed = false;
  }
  const result = confirmed
    ? await reauthenticate({ optionsURL, verifyURL, scope: info.scope, operation: info.operation })
    : failure("cancelled", MESSAGES.cancelled);
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

let dialogCount = 0;

/**
 * The default confirm of fetchWithStepUp: a small modal <dialog> titled
 * "Confirm it's you", with a "Confirm it's you" button and a "Cancel"
 * button. It resolves to true on confirm, false on Cancel or Escape, and
 * gives the focus back to where it was. Style it with the class
 * "stepup-confirm" (and stepup-confirm-actions, stepup-confirm-ok,
 * stepup-confirm-cancel); it brings no styles of its own.
 *
 * The text says what the page is about to do, if it passes info.action
 * (such as "delete your account"), shows the description of the operation
 * of a Bind gate (info.operation.description), and says how long the
 * confirmation lasts (info.max_age, in seconds) or that it is for this
 * request only (a bound operation).
 *
 * @param {{action?: string, max_age?: number, operation?: {description?: string}}} [info]
 * @returns {Promise<boolean>}
 */
export function confirmDialog(info = {}) {
  return new Promise((resolve) => {
    const id = `stepup-confirm-${++dialogCount}`;
    const dialog = document.createElement("dialog");
    dialog.className = "stepup-confirm";
    dialog.setAttribute("aria-labelledby", `${id}-title`);
    dialog.setAttribute("aria-describedby", `${id}-text`);

    const title = document.createElement("h2");
    title.id = `${id}-title`;
    title.textContent = "Confirm it's you";
    const text = document.createElement("p");
    text.id = `${id}-text`;
    text.textContent = describe(info);
    const operation = info.operation && typeof info.operation.description === "string" ? info.operation.description : "";

    const actions = document.createElement("div");
    actions.className = "stepup-confirm-actions";
    const ok = document.createElement("button");
    ok.type = "button";
    ok.className = "stepup-confirm-ok";
    ok.textContent = "Confirm it's you";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "stepup-confirm-cancel";
    cancel.textContent = "Cancel";
    actions.append(ok, cancel);
    dialog.append(title, text);
    if (operation) {
      const what = document.createElement("p");
      what.className = "stepup-confirm-operation";
      what.textContent = operation;
      dialog.append(what);
    }
    dialog.append(actions);

    const previous = document.activeElement;
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
      if (previous && typeof previous.focus === "function") {
        previous.focus();
      }
      resolve(value);
    };
    ok.addEventListener("click", () => finish(true));
    cancel.addEventListener("click", () => finish(false));
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      finish(false);
    });
    dialog.addEventListener("close", () => finish(false));

    document.body.append(dialog);
    dialog.showModal();
    ok.focus();
  });
}

function describe(info) {
  const action = typeof info.action === "string" && info.action ? info.action : "continue";
  let s = `Use your passkey to ${action}.`;
  const seconds = Number(info.max_age);
  if (info.operation && typeof info.operation === "object") {
    s += " The confirmation is for this request only.";
  } else if (Number.isFinite(seconds) && seconds > 0) {
    s += ` The confirmation is good for ${duration(seconds)}.`;
  }
  return s;
}

function duration(seconds) {
  if (seconds % 3600 === 0) {
    return plural(seconds / 3600, "hour");
  }
  if (seconds % 60 === 0) {
    return plural(seconds / 60, "minute");
  }
  return plural(seconds, "second");
}

function plural(n, unit) {
  return n === 1 ? `1 ${unit}` : `${n} ${unit}s`;
}
