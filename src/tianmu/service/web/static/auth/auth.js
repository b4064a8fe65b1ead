// Tianmu sign-in pages: password, TOTP, passkeys (WebAuthn with user verification) and SM2 certificates.
// Everything goes to /api/auth with the page's CSRF token; the server decides what comes next.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
const say = (text, bad) => {
  const el = document.getElementById("message");
  el.textContent = text;
  el.className = bad ? "error" : "ok";
};

function toBytes(b64url) {
  const b64 = b64url.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((b64url.length + 3) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function toB64url(buffer) {
  let s = "";
  for (const byte of new Uint8Array(buffer)) s += String.fromCharCode(byte);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function api(path, body) {
  const response = await fetch("/api/auth" + path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
    body: JSON.stringify(body || {}),
  });
  const data = response.status === 204 ? {} : await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || response.statusText);
  return data;
}

function credentialJSON(cred) {
  const r = cred.response;
  const response = { clientDataJSON: toB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = toB64url(r.attestationObject);
    response.transports = r.getTransports ? r.getTransports() : [];
  } else {
    response.authenticatorData = toB64url(r.authenticatorData);
    response.signature = toB64url(r.signature);
    if (r.userHandle) response.userHandle = toB64url(r.userHandle);
  }
  return {
    id: cred.id,
    rawId: toB64url(cred.rawId),
    type: cred.type,
    response,
    clientExtensionResults: cred.getClientExtensionResults(),
    authenticatorAttachment: cred.authenticatorAttachment,
  };
}

function requestOptions(o) {
  return {
    ...o,
    challenge: toBytes(o.challenge),
    allowCredentials: (o.allowCredentials || []).map((c) => ({ ...c, id: toBytes(c.id) })),
  };
}

function creationOptions(o) {
  return {
    ...o,
    challenge: toBytes(o.challenge),
    user: { ...o.user, id: toBytes(o.user.id) },
    excludeCredentials: (o.excludeCredentials || []).map((c) => ({ ...c, id: toBytes(c.id) })),
  };
}

const tenant = () => (document.getElementById("tenant") || {}).value;

function next(result) {
  if (result.done) {
    say("Signed in.");
    const first = document.getElementById("step-first");
    window.location.assign((first && first.dataset.after) || result.redirect || "/");
    return;
  }
  document.getElementById("step-first").hidden = true;
  const remaining = result.remaining || [];
  for (const factor of ["totp", "passkey", "certificate"]) {
    const section = document.getElementById("step-" + factor);
    if (section) section.hidden = !remaining.includes(factor);
  }
  say("One more step: " + remaining.join(" or ") + ".");
}

async function passkeySignIn() {
  try {
    const { handle, options } = await api("/login/passkey/options", { tenant: tenant() });
    const cred = await navigator.credentials.get({ publicKey: requestOptions(options) });
    next(await api("/login/passkey/verify", { tenant: tenant(), handle, credential: credentialJSON(cred) }));
  } catch (error) {
    say("Passkey sign-in failed: " + error.message, true);
  }
}

async function passkeyEnrol(event) {
  event.preventDefault();
  try {
    const { handle, options } = await api("/passkeys/options");
    const cred = await navigator.credentials.create({ publicKey: creationOptions(options) });
    const name = document.getElementById("passkey-name").value || "passkey";
    await api("/passkeys", { handle, credential: credentialJSON(cred), name });
    const item = document.createElement("li");
    item.textContent = name + " — just added";
    const list = document.getElementById("passkey-list");
    list.querySelector(".none")?.remove();
    list.appendChild(item);
    say("Passkey added.");
  } catch (error) {
    say("The passkey was not added: " + error.message, true);
  }
}

function on(id, type, handler) {
  const el = document.getElementById(id);
  if (el) el.addEventListener(type, handler);
}

document.addEventListener("DOMContentLoaded", () => {
  on("password-form", "submit", async (event) => {
    event.preventDefault();
    try {
      next(await api("/login/password", {
        tenant: tenant(),
        username: document.getElementById("username").value,
        password: document.getElementById("password").value,
      }));
    } catch (error) {
      say(error.message, true);
    }
  });
  on("totp-form", "submit", async (event) => {
    event.preventDefault();
    try {
      next(await api("/login/totp", { code: document.getElementById("totp-code").value }));
    } catch (error) {
      say(error.message, true);
    }
  });
  on("passkey-signin", "click", passkeySignIn);
  on("passkey-second", "click", passkeySignIn);
  on("passkey-enrol-form", "submit", passkeyEnrol);
  on("totp-start", "click", async () => {
    try {
      const data = await api("/totp/start");
      document.getElementById("totp-handle").value = data.handle;
      document.getElementById("totp-seed").textContent = data.seed;
      document.getElementById("totp-uri").href = data.uri;
      document.getElementById("totp-enrol-form").hidden = false;
    } catch (error) {
      say(error.message, true);
    }
  });
  on("totp-enrol-form", "submit", async (event) => {
    event.preventDefault();
    try {
      await api("/totp/confirm", {
        handle: document.getElementById("totp-handle").value,
        code: document.getElementById("totp-enrol-code").value,
      });
      document.getElementById("totp-enrol-form").hidden = true;
      say("Authenticator app set up.");
    } catch (error) {
      say(error.message, true);
    }
  });
  on("password-change-form", "submit", async (event) => {
    event.preventDefault();
    try {
      await api("/password", {
        current: document.getElementById("current-password").value,
        new: document.getElementById("new-password").value,
      });
      event.target.reset();
      say("Password changed.");
    } catch (error) {
      say(error.message, true);
    }
  });
  on("cert-challenge", "click", async () => {
    try {
      const data = await api("/login/certificate/challenge", { tenant: document.getElementById("cert-tenant").value });
      document.getElementById("cert-handle").value = data.handle;
      document.getElementById("cert-message").value = data.message;
      say("Sign the message with your certificate's key within 5 minutes.");
    } catch (error) {
      say(error.message, true);
    }
  });
  on("certificate-form", "submit", async (event) => {
    event.preventDefault();
    try {
      next(await api("/login/certificate/verify", {
        tenant: document.getElementById("cert-tenant").value,
        handle: document.getElementById("cert-handle").value,
        certificate: document.getElementById("cert-pem").value,
        signature: document.getElementById("cert-signature").value.trim(),
      }));
    } catch (error) {
      say(error.message, true);
    }
  });
});
