// What both pages of `cyclegan serve` share: the access token (kept per tab) and errors in plain words.
// Plain JavaScript with no build step and no request to any other host; loaded before app.js (the page at `/`) or docs.js.
"use strict";

const TOKEN_KEY = "cyclegan-token";
const $ = (id) => document.getElementById(id);

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: "Bearer " + token } : {};
}

function showError(message) {
  $("error").textContent = message;
}

function clearError() {
  $("error").textContent = "";
}

const NETWORK_MESSAGE = "Could not reach the server at " + location.host + ". Check that `cyclegan serve` is " +
  "still running and that this computer can reach it, then try again.";

// The server's JSON error body has a plain-words "message"; anything else (a proxy's HTML page) gets a
// generic sentence naming the status. A 503 also says how long the server asks us to wait.
function errorText(status, statusText, body, retryAfter) {
  let message = "";
  try {
    message = JSON.parse(body).message || "";
  } catch (_) {
    // not JSON: fall through to the generic sentence
  }
  if (!message) {
    message = "The server answered " + status + (statusText ? " " + statusText : "") + ".";
  }
  // The server writes its messages as the command line does, without a full stop; a page shows sentences.
  if (!/[.!?]$/.test(message)) message += ".";
  if (status === 503 && retryAfter && !/retry in/i.test(message)) {
    message += " Try again in " + retryAfter + " s (the server's Retry-After).";
  }
  return message;
}

async function responseError(response) {
  return errorText(response.status, response.statusText, await response.text(),
    response.headers.get("Retry-After"));
}

// A 401 shows the token field; submitting it stores the token for this tab and calls `retry`.
function askForToken(message) {
  showError(message);
  $("token-form").hidden = false;
  $("token").focus();
}

function setUpTokenForm(retry) {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) {
      showError("Type the access token first: it is the value the server was started with (--token).");
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token-form").hidden = true;
    clearError();
    retry();
  });
}
