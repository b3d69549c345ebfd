"use strict";
// Shopping turn by turn: pick a reference, say a change, pick the closest result as the next reference.
// The page talks to the API only; the server validates, the page explains.

const $ = (id) => document.getElementById(id);
const PAGE = 24;
const state = {
  category: "",
  offset: 0,
  total: 0,
  // Each turn: its reference ({id, image_url, categories} or {upload: File, image_url: blob URL}),
  // then the feedback given and the results it got (null until asked).
  turns: [],
};

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

async function getJson(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    throw new Error("Could not reach the server.");
  }
  const payload = await response.json().catch(() => null);
  if (!response.ok) throw new Error(payload && payload.error ? payload.error : `The server answered ${response.status}.`);
  return payload;
}

function label(ref) {
  return ref.upload ? "your photo" : ref.id;
}

// Catalog text is only ever set as textContent: a title holding markup shows as the characters it is.
function span(className, text) {
  const node = document.createElement("span");
  node.className = className;
  node.textContent = text;
  return node;
}

// Only http(s) addresses become links (the server checks them too), never javascript: or data: ones.
function productPage(url) {
  try {
    const parsed = new URL(url);
    return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
  } catch (err) {
    return null;
  }
}

// Where a picture should be but is not (an item imported without one, or one that failed to load).
function noPicture() {
  return span("no-picture", "No picture");
}

// A picture that fails to load (a file gone since, a format the browser cannot show, an upload that is no
// image) is never shown broken: a card's says "No picture", a thumbnail in the chain of turns goes.
function picture(url, onCard) {
  const img = document.createElement("img");
  img.alt = "";
  img.addEventListener("error", () => (onCard ? img.replaceWith(noPicture()) : img.remove()), { once: true });
  img.src = url;
  return img;
}

// A card: the picture and its text are one button (Tab reaches it, Enter or Space chooses it); the link to
// the shop's product page sits beside it, opening in a new tab. An item without a picture (image_url null)
// is shown, but cannot be chosen: a reference needs a picture.
function card(item, action, onChoose) {
  const li = document.createElement("li");
  li.className = "item";
  const button = document.createElement("button");
  button.type = "button";
  button.className = "card";
  button.dataset.id = item.id;
  if (item.image_url) {
    button.setAttribute("aria-label", `${action} ${item.id}`);
    button.append(picture(item.image_url, true));
  } else {
    button.disabled = true;
    button.title = "No picture: it cannot be a starting point";
    button.setAttribute("aria-label", `${item.id}, no picture: it cannot be a starting point`);
    button.append(noPicture());
  }
  if (item.title) button.append(span("title", item.title));
  const caption = document.createElement("span");
  caption.className = "caption";
  caption.append(span("id", item.id));
  if (item.score !== undefined) caption.append(span("score", item.score.toFixed(3)));
  else caption.append(span("category", item.categories.join(", ")));
  button.append(caption);
  if (item.price) button.append(span("price", [item.price, item.currency].filter(Boolean).join(" ")));
  button.addEventListener("click", () => onChoose(item));
  li.append(button);
  const href = item.url && productPage(item.url);
  if (href) {
    const link = document.createElement("a");
    link.className = "shop";
    link.href = href;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    link.textContent = "View in shop";
    link.setAttribute("aria-label", `View ${item.title || item.id} in the shop (new tab)`);
    li.append(link);
  }
  return li;
}

// --- the catalog: browse to a starting item --------------------------------------------------------

async function loadCategories() {
  const { categories } = await getJson("/categories");
  const select = $("category");
  for (const c of categories) {
    const option = document.createElement("option");
    option.value = c.name;
    option.textContent = `${c.name} (${c.items})`;
    select.append(option);
  }
}

let catalogRequests = 0;

async function loadCatalog() {
  const request = ++catalogRequests;
  const params = new URLSearchParams({ offset: state.offset, limit: PAGE });
  if (state.category) params.set("category", state.category);
  try {
    const page = await getJson(`/items?${params}`);
    if (request !== catalogRequests) return; // a newer page or category was asked for meanwhile
    state.total = page.total;
    $("catalog").replaceChildren(...page.items.map((item) => card(item, "Start from", startFrom)));
    const last = Math.min(state.offset + page.items.length, page.total);
    $("page-info").textContent = page.total ? `Items ${state.offset + 1}–${last} of ${page.total}` : "No items";
    $("prev").disabled = state.offset === 0;
    $("next").disabled = last >= page.total;
  } catch (err) {
    if (request === catalogRequests) showError(err.message);
  }
}

$("category").addEventListener("change", () => {
  state.category = $("category").value;
  state.offset = 0;
  clearError();
  loadCatalog();
});
$("prev").addEventListener("click", () => {
  state.offset = Math.max(0, state.offset - PAGE);
  loadCatalog();
});
$("next").addEventListener("click", () => {
  state.offset += PAGE;
  loadCatalog();
});

// --- the session: a chain of turns ---------------------------------------------------------------

// An uploaded photo's preview URL lives as long as the session that starts from it.
function releaseUpload() {
  const first = state.turns[0];
  if (first && first.ref.upload) URL.revokeObjectURL(first.ref.image_url);
}

function startFrom(ref) {
  clearError();
  releaseUpload();
  state.turns = [{ ref, text: null, results: null }];
  $("start").hidden = true;
  $("session").hidden = false;
  $("text").value = "";
  render();
  $("text").focus();
}

$("image").addEventListener("change", () => {
  const file = $("image").files[0];
  if (file) startFrom({ id: null, upload: file, image_url: URL.createObjectURL(file), categories: [] });
  $("image").value = "";
});

function chooseResult(item) {
  clearError();
  state.turns.push({ ref: item, text: null, results: null });
  $("text").value = "";
  render();
  $("text").focus();
}

function chainStep(className, text, imageUrl) {
  const li = document.createElement("li");
  li.className = className;
  if (imageUrl) li.append(picture(imageUrl, false));
  const span = document.createElement("span");
  span.textContent = text;
  li.append(span);
  return li;
}

function render() {
  const steps = [];
  state.turns.forEach((turn, i) => {
    const role = i === 0 ? "Start" : "Picked";
    const current = i === state.turns.length - 1 ? " current" : "";
    steps.push(chainStep(`reference${current}`, `${role}: ${label(turn.ref)}`, turn.ref.image_url));
    if (turn.text !== null) steps.push(chainStep("feedback", `“${turn.text}”`));
  });
  $("turns").replaceChildren(...steps);
  const turn = state.turns[state.turns.length - 1];
  const results = turn.results || [];
  $("results").replaceChildren(...results.map((item) => card(item, "Refine from", chooseResult)));
  $("status").textContent = turn.results
    ? `${results.length} results${turn.category ? ` in ${turn.category}` : ""}; choose one to refine it further`
    : `Say what should change about ${label(turn.ref)}.`;
  $("back").textContent = state.turns.length > 1 ? "Step back" : "Back to the catalog";
}

$("query").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError();
  const turn = state.turns[state.turns.length - 1];
  const text = $("text").value.trim();
  if (!text) return showError("Say what should change, e.g. \"is red and has long sleeves\".");
  const form = new FormData();
  if (turn.ref.upload) form.append("image", turn.ref.upload);
  else form.append("item_id", turn.ref.id);
  form.append("text", text);
  form.append("k", $("k").value);
  if (state.category) form.append("category", state.category);
  $("submit").disabled = true;
  $("status").textContent = "Searching…";
  try {
    const payload = await getJson("/recommend", { method: "POST", body: form });
    Object.assign(turn, { text, results: payload.results, category: state.category });
    render();
  } catch (err) {
    showError(err.message);
    $("status").textContent = "";
  } finally {
    $("submit").disabled = false;
  }
});

// Step back: the previous reference becomes current again, with the change said to it and its results.
$("back").addEventListener("click", () => {
  clearError();
  if (state.turns.length <= 1) return restart();
  state.turns.pop();
  $("text").value = state.turns[state.turns.length - 1].text || "";
  render();
  $("text").focus();
});

function restart() {
  clearError();
  releaseUpload();
  state.turns = [];
  $("session").hidden = true;
  $("start").hidden = false;
  loadCatalog();
}
$("restart").addEventListener("click", restart);

getJson("/health")
  .then((health) => {
    $("k").max = health.max_k;
    $("text").maxLength = health.max_text_chars;
  })
  .then(loadCategories)
  .then(loadCatalog)
  .catch(() => showError("The server is not answering; is `fashionrec serve` running?"));
