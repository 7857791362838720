// Security keys and passkeys on the enrollment pages (served as a static file: the pages' CSP allows no inline
// script). A form marked data-webauthn="register" or "assert" asks the server for options (POST to its
// data-options URL, CSRF token in the X-CSRFToken header), runs navigator.credentials.create() or .get(), puts
// the JSON result in the form's hidden "credential" field and submits the form as usual. Without JavaScript (or
// WebAuthn) these forms stay hidden and the pages work with the authenticator app alone.
"use strict";

(function () {
  if (!window.PublicKeyCredential || !navigator.credentials) {
    return;
  }

  function fromB64url(text) {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    const binary = atob(base64);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) {
      bytes[i] = binary.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toB64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 1) {
      binary += String.fromCharCode(bytes[i]);
    }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (item) {
      return Object.assign({}, item, { id: fromB64url(item.id) });
    });
  }

  function creationOptions(json) {
    return Object.assign({}, json, {
      challenge: fromB64url(json.challenge),
      user: Object.assign({}, json.user, { id: fromB64url(json.user.id) }),
      excludeCredentials: descriptors(json.excludeCredentials),
    });
  }

  function requestOptions(json) {
    return Object.assign({}, json, {
      challenge: fromB64url(json.challenge),
      allowCredentials: descriptors(json.allowCredentials),
    });
  }

  function credentialJSON(credential) {
    const response = credential.response;
    const out = {
      id: credential.id,
      rawId: toB64url(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: toB64url(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      out.response.attestationObject = toB64url(response.attestationObject);
      out.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      out.response.authenticatorData = toB64url(response.authenticatorData);
      out.response.signature = toB64url(response.signature);
      out.response.userHandle = response.userHandle ? toB64url(response.userHandle) : null;
    }
    return out;
  }

  function showError(form, text) {
    let box = form.querySelector(".webauthn-error");
    if (!box) {
      box = document.createElement("p");
      box.className = "error webauthn-error";
      box.setAttribute("role", "alert");
      form.insertBefore(box, form.firstChild);
    }
    box.textContent = text;
  }

  async function run(form) {
    const token = form.querySelector('input[name="_csrf_token"]').value;
    const answer = await fetch(form.dataset.options, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": token, "Content-Type": "application/json" },
      body: "{}",
    });
    if (!answer.ok) {
      throw new Error("options");
    }
    const options = await answer.json();
    let credential;
    if (form.dataset.webauthn === "register") {
      credential = await navigator.credentials.create({ publicKey: creationOptions(options.publicKey) });
    } else {
      credential = await navigator.credentials.get({ publicKey: requestOptions(options.publicKey) });
    }
    form.querySelector('input[name="credential"]').value = JSON.stringify(credentialJSON(credential));
    form.submit();
  }

  document.querySelectorAll("form[data-webauthn]").forEach(function (form) {
    form.hidden = false;
    form.addEventListener("submit", function (event) {
      if (form.querySelector('input[name="credential"]').value) {
        return; // the ceremony is done: let the browser post it
      }
      event.preventDefault();
      const button = form.querySelector("button[type=submit]");
      if (button) {
        button.disabled = true;
      }
      run(form).catch(function (error) {
        if (button) {
          button.disabled = false;
        }
        showError(
          form,
          error && error.name === "InvalidStateError"
            ? "This security key is already registered."
            : "The security key did not respond, or the request was cancelled. Try again.",
        );
      });
    });
  });
  document.querySelectorAll("[data-webauthn-only]").forEach(function (element) {
    element.hidden = false;
  });
})();
