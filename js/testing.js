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

/**
 * @typedef {object} Popup
 * @property {boolean} closed
 * @property {string} href where the page sent it ("" while blank)
 * @property {{replace: (url: string) => void}} location
 * @property {() => void} close
 */

/**
 * browser installs what a page has besides fetch, for the methods that
 * finish elsewhere: window (open, and its message events), location (of a
 * page at http://app.test/account?tab=keys; assign records where the page
 * went). window.open opens a Popup, or returns null when blocked is true.
 * It returns the popups opened, the pages location.assign went to, and
 * post(data, origin, source), which delivers a window message.
 *
 * @param {import("node:test").TestContext} t
 * @param {{blocked?: boolean}} [options]
 */
export function browser(t, { blocked = false } = {}) {
  /** @type {Popup[]} */
  const popups = [];
  /** @type {string[]} */
  const assigned = [];
  const win = new EventTarget();
  Object.assign(win, {
    open: () => {
      if (blocked) {
        return null;
      }
      /** @type {Popup} */
      const popup = {
        closed: false,
        href: "",
        location: { replace: (/** @type {string} */ url) => void (popup.href = url) },
        close: () => void (popup.closed = true),
      };
      popups.push(popup);
      return popup;
    },
  });
  const loc = {
    origin: "http://app.test",
    href: "http://app.test/account?tab=keys",
    pathname: "/account",
    search: "?tab=keys",
    assign: (/** @type {string} */ url) => void assigned.push(url),
  };
  for (const [name, value] of Object.entries({ window: win, location: loc })) {
    const had = Object.getOwnPropertyDescriptor(globalThis, name);
    Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
    t.after(() => {
      if (had) {
        Object.defineProperty(globalThis, name, had);
      } else {
        delete (/** @type {any} */ (globalThis)[name]);
      }
    });
  }
  /**
   * @param {unknown} data
   * @param {string} [origin]
   * @param {unknown} [source]
   */
  const post = (data, origin = loc.origin, source = popups[popups.length - 1]) => {
    const event = Object.assign(new Event("message"), { data, origin, source });
    win.dispatchEvent(event);
  };
  return { popups, assigned, post };
}

/**
 * until polls cond until it is true (for up to 5 seconds).
 *
 * @param {() => boolean} cond
 */
export async function until(cond) {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) {
      throw new Error("waited 5 s in vain");
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
