// @ts-check
// A button that confirms ---------------------------------------------------

import { reauthenticate } from "./ceremony.js";

/** @import { Messages, Result } from "./reasons.js" */
/** @import { PasskeyOptions } from "./ceremony.js" */

/**
 * Makes button start a confirmation when clicked: the click runs
 * reauthenticate(opts) and passes its result to opts.onResult. The button is
 * disabled (and aria-busy) while the ceremony runs. Only a click starts it.
 *
 * @param {HTMLButtonElement} button
 * @param {PasskeyOptions & {messages?: Messages, signal?: AbortSignal, onResult?: (result: Result) => void}} [opts]
 * @returns {() => void} a function that removes the click handler
 */
export function bindReauthButton(button, opts = {}) {
  /** @param {Event} event */
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
