// @ts-check
// Results and their reasons ------------------------------------------------
//
// Every confirmation resolves to a Result; none rejects. A failure has a
// reason from one vocabulary: the server's error codes (wrong_secret,
// unknown_credential, ...: the "error" of its JSON answer, passed through)
// beside the client's own outcomes, CLIENT_REASONS, which the server never
// sends. docs/browser-client.md has the table.
//
// Every message is the page's to translate (the messages option): by
// default the client's own are MESSAGES (English), and a server code keeps
// the server's message unless the page has one for that code.

/** @typedef {{ok: true, reauthenticatedAt: string}} Success */
/** @typedef {{ok: false, reason: string, message: string}} Failure */
/** @typedef {Success | Failure} Result */
/** @typedef {string | ((status: number) => string)} Message */
/** @typedef {Record<string, Message>} Messages */

/**
 * The reasons of the client's own outcomes, which the server never sends:
 * what each means is in docs/browser-client.md.
 */
export const CLIENT_REASONS = Object.freeze(["cancelled", "aborted", "no_method", "redirected", "error"]);

/**
 * The messages of the client's own outcomes, in English. Pass your own as
 * options.messages (to reauthenticate, reauthenticateWithSecret,
 * reauthenticateExternal, bindReauthButton, fetchWithStepUp or
 * stepUpDialog): any left out keep their English default. The keys are the
 * client's reasons (cancelled, aborted, no_method, redirected) and, for the
 * reason "error", what went wrong (unsupported, network, security, server,
 * failed). A key that is a server
 * code, such as wrong_secret, replaces the server's message for it.
 * server is a function of the HTTP status; a plain string works too.
 */
export const MESSAGES = Object.freeze({
  cancelled: "The confirmation was cancelled.",
  aborted: "A newer confirmation replaced this one.",
  no_method: "This action needs a passkey or another way to confirm it's you. Set one up first, then try again.",
  redirected: "Taking you to your sign-in provider…",
  // reason "error":
  unsupported: "This browser cannot use passkeys.",
  network: "Could not reach the server. Check your connection and try again.",
  security: "This page is not allowed to use passkeys.",
  /** @param {number} status */
  server: (status) => `The server gave an unexpected answer (HTTP ${status}). Try again.`,
  failed: "The confirmation did not work. Try again.",
});

/**
 * messagesFrom is MESSAGES with the page's own over it.
 *
 * @param {Messages} [custom]
 * @returns {Messages}
 */
export function messagesFrom(custom) {
  return { ...MESSAGES, ...(custom && typeof custom === "object" ? custom : {}) };
}

/**
 * text is the message for key (a function is called with status); a key
 * that messages lacks falls back to MESSAGES.failed.
 *
 * @param {Messages} messages
 * @param {string} key
 * @param {number} [status]
 * @returns {string}
 */
export function text(messages, key, status = 0) {
  const m = hasOwn(messages, key) ? messages[key] : MESSAGES.failed;
  const s = typeof m === "function" ? m(status) : m;
  return typeof s === "string" && s !== "" ? s : MESSAGES.failed;
}

/**
 * @param {string} reason
 * @param {string} message
 * @returns {Failure}
 */
export function failure(reason, message) {
  return { ok: false, reason, message };
}

/**
 * clientFailure is a failure with one of the client's reasons; for "error",
 * key says which message (unsupported, network, security, server, failed).
 *
 * @param {"cancelled" | "aborted" | "no_method" | "redirected" | "error"} reason
 * @param {Messages} messages
 * @param {string} [key]
 * @param {number} [status]
 * @returns {Failure}
 */
export function clientFailure(reason, messages, key = reason, status = 0) {
  return failure(reason, text(messages, key, status));
}

/**
 * serverFailure reads a refusal: the server's code as the reason, with the
 * page's message for it, else the server's, else MESSAGES.failed. An answer
 * without a code is the reason "error" (message key "server").
 *
 * @param {{status: number, data: unknown}} answer
 * @param {Messages} messages
 * @returns {Failure}
 */
export function serverFailure({ status, data }, messages) {
  const body = data && typeof data === "object" ? /** @type {{error?: unknown, message?: unknown}} */ (data) : {};
  if (typeof body.error !== "string" || body.error === "") {
    return clientFailure("error", messages, "server", status);
  }
  const code = body.error;
  // A client key never stands in for a server code: only the page's own.
  if (hasOwn(messages, code) && !hasOwn(MESSAGES, code)) {
    return failure(code, text(messages, code, status));
  }
  return failure(code, typeof body.message === "string" && body.message !== "" ? body.message : text(messages, "failed"));
}

/**
 * thrownFailure maps what a ceremony threw to its reason: "aborted" when
 * signal was aborted (a newer ceremony, or the page's signal), "cancelled"
 * for NotAllowedError (the user dismissed the passkey prompt, or no passkey
 * matched), else "error": SecurityError (message key security), TypeError
 * (network: fetch rejects with it) or anything else (failed).
 *
 * @param {unknown} err
 * @param {AbortSignal} signal
 * @param {Messages} messages
 * @returns {Failure}
 */
export function thrownFailure(err, signal, messages) {
  if (signal.aborted) {
    return clientFailure("aborted", messages);
  }
  switch (err && typeof err === "object" && "name" in err ? err.name : "") {
    case "NotAllowedError":
      return clientFailure("cancelled", messages);
    case "SecurityError":
      return clientFailure("error", messages, "security");
    case "TypeError":
      return clientFailure("error", messages, "network");
    default:
      return clientFailure("error", messages, "failed");
  }
}

/**
 * @param {object} o
 * @param {string} key
 */
export function hasOwn(o, key) {
  return Object.prototype.hasOwnProperty.call(o, key);
}
