// @ts-check
// A method that finishes elsewhere -------------------------------------------
//
// A method the server registered with ExternalMethod (the oidc module's
// "sso"): the user confirms at another party, their identity provider, and
// the server's callback page tells this page how it went. The gate's 403
// lists such methods under "external" (or the page names them, the option
// external): the client knows no method by name.
//
// In a popup: the popup is opened on the user's click, before anything is
// awaited (a popup opened after an awaited fetch is blocked), then the start
// is posted with popup: true and the popup is sent to the provider. The
// callback page posts {"type": "stepup:external", "state", "ok", ...} to
// its opener (with this site's origin as the target) and on the
// BroadcastChannel "stepup" (for when the provider's
// Cross-Origin-Opener-Policy cut window.opener), then closes. Where the
// browser blocked the popup, the page itself goes to the provider, and
// comes back to returnTo.

import { clientFailure, messagesFrom, serverFailure } from "./reasons.js";
import { defaultMethodURL, exclusive, grantRequest, postJSON } from "./ceremony.js";

/** @import { Messages, Result } from "./reasons.js" */
/** @import { Grant } from "./ceremony.js" */

/**
 * What an external ceremony asks for: the grant, and where the page comes
 * back to after a full-page round trip (a path of this site; default the
 * current page's path and query).
 *
 * @typedef {Grant & {returnTo?: string}} ExternalGrant
 */

// The callback page's message, and its channel.
const EXTERNAL_MESSAGE = "stepup:external";
const EXTERNAL_CHANNEL = "stepup";
// The error of a callback whose provider did not sign the user in.
const PROVIDER_CANCELED = "canceled";
// The popup's size: a provider's sign-in page fits.
const POPUP_FEATURES = "popup=yes,width=520,height=680";
// How often a popup is checked for being closed, and how long a message
// sent just before it closed may take to arrive.
const POPUP_POLL_MS = 250;
const POPUP_GRACE_MS = 1000;

/**
 * openPopup opens an empty popup window for an external ceremony, or
 * returns null when the browser blocked it. Call it synchronously in the
 * handler of the user's click: a popup opened later (after an await) is
 * blocked.
 *
 * @returns {Window | null}
 */
export function openPopup() {
  /** @type {Window | null} */
  let popup = null;
  try {
    popup = window.open("", "_blank", POPUP_FEATURES);
  } catch {
    popup = null;
  }
  return popup && !popup.closed ? popup : null;
}

/**
 * Confirms at another party with the external method name (a method the
 * server registered with ExternalMethod, such as the oidc module's "sso"),
 * and so gives the session a fresh step-up grant. Call it from the user's
 * click, before anything is awaited: it opens the popup first thing.
 *
 * It POSTs {"scope", "operation", "return_to", "popup": true} to
 * methodURL(name) (default /api/reauth/{name}), sends the popup to the
 * "redirect" the server answers, and waits for the message of the server's
 * callback page about the "state" it answered. It takes the one turn for a
 * ceremony, as reauthenticate() does (the popup closes when a newer one or
 * options.signal aborts it), and like it never rejects: it resolves to
 * {ok: true, reauthenticatedAt} or {ok: false, reason, message}, where
 * reason is "cancelled" when the user closed the popup or canceled at the
 * provider, a server code (such as "verification_failed"), "aborted",
 * "error", or "redirected": the browser blocked the popup, so the page
 * itself is on its way to the provider (the start was posted with popup:
 * false), and comes back, confirmed, to options.returnTo (default the
 * current page's path and query).
 *
 * @param {string} name
 * With options.popup false it opens no popup and goes by the full-page
 * round trip at once: for a provider whose sign-in pages cut the popup off
 * (Cross-Origin-Opener-Policy: same-origin), which the browser then reports
 * closed.
 *
 * @param {string} name
 * @param {ExternalGrant & {methodURL?: (name: string) => string, popup?: boolean, messages?: Messages, signal?: AbortSignal}} [options]
 * @returns {Promise<Result>}
 */
export function reauthenticateExternal(name, options = {}) {
  const messages = messagesFrom(options.messages);
  const url = (typeof options.methodURL === "function" ? options.methodURL : defaultMethodURL)(name);
  // exclusive calls run before it awaits anything: still in the click.
  return exclusive(options.signal, messages, (signal) => externalCeremony(url, options.popup === false ? null : openPopup(), options, signal, messages));
}

/**
 * externalCeremony runs an external method's start at url, in a turn that
 * exclusive gave, in popup (from openPopup, opened on the user's click), or
 * with a full-page round trip when popup is null. It closes the popup
 * whichever way it ends. It rejects where the network throws.
 *
 * @param {string} url
 * @param {Window | null} popup
 * @param {ExternalGrant} grant
 * @param {AbortSignal} signal
 * @param {Messages} messages
 * @returns {Promise<Result>}
 */
export async function externalCeremony(url, popup, grant, signal, messages) {
  try {
    const returnTo = typeof grant.returnTo === "string" && grant.returnTo !== "" ? grant.returnTo : location.pathname + location.search;
    const answer = await postJSON(url, { ...grantRequest(grant), return_to: returnTo, popup: popup !== null }, signal);
    const data = answer.data && typeof answer.data === "object" ? /** @type {{redirect?: unknown, state?: unknown}} */ (answer.data) : {};
    if (!answer.ok) {
      return serverFailure(answer, messages);
    }
    const redirect = webURL(data.redirect);
    if (!redirect || (popup && (typeof data.state !== "string" || data.state === ""))) {
      return clientFailure("error", messages, "server", answer.status);
    }
    if (!popup) {
      location.assign(redirect);
      return clientFailure("redirected", messages);
    }
    if (popup.closed) {
      return clientFailure("cancelled", messages);
    }
    popup.location.replace(redirect);
    return await callback(popup, /** @type {string} */ (data.state), signal, messages);
  } finally {
    if (popup && !popup.closed) {
      popup.close();
    }
  }
}

/**
 * callback waits for the callback page's message about the start named
 * state: a window message from this origin, or one on the BroadcastChannel
 * (same origin by design). A refusal of a callback that found no start
 * (state "") counts only when the popup itself sent it. The popup closed
 * without a message is "cancelled"; signal aborting is "aborted".
 *
 * @param {Window} popup
 * @param {string} state
 * @param {AbortSignal} signal
 * @param {Messages} messages
 * @returns {Promise<Result>}
 */
function callback(popup, state, signal, messages) {
  return new Promise((resolve) => {
    /** @type {BroadcastChannel | null} */
    let channel = null;
    let grace = 0;
    /** @param {Result} result */
    const done = (result) => {
      window.removeEventListener("message", onMessage);
      signal.removeEventListener("abort", onAbort);
      if (channel) {
        channel.close();
      }
      clearInterval(poll);
      clearTimeout(grace);
      resolve(result);
    };
    const onAbort = () => done(clientFailure("aborted", messages));
    /** @param {MessageEvent} event */
    const onMessage = (event) => {
      if (event.origin === location.origin) {
        const result = readMessage(event.data, state, event.source === popup, messages);
        if (result) {
          done(result);
        }
      }
    };
    const poll = setInterval(() => {
      if (popup.closed && !grace) {
        grace = setTimeout(() => done(clientFailure("cancelled", messages)), POPUP_GRACE_MS);
      }
    }, POPUP_POLL_MS);
    window.addEventListener("message", onMessage);
    signal.addEventListener("abort", onAbort, { once: true });
    if (typeof BroadcastChannel === "function") {
      channel = new BroadcastChannel(EXTERNAL_CHANNEL);
      channel.onmessage = (event) => {
        const result = readMessage(event.data, state, false, messages);
        if (result) {
          done(result);
        }
      };
    }
    if (signal.aborted) {
      onAbort();
    }
  });
}

/**
 * readMessage is the result a callback page's message reports about the
 * start named state, or null when it is not such a message. The provider's
 * error ("canceled": the user closed its sign-in) is "cancelled"; another
 * refusal is the server's code and message, as any ceremony's. The page's
 * step-up token, if any, is not read: tokens are for API clients.
 *
 * @param {unknown} data
 * @param {string} state
 * @param {boolean} fromPopup
 * @param {Messages} messages
 * @returns {Result | null}
 */
export function readMessage(data, state, fromPopup, messages) {
  if (!data || typeof data !== "object") {
    return null;
  }
  const m = /** @type {{type?: unknown, state?: unknown, ok?: unknown, error?: unknown, message?: unknown, reauthenticated_at?: unknown}} */ (data);
  if (m.type !== EXTERNAL_MESSAGE || !(m.state === state || (m.state === "" && fromPopup && m.ok !== true))) {
    return null;
  }
  if (m.ok === true) {
    // A method's page that sends no time: the grant is a moment old.
    const at = typeof m.reauthenticated_at === "string" && m.reauthenticated_at !== "" ? m.reauthenticated_at : new Date().toISOString();
    return { ok: true, reauthenticatedAt: at };
  }
  if (m.error === PROVIDER_CANCELED) {
    return clientFailure("cancelled", messages);
  }
  if (typeof m.error !== "string" || m.error === "") {
    return clientFailure("error", messages, "failed");
  }
  return serverFailure({ status: 0, data: { error: m.error, message: m.message } }, messages);
}

/**
 * webURL is value when it is an http or https URL, else "".
 *
 * @param {unknown} value
 * @returns {string}
 */
function webURL(value) {
  if (typeof value !== "string") {
    return "";
  }
  try {
    const u = new URL(value, location.href);
    return u.protocol === "https:" || u.protocol === "http:" ? u.href : "";
  } catch {
    return "";
  }
}

/**
 * The names of the methods that finish elsewhere: the 403's "external"
 * and the page's own list (the option external), whatever is a string.
 *
 * @param {{external?: unknown}} info
 * @param {{external?: unknown}} options
 * @returns {Set<string>}
 */
export function externalMethods(info, options) {
  /** @type {Set<string>} */
  const names = new Set();
  for (const list of [info && info.external, options && options.external]) {
    if (Array.isArray(list)) {
      for (const name of list) {
        if (typeof name === "string" && name !== "" && name !== "passkey") {
          names.add(name);
        }
      }
    }
  }
  return names;
}
