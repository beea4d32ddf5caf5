// The page at `/`: choose, drop or paste an image, translate it with a served model, show both and a download.
// Plain JavaScript with no build step (common.js first); the API is described in src/cyclegan/serve/app.py.
"use strict";

const state = { models: [], limits: null, file: null, inputUrl: null, outputUrl: null, xhr: null, timer: null };

async function loadModels() {
  let response;
  try {
    response = await fetch("/v1/models", { headers: authHeaders() });
  } catch (_) {
    showError(NETWORK_MESSAGE);
    return false;
  }
  if (response.status === 401) {
    askForToken(await responseError(response));
    return false;
  }
  if (!response.ok) {
    showError(await responseError(response));
    return false;
  }
  const body = await response.json();
  state.models = body.models;
  state.limits = body.limits;
  fillSelect($("model"), state.models.map((model) => model.name));
  fillDirections();
  showLimits();
  return true;
}

function fillSelect(select, values) {
  const previous = select.value;
  select.replaceChildren(...values.map((value) => new Option(value, value)));
  if (values.includes(previous)) select.value = previous;
}

function fillDirections() {
  const model = state.models.find((candidate) => candidate.name === $("model").value);
  fillSelect($("direction"), model ? model.directions : []);
}

function megabytes(bytes) {
  return (bytes / 1048576).toFixed(1) + " MiB";
}

function showLimits() {
  if (!state.limits) return;
  const megapixels = (state.limits.max_pixels / 1e6).toFixed(1);
  $("limits").textContent = "Up to " + megabytes(state.limits.max_bytes) + " and " + megapixels + " megapixels.";
}

function replaceUrl(key, blob) {
  if (state[key]) URL.revokeObjectURL(state[key]);
  state[key] = blob ? URL.createObjectURL(blob) : null;
  return state[key];
}

function clearOutput() {
  const output = $("output-image");
  output.hidden = true;
  output.removeAttribute("src");
  $("output-caption").textContent = "Output";
  $("download").hidden = true;
  $("download").removeAttribute("href");
  replaceUrl("outputUrl", null);
}

function chooseFile(file) {
  if (!file) return;
  state.file = file;
  const input = $("input-image");
  input.hidden = true;
  input.src = replaceUrl("inputUrl", file);
  $("input-caption").textContent = "Input: " + (file.name || "pasted image");
  clearOutput();
  translate();
}

function stem(name) {
  const base = (name || "image").replace(/^.*[\\/]/, "");
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(0, dot) : base;
}

function downloadName(xhr, direction) {
  const disposition = xhr.getResponseHeader("Content-Disposition") || "";
  const match = /filename="([^"]+)"/.exec(disposition);
  return match ? match[1] : stem(state.file.name) + "_" + direction + ".png";
}

function setProgress(fraction) {
  const progress = $("progress");
  progress.hidden = false;
  if (fraction === null) progress.removeAttribute("value"); // indeterminate while the model runs
  else progress.value = fraction;
}

function stopTimer() {
  clearInterval(state.timer);
  state.timer = null;
}

function startTranslatingTimer() {
  stopTimer();
  const started = performance.now();
  const tick = () => {
    const seconds = Math.floor((performance.now() - started) / 1000);
    $("status").textContent = "Translating\u2026 " + seconds + " s";
  };
  setProgress(null);
  tick();
  state.timer = setInterval(tick, 250);
}

function translate() {
  clearError();
  if (!state.file) {
    showError("Choose an image first: use the file chooser, drop an image on the page, or paste one.");
    return;
  }
  if (state.limits && state.file.size > state.limits.max_bytes) {
    showError("This file is " + megabytes(state.file.size) + "; the server accepts up to " +
      megabytes(state.limits.max_bytes) + ". Choose a smaller image or scale it down first.");
    return;
  }
  if (state.xhr) state.xhr.abort(); // a newer image or setting replaces the request in flight
  clearOutput();
  const direction = $("direction").value;
  const query = new URLSearchParams({ format: "png" });
  if ($("model").value) query.set("model", $("model").value);
  if (direction) query.set("direction", direction);
  const form = new FormData();
  form.append("image", state.file, state.file.name || "pasted.png");
  const xhr = new XMLHttpRequest();
  state.xhr = xhr;
  xhr.open("POST", "/v1/translate?" + query);
  for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
  xhr.responseType = "blob";
  const started = performance.now();
  xhr.upload.onprogress = (event) => {
    if (!event.lengthComputable) return;
    setProgress(event.loaded / event.total);
    $("status").textContent = "Uploading\u2026 " + Math.round(100 * event.loaded / event.total) + " % of " +
      megabytes(event.total);
  };
  xhr.upload.onload = startTranslatingTimer;
  xhr.onprogress = (event) => {
    stopTimer();
    setProgress(event.lengthComputable ? event.loaded / event.total : null);
    $("status").textContent = "Downloading the result\u2026 " + megabytes(event.loaded);
  };
  xhr.onload = () => finish(xhr, direction, started);
  xhr.onerror = () => fail(xhr, NETWORK_MESSAGE);
  setProgress(0);
  $("status").textContent = "Uploading\u2026";
  xhr.send(form);
}

function fail(xhr, message) {
  if (state.xhr !== xhr) return;
  state.xhr = null;
  stopTimer();
  $("progress").hidden = true;
  $("status").textContent = "";
  showError(message);
}

async function finish(xhr, direction, started) {
  if (state.xhr !== xhr) return; // superseded by a newer request
  if (xhr.status !== 200) {
    const message = errorText(xhr.status, xhr.statusText, await xhr.response.text(),
      xhr.getResponseHeader("Retry-After"));
    fail(xhr, message);
    if (xhr.status === 401) askForToken(message);
    return;
  }
  state.xhr = null;
  stopTimer();
  const roundTrip = (performance.now() - started) / 1000;
  const output = $("output-image");
  output.src = replaceUrl("outputUrl", xhr.response);
  await output.decode().catch(() => {});
  output.hidden = false;
  $("output-caption").textContent = "Output: " + direction + ", " + output.naturalWidth + " \u00d7 " +
    output.naturalHeight;
  const download = $("download");
  download.href = state.outputUrl;
  download.download = downloadName(xhr, direction);
  download.textContent = "Download " + download.download;
  download.hidden = false;
  $("progress").hidden = true;
  const model = Number(xhr.getResponseHeader("X-Translation-Seconds"));
  $("status").textContent = "Translated in " + model.toFixed(3) + " s on the server; " + roundTrip.toFixed(3) +
    " s round trip (upload, queue, translation and download).";
}

function setUpTranslatePage() {
  const fileInput = $("file");
  const drop = $("drop");
  fileInput.addEventListener("change", () => chooseFile(fileInput.files[0]));
  $("model").addEventListener("change", fillDirections);
  $("translate").addEventListener("click", translate);
  drop.addEventListener("keydown", (event) => {
    if (event.target !== drop || (event.key !== "Enter" && event.key !== " ")) return;
    event.preventDefault();
    fileInput.click();
  });
  drop.addEventListener("click", (event) => {
    if (!event.target.closest("input, label")) fileInput.click();
  });
  // Dropping anywhere on the page takes the image (and keeps the browser from opening the file instead).
  document.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("dragging");
  });
  document.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) drop.classList.remove("dragging");
  });
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    chooseFile(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const image = [...event.clipboardData.files].find((file) => file.type.startsWith("image/"));
    if (!image) return; // text pastes (the token field) go on as usual
    event.preventDefault();
    chooseFile(image);
  });
  $("input-image").addEventListener("load", () => {
    const input = $("input-image");
    input.hidden = false;
    $("input-caption").textContent = "Input: " + (state.file.name || "pasted image") + ", " +
      input.naturalWidth + " \u00d7 " + input.naturalHeight;
  });
  setUpTokenForm(async () => {
    if ((await loadModels()) && state.file && !state.outputUrl) translate();
  });
  loadModels();
}

setUpTranslatePage();
