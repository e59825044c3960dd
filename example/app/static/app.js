// The demo's page script. The step-up part is a few calls into stepup.js:
// fetchWithStepUp for the sensitive actions (its default dialog, stepUpDialog,
// offers whichever methods the gate's 403 lists: a passkey first, the
// password instead, or the company sign-in in a popup), and bindReauthButton,
// reauthenticateWithSecret and reauthenticateExternal on the /reauth page.
// The rest is the demo's own sign-up and sign-in.
import { bindReauthButton, fetchWithStepUp, reauthenticateExternal, reauthenticateWithSecret } from "/stepup.js";

// The texts of the demo's step-up methods (stepup.js knows no method names).
// The password: its field is the account's current password, so that a
// password manager offers it. "sso" (with -sso-dev): the gate's 403 lists it
// as external, and the dialog opens the provider's sign-in in a popup.
const methodLabels = {
  password: { autocomplete: "current-password" },
  sso: { name: "company sign-in", button: "Continue with your company sign-in", instead: "Use your company sign-in instead" },
};

// The page's buttons come disabled: a click before this script runs would
// submit a form the page has not taken over yet. Each init enables its own.
const page = document.body.dataset.page;
if (page === "home") {
  initHome();
} else if (page === "account") {
  initAccount();
} else if (page === "reauth") {
  initReauth();
}
document.body.dataset.ready = "true";

// Sign-up and sign-in -------------------------------------------------------

function initHome() {
  const form = document.getElementById("signup-form");
  const status = document.getElementById("signup-status");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await busy(form.querySelector("button"), () => signUp(form.elements.name.value, status));
  });
  const button = document.getElementById("signin-button");
  const signInStatus = document.getElementById("signin-status");
  button.addEventListener("click", () => busy(button, () => signIn(signInStatus)));
  form.querySelector("button").disabled = false;
  button.disabled = false;

  passwordForm("signup-password-form", "/api/signup/password", "Account created. Signing you in…");
  passwordForm("signin-password-form", "/api/signin/password", "Signing you in…");

  const sso = document.getElementById("sso-signin");
  if (sso) {
    sso.addEventListener("click", () => busy(sso, () => goToProvider("/api/signin/sso", {}, document.getElementById("sso-signin-status"))));
    sso.disabled = false;
  }
}

// goToProvider asks url (the SSO sign-in) where to go at the sign-in
// provider, and goes: the provider sends the browser back to the server,
// which signs the user in.
async function goToProvider(url, body, status) {
  show(status, "busy", "Taking you to your sign-in provider…");
  try {
    const res = await postJSON(url, body);
    if (!res.ok || !res.data || typeof res.data.redirect !== "string") {
      return show(status, "error", messageOf(res));
    }
    location.assign(res.data.redirect);
  } catch (err) {
    show(status, "error", errorMessage(err));
  }
}

// passwordForm posts a name and password to url (sign-up or sign-in) and
// goes to the account page when the server says yes.
function passwordForm(id, url, doneText) {
  const form = document.getElementById(id);
  const status = form.querySelector(".status");
  const submit = form.querySelector("button[type=submit]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await busy(submit, async () => {
      show(status, "busy", "Working…");
      try {
        const res = await postJSON(url, { name: form.elements.username.value, password: form.elements.password.value });
        if (!res.ok) {
          form.elements.password.value = "";
          return show(status, "error", messageOf(res));
        }
        show(status, "ok", doneText);
        location.assign("/");
      } catch (err) {
        show(status, "error", errorMessage(err));
      }
    });
  });
  submit.disabled = false;
}

async function signUp(name, status) {
  if (!supportsJSON("parseCreationOptionsFromJSON")) {
    return show(status, "error", "This browser is too old for passkeys in this demo. Try a current Chrome, Edge, Firefox or Safari.");
  }
  show(status, "busy", "Waiting for your passkey…");
  try {
    const begin = await postJSON("/api/signup/begin", { name });
    if (!begin.ok) {
      return show(status, "error", messageOf(begin));
    }
    const credential = await navigator.credentials.create({
      publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(begin.data),
    });
    const finish = await postJSON("/api/signup/finish", credential.toJSON());
    if (!finish.ok) {
      return show(status, "error", messageOf(finish));
    }
    show(status, "ok", "Account created. Signing you in…");
    location.assign("/");
  } catch (err) {
    if (err && err.name === "NotAllowedError") {
      return show(status, "cancelled", "");
    }
    if (err && err.name === "InvalidStateError") {
      return show(status, "error", "This device already has a passkey for that account.");
    }
    show(status, "error", errorMessage(err));
  }
}

async function signIn(status) {
  if (!supportsJSON("parseRequestOptionsFromJSON")) {
    return show(status, "error", "This browser is too old for passkeys in this demo. Try a current Chrome, Edge, Firefox or Safari.");
  }
  show(status, "busy", "Waiting for your passkey…");
  try {
    const begin = await postJSON("/api/signin/begin");
    if (!begin.ok) {
      return show(status, "error", messageOf(begin));
    }
    const credential = await navigator.credentials.get({
      publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(begin.data),
    });
    const finish = await postJSON("/api/signin/finish", credential.toJSON());
    if (finish.ok) {
      location.assign("/");
      return;
    }
    if (finish.status === 404 && finish.data && finish.data.error === "unknown_credential") {
      // The account of this passkey is gone: the browser may stop offering it.
      if (typeof PublicKeyCredential.signalUnknownCredential === "function") {
        await PublicKeyCredential.signalUnknownCredential({ rpId: begin.data.rpId, credentialId: credential.id }).catch(() => {});
      }
    }
    show(status, "error", messageOf(finish));
  } catch (err) {
    if (err && err.name === "NotAllowedError") {
      return show(status, "cancelled", "");
    }
    show(status, "error", errorMessage(err));
  }
}

// The sensitive actions -----------------------------------------------------

function initAccount() {
  // What the default dialog of stepup.js says when the gate lists no method
  // this user has: a password-only account that tries to pay.
  const needsPasskey =
    "Payments need a passkey, and your account has none yet. Add one under “Add a passkey” on this page " +
    "(you confirm that with your password), then send the payment again.";
  sensitiveForm("password-form", "/api/account/password", {
    action: "change your password",
    body: (form) => ({ password: form.elements.password.value }),
    done: (data, form) => {
      form.reset();
      document.getElementById("password-state").textContent = "set just now";
    },
  });
  sensitiveForm("payment-form", "/api/account/payment", {
    action: "send this payment",
    labels: { noMethod: needsPasskey },
    body: (form) => ({ to: form.elements.to.value, amount: form.elements.amount.value }),
    done: (data, form) => {
      form.elements.amount.value = "";
      document.getElementById("balance").textContent = data.balance;
      const list = document.getElementById("payments");
      list.querySelector(".empty")?.remove();
      const item = document.createElement("li");
      const when = document.createElement("span");
      when.className = "when";
      when.textContent = "just now";
      item.append(`${data.payment.amount} to ${data.payment.to} `, when);
      list.prepend(item);
    },
  });
  sensitiveForm("delete-form", "/api/account/delete", {
    action: "delete your account",
    body: () => ({}),
    done: async (data) => {
      // Tell the browser this account has no passkeys here any more.
      if (typeof PublicKeyCredential !== "undefined" && typeof PublicKeyCredential.signalAllAcceptedCredentials === "function") {
        await PublicKeyCredential.signalAllAcceptedCredentials({
          rpId: data.rpId,
          userId: data.userId,
          allAcceptedCredentialIds: [],
        }).catch(() => {});
      }
      location.assign("/?m=deleted");
    },
  });
  initAddPasskey();
}

// A confirmation just made: the "You last confirmed it's you" line says so.
function confirmedNow(method) {
  document.getElementById("last-confirmed").textContent = "just now";
  document.getElementById("last-confirmed-method").textContent = method ? `, with your ${method}` : "";
}

// sensitiveForm sends the form's data as JSON to a gated route. When the
// server asks for a fresh confirmation, fetchWithStepUp shows the "Confirm
// it's you" dialog with the methods the gate accepts and this user has, runs
// the confirmation and sends the same request again: the user types nothing
// twice.
function sensitiveForm(id, url, { action, labels = {}, body, done }) {
  const form = document.getElementById(id);
  const status = form.querySelector(".status");
  const submit = form.querySelector("button[type=submit]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await busy(submit, async () => {
      show(status, "busy", "Working…");
      let reauth = null;
      try {
        const res = await fetchWithStepUp(
          url,
          {
            method: "POST",
            headers: { "Content-Type": "application/json", Accept: "application/json" },
            body: JSON.stringify(body(form)),
          },
          {
            labels: { defaultAction: action, methods: methodLabels, ...labels },
            onReauth: (result) => {
              reauth = result;
            },
          },
        );
        const data = await readJSON(res);
        if (res.ok) {
          if (reauth && reauth.ok) {
            confirmedNow(data && data.confirmed_with);
          }
          show(status, "ok", data && data.message ? data.message : "Done.");
          await done(data, form);
          return;
        }
        if (reauth && !reauth.ok) {
          return showReauthFailure(status, reauth, labels.noMethod);
        }
        if (res.status === 401) {
          return show(status, "error", "You are signed out. Reload the page and sign in again.");
        }
        show(status, "error", data && data.message ? data.message : "Something went wrong. Try again.");
      } catch (err) {
        show(status, "error", errorMessage(err));
      }
    });
  });
  submit.disabled = false;
}

// initAddPasskey: "Add a passkey" asks the gated begin route for creation
// options (confirming first if need be), lets the browser make the passkey,
// and sends it to the finish route.
function initAddPasskey() {
  const button = document.getElementById("passkey-add");
  const status = document.getElementById("passkey-status");
  // An SSO-only user's gate lists "sso" alone: the dialog offers the
  // company sign-in, in a popup (or, where the browser blocks popups, the
  // page goes there and comes back here).
  button.addEventListener("click", () =>
    busy(button, async () => {
      if (!supportsJSON("parseCreationOptionsFromJSON")) {
        return show(status, "error", "This browser is too old for passkeys in this demo. Try a current Chrome, Edge, Firefox or Safari.");
      }
      show(status, "busy", "Working…");
      let reauth = null;
      try {
        const res = await fetchWithStepUp(
          "/api/passkeys/begin",
          { method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" }, body: "{}" },
          {
            labels: { defaultAction: "add a passkey", methods: methodLabels },
            onReauth: (result) => (reauth = result),
            returnTo: "/#passkeys-title",
          },
        );
        const options = await readJSON(res);
        if (!res.ok) {
          if (reauth && !reauth.ok) {
            return showReauthFailure(status, reauth);
          }
          return show(status, "error", options && options.message ? options.message : "Something went wrong. Try again.");
        }
        if (reauth && reauth.ok) {
          confirmedNow("");
        }
        show(status, "busy", "Waiting for your new passkey…");
        const credential = await navigator.credentials.create({
          publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options),
        });
        const finish = await postJSON("/api/passkeys/finish", credential.toJSON());
        if (!finish.ok) {
          return show(status, "error", messageOf(finish));
        }
        show(status, "ok", "Your passkey was added.");
        location.assign("/");
      } catch (err) {
        if (err && err.name === "NotAllowedError") {
          return show(status, "cancelled", "");
        }
        if (err && err.name === "InvalidStateError") {
          return show(status, "error", "This device already has a passkey for your account.");
        }
        show(status, "error", errorMessage(err));
      }
    }),
  );
  button.disabled = false;
}

// What the person sees when a confirmation did not work. Dismissing the
// passkey prompt is their choice, not an error: nothing is shown.
const reauthMessages = {
  unknown_credential: "That passkey is no longer registered for your account. Use another passkey, or sign in again.",
  credential_not_owned: "That passkey belongs to another account on this device. Choose your own passkey.",
  challenge_expired: "The confirmation took too long. Try again.",
  verification_failed: "Your passkey could not be verified. Try again.",
  no_active_session: "You are signed out. Reload the page and sign in again.",
  too_many_attempts: "Too many attempts. Wait a few minutes, then try again.",
  no_method: "This needs a way to confirm it's you that your account does not have yet.",
};

function showReauthFailure(status, result, noMethod) {
  if (result.reason === "cancelled" || result.reason === "aborted") {
    show(status, "cancelled", "");
    return;
  }
  if (result.reason === "redirected") {
    // The browser blocked the popup: the page is on its way to the provider.
    show(status, "busy", result.message);
    return;
  }
  const text = result.reason === "no_method" && noMethod ? noMethod : reauthMessages[result.reason] || result.message;
  show(status, "error", text, result.reason);
}

// The /reauth page ----------------------------------------------------------

function initReauth() {
  const status = document.getElementById("reauth-status");
  const back = document.getElementById("reauth-methods").dataset.returnTo;
  const onResult = (result) => {
    if (result.ok) {
      show(status, "ok", "Thanks. Taking you back…");
      // The server checked return_to; this only guards against a typo.
      location.replace(back && back.startsWith("/") && !back.startsWith("//") ? back : "/");
      return;
    }
    showReauthFailure(status, result);
  };
  const button = document.getElementById("reauth-button");
  if (button) {
    bindReauthButton(button, { onResult });
    button.disabled = false;
  }
  const sso = document.getElementById("reauth-sso");
  if (sso) {
    // reauthenticateExternal opens the popup at once: called in the click,
    // before anything is awaited.
    sso.addEventListener("click", () => busy(sso, async () => onResult(await reauthenticateExternal("sso", { returnTo: back }))));
    sso.disabled = false;
  }
  const form = document.getElementById("reauth-password-form");
  if (form) {
    const submit = form.querySelector("button[type=submit]");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      await busy(submit, async () => {
        show(status, "busy", "Checking…");
        const result = await reauthenticateWithSecret("/api/reauth/password", form.elements.password.value);
        if (!result.ok && result.reason === "wrong_secret") {
          form.elements.password.value = "";
          return show(status, "error", "That is not your password. Try again.", result.reason);
        }
        onResult(result);
      });
    });
    submit.disabled = false;
  }
}

// Helpers -------------------------------------------------------------------

async function busy(button, fn) {
  button.disabled = true;
  try {
    await fn();
  } finally {
    button.disabled = false;
  }
}

// show sets a status line. data-state (busy, ok, error, cancelled) styles
// it; data-reason keeps the stepup reason of a failed confirmation.
function show(status, state, text, reason = "") {
  status.dataset.state = state;
  status.dataset.reason = reason;
  status.textContent = text;
}

function supportsJSON(parse) {
  return (
    typeof PublicKeyCredential !== "undefined" &&
    typeof PublicKeyCredential[parse] === "function" &&
    typeof PublicKeyCredential.prototype.toJSON === "function"
  );
}

async function postJSON(url, body) {
  const res = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body === undefined ? {} : body),
  });
  return { ok: res.ok, status: res.status, data: await readJSON(res) };
}

async function readJSON(res) {
  if (!(res.headers.get("Content-Type") || "").includes("application/json")) {
    return null;
  }
  try {
    return await res.json();
  } catch {
    return null;
  }
}

function messageOf(answer) {
  return answer.data && answer.data.message ? answer.data.message : `Something went wrong (HTTP ${answer.status}). Try again.`;
}

function errorMessage(err) {
  if (err && err.name === "TypeError") {
    return "Could not reach the server. Check your connection and try again.";
  }
  if (err && err.name === "SecurityError") {
    return "This page is not allowed to use passkeys here. Open it at http://localhost.";
  }
  return "Something went wrong with the passkey. Try again.";
}
