// @ts-check
// fetch() with a step-up -----------------------------------------------------

import { reauthenticate, reauthenticateWithSecret, defaultMethodURL } from "./ceremony.js";
import { externalMethods, reauthenticateExternal } from "./external.js";
import { clientFailure, messagesFrom } from "./reasons.js";
import { focused, stepUpDialog } from "./dialog.js";

/** @import { Messages, Result } from "./reasons.js" */
/** @import { DialogOptions, StepUpInfo } from "./dialog.js" */

/**
 * What a page's confirm answers: false (declined), true (run the passkey
 * ceremony), {method, secret} (post the secret to that method) or {method}
 * for a method that finishes elsewhere (open its popup: resolve right on
 * the user's click, or the browser may block it).
 *
 * @typedef {boolean | {method: string, secret?: string}} ConfirmAnswer
 */

/**
 * @typedef {DialogOptions & {
 *   confirm?: (info: StepUpInfo, context: {signal: AbortSignal}) => Promise<ConfirmAnswer> | ConfirmAnswer,
 *   onReauth?: (result: Result) => void,
 * }} FetchOptions
 */

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
 * instead"), a field for the secret of another method, a button that opens
 * the sign-in at the provider for a method that finishes elsewhere (the
 * 403's "external", or options.external), or, when the user has no usable
 * method, a message that one must be set up. Pass confirm to use your own:
 * confirm(info, {signal}) resolves to false (declined), true (run the
 * passkey ceremony), {method, secret} (post the secret to that method) or
 * {method} for a method that finishes elsewhere (reauthenticateExternal);
 * signal aborts when the request's signal does.
 *
 * The confirmation is one ceremony (see reauthenticate): it aborts one in
 * flight, and a newer one aborts it. Aborting the request's signal
 * (init.signal) aborts its confirmation too.
 *
 * It resolves to the response of the retry, or to the first response when
 * there was nothing to confirm, the user declined, or the confirmation
 * failed. It rejects only where fetch() would. options.onReauth, if given,
 * receives the result of the confirmation ({ok: false, reason: "cancelled"}
 * when the user declined, "no_method" when there was nothing to confirm
 * with, "aborted" when a newer ceremony replaced it, "redirected" when the
 * browser blocked the provider's popup and the page is on its way there).
 *
 * When the default dialog closes, the focus goes back to the element that
 * had it when fetchWithStepUp was called (the button that was pressed,
 * say), as soon as that element can take it again: see stepUpDialog's
 * returnFocus, which options.returnFocus is passed to. options.labels and
 * options.messages are the texts (see LABELS and MESSAGES).
 *
 * @param {RequestInfo | URL} input
 * @param {RequestInit} [init]
 * @param {FetchOptions} [options]
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
  const signal = base.signal;
  const result =
    typeof confirm === "function"
      ? await confirmWith(confirm, info, { ...options, signal })
      : await stepUpDialog(info, { ...options, returnFocus, signal });
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

/**
 * confirmWith asks the page's own confirm, then runs what it chose. Only
 * the ceremony takes the turn, not the page's question.
 *
 * @param {NonNullable<FetchOptions["confirm"]>} confirm
 * @param {StepUpInfo} info
 * @param {FetchOptions & {signal: AbortSignal}} options
 * @returns {Promise<Result>}
 */
async function confirmWith(confirm, info, options) {
  const { optionsURL, verifyURL, methodURL = defaultMethodURL, returnTo, popup, signal } = options;
  const messages = messagesFrom(options.messages);
  /** @type {ConfirmAnswer} */
  let answer = false;
  try {
    answer = await confirm(info, { signal });
  } catch {
    answer = false;
  }
  if (signal.aborted) {
    return clientFailure("aborted", messages);
  }
  const grant = { scope: info.scope, operation: info.operation, messages, signal };
  if (answer && typeof answer === "object" && externalMethods(info, options).has(answer.method)) {
    return reauthenticateExternal(answer.method, { ...grant, methodURL, returnTo, popup });
  }
  if (answer && typeof answer === "object" && typeof answer.method === "string" && answer.method !== "passkey") {
    return reauthenticateWithSecret(methodURL(answer.method), String(answer.secret || ""), grant);
  }
  if (!answer) {
    return clientFailure("cancelled", messages);
  }
  if (Array.isArray(info.methods) && !info.methods.includes("passkey")) {
    return clientFailure("no_method", messages);
  }
  return reauthenticate({ optionsURL, verifyURL, ...grant });
}

/**
 * @param {Request} base
 * @param {ArrayBuffer | undefined} body
 * @returns {Request}
 */
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

/**
 * stepUpInfo returns the body of a 403 reauthentication_required answer,
 * or null for any other answer. It leaves res unread.
 *
 * @param {Response} res
 * @returns {Promise<StepUpInfo | null>}
 */
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
