// @ts-check
// WebAuthn's JSON by hand ---------------------------------------------------
//
// Where the browser has PublicKeyCredential.parseRequestOptionsFromJSON()
// and PublicKeyCredential.prototype.toJSON(), they are used; elsewhere these
// convert base64url by hand.

/**
 * parseRequestOptions turns PublicKeyCredentialRequestOptionsJSON into the
 * options navigator.credentials.get() takes.
 *
 * @param {PublicKeyCredentialRequestOptionsJSON} json
 * @returns {PublicKeyCredentialRequestOptions}
 */
export function parseRequestOptions(json) {
  if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function") {
    return PublicKeyCredential.parseRequestOptionsFromJSON(json);
  }
  const { challenge, allowCredentials, ...rest } = json;
  // The rest goes as it came: stepup's options carry no binary but the
  // challenge and the credential IDs (no extensions to convert).
  const options = /** @type {PublicKeyCredentialRequestOptions} */ ({ ...rest, challenge: fromBase64URL(challenge) });
  if (Array.isArray(allowCredentials)) {
    options.allowCredentials = allowCredentials.map((c) => ({
      ...c,
      type: "public-key",
      id: fromBase64URL(c.id),
      transports: /** @type {AuthenticatorTransport[] | undefined} */ (c.transports),
    }));
  }
  return options;
}

/**
 * credentialToJSON is PublicKeyCredential.prototype.toJSON() for an
 * assertion.
 *
 * @param {PublicKeyCredential} credential
 * @returns {object}
 */
export function credentialToJSON(credential) {
  if (typeof credential.toJSON === "function") {
    return credential.toJSON();
  }
  const r = /** @type {AuthenticatorAssertionResponse} */ (credential.response);
  /** @type {Record<string, unknown>} */
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

/**
 * @param {ArrayBuffer | ArrayBufferView} buffer
 * @returns {string}
 */
export function toBase64URL(buffer) {
  const bytes = ArrayBuffer.isView(buffer)
    ? new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
    : new Uint8Array(buffer);
  let s = "";
  for (let i = 0; i < bytes.length; i++) {
    s += String.fromCharCode(bytes[i]);
  }
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * @param {string} s
 * @returns {ArrayBuffer}
 */
export function fromBase64URL(s) {
  const b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
  const bytes = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) {
    bytes[i] = b.charCodeAt(i);
  }
  return bytes.buffer;
}
