// @ts-check
// stepup.js: the browser half of github.com/passkey-stepup/stepup.
//
// A dependency-free ES module, served by StepUp.ScriptHandler. Import it from
// the page:
//
//	import { fetchWithStepUp, reauthenticate, bindReauthButton } from "/stepup.js";
//
// Nothing runs when the module loads: no request, no passkey prompt. A
// ceremony starts only when the page calls reauthenticate(),
// reauthenticateWithSecret() or reauthenticateExternal(), directly or
// through bindReauthButton(), fetchWithStepUp() or stepUpDialog(); one at a
// time, the newest winning.
// The passkey prompt is always the modal one, started by the user; this
// module never asks the browser for autofill.
//
// How to use it: docs/browser-client.md. Its parts, in order: results and
// their reasons; WebAuthn's JSON; the ceremony and its transport; a method
// that finishes elsewhere; a button that confirms; the texts of the
// dialogs; the dialogs; fetch() with a step-up.

export { MESSAGES } from "./reasons.js";
export { reauthenticate, reauthenticateWithSecret } from "./ceremony.js";
export { reauthenticateExternal } from "./external.js";
export { bindReauthButton } from "./button.js";
export { LABELS } from "./labels.js";
export { confirmDialog, stepUpDialog } from "./dialog.js";
export { fetchWithStepUp } from "./fetch.js";
