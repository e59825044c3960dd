// @ts-check
// The ceremony and its transport -------------------------------------------
//
// What talks to the server and to the browser's WebAuthn: the passkey
// ceremony (options, navigator.credentials.get, verify), the secret of
// another method, and the one rule they share, one ceremony at a time
// (exclusive). The dialog and fetchWithStepUp use only what this part
// exports: exclusive, passkeyCeremony, secretCeremony and the public
// reauthenticate and reauthenticateWithSecret; the methods that finish
// elsewhere (external.js) use its transport, postJSON and grantRequest.

import { clientFailure, serverFailure, thrownFailure, messagesFrom } from "./reasons.js";
import { parseRequestOptions, credentialToJSON } from "./encoding.js";

/** @import { Failure, Messages, Result, Success } from "./reasons.js" */

/**
 * What grant to ask for: a scope, and an operation (the operation object of
 * a Bind gate's 403, or its digest).
 *
 * @typedef {{scope?: string, operation?: string | {digest: string}}} Grant
 */

/**
 * @typedef {Grant & {optionsURL?: string, verifyURL?: string}} PasskeyOptions
 */

const DEFAULT_OPTIONS_URL = "/api/reauth/options";
const DEFAULT_VERIFY_URL = "/api/reauth/verify";

/**
 * The endpoint of a Method other than a passkey: StepUp.MethodHandler,
 * mounted at /api/reauth/{name} unless the page says otherwise.
 *
 * @param {string} name
 * @returns {string}
 */
export const defaultMethodURL = (name) => `/api/reauth/${encodeURIComponent(name)}`;

// One ceremony at a time ----------------------------------------------------
//
// The turn of the ceremony in flight, if any. Every entry point takes the
// turn through exclusive: reauthenticate (and so bindReauthButton),
// reauthenticateWithSecret, and stepUpDialog for as long as it is open
// (it is the ceremony's own form: it may post a secret or start the
// passkey prompt at any moment). fetchWithStepUp takes it through these.
// The newest wins: taking the turn aborts the ceremony in flight, whose
// requests and passkey prompt are aborted and which resolves to
// {ok: false, reason: "aborted"}; an open dialog closes.

/** @type {AbortController | null} */
let current = null;

/**
 * exclusive runs one ceremony, run(signal), in its turn: it aborts the
 * ceremony in flight, if any, and gives run a signal that aborts when a
 * newer ceremony starts or when the caller's signal aborts. What run
 * throws becomes a Failure (thrownFailure): exclusive never rejects.
 *
 * @template {Result} T
 * @param {AbortSignal | null | undefined} signal the caller's, if any
 * @param {Messages} messages
 * @param {(signal: AbortSignal) => Promise<T | Failure>} run
 * @returns {Promise<T | Failure>}
 */
export async function exclusive(signal, messages, run) {
  if (current) {
    current.abort(new DOMException("A newer confirmation started.", "AbortError"));
  }
  const turn = new AbortController();
  current = turn;
  const stop = () => turn.abort(signal && signal.reason);
  if (signal) {
    if (signal.aborted) {
      stop();
    } else {
      signal.addEventListener("abort", stop, { once: true });
    }
  }
  try {
    if (turn.signal.aborted) {
      return clientFailure("aborted", messages);
    }
    return await run(turn.signal);
  } catch (err) {
    return thrownFailure(err, turn.signal, messages);
  } finally {
    if (signal) {
      signal.removeEventListener("abort", stop);
    }
    if (current === turn) {
      current = null;
    }
  }
}

/**
 * Confirms with a passkey that the signed-in user is at the keyboard, and so
 * gives the session a fresh step-up grant.
 *
 * It POSTs to optionsURL for request options, asks the browser for an
 * assertion with navigator.credentials.get(), and POSTs the assertion as JSON
 * to verifyURL. It takes the one turn for a ceremony: a ceremony still in
 * flight (of any kind) is aborted.
 *
 * scope and operation ask for a grant that a scoped or operation-bound gate
 * accepts: pass the "scope" and "operation" of the gate's 403 body (the
 * operation object or its digest). They are posted to optionsURL as
 * {"scope": ..., "operation": digest}; without them the options request has
 * no body. fetchWithStepUp does this for you.
 *
 * The promise never rejects. It resolves to {ok: true, reauthenticatedAt},
 * the server's RFC 3339 time of the grant, or to {ok: false, reason, message}
 * where reason is a server code (such as "unknown_credential" or
 * "credential_not_owned") or one of the client's: "cancelled" when the user
 * dismissed the prompt or no passkey matched (show no error for it),
 * "aborted" when a newer ceremony or options.signal ended it, "error" for
 * anything else (network, an answer that is not JSON, SecurityError, no
 * WebAuthn in this browser). Messages come from options.messages (see
 * MESSAGES).
 *
 * When the server answers 404 unknown_credential, the passkey is not
 * registered for any account, and the browser is told so with
 * PublicKeyCredential.signalUnknownCredential() where it exists, so that it
 * may stop offering it. On any other answer it is not: a 403
 * credential_not_owned means the passkey belongs to another account on this
 * device, and it must stay.
 *
 * @param {PasskeyOptions & {messages?: Messages, signal?: AbortSignal}} [options]
 * @returns {Promise<Result>}
 */
export function reauthenticate(options = {}) {
  const messages = messagesFrom(options.messages);
  return exclusive(options.signal, messages, (signal) => passkeyCeremony(options, signal, messages));
}

/**
 * Confirms with a secret (a password, a code from an authenticator app) that
 * the signed-in user is at the keyboard, through the handler of a Method
 * (StepUp.MethodHandler). It POSTs {"secret", "scope", "operation"} to url.
 * It takes the one turn for a ceremony, as reauthenticate() does, and like
 * it never rejects: it resolves to {ok: true, reauthenticatedAt} or
 * {ok: false, reason, message}, where reason is the server's code (such as
 * "wrong_secret" or "too_many_attempts"), "aborted" or "error".
 *
 * @param {string} url
 * @param {string} secret
 * @param {Grant & {messages?: Messages, signal?: AbortSignal}} [options]
 * @returns {Promise<Result>}
 */
export function reauthenticateWithSecret(url, secret, options = {}) {
  const messages = messagesFrom(options.messages);
  return exclusive(options.signal, messages, (signal) => secretCeremony(url, secret, options, signal, messages));
}

/**
 * passkeyCeremony is the passkey ceremony, in a turn that exclusive gave:
 * it rejects where the network or the browser throws.
 *
 * @param {PasskeyOptions} options
 * @param {AbortSignal} signal
 * @param {Messages} messages
 * @returns {Promise<Result>}
 */
export async function passkeyCeremony(options, signal, messages) {
  const { optionsURL = DEFAULT_OPTIONS_URL, verifyURL = DEFAULT_VERIFY_URL } = options;
  if (typeof PublicKeyCredential === "undefined" || typeof navigator === "undefined" || !navigator.credentials) {
    return clientFailure("error", messages, "unsupported");
  }
  const answer = await postJSON(optionsURL, grantRequest(options), signal);
  const json = /** @type {PublicKeyCredentialRequestOptionsJSON | null} */ (answer.data);
  if (!answer.ok || !json || typeof json.challenge !== "string") {
    return serverFailure(answer, messages);
  }
  const publicKey = parseRequestOptions(json);
  const credential = /** @type {PublicKeyCredential | null} */ (await navigator.credentials.get({ publicKey, signal }));
  if (!credential) {
    return clientFailure("error", messages, "failed");
  }
  const verify = await postJSON(verifyURL, credentialToJSON(credential), signal);
  const granted = success(verify);
  if (granted) {
    return granted;
  }
  if (verify.status === 404 && errorCode(verify.data) === "unknown_credential") {
    await signalUnknownCredential(json.rpId || location.hostname, credential.id);
  }
  return serverFailure(verify, messages);
}

/**
 * secretCeremony posts secret to url, in a turn that exclusive gave: it
 * rejects where the network throws.
 *
 * @param {string} url
 * @param {string} secret
 * @param {Grant} grant
 * @param {AbortSignal} signal
 * @param {Messages} messages
 * @returns {Promise<Result>}
 */
export async function secretCeremony(url, secret, grant, signal, messages) {
  const answer = await postJSON(url, { secret, ...grantRequest(grant) }, signal);
  return success(answer) || serverFailure(answer, messages);
}

/**
 * grantRequest is the body of the options request, and the rest of a
 * secret's: what grant to make.
 *
 * @param {Grant} grant
 * @returns {{scope?: string, operation?: string}}
 */
export function grantRequest({ scope, operation }) {
  /** @type {{scope?: string, operation?: string}} */
  const request = {};
  if (typeof scope === "string" && scope !== "") {
    request.scope = scope;
  }
  const digest = typeof operation === "string" ? operation : operation && operation.digest;
  if (typeof digest === "string" && digest !== "") {
    request.operation = digest;
  }
  return request;
}

/** @typedef {{ok: boolean, status: number, data: unknown}} Answer */

/**
 * postJSON POSTs body as JSON (an empty object is no body) with the page's
 * cookies and returns the status and the decoded JSON answer (null if it is
 * not JSON).
 *
 * @param {string} url
 * @param {object} body
 * @param {AbortSignal} signal
 * @returns {Promise<Answer>}
 */
export async function postJSON(url, body, signal) {
  const empty = Object.keys(body).length === 0;
  /** @type {Record<string, string>} */
  const headers = { Accept: "application/json" };
  if (!empty) {
    headers["Content-Type"] = "application/json";
  }
  const res = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    cache: "no-store",
    headers,
    body: empty ? undefined : JSON.stringify(body),
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

/**
 * success is the grant an answer reports, or null.
 *
 * @param {Answer} answer
 * @returns {Success | null}
 */
function success({ ok, data }) {
  const at = data && typeof data === "object" ? /** @type {{reauthenticated_at?: unknown}} */ (data).reauthenticated_at : undefined;
  return ok && typeof at === "string" ? { ok: true, reauthenticatedAt: at } : null;
}

/**
 * @param {unknown} data
 * @returns {string}
 */
function errorCode(data) {
  const code = data && typeof data === "object" ? /** @type {{error?: unknown}} */ (data).error : undefined;
  return typeof code === "string" ? code : "";
}

/**
 * @param {string} rpId
 * @param {string} credentialId
 */
async function signalUnknownCredential(rpId, credentialId) {
  const pkc = /** @type {{signalUnknownCredential?: (o: {rpId: string, credentialId: string}) => Promise<void>}} */ (
    /** @type {unknown} */ (PublicKeyCredential)
  );
  if (typeof pkc.signalUnknownCredential !== "function") {
    return;
  }
  try {
    await pkc.signalUnknownCredential({ rpId, credentialId });
  } catch {
    // Only a hint to the browser; nothing to tell the user.
  }
}
