// The demo's page script. The step-up part is three calls into stepup.js:
// fetchWithStepUp for the sensitive forms, confirmDialog to say what is
// being confirmed, and bindReauthButton on the /reauth page. The rest is the
// demo's own sign-up and sign-in.
import { bindReauthButton, confirmDialog, fetchWithStepUp } from "/stepup.js";

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
  sensitiveForm("password-form", "/api/account/password", {
    action: "change your password",
    body: (form) => ({ password: form.elements.password.value }),
    done: (data, form) => {
      form.reset();
      document.getElementById("password-state").textContent = "changed just now";
    },
  });
  sensitiveForm("payment-form", "/api/account/payment", {
    action: "send this payment",
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
}

// sensitiveForm sends the form's data as JSON to a gated route. When the
// server asks for a fresh confirmation, fetchWithStepUp shows the "Confirm
// it's you" dialog, runs the passkey ceremony and sends the same request
// again: the user types nothing twice.
function sensitiveForm(id, url, { action, body, done }) {
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
            confirm: (info) => confirmDialog({ ...info, action }),
            onReauth: (result) => {
              reauth = result;
              if (result.ok) {
                document.getElementById("last-confirmed").textContent = "just now";
              }
            },
          },
        );
        const data = await readJSON(res);
        if (res.ok) {
          show(status, "ok", data && data.message ? data.message : "Done.");
          await done(data, form);
          return;
        }
        if (reauth && !reauth.ok) {
          return showReauthFailure(status, reauth);
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

// What the person sees when a confirmation did not work. Dismissing the
// passkey prompt is their choice, not an error: nothing is shown.
const reauthMessages = {
  unknown_credential: "That passkey is no longer registered for your account. Use another passkey, or sign in again.",
  credential_not_owned: "That passkey belongs to another account on this device. Choose your own passkey.",
  challenge_expired: "The confirmation took too long. Try again.",
  verification_failed: "Your passkey could not be verified. Try again.",
  no_active_session: "You are signed out. Reload the page and sign in again.",
  too_many_attempts: "Too many attempts. Wait a few minutes, then try again.",
};

function showReauthFailure(status, result) {
  if (result.reason === "cancelled" || result.reason === "aborted") {
    show(status, "cancelled", "");
    return;
  }
  show(status, "error", reauthMessages[result.reason] || result.message, result.reason);
}

// The /reauth page ----------------------------------------------------------

function initReauth() {
  const button = document.getElementById("reauth-button");
  const status = document.getElementById("reauth-status");
  const back = button.dataset.returnTo;
  bindReauthButton(button, {
    onResult: (result) => {
      if (result.ok) {
        show(status, "ok", "Thanks. Taking you back…");
        // The server checked return_to; this only guards against a typo.
        location.replace(back && back.startsWith("/") && !back.startsWith("//") ? back : "/");
        return;
      }
      showReauthFailure(status, result);
    },
  });
  button.disabled = false;
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
