// stylelens web page: upload a photo, see what it is and products to buy. Plain JS, no build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    dropzone: $("dropzone"), fileInput: $("file-input"), cameraInput: $("camera-input"), preview: $("preview"),
    words: $("f-words"), wordsNote: $("f-words-note"),
    dropHint: $("drop-hint"), boxes: $("boxes"), boxHelp: $("box-help"), items: $("items"), identUnsure: $("ident-unsure"), chooseLabel: $("choose-label"), limit: $("upload-limit"), catalogInfo: $("catalog-info"),
    identified: $("identified"), identText: $("ident-text"), identBar: $("ident-bar"), identDetails: $("ident-details"),
    filters: $("filters"), filtersToggle: $("filters-toggle"), gender: $("f-gender"), type: $("f-type"), colour: $("f-colour"), min: $("f-min"),
    max: $("f-max"), stock: $("f-stock"), collapse: $("f-collapse"), variety: $("f-variety"),
    varietyValue: $("f-variety-value"), priceRange: $("price-range"), sort: $("sort"), sortBox: $("sort-box"),
    chips: $("chips"), loadMore: $("load-more"), forYouLink: $("for-you-link"), forYouCount: $("for-you-count"),
    toastBody: $("toast-body"), toastText: $("toast-text"), toastLink: $("toast-link"),
    focus: $("focus-product"), focusImg: $("focus-img"), focusTitle: $("focus-title"), focusType: $("focus-type"),
    focusBuy: $("focus-buy"),
    message: $("message"), messageTitle: $("message-title"), messageText: $("message-text"),
    resultsTitle: $("results-title"), resultsMeta: $("results-meta"), back: $("back-to-photo"), welcome: $("welcome"),
    results: $("results"), garmentRows: $("garment-rows"), look: $("complete-look"), lookGroups: $("look-groups"), forYou: $("for-you"),
    forYouGrid: $("for-you-grid"), cardTemplate: $("card-template"), forget: $("forget-me"), forYouTitle: $("for-you-title"),
    photoStale: $("photo-stale"), staleNote: $("stale-note"), notes: $("notes"),
    identNote: $("ident-note"), identNoteText: $("ident-note-text"), identNoteTypes: $("ident-note-types"),
  };

  // Friendly headlines per error code; the server's message (what happened, what to do) goes below.
  const ERROR_TITLES = {
    not_an_image: "That file isn't a photo",
    empty: "That file is empty",
    too_large: "That photo is too big",
    too_many_pixels: "That image is too large to open",
    unsupported_format: "That image format isn't supported",
    truncated: "That photo is incomplete",
    corrupt: "That photo is damaged",
    no_image: "Choose a photo first",
    unknown_product: "That product is no longer available",
    bad_filter: "Check the filters",
    bad_box: "That box is outside the photo",
    bad_request: "The shop didn't understand that request",
    unsupported_option: "That option isn't available here",
    network: "Can't reach the shop",
    internal_error: "Something went wrong on our side",
    busy: "The shop is busy",
    index_busy: "The shop is busy",
    unavailable: "The shop can't answer right now",
    storage_error: "The shop can't search right now",
    index_damaged: "The shop can't search right now",
    database_unavailable: "The shop can't search right now",
    vector_store_unavailable: "The shop can't search right now",
    weights_unavailable: "The shop can't search right now",
    users_unavailable: "Your likes can't be saved right now",
    missing_extra: "That option isn't available here",
    upload_timeout: "The upload took too long",
    client_disconnected: "The upload was interrupted",
    unsupported_media_type: "The shop didn't understand that request",
    not_your_shopper: "Your session has changed",
    shopper_token: "Your session has changed",
    csrf: "Your session has changed",
  };

  // An answer that is not the API's JSON (a proxy's or the server's own 429/502/503/504): its code and message.
  function statusError(status) {
    if (status === 429 || status === 503) {
      return ["busy", "The shop is busy right now. Wait a moment and try again."];
    }
    if (status === 502 || status === 504) {
      return ["unavailable", "The shop's server did not answer in time. Try again in a moment."];
    }
    if (status === 413) return ["too_large", "The photo is over the shop's upload limit. Upload a smaller photo."];
    return ["internal_error", `The server answered ${status}. Try again in a moment.`];
  }

  const PAGE = 24;          // products per "page"; "Show more products" asks for PAGE more
  const MAX_K = 1000;       // the API's limit on k
  const UNSURE = 0.5;       // an identification less sure than this asks the shopper to adjust the box
  const MAX_ITEMS = 6;      // found items plus boxes the shopper drew

  const state = {
    file: null,            // the shopper's photo, kept in memory to re-run searches without re-uploading
    previewUrl: null,
    mode: null,            // "photo" | "similar"
    similarTo: null,       // product shown in "more like this"
    maxUploadBytes: 10 * 1024 * 1024,
    controller: null,      // aborts a search that a newer one replaces
    // The shopper is the server's: an HttpOnly cookie it signs (the page never sees or picks the id); "me"
    // names it. Changes that are not JSON carry the CSRF token the server gives this page only.
    user: "me",
    csrf: null,
    feedback: new Map(),   // product id -> "like" | "dislike"
    k: PAGE,               // how many products are asked for; grows with "Show more products"
    products: [],          // the last answer, in the server's order (sorting re-orders a copy)
    hasPrices: false,      // the catalog has prices (/api/facets): only then price controls and sorting
    forYouIds: "",         // what "For you" showed last, to say when a like changed it
    // The items in the photo, main item first: {box: [x, y, w, h] in the photo's own pixels, identified,
    // results, note, took_ms, origin: its place among the items the server found (null once the shopper
    // moved, resized or drew it), key: the options its results answer (another key: ask again first)}.
    items: [],
    selected: 0,
  };

  // The page's shopper, asked for first thing: every change waits for it (its CSRF token), so a photo chosen
  // while the page is still loading (a slow or busy server) is not refused for want of the token.
  let shopperReady = Promise.resolve();

  async function ensureShopper() {
    try {
      const shopper = await api("/api/shoppers/me");
      state.csrf = shopper.csrf;
    } catch (e) { /* no shopper: searches still work, likes answer with the server's reason */ }
  }

  // ---- talking to the API -------------------------------------------------------------------
  async function api(path, options = {}) {
    let response;
    if ((options.method || "GET") !== "GET") await shopperReady;
    try {
      const headers = new Headers(options.headers || {});
      if (state.csrf) headers.set("X-CSRF-Token", state.csrf);
      response = await fetch(path, { ...options, headers, credentials: "same-origin" });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw apiError(0, "network", "The server did not answer. Check your connection and try again.");
    }
    let body = null;
    try { body = await response.json(); } catch (e) { /* not JSON */ }
    if (!response.ok) {
      const error = (body && body.error) || {};
      const [code, message] = statusError(response.status);
      throw apiError(response.status, error.code || code, error.message || message);
    }
    return body;
  }

  function apiError(status, code, message) {
    const err = new Error(message);
    err.status = status;
    err.code = code;
    return err;
  }

  function filterParams() {
    const params = new URLSearchParams();
    params.set("k", String(state.k));
    for (const name of ["gender", "type", "colour"]) if (el[name].value) params.set(name, el[name].value);
    // Sent even where the catalog has no prices (the describe box's "under 50"): the answer's notes say it was not applied.
    if (el.min.value !== "") params.set("min_price", el.min.value);
    if (el.max.value !== "") params.set("max_price", el.max.value);
    params.set("include_out_of_stock", el.stock.checked ? "false" : "true");
    if (el.collapse.checked) params.set("collapse", "true");
    if (Number(el.variety.value) > 0) params.set("diversity", el.variety.value);
    params.set("user", state.user);
    return params;
  }

  // ---- messages and loading -----------------------------------------------------------------
  function showError(err) {
    el.messageTitle.textContent = ERROR_TITLES[err.code] || (err.status >= 500 ? "The shop can't answer right now"
      : "Something went wrong");
    el.messageText.textContent = err.message;
    el.message.hidden = false;
    el.message.dataset.code = err.code || "";
    // Never off-screen: on a phone the shopper may be far down the grid, or up at the photo.
    bringIntoView(el.message);
  }

  function bringIntoView(node) {
    const box = node.getBoundingClientRect();
    if (box.top >= 0 && box.bottom <= window.innerHeight) return;
    const smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    node.scrollIntoView({ behavior: smooth ? "smooth" : "auto", block: "start" });
  }

  // A search failed: what is still on the page answers an earlier one, and says so (dimmed, one line).
  function markStale(text) {
    if (!el.results.querySelector(".card:not(.skeleton)") && el.garmentRows.hidden) return;
    el.staleNote.textContent = text;
    el.staleNote.hidden = false;
    el.results.classList.add("stale");
    el.garmentRows.classList.add("stale");
  }

  function clearStale() {
    el.staleNote.hidden = true;
    el.results.classList.remove("stale");
    el.garmentRows.classList.remove("stale");
  }

  const STALE_PHOTO = "These results are for your previous photo, not the one you just chose.";
  const STALE_CHANGE = "These results are from before your last change.";

  function clearError() {
    el.message.hidden = true;
    el.message.dataset.code = "";
  }

  function setLoading(on) {
    el.results.setAttribute("aria-busy", on ? "true" : "false");
    if (on) {
      el.resultsMeta.textContent = "Searching…";
      if (!el.results.children.length) renderSkeletons(8);
    }
  }

  function renderSkeletons(n) {
    el.results.replaceChildren(...Array.from({ length: n }, () => {
      const li = document.createElement("li");
      li.className = "card skeleton";
      li.setAttribute("aria-hidden", "true");
      li.innerHTML = '<div class="card-media"></div><div class="card-body"><div class="sk-line short"></div><div class="sk-line"></div><div class="sk-line short"></div></div>';
      return li;
    }));
  }

  // ---- searching ----------------------------------------------------------------------------
  // ``stale``: what the results still on the page are, should this search fail.
  async function run(request, stale = STALE_CHANGE) {
    if (state.controller) state.controller.abort();
    const controller = new AbortController();
    state.controller = controller;
    const meta = el.resultsMeta.textContent === "Searching…" ? state.meta : el.resultsMeta.textContent;
    state.meta = meta;
    clearError();
    el.welcome.hidden = true;
    setLoading(true);
    try {
      const body = await request(controller.signal);
      if (controller !== state.controller) return undefined;
      return body;
    } catch (err) {
      if (err.name === "AbortError") return undefined;  // a newer search took over: nothing to undo
      // An error never takes away what the shopper already had: the previous results stay, marked as such.
      markStale(stale);
      showError(err);
      el.resultsMeta.textContent = meta || "";
      if (el.results.querySelector(".skeleton")) el.results.replaceChildren();
      el.welcome.hidden = el.results.children.length > 0 || Boolean(state.file);
      return null;
    } finally {
      if (controller === state.controller) {
        setLoading(false);
        state.controller = null;
      }
    }
  }

  // ``photo``: a new photo to try (kept only if the server can use it); none: the selected item of the current
  // one again. The answer, or null after an error (shown; the previous results stay), or undefined if replaced.
  async function searchPhoto(photo = null, { reveal = false, more = false } = {}) {
    const file = photo ? photo.file : state.file;
    if (!file) return undefined;
    const item = photo ? null : state.items[state.selected];
    // A box the shopper moved or drew is searched alone; otherwise the whole photo, every found item at once.
    const box = item && item.origin === null ? item.box : null;
    const key = searchKey();
    const body = await run((signal) => {
      const form = new FormData();
      form.append("image", file);  // the photo kept in memory: the file is never read from disk again
      if (box) form.append("box", box.join(","));
      for (const [name, value] of filterParams()) form.append(name, value);
      return api("/api/search", { method: "POST", body: form, signal });
    }, photo ? STALE_PHOTO : STALE_CHANGE);
    if (!body) {
      // Whatever the reason (the photo, the network, a busy shop), the new photo was not searched: the one
      // whose results are on the page comes back, marked as the previous one. Choosing it again retries.
      if (body === null && photo) rejectPhoto(photo);
      return body;
    }
    if (photo) acceptPhoto(photo);
    el.photoStale.hidden = true;  // the photo shown is the one these results answer
    takeItems(body, { fresh: Boolean(photo), item: box ? item : null, key });
    showItem({ more });
    if (reveal) revealResults();
    return body;
  }

  function searchKey() {
    return filterParams().toString();
  }

  // The answer's items into state.items: a new photo's replace them; a box's answer goes to that box's item;
  // the whole photo again updates the items the server found, and leaves the boxes the shopper moved alone.
  function takeItems(body, { fresh, item, key }) {
    const answered = (body.items && body.items.length ? body.items : [{ box: null, identified: body.identified, results: body.results }])
      .map((it) => ({ box: it.box, group: it.group, outline: it.outline, identified: it.identified, results: it.results || [],
        note: body.note, notes: body.notes, took_ms: body.took_ms, key }));
    if (fresh) {
      state.items = answered.map((it, i) => ({ ...it, origin: i }));
      state.selected = 0;
    } else if (item) {
      Object.assign(item, answered[0], { box: answered[0].box || item.box });
    } else {
      answered.forEach((it, i) => {
        const mine = state.items.find((o) => o.origin === i);
        if (mine) Object.assign(mine, it);
      });
    }
  }

  // The selected item's identification and results, from what the last answers hold: no request.
  function showItem({ more = false } = {}) {
    const item = state.items[state.selected];
    state.mode = "photo";
    state.similarTo = null;
    renderIdentified(item ? item.identified : null);
    showPhotoView("Similar products");
    renderResults(item || { results: [] }, { more });
    renderIdentNote(item);
    drawBoxes();
    drawItems();
  }

  // Picking an item (its chip or its box) shows the results the answer already holds; only results for
  // other options (filters changed since) are asked for again.
  function selectItem(i) {
    if (!state.items[i]) return;
    if (state.controller) state.controller.abort();
    state.selected = i;
    state.k = PAGE;
    if (state.items[i].key === searchKey()) showItem();
    else searchPhoto();
  }

  // On a phone the photo and its panels fill the first screen: bring the products up to the shopper.
  function revealResults() {
    const first = el.results.querySelector(".card, .empty");
    if (!first) return;
    const top = first.getBoundingClientRect().top;
    if (top >= 0 && top + 80 <= window.innerHeight) return;  // already in view (desktop)
    const smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    el.resultsTitle.scrollIntoView({ behavior: smooth ? "smooth" : "auto", block: "start" });
  }

  async function searchSimilar(product, { more = false } = {}) {
    const fresh = state.similarTo !== product;
    if (fresh) state.k = PAGE;
    const body = await run((signal) =>
      api(`/api/products/${encodeURIComponent(product.id)}/similar?${filterParams()}`, { signal }));
    if (!body) return;
    state.mode = "similar";
    state.similarTo = product;
    el.resultsTitle.textContent = "More like this";
    renderResults(body, { more });
    renderIdentNote(null);
    if (!fresh) return;
    showFocusProduct(product);
    el.focusTitle.focus({ preventScroll: true });
    const smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    el.focus.scrollIntoView({ behavior: smooth ? "smooth" : "auto", block: "start" });
    sendEvent(product.id, "view");
    loadCompleteLook(product);
  }

  // "More like this": the chosen product on top, what completes its look right under it, then similar ones.
  function showFocusProduct(p) {
    const name = p.name || `Product ${p.id}`;
    el.focusImg.src = p.image_url;
    el.focusImg.alt = name;
    el.focusTitle.textContent = name;
    el.focusType.textContent = [p.type, p.gender, p.colour, formatPrice(p.price, p.currency)].filter(Boolean).join(" · ");
    el.focusBuy.hidden = !p.url;
    if (p.url) {
      el.focusBuy.href = p.url;
      el.focusBuy.setAttribute("aria-label", `Buy ${name} (opens the shop in a new tab)`);
    }
    el.back.hidden = !state.file;
    el.focus.hidden = false;
  }

  function showPhotoView(title) {
    el.resultsTitle.textContent = title;
    el.back.hidden = true;
    el.focus.hidden = true;
    el.look.hidden = true;
  }

  function acceptPhoto(photo) {
    if (state.previewUrl && state.previewUrl !== photo.url) URL.revokeObjectURL(state.previewUrl);
    state.file = photo.file;
    state.previewUrl = photo.url;
  }

  // The server could not use this photo: show the previous one again (its results never went away).
  function rejectPhoto(photo) {
    URL.revokeObjectURL(photo.url);
    drawItems();
    if (state.previewUrl) {
      el.preview.src = state.previewUrl;
      el.preview.hidden = false;
      el.photoStale.hidden = false;
      el.dropHint.hidden = true;
      el.chooseLabel.textContent = "Choose another photo";
    } else {
      el.preview.hidden = true;
      el.preview.removeAttribute("src");
      el.dropHint.hidden = false;
      el.chooseLabel.textContent = "Choose a photo";
      el.welcome.hidden = el.results.children.length > 0;
    }
  }

  function rerun({ more = false } = {}) {
    if (!more) state.k = PAGE;
    if (state.mode === "similar" && state.similarTo) searchSimilar(state.similarTo, { more });
    else if (state.file) searchPhoto(null, { more });
    renderChips();
  }

  // ---- rendering ----------------------------------------------------------------------------
  function isUnsure(ident) {
    return Boolean(ident && ident.type) && (ident.type_confidence || 0) < UNSURE;
  }

  function renderIdentified(ident) {
    el.identUnsure.hidden = !isUnsure(ident);
    if (!ident || !ident.type) { el.identified.hidden = true; return; }
    const pct = Math.round((ident.type_confidence || 0) * 100);
    el.identText.textContent = `${ident.type} — ${pct}%`;
    el.identBar.style.setProperty("--value", `${pct}%`);
    el.identDetails.textContent = [ident.gender, ident.colour].filter(Boolean).join(" · ");
    el.identified.hidden = false;
  }

  // The grid's types, most common first: [[type, count], ...] (the shopper's own product left out).
  function gridTypes(results) {
    const counts = new Map();
    for (const p of results || []) if (p.type && !p.exact_match) counts.set(p.type, (counts.get(p.type) || 0) + 1);
    return [...counts].sort((a, b) => b[1] - a[1]);
  }

  const NOTE_TYPES = 4;  // one-tap type filters offered beside a doubtful identification

  // Beside the results, where a phone shows them: "not sure" in words, and when most of the grid is another type
  // than the identification, that said too, with the grid's types as one-tap filters.
  function renderIdentNote(item) {
    const ident = item && item.identified;
    const results = (item && item.results) || [];
    const types = gridTypes(results);
    const counts = new Map(types);
    const total = types.reduce((n, [, c]) => n + c, 0);
    const mine = ident && ident.type ? counts.get(ident.type) || 0 : 0;
    const unsure = isUnsure(ident);
    // The grid's most common type is another: they disagree (a type filter makes the grid one type on purpose).
    const disagree = Boolean(ident && ident.type) && !el.type.value && total >= 3 && types[0][1] > mine;
    el.identNote.hidden = !unsure && !disagree;
    if (el.identNote.hidden) return;
    const pct = Math.round((ident.type_confidence || 0) * 100);
    let text = `Looks like ${ident.type} (${pct} %${unsure ? ", not sure" : ""})`;
    if (disagree) {
      const [top, count] = types[0];
      text += `, but more of these results are ${top} (${count} of ${total}) than ${ident.type} (${mine}).`;
    } else {
      text += ".";
    }
    el.identNoteText.textContent = `${text} ${unsure ? "Adjust the box around the item, or show" : "Show"} one type only:`;
    const offered = new Set([...el.type.options].map((o) => o.value).filter(Boolean));
    const picks = types.map(([t]) => t).filter((t) => t !== ident.type).slice(0, NOTE_TYPES - 1);
    picks.push(ident.type);  // kept below only where the type filter offers it, as every pick
    el.identNoteTypes.replaceChildren(...picks.filter((t) => offered.has(t)).map((t) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "chip type-pick";
      button.dataset.type = t;
      const count = counts.get(t) || 0;
      button.textContent = count ? `${t} (${count})` : t;
      button.setAttribute("aria-label", `Show ${t} only`);
      button.addEventListener("click", () => {
        el.type.value = t;
        rerun();
      });
      return button;
    }));
    el.identNoteTypes.hidden = !el.identNoteTypes.children.length;
  }

  // One line each for what the server could not do as asked (a price filter on a catalog without prices...).
  function renderNotes(notes) {
    const lines = Array.isArray(notes) ? notes.filter((n) => typeof n === "string" && n) : [];
    el.notes.replaceChildren(...lines.map((line) => {
      const li = document.createElement("li");
      li.textContent = line;
      return li;
    }));
    el.notes.hidden = lines.length === 0;
  }

  function renderResults(body, { more = false } = {}) {
    const shown = new Set(more ? state.products.map((p) => p.id) : []);
    state.products = body.results || [];
    clearStale();
    drawResults();
    renderNotes(body.notes);
    const n = state.products.length;
    // With variety the order trades the score for different styles: the percentages need not descend.
    const mixed = Number(el.variety.value) > 0 && n > 1 ? " · mixed for variety" : "";
    el.resultsMeta.textContent = `${n} product${n === 1 ? "" : "s"} · ${Math.round(body.took_ms || 0)} ms${mixed}`;
    state.meta = el.resultsMeta.textContent;
    // Fewer than asked for means there are no more to show.
    el.loadMore.hidden = n < state.k || state.k >= MAX_K;
    el.sortBox.hidden = n < 2 || !state.hasPrices;  // "Best match" alone is no choice
    if (isLook()) drawLookRows();  // a look's rows say how many garments, and show no "more" button
    if (more) {
      // Keyboard and screen-reader users continue at the first product they have not seen.
      const fresh = Array.from(el.results.querySelectorAll(".card")).find((c) => !shown.has(c.dataset.id));
      if (fresh) { fresh.tabIndex = -1; fresh.focus(); }
    }
    if (!n) {
      const li = document.createElement("li");
      li.className = "empty";
      // The server says why nothing came back (a filter, stock, no prices); the generic advice is the fallback.
      li.textContent = body.note || "No products match these filters. Loosen them, or untick “In stock only”.";
      el.results.replaceChildren(li);
    }
  }

  function sorted(products) {
    const how = el.sort.value;
    if (how === "match" || !state.hasPrices) return products;
    const sign = how === "price-desc" ? -1 : 1;
    const price = (p) => (typeof p.price === "number" ? p.price : null);
    const exact = products.filter((p) => p.exact_match);
    const rest = products.filter((p) => !p.exact_match).map((p, i) => [p, i]);
    rest.sort(([a, i], [b, j]) => {
      const pa = price(a), pb = price(b);
      if (pa === null || pb === null) return (pa === null) - (pb === null) || i - j;  // unpriced last
      return sign * (pa - pb) || i - j;
    });
    return [...exact, ...rest.map(([p]) => p)];  // the shopper's own product stays first
  }

  function drawResults() {
    if (state.products.length) el.results.replaceChildren(...sorted(state.products).map((p) => card(p)));
    drawLookRows();
  }

  // ---- shop the look: a person's photo answers one item per worn garment (``group``, ``outline``) -------------
  const LOOK_ROW = 12;  // products in a garment's row (it scrolls sideways); the garment's own grid has them all
  const GROUP_NAMES = { top: "Top", outerwear: "Outerwear", dress: "Dress", bottom: "Bottom", shoes: "Shoes", bag: "Bag" };

  function isLook() {
    return state.mode === "photo" && state.items.filter((item) => item.group).length >= 2;
  }

  // In a look, every garment gets its own row of products (the single grid holds one item's); its header picks
  // the garment (its outline and box on the photo), as its chip does.
  function drawLookRows() {
    const look = isLook();
    el.garmentRows.hidden = !look;
    el.results.hidden = look;
    if (!look) {
      el.garmentRows.replaceChildren();
      return;
    }
    el.loadMore.hidden = true;  // each row shows the garment's first products; pick it and draw a box for more
    const garments = state.items.filter((item) => item.group).length;
    el.resultsMeta.textContent = `${garments} garments · ${Math.round(state.items[0].took_ms || 0)} ms`;
    keepingFocus(el.garmentRows, () => el.garmentRows.replaceChildren(...state.items.map((item, i) => {
      const row = document.createElement("section");
      row.className = i === state.selected ? "garment-row selected" : "garment-row";
      const head = document.createElement("button");
      head.type = "button";
      head.className = "garment-row-head";
      head.dataset.index = String(i);
      head.setAttribute("aria-pressed", String(i === state.selected));
      const number = document.createElement("span");
      number.className = "item-no";
      number.setAttribute("aria-hidden", "true");
      number.textContent = String(i + 1);
      const name = document.createElement("span");
      name.className = "garment-row-group";
      name.textContent = GROUP_NAMES[item.group] || "Your box";
      const what = document.createElement("span");
      what.className = "garment-row-type muted";
      what.textContent = itemLabel(item);
      head.append(number, name, what);
      head.addEventListener("click", () => selectItem(i));
      const cards = document.createElement("ul");
      cards.className = "garment-row-cards";
      cards.setAttribute("aria-label", `Products like the ${name.textContent.toLowerCase()}`);
      const products = sorted(item.results || []).slice(0, LOOK_ROW);
      if (products.length) cards.append(...products.map((p) => card(p)));
      else {
        const li = document.createElement("li");
        li.className = "empty";
        li.textContent = item.note || "No products match these filters.";
        cards.append(li);
      }
      row.append(head, cards);
      return row;
    })));
  }

  // Each garment's outline over the photo (polygons in the photo's own pixels, like the boxes).
  function outlineLayer(g) {
    // The SVG namespace, read off the page's own inline icons (no URL in the script: the page fetches nothing).
    const NS = document.querySelector("svg").namespaceURI;
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("class", "outlines");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("viewBox", `0 0 ${g.w} ${g.h}`);
    Object.assign(svg.style, { left: `${g.ox}px`, top: `${g.oy}px`, width: `${g.w * g.s}px`, height: `${g.h * g.s}px` });
    state.items.forEach((item, i) => {
      for (const polygon of item.outline || []) {
        const shape = document.createElementNS(NS, "polygon");
        shape.setAttribute("points", polygon.map(([x, y]) => `${x},${y}`).join(" "));
        shape.setAttribute("class", i === state.selected ? "selected" : "");
        shape.dataset.index = String(i);
        svg.append(shape);
      }
    });
    return svg;
  }

  function formatPrice(price, currency) {
    if (price === null || price === undefined) return "";
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: currency || "EUR" }).format(price);
    } catch (e) {
      return `${Number(price).toFixed(2)} ${currency || ""}`.trim();
    }
  }

  // ``match: false`` leaves out the "% match" bar (For you and complete-the-look scores are not a match to the photo).
  function card(p, { match = true } = {}) {
    const node = el.cardTemplate.content.firstElementChild.cloneNode(true);
    const name = p.name || `Product ${p.id}`;
    node.dataset.id = p.id;
    const img = node.querySelector(".card-img");
    // A product with several pictures (a feed's views) shows the one that matched the photo first.
    img.src = p.matched_image_url || p.image_url;
    img.alt = name;
    node.querySelector(".card-type").textContent = [p.type, p.gender].filter(Boolean).join(" · ");
    node.querySelector(".card-title").textContent = name;
    // Variants: one card with its price range ("from 15.00 to 19.00"), colours and sizes.
    const price = formatPrice(p.price, p.currency);
    node.querySelector(".card-price").textContent = price && typeof p.price_max === "number" && p.price_max > p.price
      ? `${price} – ${formatPrice(p.price_max, p.currency)}` : price;
    const options = [(p.colours || []).join(", "), (p.sizes || []).join(" · ")].filter(Boolean);
    if (options.length) {
      const line = document.createElement("p");
      line.className = "card-variants";
      line.textContent = options.join(" | ");
      line.title = [p.colours && p.colours.length ? `Colours: ${p.colours.join(", ")}` : "",
        p.sizes && p.sizes.length ? `Sizes: ${p.sizes.join(", ")}` : ""].filter(Boolean).join(". ");
      node.querySelector(".card-row").after(line);
    }
    if (Array.isArray(p.image_urls) && p.image_urls.length > 1) {
      const strip = document.createElement("div");
      strip.className = "card-views";
      strip.setAttribute("role", "group");
      strip.setAttribute("aria-label", `Pictures of ${name}`);
      p.image_urls.forEach((src, i) => {
        const thumb = document.createElement("button");
        thumb.type = "button";
        thumb.className = "card-view";
        thumb.setAttribute("aria-label", `Picture ${i + 1} of ${p.image_urls.length}`);
        thumb.setAttribute("aria-pressed", String(src === img.getAttribute("src")));
        const small = document.createElement("img");
        small.src = src;
        small.alt = "";
        small.loading = "lazy";
        thumb.append(small);
        thumb.addEventListener("click", () => {
          img.src = src;
          for (const b of strip.children) b.setAttribute("aria-pressed", String(b === thumb));
        });
        strip.append(thumb);
      });
      node.querySelector(".card-media").after(strip);
    }
    node.querySelector(".card-stock").hidden = p.in_stock !== false;
    const similar = node.querySelector(".card-similar");
    if (p.similar_count > 0) {
      similar.hidden = false;
      similar.textContent = `+${p.similar_count} similar`;
      similar.title = `${p.similar_count} near-identical ${p.similar_count === 1 ? "product is" : "products are"} hidden behind this one`;
    }
    if (match) {
      // The ranking score, what the order follows (the look-alike's cosine plus the lift for the identified type),
      // so the percentages descend with the cards; capped at 100 % (a lifted near-copy can pass 1).
      const pct = Math.min(100, Math.max(0, Math.round((p.score ?? p.similarity ?? 0) * 100)));
      const text = node.querySelector(".match-text");
      node.querySelector(".match-bar").style.setProperty("--value", `${pct}%`);
      text.textContent = p.exact_match ? "Exact match" : `${pct}% match`;
      if (!p.exact_match && p.similarity != null && Math.round(p.similarity * 100) !== pct) {
        text.title = `Ranked at ${pct} %: ${Math.round(p.similarity * 100)} % alike, adjusted for the identified type and your likes`;
      }
      if (p.exact_match) node.classList.add("exact");
    } else {
      node.querySelector(".match").remove();
    }
    const buy = node.querySelector(".buy");
    if (p.url) {
      buy.href = p.url;
      buy.setAttribute("aria-label", `Buy ${name} (opens the shop in a new tab)`);
    } else {
      buy.remove();  // nothing to buy from: no button at all rather than a disabled one
    }
    const more = node.querySelector(".more");
    more.setAttribute("aria-label", `More like ${name}`);
    more.addEventListener("click", () => searchSimilar(p));
    setupFeedback(node, p, name);
    return node;
  }

  function setupFeedback(node, p, name) {
    const box = node.querySelector(".feedback");
    box.hidden = false;
    for (const [cls, event, label] of [["like", "like", "Like"], ["dislike", "dislike", "Not for me:"]]) {
      const button = box.querySelector(`.${cls}`);
      button.setAttribute("aria-label", `${label} ${name}`);
      button.setAttribute("aria-pressed", String(state.feedback.get(p.id) === event));
      button.addEventListener("click", async () => {
        const ok = await sendEvent(p.id, event);
        if (!ok) return;
        state.feedback.set(p.id, event);
        for (const b of document.querySelectorAll(`.card[data-id="${CSS.escape(p.id)}"] .feedback button`)) {
          b.setAttribute("aria-pressed", String(b.classList.contains(event)));
        }
        await loadForYou();
        if (event === "like") toast(el.forYou.hidden ? "Liked. Like a few more to get picks For you."
          : "Saved to For you.", !el.forYou.hidden);
        else toast("Got it: fewer like this.", false);
      });
    }
  }

  // ---- personalisation and complete-the-look (shown only where the server has them) -------
  async function sendEvent(productId, event) {
    try {
      await api(`/api/users/${encodeURIComponent(state.user)}/events`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ product_id: productId, event }),
      });
      return true;
    } catch (err) {
      if (event !== "view") showError(err);
      return false;
    }
  }

  const FOR_YOU = 8;

  async function loadForYou() {
    try {
      // collapse: near-identical products (the same picture listed twice) show once.
      const body = await api(`/api/users/${encodeURIComponent(state.user)}/recommendations?k=${FOR_YOU}&collapse=true`);
      const products = (body && body.results) || [];
      el.forYouGrid.replaceChildren(...products.map((p) => card(p, { match: false })));
      el.forYou.hidden = products.length === 0;
      el.forYouLink.hidden = el.forYou.hidden;
      el.forYouCount.textContent = products.length ? `(${products.length})` : "";
    } catch (err) {
      el.forYou.hidden = true;  // "For you" is extra: a failure here must not hide the search
      el.forYouLink.hidden = true;
    }
  }

  let toastTimer = null;
  function toast(text, withLink) {
    clearTimeout(toastTimer);
    el.toastText.textContent = text;
    el.toastLink.hidden = !withLink;
    el.toastBody.hidden = false;
    const hide = () => {
      // Not while the shopper is on the link (keyboard) or pointing at it.
      if (el.toastBody.matches(":hover, :focus-within")) { toastTimer = setTimeout(hide, 2000); return; }
      el.toastBody.hidden = true;
    };
    toastTimer = setTimeout(hide, 6000);
  }

  async function forgetMe() {
    try {
      await api(`/api/users/${encodeURIComponent(state.user)}`, { method: "DELETE" });
    } catch (err) {
      showError(err);
      return;
    }
    state.feedback.clear();
    for (const b of document.querySelectorAll(".feedback button")) b.setAttribute("aria-pressed", "false");
    el.forYouGrid.replaceChildren();
    el.forYou.hidden = true;
    el.forYouLink.hidden = true;
  }

  async function loadCompleteLook(product) {
    el.look.hidden = true;
    try {
      const body = await api(`/api/products/${encodeURIComponent(product.id)}/complete-the-look?k=3`);
      if (state.similarTo !== product) return;
      const groups = ((body && body.groups) || []).filter((g) => g.products && g.products.length);
      el.lookGroups.replaceChildren(...groups.map((g) => {
        const section = document.createElement("div");
        section.className = "look-group";
        const h = document.createElement("h3");
        h.textContent = g.category;
        const ul = document.createElement("ul");
        ul.className = "look-row";
        ul.append(...g.products.map((p) => card(p, { match: false })));
        section.append(h, ul);
        return section;
      }));
      el.look.hidden = groups.length === 0;
    } catch (err) {
      el.look.hidden = true;  // complete-the-look is extra: "more like this" stays
    }
  }

  // ---- the photo ----------------------------------------------------------------------------
  function takeFile(file) {
    if (!file) return;
    if (file.size > state.maxUploadBytes) {
      markStale(STALE_PHOTO);
      el.photoStale.hidden = !state.previewUrl;
      showError(apiError(413, "too_large",
        `The photo is ${(file.size / 1048576).toFixed(1)} MB, over the ${(state.maxUploadBytes / 1048576).toFixed(1)} MB limit. Upload a smaller photo (resize it or save it as JPEG).`));
      return;
    }
    const photo = { file, url: URL.createObjectURL(file) };
    el.preview.hidden = false;
    el.preview.src = photo.url;
    el.dropHint.hidden = true;
    el.chooseLabel.textContent = "Choose another photo";
    el.items.hidden = true;  // the previous photo's items, until this one's answer
    drawBoxes();
    state.k = PAGE;
    searchPhoto(photo, { reveal: true });
  }

  // A file the browser cannot show (the server's answer says why): hide the broken picture, not the old results.
  el.preview.addEventListener("error", () => { el.preview.hidden = true; el.dropHint.hidden = false; drawBoxes(); });
  for (const input of [el.fileInput, el.cameraInput]) {
    input.addEventListener("change", () => { takeFile(input.files[0]); input.value = ""; });
  }
  el.dropzone.addEventListener("dragenter", (e) => { e.preventDefault(); el.dropzone.classList.add("dragging"); });
  el.dropzone.addEventListener("dragover", (e) => { e.preventDefault(); e.dataTransfer.dropEffect = "copy"; });
  el.dropzone.addEventListener("dragleave", (e) => {
    if (!el.dropzone.contains(e.relatedTarget)) el.dropzone.classList.remove("dragging");
  });
  el.dropzone.addEventListener("drop", (e) => {
    e.preventDefault();
    el.dropzone.classList.remove("dragging");
    takeFile(e.dataTransfer.files[0]);
  });
  // A photo dropped outside the zone should not replace the page with the image.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  document.addEventListener("paste", (e) => {
    const item = Array.from(e.clipboardData ? e.clipboardData.files : []).find((f) => f.type.startsWith("image/"));
    if (item) takeFile(item);
  });

  // ---- the items in the photo: a box each over the preview, and a chip each ---------------------
  let gesture = null;  // a pointer dragging a box, a corner, or drawing a new box

  // Where the photo's own pixels land on the page (the preview is object-fit: contain); null while no
  // accepted photo is shown.
  function photoGeometry() {
    const img = el.preview;
    const nw = img.naturalWidth, nh = img.naturalHeight, cw = img.clientWidth, ch = img.clientHeight;
    if (img.hidden || !state.file || img.getAttribute("src") !== state.previewUrl || !nw || !nh || !cw || !ch) return null;
    const s = Math.min(cw / nw, ch / nh);
    return { s, w: nw, h: nh, ox: img.offsetLeft + (cw - nw * s) / 2, oy: img.offsetTop + (ch - nh * s) / 2 };
  }

  function itemLabel(item) {
    const ident = item.identified;
    if (!ident || !ident.type) return item.key ? "Unknown item" : "Your box";
    // "not sure" wherever the item's results are shown (its chip, its row in a look), not only in the side panel.
    return `${ident.type} · ${Math.round((ident.type_confidence || 0) * 100)} %${isUnsure(ident) ? " · not sure" : ""}`;
  }

  function itemName(item, i) {
    return `Item ${i + 1}${item.origin === 0 ? " (main item)" : ""}: ${itemLabel(item)}`;
  }

  // Redraws ``container`` and gives focus back to the element with the same data-index.
  function keepingFocus(container, draw) {
    const active = document.activeElement;
    const index = container.contains(active) ? active.dataset.index : undefined;
    draw();
    const again = index === undefined ? null : container.querySelector(`[data-index="${index}"]`);
    if (again) again.focus({ preventScroll: true });
  }

  function placeBox(node, box, g) {
    node.style.left = `${g.ox + box[0] * g.s}px`;
    node.style.top = `${g.oy + box[1] * g.s}px`;
    node.style.width = `${box[2] * g.s}px`;
    node.style.height = `${box[3] * g.s}px`;
    node.classList.toggle("small", Math.min(box[2], box[3]) * g.s < 40);
  }

  function drawBoxes() {
    if (gesture) return;  // the shopper is dragging: that box follows the pointer
    const g = photoGeometry();
    el.boxes.hidden = !g;
    el.boxHelp.hidden = !g;
    if (!g) return;
    const selected = state.items[state.selected];
    el.boxes.classList.toggle("unsure", Boolean(selected) && isUnsure(selected.identified));
    keepingFocus(el.boxes, () => el.boxes.replaceChildren(outlineLayer(g), ...state.items.flatMap((item, i) => {
      if (!item.box) return [];
      const node = document.createElement("div");
      node.className = (i === state.selected ? "box selected" : "box") + (item.outline && item.outline.length ? " outlined" : "");
      node.dataset.index = String(i);
      node.tabIndex = 0;
      node.setAttribute("role", "button");
      node.setAttribute("aria-pressed", String(i === state.selected));
      node.setAttribute("aria-label", `Box around ${itemName(item, i)}`);
      node.setAttribute("aria-describedby", "box-help");
      const number = document.createElement("span");
      number.className = "box-no";
      number.setAttribute("aria-hidden", "true");
      number.textContent = String(i + 1);
      if (state.items.length > 1) node.append(number);  // numbered like the chips; one item needs no number
      if (i === state.selected) {
        for (const corner of ["nw", "ne", "sw", "se"]) {
          const handle = document.createElement("span");
          handle.className = `handle ${corner}`;
          handle.dataset.handle = corner;
          node.append(handle);
        }
      }
      placeBox(node, item.box, g);
      return [node];
    })));
  }

  function drawItems() {
    el.items.hidden = state.items.length < 2;  // one item: its box says it all
    keepingFocus(el.items, () => el.items.replaceChildren(...state.items.map((item, i) => {
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "item-chip";
      chip.dataset.index = String(i);
      chip.setAttribute("aria-pressed", String(i === state.selected));
      chip.setAttribute("aria-label", itemName(item, i));
      const number = document.createElement("span");
      number.className = "item-no";
      number.setAttribute("aria-hidden", "true");
      number.textContent = String(i + 1);
      chip.append(number, itemLabel(item));
      chip.addEventListener("click", () => selectItem(i));
      return chip;
    })));
  }

  // Searches item ``i`` again for ``box`` (the photo in memory, sent with the box: one request). The server
  // says no: the box goes back (a drawn one goes away) and the previous results stay.
  async function searchBox(i, box, { added = false } = {}) {
    const item = state.items[i];
    const before = { ...item };
    const selectedBefore = state.selected;
    Object.assign(item, { box: box.map((v) => Math.round(v)), origin: null, key: null });
    state.selected = i;
    state.k = PAGE;
    drawBoxes();
    drawItems();
    const body = await searchPhoto();
    if (body !== null) return;
    if (added) state.items.splice(state.items.indexOf(item), 1);
    else Object.assign(item, before);
    state.selected = Math.min(selectedBefore, state.items.length - 1);
    drawBoxes();
    drawItems();
  }

  function addBox(box) {
    if (state.items.length >= MAX_ITEMS) { searchBox(state.selected, box); return; }
    state.items.push({ box, identified: null, results: [], note: null, took_ms: 0, origin: null, key: null });
    searchBox(state.items.length - 1, box, { added: true });
  }

  const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);

  // The box a gesture makes: moved, one corner dragged, or drawn from where the pointer went down.
  function reshape(gesture, p) {
    const { g, start, box, mode } = gesture;
    const least = 16 / g.s;  // no box smaller than 16 px on the screen
    if (mode === "draw") {
      const x = clamp(p.x, 0, g.w), y = clamp(p.y, 0, g.h);
      return [Math.min(x, start.x), Math.min(y, start.y), Math.abs(x - start.x), Math.abs(y - start.y)];
    }
    const [x, y, w, h] = box;
    const dx = p.x - start.x, dy = p.y - start.y;
    if (mode === "move") return [clamp(x + dx, 0, g.w - w), clamp(y + dy, 0, g.h - h), w, h];
    let left = x, top = y, right = x + w, bottom = y + h;
    if (mode.includes("w")) left = clamp(x + dx, 0, right - least);
    if (mode.includes("e")) right = clamp(right + dx, left + least, g.w);
    if (mode.includes("n")) top = clamp(y + dy, 0, bottom - least);
    if (mode.includes("s")) bottom = clamp(bottom + dy, top + least, g.h);
    return [left, top, right - left, bottom - top];
  }

  function photoPoint(e, g) {
    const frame = el.boxes.getBoundingClientRect();
    return { x: (e.clientX - frame.left - g.ox) / g.s, y: (e.clientY - frame.top - g.oy) / g.s };
  }

  el.boxes.addEventListener("pointerdown", (e) => {
    if (gesture || (e.pointerType === "mouse" && e.button !== 0)) return;
    const g = photoGeometry();
    if (!g) return;
    const node = e.target.closest(".box");
    const handle = e.target.closest(".handle");
    const index = node ? Number(node.dataset.index) : -1;
    const start = photoPoint(e, g);
    if (!node && (start.x < 0 || start.y < 0 || start.x > g.w || start.y > g.h)) return;  // beside the photo
    e.preventDefault();  // no text selection, no scrolling
    if (node) node.focus({ preventScroll: true });
    el.boxes.setPointerCapture(e.pointerId);
    gesture = { id: e.pointerId, g, start, index, node, mode: handle ? handle.dataset.handle : node ? "move" : "draw",
      box: index >= 0 ? state.items[index].box.slice() : null, next: null };
  });

  el.boxes.addEventListener("pointermove", (e) => {
    if (!gesture || e.pointerId !== gesture.id) return;
    const p = photoPoint(e, gesture.g);
    if (!gesture.next && Math.hypot(p.x - gesture.start.x, p.y - gesture.start.y) * gesture.g.s < 4) return;  // a tap
    gesture.next = reshape(gesture, p);
    if (!gesture.node) {
      gesture.node = document.createElement("div");
      gesture.node.className = "box selected drawing";
      el.boxes.append(gesture.node);
    }
    placeBox(gesture.node, gesture.next, gesture.g);
  });

  function endGesture(e, cancelled) {
    if (!gesture || e.pointerId !== gesture.id) return;
    const { index, mode, next, g } = gesture;
    gesture = null;
    if (cancelled || !next) {
      drawBoxes();
      if (!cancelled && index >= 0 && index !== state.selected) selectItem(index);  // a tap on a box picks it
      return;
    }
    if (mode !== "draw") searchBox(index, next);
    else if (next[2] * g.s >= 8 && next[3] * g.s >= 8) addBox(next);
    else drawBoxes();  // too small to mean a box
  }
  el.boxes.addEventListener("pointerup", (e) => endGesture(e, false));
  el.boxes.addEventListener("pointercancel", (e) => endGesture(e, true));

  // Keyboard: Enter or Space picks a box; arrow keys move it by 5 % of its size, Shift+arrow keys resize it;
  // the search runs once the keys rest.
  let keyTimer = null;
  let keyBox = null;
  el.boxes.addEventListener("keydown", (e) => {
    const node = e.target.closest(".box");
    if (!node || e.altKey || e.ctrlKey || e.metaKey) return;
    const i = Number(node.dataset.index);
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      if (i !== state.selected) selectItem(i);
      return;
    }
    const step = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[e.key];
    const g = photoGeometry();
    if (!step || !g) return;
    e.preventDefault();
    const [x, y, w, h] = keyBox && keyBox.index === i ? keyBox.box : state.items[i].box;
    const dx = step[0] * Math.max(1, w * 0.05), dy = step[1] * Math.max(1, h * 0.05);
    const least = 16 / g.s;
    const box = e.shiftKey
      ? [x, y, clamp(w + dx, Math.min(least, w), g.w - x), clamp(h + dy, Math.min(least, h), g.h - y)]
      : [clamp(x + dx, 0, g.w - w), clamp(y + dy, 0, g.h - h), w, h];
    keyBox = { index: i, box };
    placeBox(node, box, g);
    clearTimeout(keyTimer);
    keyTimer = setTimeout(() => { keyBox = null; searchBox(i, box); }, 600);
  });

  el.preview.addEventListener("load", drawBoxes);
  if (window.ResizeObserver) new ResizeObserver(() => drawBoxes()).observe(el.preview);

  // ---- filters ------------------------------------------------------------------------------
  let priceTimer = null;
  el.filters.addEventListener("change", (e) => {
    if (e.target === el.words) return;  // read on Enter (the form's submit), below
    if (e.target === el.min || e.target === el.max) { clearTimeout(priceTimer); }
    rerun();
  });

  // "red women under 50 sneakers" -> the filter controls, matched by the server against this catalog's values.
  async function applyWords() {
    const text = el.words.value.trim();
    if (!text) return;
    let body;
    try {
      body = await api(`/api/filters?text=${encodeURIComponent(text)}`);
    } catch (err) {
      showError(err);
      return;
    }
    const f = body.filters || {};
    for (const [name, select] of [["gender", el.gender], ["type", el.type], ["colour", el.colour]]) {
      const first = f[name] ? String(f[name]).split(",")[0] : null;
      if (first && [...select.options].some((o) => o.value === first)) select.value = first;
    }
    if (f.max_price != null) el.max.value = f.max_price;
    if (f.min_price != null) el.min.value = f.min_price;
    el.wordsNote.textContent = body.unknown && body.unknown.length ? `Not found in this shop: ${body.unknown.join(", ")}` : "";
    el.words.value = "";
    renderChips();
  }
  for (const input of [el.min, el.max]) {
    input.addEventListener("input", () => { clearTimeout(priceTimer); priceTimer = setTimeout(rerun, 700); });
  }
  function showVariety() {
    const value = Number(el.variety.value);
    el.varietyValue.textContent = value > 0 ? `${Math.round(value * 100)} %` : "off";
  }
  el.variety.addEventListener("input", showVariety);  // the search re-runs on "change", when the thumb is let go
  el.filters.addEventListener("submit", (e) => { e.preventDefault(); rerun(); });
  el.words.addEventListener("keydown", async (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault();  // the form has several fields and no submit button: Enter is ours
    await applyWords();
    rerun();
  });
  el.filters.addEventListener("reset", () => setTimeout(() => { showVariety(); rerun(); }, 0));
  el.filters.addEventListener("input", (e) => { if (e.target !== el.variety) renderChips(); });
  el.forget.addEventListener("click", forgetMe);
  el.back.addEventListener("click", () => { selectItem(state.selected); el.resultsTitle.focus(); });
  el.sort.addEventListener("change", drawResults);
  el.loadMore.addEventListener("click", () => {
    state.k = Math.min(MAX_K, state.k + PAGE);
    rerun({ more: true });
  });
  el.forYouLink.addEventListener("click", () => setTimeout(() => el.forYouTitle.focus({ preventScroll: true }), 0));
  el.toastLink.addEventListener("click", () => {
    el.toastBody.hidden = true;
    setTimeout(() => el.forYouTitle.focus({ preventScroll: true }), 0);
  });

  // ---- active filters as removable chips -----------------------------------------------------
  function activeFilters() {
    const out = [];
    const label = (select) => select.options[select.selectedIndex].textContent;
    for (const [name, title] of [["gender", "Gender"], ["type", "Type"], ["colour", "Colour"]]) {
      if (el[name].value) out.push([`${title}: ${label(el[name])}`, () => { el[name].value = ""; }]);
    }
    if (el.min.value !== "") out.push([`From ${el.min.value}`, () => { el.min.value = ""; }]);
    if (el.max.value !== "") out.push([`Up to ${el.max.value}`, () => { el.max.value = ""; }]);
    if (!el.stock.checked) out.push(["Including out of stock", () => { el.stock.checked = true; }]);
    if (!el.collapse.checked) out.push(["Showing near-duplicates", () => { el.collapse.checked = true; }]);
    if (Number(el.variety.value) > 0) {
      out.push([`Variety ${Math.round(el.variety.value * 100)} %`, () => { el.variety.value = "0"; showVariety(); }]);
    }
    return out;
  }

  function renderChips() {
    const chips = activeFilters().map(([text, clear], i) => {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "chip";
      button.textContent = text;
      button.setAttribute("aria-label", `Remove filter: ${text}`);
      const x = document.createElement("span");
      x.className = "chip-x";
      x.setAttribute("aria-hidden", "true");
      x.textContent = "×";
      button.append(x);
      button.addEventListener("click", () => {
        clear();
        rerun();
        // Focus goes to the chip that took this one's place, or back to the results.
        const next = el.chips.querySelectorAll(".chip")[i] || el.chips.querySelector(".chip:last-of-type");
        (next || el.resultsTitle).focus();
      });
      li.append(button);
      return li;
    });
    el.chips.replaceChildren(...chips);
    el.chips.hidden = chips.length === 0;
  }
  el.filtersToggle.addEventListener("click", () => {
    const open = !el.filters.classList.contains("open");
    el.filters.classList.toggle("open", open);
    el.filtersToggle.setAttribute("aria-expanded", String(open));
  });

  function fillSelect(select, values) {
    // Adds the values not listed yet: called again while the catalog is still being indexed.
    const listed = new Set([...select.options].map((o) => o.value));
    for (const value of values || []) {
      if (listed.has(value)) continue;
      const option = document.createElement("option");
      option.value = value;
      option.textContent = value;
      select.append(option);
    }
  }

  function showCatalog(health) {
    const indexing = health.indexing;
    el.catalogInfo.classList.toggle("indexing", Boolean(indexing));
    el.catalogInfo.textContent = indexing
      ? `Indexing the catalog: ${indexing.indexed.toLocaleString()} of ${indexing.expected.toLocaleString()} products — search already covers those`
      : `${health.products.toLocaleString()} products`;
    return Boolean(indexing);
  }

  // While the server is still indexing (stylelens demo), follow its progress and add new filter values.
  async function followIndexing() {
    try {
      const [health, facets] = await Promise.all([api("/api/health"), api("/api/facets")]);
      fillSelect(el.gender, facets.gender);
      fillSelect(el.type, facets.type);
      fillSelect(el.colour, facets.colour);
      if (showCatalog(health)) setTimeout(followIndexing, 3000);
    } catch (err) {
      setTimeout(followIndexing, 10000);
    }
  }

  async function init() {
    shopperReady = ensureShopper();
    try {
      const [health, facets] = await Promise.all([api("/api/health"), api("/api/facets")]);
      await shopperReady;
      state.maxUploadBytes = health.max_upload_bytes || state.maxUploadBytes;
      el.limit.textContent = `${Math.round(state.maxUploadBytes / 1048576)} MB`;
      if (showCatalog(health)) setTimeout(followIndexing, 3000);
      fillSelect(el.gender, facets.gender);
      fillSelect(el.type, facets.type);
      fillSelect(el.colour, facets.colour);
      // No prices in the feed: no price filter and no sorting by price (they could only ever match nothing).
      state.hasPrices = Boolean(facets.price);
      el.priceRange.hidden = !state.hasPrices;
      if (!state.hasPrices) {
        for (const option of el.sort.querySelectorAll(".needs-price")) option.remove();
        $("refine-by").textContent = "by gender, type, colour and stock.";
      }
      if (facets.price) {
        el.min.placeholder = `Min ${Math.floor(facets.price.min)}`;
        el.max.placeholder = `Max ${Math.ceil(facets.price.max)}`;
      }
    } catch (err) {
      showError(err);
    }
    await loadForYou();
    document.body.dataset.ready = "true";
  }

  init();
})();
