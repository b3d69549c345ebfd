"use strict";
// The page talks to the API only; the server is the one that validates, the page just explains.

const form = document.getElementById("query");
const imageInput = document.getElementById("image");
const textInput = document.getElementById("text");
const kInput = document.getElementById("k");
const submit = document.getElementById("submit");
const preview = document.getElementById("preview");
const previewBox = document.getElementById("preview-box");
const errorBox = document.getElementById("error");
const status = document.getElementById("status");
const results = document.getElementById("results");
let previewUrl = null;

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = false;
  status.textContent = "";
}

function clearError() {
  errorBox.hidden = true;
  errorBox.textContent = "";
}

imageInput.addEventListener("change", () => {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  const file = imageInput.files[0];
  previewUrl = file ? URL.createObjectURL(file) : null;
  preview.src = previewUrl || "";
  previewBox.hidden = !file;
});

function card(result) {
  const item = document.createElement("li");
  const figure = document.createElement("figure");
  const img = document.createElement("img");
  img.src = result.image_url;
  img.alt = result.id;
  const caption = document.createElement("figcaption");
  const id = document.createElement("span");
  id.className = "id";
  id.textContent = result.id;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = result.score.toFixed(3);
  caption.append(id, score);
  figure.append(img, caption);
  item.append(figure);
  return item;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError();
  if (!imageInput.files.length) return showError("Choose a reference image first.");
  if (!textInput.value.trim()) return showError("Say what should change, e.g. \"is red and has long sleeves\".");
  submit.disabled = true;
  status.textContent = "Searching…";
  try {
    const response = await fetch("/recommend", { method: "POST", body: new FormData(form) });
    const payload = await response.json().catch(() => null);
    if (!response.ok) {
      throw new Error(payload && payload.error ? payload.error : `The server answered ${response.status}.`);
    }
    results.replaceChildren(...payload.results.map(card));
    status.textContent = `${payload.results.length} results`;
  } catch (err) {
    results.replaceChildren();
    showError(err instanceof TypeError ? "Could not reach the server." : err.message);
  } finally {
    submit.disabled = false;
  }
});

fetch("/health").then((r) => r.json()).then((health) => {
  kInput.max = health.max_k;
  textInput.maxLength = health.max_text_chars;
}).catch(() => showError("The server is not answering; is `fashionrec serve` running?"));
