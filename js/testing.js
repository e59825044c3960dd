// Stubs for the unit tests in test/: a server behind fetch() and a browser's
// WebAuthn, in Node, where neither exists.

/**
 * @typedef {object} Sent
 * @property {string} method
 * @property {string} path
 * @property {Record<string, string>} headers
 * @property {string} body
 */

/**
 * @typedef {(req: Sent, signal: AbortSignal) => Response | Promise<Response>} Route
 */

/**
 * serve replaces globalThis.fetch with routes ("METHOD /path" → handler),
 * for the rest of the test; a request without a route is a 404. It returns
 * every request sent, in order. A handler may return never(signal): an
 * answer that does not come until the request is aborted.
 *
 * @param {import("node:test").TestContext} t
 * @param {Record<string, Route>} routes
 * @returns {Sent[]}
 */
export function serve(t, routes) {
  /** @type {Sent[]} */
  const sent = [];
  const real = globalThis.fetch;
  globalThis.fetch = async (input, init) => {
    const req = input instanceof Request ? new Request(input, init) : new Request(new URL(String(input), "http://app.test"), init);
    const url = new URL(req.url);
    const body = req.body === null ? "" : await req.text();
    const s = { method: req.method, path: url.pathname, headers: Object.fromEntries(req.headers), body };
    sent.push(s);
    req.signal.throwIfAborted();
    const route = routes[`${req.method} ${url.pathname}`];
    if (!route) {
      return json(404, { error: "not_found" });
    }
    return route(s, req.signal);
  };
  t.after(() => {
    globalThis.fetch = real;
  });
  return sent;
}

/**
 * json is a JSON answer.
 *
 * @param {number} status
 * @param {unknown} body
 */
export function json(status, body) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

/**
 * never is an answer that never comes: it rejects, as fetch() does, when
 * signal aborts.
 *
 * @param {AbortSignal} signal
 * @returns {Promise<Response>}
 */
export function never(signal) {
  return new Promise((_, reject) => {
    signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}

/**
 * The 403 of a gate.
 *
 * @param {object} [extra]
 */
export function stepUpRequired(extra = {}) {
  return json(403, { error: "reauthentication_required", message: "Confirm it's you to continue.", max_age: 300, ...extra });
}

const bytes = (/** @type {string} */ s) => new TextEncoder().encode(s).buffer;

/**
 * webauthn installs a browser's WebAuthn: PublicKeyCredential (without the
 * JSON helpers, so that the module's own conversion runs) and
 * navigator.credentials.get, which calls get(options) and answers with its
 * credential. It returns the calls of get and of
 * PublicKeyCredential.signalUnknownCredential.
 *
 * @param {import("node:test").TestContext} t
 * @param {(options: CredentialRequestOptions) => unknown} [get] what get returns or throws; an assertion by default
 */
export function webauthn(t, get = () => assertion()) {
  /** @type {CredentialRequestOptions[]} */
  const gets = [];
  /** @type {unknown[]} */
  const signals = [];
  const had = Object.getOwnPropertyDescriptor(globalThis, "navigator");
  const PublicKeyCredential = {
    signalUnknownCredential: async (/** @type {unknown} */ o) => {
      signals.push(o);
    },
  };
  Object.defineProperty(globalThis, "PublicKeyCredential", { value: PublicKeyCredential, configurable: true, writable: true });
  Object.defineProperty(globalThis, "navigator", {
    value: {
      credentials: {
        get: async (/** @type {CredentialRequestOptions} */ options) => {
          gets.push(options);
          return get(options);
        },
      },
    },
    configurable: true,
    writable: true,
  });
  t.after(() => {
    delete (/** @type {any} */ (globalThis).PublicKeyCredential);
    if (had) {
      Object.defineProperty(globalThis, "navigator", had);
    } else {
      delete (/** @type {any} */ (globalThis).navigator);
    }
  });
  return { gets, signals };
}

/**
 * assertion is a PublicKeyCredential for an assertion, without toJSON().
 *
 * @param {string} [id] its base64url ID
 */
export function assertion(id = "Y3JlZA") {
  return {
    id,
    rawId: bytes("cred"),
    type: "public-key",
    authenticatorAttachment: "platform",
    response: {
      clientDataJSON: bytes("client"),
      authenticatorData: bytes("auth"),
      signature: bytes("sig"),
      userHandle: bytes("ada"),
    },
    getClientExtensionResults: () => ({}),
  };
}

/**
 * waitingGet is a get that does not answer until its signal aborts, as a
 * passkey prompt left open; then it throws the browser's AbortError.
 *
 * @param {CredentialRequestOptions} options
 */
export function waitingGet(options) {
  const signal = /** @type {AbortSignal} */ (options.signal);
  return new Promise((_, reject) => {
    signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")), { once: true });
  });
}

/**
 * domError is what a browser throws: a DOMException named name.
 *
 * @param {string} name
 */
export function domError(name) {
  return () => {
    throw new DOMException(name, name);
  };
}

/**
 * tick lets pending promises run.
 */
export function tick() {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
