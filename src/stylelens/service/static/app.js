// stylelens web page: upload a photo, see what it is and products to buy. Plain JS, no build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    dropzone: $("dropzone"), fileInput: $("file-input"), cameraInput: $("camera-input"), preview: $("preview"),
    dropHint: $("drop-hint"), chooseLabel: $("choose-label"), limit: $("upload-limit"), catalogInfo: $("catalog-info"),
    identified: $("identified"), identText: $("ident-text"), identBar: $("ident-bar"), identDetails: $("ident-details"),
    filters: $("filters"), filtersToggle: $("filters-toggle"), gender: $("f-gender"), type: $("f-type"), colour: $("f-colour"), min: $("f-min"),
    max: $("f-max"), stock: $("f-stock"), k: $("f-k"), collapse: $("f-collapse"), variety: $("f-variety"),
    varietyValue: $("f-variety-value"),
    message: $("message"), messageTitle: $("message-title"), messageText: $("message-text"),
    resultsTitle: $("results-title"), resultsMeta: $("results-meta"), back: $("back-to-photo"), welcome: $("welcome"),
    results: $("results"), look: $("complete-look"), lookGroups: $("look-groups"), forYou: $("for-you"),
    forYouGrid: $("for-you-grid"), cardTemplate: $("card-template"), forget: $("forget-me"),
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
    bad_request: "The shop didn't understand that request",
    unsupported_option: "That option isn't available here",
    network: "Can't reach the shop",
    internal_error: "Something went wrong on our side",
  };

  // Errors that mean the photo itself cannot be used: it is dropped, so filters do not resend it.
  const PHOTO_ERRORS = new Set(["not_an_image", "empty", "too_large", "too_many_pixels", "unsupported_format",
    "truncated", "corrupt", "no_image"]);

  const state = {
    file: null,            // the shopper's photo, kept in memory to re-run searches without re-uploading
    previewUrl: null,
    mode: null,            // "photo" | "similar"
    similarTo: null,       // product shown in "more like this"
    maxUploadBytes: 10 * 1024 * 1024,
    controller: null,      // aborts a search that a newer one replaces
    user: shopperId(),
    feedback: new Map(),   // product id -> "like" | "dislike"
  };

  function shopperId() {
    const key = "stylelens.shopper";
    try {
      let id = localStorage.getItem(key);
      if (!id) {
        id = (crypto.randomUUID ? crypto.randomUUID()
          : Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join(""));
        localStorage.setItem(key, id);
      }
      return id;
    } catch (e) {
      return "anonymous";
    }
  }

  // ---- talking to the API -------------------------------------------------------------------
  async function api(path, options = {}) {
    let response;
    try {
      response = await fetch(path, options);
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw apiError(0, "network", "The server did not answer. Check your connection and try again.");
    }
    let body = null;
    try { body = await response.json(); } catch (e) { /* not JSON */ }
    if (!response.ok) {
      const error = (body && body.error) || {};
      throw apiError(response.status, error.code || "internal_error",
        error.message || `The server answered ${response.status}. Try again in a moment.`);
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
    params.set("k", el.k.value);
    for (const name of ["gender", "type", "colour"]) if (el[name].value) params.set(name, el[name].value);
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
    el.messageTitle.textContent = ERROR_TITLES[err.code] || "Something went wrong";
    el.messageText.textContent = err.message;
    el.message.hidden = false;
    el.message.dataset.code = err.code || "";
  }

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
  async function run(request) {
    if (state.controller) state.controller.abort();
    const controller = new AbortController();
    state.controller = controller;
    clearError();
    el.welcome.hidden = true;
    setLoading(true);
    try {
      const body = await request(controller.signal);
      if (controller !== state.controller) return null;
      return body;
    } catch (err) {
      if (err.name === "AbortError") return null;
      showError(err);
      el.resultsMeta.textContent = "";
      if (el.results.querySelector(".skeleton")) el.results.replaceChildren();
      return null;
    } finally {
      if (controller === state.controller) {
        setLoading(false);
        state.controller = null;
      }
    }
  }

  async function searchPhoto() {
    if (!state.file) return;
    state.mode = "photo";
    state.similarTo = null;
    const body = await run((signal) => {
      const form = new FormData();
      form.append("image", state.file);
      for (const [name, value] of filterParams()) form.append(name, value);
      return api("/api/search", { method: "POST", body: form, signal });
    });
    if (!body) {
      if (!el.message.hidden) {
        el.identified.hidden = true;
        el.results.replaceChildren();
        showPhotoView("Find it in the shop");
        if (PHOTO_ERRORS.has(el.message.dataset.code)) dropPhoto();
      }
      return;
    }
    renderIdentified(body.identified);
    showPhotoView("Similar products");
    renderResults(body);
  }

  async function searchSimilar(product) {
    state.mode = "similar";
    state.similarTo = product;
    const body = await run((signal) =>
      api(`/api/products/${encodeURIComponent(product.id)}/similar?${filterParams()}`, { signal }));
    if (!body) return;
    el.resultsTitle.textContent = `More like “${product.name || product.id}”`;
    el.back.hidden = !state.file;
    renderResults(body);
    el.resultsTitle.focus();
    el.resultsTitle.scrollIntoView({ behavior: "smooth", block: "start" });
    sendEvent(product.id, "view");
    loadCompleteLook(product);
  }

  function showPhotoView(title) {
    el.resultsTitle.textContent = title;
    el.back.hidden = true;
    el.look.hidden = true;
  }

  function dropPhoto() {
    state.file = null;
    state.mode = null;
    if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
    state.previewUrl = null;
    el.preview.hidden = true;
    el.preview.removeAttribute("src");
    el.dropHint.hidden = false;
    el.chooseLabel.textContent = "Choose a photo";
    el.welcome.hidden = false;
  }

  function rerun() {
    if (state.mode === "similar" && state.similarTo) searchSimilar(state.similarTo);
    else if (state.file) searchPhoto();
  }

  // ---- rendering ----------------------------------------------------------------------------
  function renderIdentified(ident) {
    if (!ident || !ident.type) { el.identified.hidden = true; return; }
    const pct = Math.round((ident.type_confidence || 0) * 100);
    el.identText.textContent = `${ident.type} — ${pct}%`;
    el.identBar.style.setProperty("--value", `${pct}%`);
    el.identDetails.textContent = [ident.gender, ident.colour].filter(Boolean).join(" · ");
    el.identified.hidden = false;
  }

  function renderResults(body) {
    const products = body.results || [];
    el.results.replaceChildren(...products.map(card));
    if (!products.length) {
      const li = document.createElement("li");
      li.className = "empty";
      li.textContent = "No products match these filters. Loosen them, or untick “In stock only”.";
      el.results.append(li);
    }
    const n = products.length;
    el.resultsMeta.textContent = `${n} product${n === 1 ? "" : "s"} · ${Math.round(body.took_ms || 0)} ms`;
  }

  function formatPrice(price, currency) {
    if (price === null || price === undefined) return "";
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: currency || "EUR" }).format(price);
    } catch (e) {
      return `${Number(price).toFixed(2)} ${currency || ""}`.trim();
    }
  }

  function card(p) {
    const node = el.cardTemplate.content.firstElementChild.cloneNode(true);
    const name = p.name || `Product ${p.id}`;
    node.dataset.id = p.id;
    const img = node.querySelector(".card-img");
    img.src = p.image_url;
    img.alt = name;
    node.querySelector(".card-type").textContent = [p.type, p.gender].filter(Boolean).join(" · ");
    node.querySelector(".card-title").textContent = name;
    node.querySelector(".card-price").textContent = formatPrice(p.price, p.currency);
    node.querySelector(".card-stock").hidden = p.in_stock !== false;
    const similar = node.querySelector(".card-similar");
    if (p.similar_count > 0) {
      similar.hidden = false;
      similar.textContent = `+${p.similar_count} similar`;
      similar.title = `${p.similar_count} near-identical ${p.similar_count === 1 ? "product is" : "products are"} hidden behind this one`;
    }
    // The similarity (cosine), never the ranking score: a boost must not read as "105 % match".
    const pct = Math.min(100, Math.max(0, Math.round((p.similarity ?? p.score ?? 0) * 100)));
    node.querySelector(".match-bar").style.setProperty("--value", `${pct}%`);
    node.querySelector(".match-text").textContent = p.exact_match ? "Exact match" : `${pct}% match`;
    if (p.exact_match) node.classList.add("exact");
    const buy = node.querySelector(".buy");
    if (p.url) {
      buy.href = p.url;
      buy.setAttribute("aria-label", `Buy ${name} (opens the shop in a new tab)`);
    } else {
      buy.removeAttribute("href");
      buy.classList.add("disabled");
      buy.setAttribute("aria-disabled", "true");
      buy.textContent = "No link";
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
        loadForYou();
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

  async function loadForYou() {
    try {
      const body = await api(`/api/users/${encodeURIComponent(state.user)}/recommendations?k=8`);
      const products = (body && body.results) || [];
      el.forYouGrid.replaceChildren(...products.map(card));
      el.forYou.hidden = products.length === 0;
    } catch (err) {
      el.forYou.hidden = true;  // "For you" is extra: a failure here must not hide the search
    }
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
        ul.className = "grid compact";
        ul.append(...g.products.map(card));
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
      showError(apiError(413, "too_large",
        `The photo is ${(file.size / 1048576).toFixed(1)} MB, over the ${(state.maxUploadBytes / 1048576).toFixed(1)} MB limit. Upload a smaller photo (resize it or save it as JPEG).`));
      return;
    }
    state.file = file;
    if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
    state.previewUrl = URL.createObjectURL(file);
    el.preview.hidden = false;
    el.preview.src = state.previewUrl;
    el.dropHint.hidden = true;
    el.chooseLabel.textContent = "Choose another photo";
    searchPhoto();
  }

  el.preview.addEventListener("error", () => { el.preview.hidden = true; el.dropHint.hidden = false; });
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

  // ---- filters ------------------------------------------------------------------------------
  let priceTimer = null;
  el.filters.addEventListener("change", (e) => {
    if (e.target === el.min || e.target === el.max) { clearTimeout(priceTimer); }
    rerun();
  });
  for (const input of [el.min, el.max]) {
    input.addEventListener("input", () => { clearTimeout(priceTimer); priceTimer = setTimeout(rerun, 700); });
  }
  function showVariety() {
    const value = Number(el.variety.value);
    el.varietyValue.textContent = value > 0 ? `${Math.round(value * 100)} %` : "off";
  }
  el.variety.addEventListener("input", showVariety);  // the search re-runs on "change", when the thumb is let go
  el.filters.addEventListener("submit", (e) => { e.preventDefault(); rerun(); });
  el.filters.addEventListener("reset", () => setTimeout(() => { showVariety(); rerun(); }, 0));
  el.forget.addEventListener("click", forgetMe);
  el.back.addEventListener("click", () => { el.look.hidden = true; searchPhoto(); });
  el.filtersToggle.addEventListener("click", () => {
    const open = !el.filters.classList.contains("open");
    el.filters.classList.toggle("open", open);
    el.filtersToggle.setAttribute("aria-expanded", String(open));
  });

  function fillSelect(select, values) {
    for (const value of values || []) {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = value;
      select.append(option);
    }
  }

  async function init() {
    try {
      const [health, facets] = await Promise.all([api("/api/health"), api("/api/facets")]);
      state.maxUploadBytes = health.max_upload_bytes || state.maxUploadBytes;
      el.limit.textContent = `${Math.round(state.maxUploadBytes / 1048576)} MB`;
      el.catalogInfo.textContent = `${health.products.toLocaleString()} products`;
      fillSelect(el.gender, facets.gender);
      fillSelect(el.type, facets.type);
      fillSelect(el.colour, facets.colour);
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
