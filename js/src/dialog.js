// @ts-check
// The dialogs --------------------------------------------------------------
//
// stepUpDialog, the default confirmation of fetchWithStepUp, and
// confirmDialog, a plain yes or no. They are the ceremony's form and no
// more: they run it only through what ceremony.js and external.js export
// (exclusive, passkeyCeremony, secretCeremony; openPopup and
// externalCeremony), and every text comes from labels.js.

import { exclusive, passkeyCeremony, secretCeremony, defaultMethodURL } from "./ceremony.js";
import { clientFailure, failure, messagesFrom, text, thrownFailure } from "./reasons.js";
import { describe, labelsFrom, methodLabels } from "./labels.js";
import { externalCeremony, externalMethods, openPopup } from "./external.js";

/** @import { Failure, Messages, Result } from "./reasons.js" */
/** @import { Grant } from "./ceremony.js" */
/** @import { Labels } from "./labels.js" */

/**
 * Where the focus goes when a dialog closes: an element, a function called
 * then that returns one, or false (leave it where the browser puts it).
 *
 * @typedef {FocusTarget | (() => FocusTarget | null) | false | null} ReturnFocus
 */

/** @typedef {HTMLElement | SVGElement} FocusTarget */

/**
 * The body of a 403 reauthentication_required, with the page's action.
 *
 * @typedef {object} StepUpInfo
 * @property {string} [action] what the page is about to do, such as "delete your account"
 * @property {number} [max_age] how long the confirmation lasts, in seconds
 * @property {string} [scope]
 * @property {string[]} [methods] the gate's methods this user can use, in the gate's order
 * @property {string[]} [external] those of methods that finish elsewhere (at an identity provider)
 * @property {{digest: string, description?: string}} [operation] a Bind gate's operation
 */

/**
 * @typedef {object} DialogOptions
 * @property {Partial<Labels>} [labels]
 * @property {Messages} [messages]
 * @property {string} [optionsURL]
 * @property {string} [verifyURL]
 * @property {(name: string) => string} [methodURL]
 * @property {string[]} [external] methods that finish elsewhere, besides those the 403 lists as external
 * @property {string} [returnTo] where the page comes back to when the browser blocks the popup (default: this page)
 * @property {boolean} [popup] false: a method that finishes elsewhere goes by a full-page redirect, never a popup
 * @property {ReturnFocus} [returnFocus]
 * @property {AbortSignal} [signal]
 */

/**
 * A confirm for fetchWithStepUp that only asks "Confirm it's you?": a modal
 * <dialog> with a confirm and a Cancel button. It resolves to true on
 * confirm, false on Cancel or Escape (or when options.signal aborts), and
 * gives the focus back (see stepUpDialog's returnFocus). Style it with the
 * class "stepup-confirm" (and stepup-confirm-actions, stepup-confirm-ok,
 * stepup-confirm-cancel, stepup-confirm-operation); it brings no styles of
 * its own. stepUpDialog, the default, also handles methods other than a
 * passkey.
 *
 * It runs no ceremony, so it does not take the turn of one: the ceremony
 * that follows a true does. fetchWithStepUp passes {signal} to a confirm,
 * so that confirm: confirmDialog closes with the request's signal.
 *
 * The text says what the page is about to do, if it passes info.action
 * (such as "delete your account"), shows the description of the operation
 * of a Bind gate (info.operation.description), and says how long the
 * confirmation lasts (info.max_age, in seconds) or that it is for this
 * request only (a bound operation).
 *
 * @param {StepUpInfo} [info]
 * @param {{labels?: Partial<Labels>, returnFocus?: ReturnFocus, signal?: AbortSignal}} [options]
 * @returns {Promise<boolean>}
 */
export async function confirmDialog(info = {}, { labels: custom, returnFocus = focused(), signal } = {}) {
  const labels = labelsFrom(custom);
  const { id, dialog, text, actions } = newDialog(labels);
  text.textContent = describe(info, labels, labels.passkeyPrompt);
  appendOperation(dialog, id, info);
  const ok = button("stepup-confirm-ok", labels.confirm);
  const cancel = button("stepup-confirm-cancel", labels.cancel);
  actions.append(ok, cancel);
  dialog.append(actions);
  const value = await showDialog(dialog, returnFocus, () => ok, signal, (finish) => {
    ok.addEventListener("click", () => finish(true));
    cancel.addEventListener("click", () => finish(false));
  });
  return value === true;
}

/**
 * The default confirmation of fetchWithStepUp, for the 403 body info: a
 * modal <dialog> that runs the whole confirmation and resolves to its result
 * ({ok: true, reauthenticatedAt} or {ok: false, reason, message}). It never
 * rejects.
 *
 * With info.methods starting with "passkey", it asks to confirm with the
 * passkey; the confirm button (a click: never autofill) starts the passkey
 * prompt, and the next method, if any, is offered as a button such as "Use
 * your password instead". With another method first, it shows a field for
 * its secret and posts it to methodURL(name) (default /api/reauth/{name});
 * a wrong secret is said in the dialog and the user may try again until
 * the server's limit. A method that finishes elsewhere (info.external, or
 * options.external: a sign-in at the user's identity provider) has a
 * button, "Continue with your sign-in provider": the click opens a popup
 * (see reauthenticateExternal) and the dialog waits, Cancel still at hand,
 * until the provider's sign-in is done or the popup closes; where the
 * browser blocks the popup, the page goes to the provider itself (the
 * reason "redirected") and comes back to options.returnTo. With no method,
 * it says that one must be set up and
 * resolves to {ok: false, reason: "no_method"}. Cancel or Escape resolves
 * to {ok: false, reason: "cancelled"}, as does a dismissed passkey prompt,
 * and shows no error.
 *
 * It is one ceremony from the moment it opens until it resolves: it takes
 * the turn (a ceremony in flight is aborted), and a newer ceremony, or
 * options.signal, closes it with {ok: false, reason: "aborted"}.
 *
 * For assistive technology: the dialog is labelled by its title and
 * described by its text and, for a Bind gate, the operation's description
 * (shown as text, isolated with dir="auto"). While a secret is checked,
 * labels.working is put in a polite status region (stepup-confirm-status,
 * role="status"), never in the alert; a wrong secret is put in the alert
 * (stepup-confirm-error, role="alert"), and the field gets
 * aria-invalid="true" and aria-describedby pointing to it until the user
 * types again or switches method. The dialog is modal (the rest of the
 * page is inert): Tab and Shift+Tab cycle through its controls, and Escape
 * closes it (cancelled).
 *
 * When it closes, the focus goes to options.returnFocus: by default the
 * element that had the focus when stepUpDialog was called (fetchWithStepUp
 * passes the one focused when it was called); an element; a function,
 * called then, that returns one; or false to leave the focus where the
 * browser puts it. If that element cannot take the focus yet (the page
 * still has the button disabled), it gets it as soon as it can, within 10
 * seconds, unless the user has moved on to another element meanwhile.
 *
 * Every text comes from options.labels (see LABELS), and the texts of a
 * method from labels.methods[name] or the generic labels.method(name);
 * messages of results from options.messages (see MESSAGES). The field is
 * stepup-confirm-secret; the switch button stepup-confirm-instead.
 *
 * @param {StepUpInfo} [info]
 * @param {DialogOptions} [options]
 * @returns {Promise<Result>}
 */
export function stepUpDialog(info = {}, options = {}) {
  const returnFocus = options.returnFocus !== undefined ? options.returnFocus : focused();
  const messages = messagesFrom(options.messages);
  return exclusive(options.signal, messages, (signal) => runDialog(info, options, returnFocus, messages, signal));
}

/**
 * runDialog is stepUpDialog in its turn.
 *
 * @param {StepUpInfo} info
 * @param {DialogOptions} options
 * @param {ReturnFocus} returnFocus
 * @param {Messages} messages
 * @param {AbortSignal} signal
 * @returns {Promise<Result>}
 */
async function runDialog(info, options, returnFocus, messages, signal) {
  const { methodURL = defaultMethodURL } = options;
  const custom = options.messages || {};
  const labels = labelsFrom(options.labels, typeof custom.no_method === "string" ? custom.no_method : undefined);
  const methods = Array.isArray(info.methods) ? info.methods.filter((m) => typeof m === "string") : ["passkey"];
  const external = externalMethods(info, options);
  /** @param {string} name */
  const kindOf = (name) => (name === "passkey" ? "passkey" : external.has(name) ? "external" : "secret");
  /** @type {Grant} */
  const grant = { scope: info.scope, operation: info.operation };
  const { id, dialog, text: sentence, actions } = newDialog(labels);

  if (methods.length === 0) {
    sentence.textContent = labels.noMethod;
    const close = button("stepup-confirm-cancel", labels.close);
    actions.append(close);
    dialog.append(actions);
    await showDialog(dialog, returnFocus, () => close, signal, (finish) => close.addEventListener("click", () => finish()));
    return signal.aborted ? clientFailure("aborted", messages) : failure("no_method", labels.noMethod);
  }

  appendOperation(dialog, id, info);
  const form = document.createElement("form");
  form.className = "stepup-confirm-form";
  form.noValidate = true;
  const fieldLabel = document.createElement("label");
  fieldLabel.htmlFor = `${id}-secret`;
  const field = document.createElement("input");
  field.id = `${id}-secret`;
  field.className = "stepup-confirm-secret";
  field.required = true;
  // Errors only: a screen reader interrupts the user to say them.
  const error = document.createElement("p");
  error.id = `${id}-error`;
  error.className = "stepup-confirm-error";
  error.setAttribute("role", "alert");
  error.hidden = true;
  // Progress ("Checking…"): said when the user pauses. It stays in the page,
  // empty when idle, so that assistive technology notices what is put in it.
  const status = document.createElement("div");
  status.id = `${id}-status`;
  status.className = "stepup-confirm-status";
  status.setAttribute("role", "status");
  status.setAttribute("aria-live", "polite");
  const ok = button("stepup-confirm-ok", labels.confirm);
  ok.type = "submit";
  const cancel = button("stepup-confirm-cancel", labels.cancel);
  const instead = button("stepup-confirm-instead", "");
  actions.append(ok, cancel);
  form.append(fieldLabel, field, error, status, actions, instead);
  dialog.append(form);

  /** @param {string} message */
  const showError = (message) => {
    error.textContent = message;
    error.hidden = false;
    field.setAttribute("aria-invalid", "true");
    field.setAttribute("aria-describedby", error.id);
  };
  const clearError = () => {
    error.hidden = true;
    error.textContent = "";
    field.removeAttribute("aria-invalid");
    field.removeAttribute("aria-describedby");
  };
  field.addEventListener("input", () => {
    if (!error.hidden) {
      clearError();
    }
  });

  let index = 0;
  // What takes the focus: the field of a secret, else the confirm button.
  const focusTarget = () => (kindOf(methods[index]) === "secret" ? field : ok);
  const show = () => {
    const name = methods[index];
    const kind = kindOf(name);
    const m = methodLabels(labels, name, kind === "external");
    /** @type {(action: string) => string} */
    const prompt =
      kind === "passkey"
        ? labels.passkeyPrompt
        : kind === "external"
          ? (action) => labels.externalPrompt(m.name, action)
          : (action) => labels.secretPrompt(m.name, action);
    sentence.textContent = describe(info, labels, prompt);
    const secret = kind === "secret";
    fieldLabel.textContent = secret ? m.field : "";
    fieldLabel.hidden = field.hidden = !secret;
    field.disabled = !secret;
    field.value = "";
    field.type = m.type;
    field.setAttribute("autocomplete", m.autocomplete);
    ok.textContent = m.button;
    clearError();
    status.textContent = "";
    const next = methods[(index + 1) % methods.length];
    instead.hidden = methods.length < 2;
    instead.textContent = methodLabels(labels, next, kindOf(next) === "external").instead;
    instead.dataset.method = next;
    dialog.dataset.method = name;
  };
  show();

  let checking = false;
  // Ends a sign-in elsewhere still under way when the dialog closes (Cancel,
  // Escape) or its turn ends: the popup closes.
  const away = new AbortController();
  const leave = () => away.abort(signal.reason);
  signal.addEventListener("abort", leave, { once: true });
  /** @type {{passkey: true} | {result: Result} | undefined} */
  const outcome = await showDialog(dialog, returnFocus, focusTarget, signal, (finish) => {
    cancel.addEventListener("click", () => finish());
    instead.addEventListener("click", () => {
      index = (index + 1) % methods.length;
      show();
      focusTarget().focus();
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (checking) {
        return;
      }
      const name = methods[index];
      const kind = kindOf(name);
      if (kind === "passkey") {
        finish({ passkey: true });
        return;
      }
      if (kind === "external") {
        // The focus leaves the button, disabled while this runs, for Cancel,
        // the one thing left to do here; before the popup opens, which
        // takes the window's focus.
        checking = true;
        cancel.focus();
        ok.disabled = instead.disabled = true;
        // Now, in the click: a popup opened after an await is blocked.
        const popup = options.popup === false ? null : openPopup();
        form.setAttribute("aria-busy", "true");
        status.textContent = popup ? labels.externalWaiting : text(messages, "redirected");
        /** @type {Result} */
        let result;
        try {
          result = await externalCeremony(methodURL(name), popup, { ...grant, returnTo: options.returnTo }, away.signal, messages);
        } catch (err) {
          result = thrownFailure(err, away.signal, messages);
        }
        finish({ result });
        return;
      }
      if (field.value === "") {
        field.focus();
        return;
      }
      // The field stays enabled (read-only), so that it keeps the focus.
      checking = true;
      ok.disabled = instead.disabled = field.readOnly = true;
      form.setAttribute("aria-busy", "true");
      clearError();
      status.textContent = labels.working;
      /** @type {Result} */
      let result;
      try {
        result = await secretCeremony(methodURL(name), field.value, grant, signal, messages);
      } catch (err) {
        result = thrownFailure(err, signal, messages);
      }
      checking = false;
      ok.disabled = instead.disabled = field.readOnly = false;
      form.removeAttribute("aria-busy");
      status.textContent = "";
      if (result.ok || result.reason !== "wrong_secret") {
        finish({ result });
        return;
      }
      field.value = "";
      showError(labels.wrongSecret);
      field.focus();
    });
  });
  signal.removeEventListener("abort", leave);
  away.abort();
  if (signal.aborted) {
    return clientFailure("aborted", messages);
  }
  if (!outcome) {
    return clientFailure("cancelled", messages);
  }
  if ("passkey" in outcome) {
    return passkeyCeremony({ optionsURL: options.optionsURL, verifyURL: options.verifyURL, ...grant }, signal, messages);
  }
  return outcome.result;
}

/**
 * appendOperation shows the description of a bound operation, such as
 * "Send 99.95 EUR to Alan Turing", and adds it to the dialog's description,
 * so that a screen reader says it with the title. It comes from the server
 * and may hold any text (a payee's name): it is set as text, never as HTML,
 * in an element with dir="auto", which isolates it (unicode-bidi: isolate)
 * so that right-to-left text in it cannot reorder what surrounds it.
 *
 * @param {HTMLDialogElement} dialog
 * @param {string} id
 * @param {StepUpInfo} info
 */
function appendOperation(dialog, id, info) {
  const operation = info.operation && typeof info.operation.description === "string" ? info.operation.description : "";
  if (operation) {
    const what = document.createElement("p");
    what.id = `${id}-operation`;
    what.className = "stepup-confirm-operation";
    what.dir = "auto";
    what.textContent = operation;
    dialog.append(what);
    dialog.setAttribute("aria-describedby", `${dialog.getAttribute("aria-describedby")} ${what.id}`);
  }
}

let dialogCount = 0;

/**
 * newDialog makes the modal <dialog class="stepup-confirm"> with a title
 * and a text, and returns its parts. The dialog is labelled by its title
 * and described by its text (and, see appendOperation, by the operation).
 *
 * @param {Labels} labels
 */
function newDialog(labels) {
  const id = `stepup-confirm-${++dialogCount}`;
  const dialog = document.createElement("dialog");
  dialog.className = "stepup-confirm";
  dialog.setAttribute("aria-labelledby", `${id}-title`);
  dialog.setAttribute("aria-describedby", `${id}-text`);
  const title = document.createElement("h2");
  title.id = `${id}-title`;
  title.textContent = labels.title;
  const text = document.createElement("p");
  text.id = `${id}-text`;
  const actions = document.createElement("div");
  actions.className = "stepup-confirm-actions";
  dialog.append(title, text);
  return { id, dialog, text, actions };
}

/**
 * @param {string} className
 * @param {string} label
 */
function button(className, label) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = label;
  return b;
}

/**
 * focused is the element that has the focus, if any but the page itself.
 *
 * @returns {FocusTarget | null}
 */
export function focused() {
  if (typeof document === "undefined") {
    return null;
  }
  const el = document.activeElement;
  return (el instanceof HTMLElement || el instanceof SVGElement) && el !== document.body && el !== document.documentElement ? el : null;
}

/**
 * tabStops lists the controls of dialog that Tab stops at, in order.
 *
 * @param {HTMLDialogElement} dialog
 * @returns {HTMLElement[]}
 */
function tabStops(dialog) {
  return [.../** @type {NodeListOf<HTMLElement>} */ (dialog.querySelectorAll("button, input, select, textarea, a[href], [tabindex]"))].filter(
    (el) => el.tabIndex >= 0 && !(/** @type {HTMLButtonElement} */ (el).disabled) && el.getClientRects().length > 0,
  );
}

/**
 * showDialog opens dialog as a modal and focuses focus(); setup(finish)
 * wires its buttons. finish(value) closes it once, gives the focus to
 * returnFocus (see focusBack) and resolves the promise showDialog returns;
 * Escape, and signal aborting, finish it with undefined.
 *
 * A modal <dialog> makes the rest of the page inert, but Tab from its last
 * control goes on to the browser's own toolbar (and, in Firefox, Shift+Tab
 * from the first one): here Tab and Shift+Tab cycle through the dialog's
 * controls, as WAI-ARIA's modal dialog pattern says.
 *
 * @template T
 * @param {HTMLDialogElement} dialog
 * @param {ReturnFocus} returnFocus
 * @param {() => HTMLElement} focus
 * @param {AbortSignal | undefined} signal
 * @param {(finish: (value?: T) => void) => void} setup
 * @returns {Promise<T | undefined>}
 */
function showDialog(dialog, returnFocus, focus, signal, setup) {
  return new Promise((resolve) => {
    let done = false;
    /** @param {T} [value] */
    const finish = (value) => {
      if (done) {
        return;
      }
      done = true;
      if (signal) {
        signal.removeEventListener("abort", aborted);
      }
      if (dialog.open) {
        dialog.close();
      }
      dialog.remove();
      focusBack(returnFocus);
      resolve(value);
    };
    const aborted = () => finish(undefined);
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      finish(undefined);
    });
    dialog.addEventListener("close", () => finish(undefined));
    dialog.addEventListener("keydown", (event) => {
      if (event.key !== "Tab" || event.altKey || event.ctrlKey || event.metaKey) {
        return;
      }
      const stops = tabStops(dialog);
      const at = stops.indexOf(/** @type {HTMLElement} */ (document.activeElement));
      if (stops.length > 0 && (event.shiftKey ? at <= 0 : at === -1 || at === stops.length - 1)) {
        event.preventDefault();
        stops[event.shiftKey ? stops.length - 1 : 0].focus();
      }
    });
    setup(finish);
    if (signal && signal.aborted) {
      resolve(undefined);
      return;
    }
    if (signal) {
      signal.addEventListener("abort", aborted, { once: true });
    }
    document.body.append(dialog);
    dialog.showModal();
    focus().focus();
  });
}

// The longest time focusBack waits for its element to take the focus.
const FOCUS_WAIT_MS = 10000;

/**
 * focusBack gives the focus to target when a dialog closes: an element, a
 * function called then that returns one, or false (leave the focus where
 * the browser puts it). Pages often keep the button that started an action
 * disabled until its request is done, and a disabled element takes no
 * focus: then focusBack waits until target takes it (a MutationObserver on
 * the disabled, hidden and inert attributes of the page), for up to
 * FOCUS_WAIT_MS. It never takes the focus from where the user put it: it
 * stops waiting as soon as the focus moves or the user clicks anything, or
 * target leaves the page.
 *
 * @param {ReturnFocus} returnFocus
 */
function focusBack(returnFocus) {
  /** @type {FocusTarget | null | false} */
  let target = null;
  if (typeof returnFocus === "function") {
    try {
      target = returnFocus();
    } catch {
      target = null;
    }
  } else {
    target = returnFocus;
  }
  if (!target || typeof target.focus !== "function" || !target.isConnected) {
    return;
  }
  const el = target;
  el.focus();
  const start = document.activeElement;
  if (start === el) {
    return;
  }
  const observer = new MutationObserver(() => {
    if (!el.isConnected || document.activeElement !== start) {
      stop();
      return;
    }
    el.focus();
  });
  const moved = () => document.activeElement !== start && stop();
  const timer = setTimeout(stop, FOCUS_WAIT_MS);
  function stop() {
    observer.disconnect();
    clearTimeout(timer);
    document.removeEventListener("focusin", moved, true);
    document.removeEventListener("pointerdown", stop, true);
  }
  observer.observe(document.documentElement, {
    attributes: true,
    subtree: true,
    attributeFilter: ["disabled", "hidden", "inert"],
  });
  document.addEventListener("focusin", moved, true);
  document.addEventListener("pointerdown", stop, true);
}
