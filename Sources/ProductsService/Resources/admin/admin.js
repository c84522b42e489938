// The merchant's console: plain ES modules on the Products Service's own API, with the caller's API key (kept in
// this tab's session storage). No framework, nothing from elsewhere; every text from the API goes into the page as
// text, never as markup.

const main = document.getElementById("main");
// The API is where the console is served from (behind a proxy's path prefix too): `/prefix/admin` calls `/prefix/products`.
const apiBase = new URL(".", window.location.href).pathname;
const apiURL = (path) => apiBase + path.replace(/^\//, "");
const session = { key: sessionStorage.getItem("products-console-key") };

/** An answer of the API other than 2xx, with its JSON error's fields. */
class APIError extends Error {
  constructor(status, body) {
    super(body.error || `HTTP ${status}`);
    Object.assign(this, { status, code: body.code, param: body.param, body });
  }
}

/** Calls the API; JSON bodies in and out, the key sent when there is one. A 401 asks for a key. */
async function api(method, path, { body, headers = {}, contentType, raw = false } = {}) {
  const sent = { ...headers };
  if (session.key) sent.Authorization = `Bearer ${session.key}`;
  if (body !== undefined && contentType === undefined) {
    sent["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  } else if (contentType) {
    sent["Content-Type"] = contentType;
  }
  const response = await fetch(apiURL(path), { method, headers: sent, body });
  if (response.status === 401) {
    signOut("Your API key was not accepted; sign in again.");
    throw new APIError(401, { error: "authentication required", code: "authentication_required" });
  }
  if (!response.ok) {
    const error = await response.json().catch(() => ({ error: response.statusText }));
    throw new APIError(response.status, error);
  }
  if (raw) return response;
  return { data: response.status === 204 ? null : await response.json(), etag: response.headers.get("ETag") };
}

/** Builds an element: `attributes` as properties (or attributes for aria-*, data-*, for), then the children. */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name.includes("-") || name === "for" || name === "role") node.setAttribute(name, value === true ? "" : value);
    else node[name] = value;
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null && child !== false) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

let fieldCount = 0;
/** A labelled control with a place for its error; `param` is the API's name for it. */
function field(label, control, { param, hint } = {}) {
  const id = control.id || `field-${++fieldCount}`;
  control.id = id;
  const error = el("p", { className: "field-error", id: `${id}-error` });
  const described = [`${id}-error`];
  let hintNode;
  if (hint) {
    hintNode = el("p", { className: "hint", id: `${id}-hint` }, hint);
    described.push(`${id}-hint`);
  }
  control.setAttribute("aria-describedby", described.join(" "));
  if (param) control.dataset.param = param;
  const wrapper = control.type === "checkbox"
    ? el("div", { className: "field" }, el("label", { className: "check", for: id }, control, label), hintNode, error)
    : el("div", { className: "field" }, el("label", { for: id }, label), control, hintNode, error);
  return wrapper;
}

function toast(message) {
  const note = el("p", {}, message);
  document.getElementById("toast").append(note);
  setTimeout(() => note.remove(), 5000);
}

function show(title, ...content) {
  document.title = `${title} – Products console`;
  main.replaceChildren(el("h2", {}, title), ...content);
  main.focus();
}

/** Shows the API's error next to the control its `param` names (or the nearest one above it), else on the form. */
function showError(form, error) {
  for (const node of form.querySelectorAll(".field-error")) node.textContent = "";
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  const formError = form.querySelector(".form-error");
  formError.textContent = "";
  let param = error.param;
  while (param) {
    const control = [...form.querySelectorAll("[data-param]")].find((node) => node.dataset.param === param);
    if (control) {
      control.setAttribute("aria-invalid", "true");
      document.getElementById(`${control.id}-error`).textContent = error.message;
      control.focus();
      return;
    }
    const cut = param.lastIndexOf("[");
    param = cut > 0 ? param.slice(0, cut) : null;
  }
  formError.textContent = error.message;
  formError.focus();
}

function signOut(reason) {
  session.key = null;
  sessionStorage.removeItem("products-console-key");
  signInView(reason);
}

// MARK: Sign-in

function signInView(reason) {
  const key = el("input", { type: "password", autocomplete: "off", required: true });
  const form = el("form", { className: "panel", noValidate: true },
    el("p", {}, "This stack asks for an API key (created with database-service keys create). It is kept in this tab only."),
    field("API key", key, { param: "key" }),
    el("p", { className: "form-error", tabIndex: -1 }, reason || ""),
    el("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    session.key = key.value.trim();
    try {
      await api("GET", "/products?limit=1");
      sessionStorage.setItem("products-console-key", session.key);
      document.getElementById("sign-out").hidden = false;
      route();
    } catch (error) {
      if (error.status !== 401) showError(form, error);
    }
  });
  document.getElementById("sign-out").hidden = true;
  show("Sign in", form);
  key.focus();
}

// MARK: Products

const FACETS = ["type", "tag"];

async function productsView(params) {
  const query = new URLSearchParams(params);
  const q = el("input", { type: "search", value: query.get("q") || "", placeholder: "Words, SKUs…" });
  const active = el("select", {}, el("option", { value: "" }, "Any"), el("option", { value: "true" }, "Active"),
    el("option", { value: "false" }, "Inactive"));
  active.value = query.get("active") || "";
  const form = el("form", { className: "panel row", role: "search" },
    field("Search", q, { param: "q" }), field("Status", active, { param: "active" }),
    el("div", { className: "field" }, el("button", { type: "submit" }, "Search")),
    el("p", { className: "form-error", tabIndex: -1 }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    query.set("q", q.value.trim());
    query.set("active", active.value);
    query.delete("page_token");
    query.delete("back");
    navigate("products", query);
  });
  const sidebar = el("div", { className: "panel", "aria-label": "Filters" });
  const results = el("div");
  show("Products", el("p", {}, el("a", { className: "button", href: "#/products/new" }, "New product")), form,
    el("div", { className: "layout" }, sidebar, results));
  const search = new URLSearchParams({ limit: "25", facets: FACETS.join(",") });
  for (const name of ["q", "active", "type", "tag", "page_token"]) if (query.get(name)) search.set(name, query.get(name));
  let page;
  try {
    page = (await api("GET", `/products/search?${search}`)).data;
  } catch (error) {
    if (error.status !== 401) showError(form, error);
    return;
  }
  for (const facet of FACETS) {
    const chosen = new Set((query.get(facet) || "").split(",").filter(Boolean));
    const boxes = (page.facets[facet] || []).map((entry) => {
      const box = el("input", { type: "checkbox", checked: chosen.has(entry.value) });
      box.addEventListener("change", () => {
        if (box.checked) chosen.add(entry.value); else chosen.delete(entry.value);
        query.set(facet, [...chosen].join(","));
        query.delete("page_token");
        query.delete("back");
        navigate("products", query);
      });
      return el("label", {}, box, `${entry.value} (${entry.count})`);
    });
    sidebar.append(el("fieldset", {}, el("legend", {}, facet === "tag" ? "Tags" : "Types"),
      boxes.length ? boxes : el("p", { className: "hint" }, "None")));
  }
  const rows = page.data.map((product) => el("tr", {},
    el("td", {}, el("a", { href: `#/products/${encodeURIComponent(product.id)}` }, product.name)),
    el("td", {}, product.handle), el("td", {}, product.type), el("td", {}, product.active ? "Active" : "Inactive"),
    el("td", {}, String(product.variants.length)), el("td", {}, priceRange(product)), el("td", {}, product.updated_at)));
  const back = (query.get("back") || "").split("|").filter((token) => token !== "");
  const pager = el("div", { className: "pager" },
    el("button", { type: "button", className: "secondary", disabled: back.length === 0, onclick: () => {
      const previous = back.pop();
      query.set("back", back.join("|"));
      if (previous === "-") query.delete("page_token"); else query.set("page_token", previous);
      navigate("products", query);
    } }, "Previous page"),
    el("button", { type: "button", className: "secondary", disabled: !page.next_page_token, onclick: () => {
      back.push(query.get("page_token") || "-");
      query.set("back", back.join("|"));
      query.set("page_token", page.next_page_token);
      navigate("products", query);
    } }, "Next page"),
    el("span", {}, `${page.total} products`));
  results.append(
    el("table", {}, el("caption", { className: "hint" }, "Products matching the search"),
      el("thead", {}, el("tr", {}, ...["Name", "Handle", "Type", "Status", "Variants", "Prices", "Updated"].map((name) => el("th", { scope: "col" }, name)))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colSpan: 7 }, "No products match.")))),
    pager);
}

function priceRange(product) {
  const amounts = product.variants.flatMap((variant) => variant.prices.map((price) => `${price.currency} ${price.amount}`));
  return amounts.length ? [...new Set(amounts)].slice(0, 3).join(", ") : "";
}

// MARK: A product

async function productView(id) {
  let product = { name: "", handle: "", type: "", description: "", active: true, tags: [], images: [], options: [], variants: [],
    category_ids: [], translations: {}, metadata: {} };
  let etag = null;
  if (id !== "new") {
    try {
      ({ data: product, etag } = await api("GET", `/products/${encodeURIComponent(id)}`));
    } catch (error) {
      if (error.status === 404) show("Product not found", el("p", {}, "This product does not exist, or was deleted."));
      else if (error.status !== 401) show("Product", el("p", { className: "form-error" }, error.message));
      return;
    }
  }
  let categories = [];
  try {
    categories = (await api("GET", "/categories?limit=100")).data;
  } catch (error) {
    if (error.status === 401) return;
  }
  renderProduct(product, etag, categories);
}

function renderProduct(product, etag, categories, banner) {
  const isNew = !product.id;
  const input = (value, attributes = {}) => el("input", { type: "text", value: value ?? "", ...attributes });
  const name = input(product.name, { required: true });
  const handle = input(product.handle);
  const type = input(product.type);
  const description = el("textarea", { value: product.description || "" });
  const active = el("input", { type: "checkbox", checked: product.active });
  const tags = input(product.tags.join(", "));
  const images = el("textarea", { value: product.images.join("\n") });
  const previews = el("div", { className: "images" });
  const preview = () => previews.replaceChildren(...images.value.split("\n").map((url) => url.trim()).filter(Boolean)
    .map((url, index) => el("img", { src: url, alt: `Image ${index + 1} of ${product.name || "the product"}` })));
  images.addEventListener("change", preview);
  preview();
  const known = new Map(categories.map((category) => [category.id, category.name]));
  for (const id of product.category_ids) if (!known.has(id)) known.set(id, id);
  const categorySelect = el("select", { multiple: true, size: Math.min(6, Math.max(2, known.size)) },
    [...known].map(([id, label]) => el("option", { value: id, selected: product.category_ids.includes(id) }, label)));
  const translations = el("textarea", { value: JSON.stringify(product.translations, null, 2) });
  const metadata = el("textarea", { value: JSON.stringify(product.metadata, null, 2) });

  const optionRows = el("div");
  const variantBody = el("tbody");
  const draft = { options: product.options.map((option) => ({ ...option })), variants: product.variants.map((variant) => ({ ...variant })) };
  const readStructure = () => {
    draft.options = [...optionRows.children].map((row) => ({
      name: row.querySelector("[data-role=option-name]").value.trim(),
      values: splitList(row.querySelector("[data-role=option-values]").value),
    }));
    draft.variants = [...variantBody.children].map((row, index) => {
      const variant = { ...draft.variants[index] };
      variant.sku = row.querySelector("[data-role=sku]").value.trim() || null;
      variant.options = {};
      for (const select of row.querySelectorAll("[data-option]")) variant.options[select.dataset.option] = select.value;
      variant.pricesText = row.querySelector("[data-role=prices]").value;
      return variant;
    });
  };
  // Editing an option's name or values redraws the variants' choices only, so the option's row keeps its focus.
  const renderStructure = () => {
    renderOptions();
    renderVariants();
  };
  const renderOptions = () => {
    optionRows.replaceChildren(...draft.options.map((option, index) => el("div", { className: "row" },
      field(`Option ${index + 1} name`, input(option.name, { "data-role": "option-name", onchange: restructure }), { param: `options[${index}][name]` }),
      field(`Option ${index + 1} values`, input(option.values.join(", "), { "data-role": "option-values", onchange: restructure }),
        { param: `options[${index}][values]`, hint: "Separated by commas" }),
      el("div", { className: "field" }, el("button", { type: "button", className: "secondary", onclick: () => {
        readStructure(); draft.options.splice(index, 1); renderStructure();
      } }, `Remove option ${index + 1}`)))));
  };
  const renderVariants = () => {
    variantBody.replaceChildren(...draft.variants.map((variant, index) => {
      const label = `variant ${index + 1}`;
      const cells = draft.options.map((option) => {
        const select = el("select", { "aria-label": `${option.name || "Option"} of ${label}`, "data-option": option.name },
          el("option", { value: "" }, "—"), option.values.map((value) => el("option", { value, selected: variant.options?.[option.name] === value }, value)));
        select.id = `variant-${index}-option-${option.name}`;
        select.dataset.param = `variants[${index}][options][${option.name}]`;
        return el("td", {}, select, el("p", { className: "field-error", id: `${select.id}-error` }));
      });
      const sku = input(variant.sku, { "aria-label": `SKU of ${label}`, "data-role": "sku", id: `variant-${index}-sku` });
      sku.dataset.param = `variants[${index}][sku]`;
      const prices = input(variant.pricesText ?? (variant.prices || []).map((price) => `${price.currency} ${price.amount}`).join(", "),
        { "aria-label": `Prices of ${label}`, "data-role": "prices", id: `variant-${index}-prices` });
      prices.dataset.param = `variants[${index}][prices]`;
      return el("tr", {},
        el("td", {}, sku, el("p", { className: "field-error", id: `${sku.id}-error` })), ...cells,
        el("td", {}, prices, el("p", { className: "field-error", id: `${prices.id}-error` })),
        el("td", {}, el("button", { type: "button", className: "secondary", onclick: () => {
          readStructure(); draft.variants.splice(index, 1); renderStructure();
        } }, `Remove ${label}`)));
    }));
    variantHead.replaceChildren(el("tr", {}, el("th", { scope: "col" }, "SKU"),
      ...draft.options.map((option) => el("th", { scope: "col" }, option.name || "Option")),
      el("th", { scope: "col" }, "Prices (currency and amount in minor units: EUR 1999)"), el("th", { scope: "col" }, "")));
  };
  const variantHead = el("thead");
  function restructure() { readStructure(); renderVariants(); }

  const form = el("form", { className: "panel", noValidate: true });
  const conflict = el("div");
  if (banner) conflict.append(banner);
  form.append(
    conflict,
    el("p", { className: "form-error", tabIndex: -1 }),
    el("div", { className: "row" }, field("Name", name, { param: "name" }), field("Handle", handle, { param: "handle", hint: "Made from the name when empty" }),
      field("Type", type, { param: "type" })),
    field("Description", description, { param: "description" }),
    field("Active: shown to shoppers", active, { param: "active" }),
    el("div", { className: "row" }, field("Tags", tags, { param: "tags", hint: "Separated by commas" }),
      field("Categories", categorySelect, { param: "category_ids" })),
    field("Images", images, { param: "images", hint: "One URL per line" }), previews,
    el("h3", {}, "Options"), optionRows,
    el("button", { type: "button", className: "secondary", onclick: () => {
      readStructure(); draft.options.push({ name: "", values: [] }); renderStructure();
    } }, "Add option"),
    el("h3", {}, "Variants"),
    el("table", { className: "variants" }, variantHead, variantBody),
    el("p", {}, el("button", { type: "button", className: "secondary", onclick: () => {
      readStructure(); draft.variants.push({ sku: null, options: {}, prices: [] }); renderStructure();
    } }, "Add variant")),
    el("div", { className: "row" }, field("Translations (JSON)", translations, { param: "translations" }),
      field("Metadata (JSON)", metadata, { param: "metadata" })),
    el("div", { className: "row" }, el("button", { type: "submit" }, isNew ? "Create product" : "Save changes"),
      isNew ? null : el("a", { className: "button secondary", href: `#/products/${encodeURIComponent(product.id)}/history` }, "History"),
      isNew ? null : el("button", { type: "button", className: "danger", onclick: remove }, "Delete product")));
  renderStructure();

  async function remove() {
    if (!window.confirm(`Delete ${product.name}?`)) return;
    try {
      await api("DELETE", `/products/${encodeURIComponent(product.id)}`, { headers: etag ? { "If-Match": etag } : {} });
      toast(`Deleted ${product.name}`);
      location.hash = "#/products";
    } catch (error) {
      if (error.status === 412) changedElsewhere(); else if (error.status !== 401) showError(form, error);
    }
  }

  function changedElsewhere() {
    const reload = el("button", { type: "button", onclick: () => productView(product.id) }, "Reload the product");
    const notice = el("div", { className: "banner", role: "alert" },
      el("p", {}, "This product was changed by someone else since you opened it. Your changes were not saved."), reload);
    conflict.replaceChildren(notice);
    reload.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    readStructure();
    let body;
    try {
      body = {
        name: name.value, type: type.value.trim() || undefined, description: description.value, active: active.checked,
        tags: splitList(tags.value), images: images.value.split("\n").map((url) => url.trim()).filter(Boolean),
        category_ids: [...categorySelect.selectedOptions].map((option) => option.value),
        options: draft.options,
        variants: draft.variants.map((variant, index) => ({
          ...(variant.id ? { id: variant.id } : {}), sku: variant.sku, options: variant.options,
          prices: parsePrices(variant.pricesText, index), metadata: variant.metadata || {},
        })),
        translations: parseJSON(translations.value, "translations"), metadata: parseJSON(metadata.value, "metadata"),
      };
      if (handle.value.trim()) body.handle = handle.value.trim();
    } catch (error) {
      showError(form, error);
      return;
    }
    try {
      const saved = isNew
        ? await api("POST", "/products", { body })
        : await api("PUT", `/products/${encodeURIComponent(product.id)}`, { body, headers: etag ? { "If-Match": etag } : {} });
      toast(isNew ? `Created ${saved.data.name}` : `Saved ${saved.data.name}`);
      if (isNew) location.hash = `#/products/${encodeURIComponent(saved.data.id)}`;
      else renderProduct(saved.data, saved.etag, categories);
    } catch (error) {
      if (error.status === 412) changedElsewhere(); else if (error.status !== 401) showError(form, error);
    }
  });
  show(isNew ? "New product" : product.name, el("p", {}, el("a", { href: "#/products" }, "All products")), form);
}

function splitList(text) {
  return text.split(",").map((item) => item.trim()).filter(Boolean);
}

/** "EUR 1999, USD 2199" as prices; a fault names the variant's prices as the API would. */
function parsePrices(text, index) {
  if (text === undefined) return undefined;
  return splitList(text).map((entry) => {
    const match = /^([A-Za-z]{3})\s+(\d+)$/.exec(entry);
    if (!match) throw Object.assign(new Error(`"${entry}" is not a currency and an amount in minor units, like EUR 1999`), { param: `variants[${index}][prices]` });
    return { currency: match[1].toUpperCase(), amount: Number(match[2]) };
  });
}

function parseJSON(text, param) {
  if (!text.trim()) return {};
  try {
    return JSON.parse(text);
  } catch {
    throw Object.assign(new Error(`${param} must be a JSON object`), { param });
  }
}

// MARK: History

async function historyView(id) {
  let versions;
  try {
    versions = (await api("GET", `/products/${encodeURIComponent(id)}/versions?limit=50`)).data;
  } catch (error) {
    if (error.status !== 401) show("History", el("p", { className: "form-error" }, error.message));
    return;
  }
  const restore = async (version, button) => {
    button.disabled = true;
    try {
      const { data } = await api("POST", `/products/${encodeURIComponent(id)}/restore`, { body: { version } });
      toast(`Restored ${data.name} as it was at version ${version}`);
      location.hash = `#/products/${encodeURIComponent(id)}`;
    } catch (error) {
      button.disabled = false;
      if (error.status !== 401) toast(error.message);
    }
  };
  const rows = versions.map((entry) => el("tr", {},
    el("td", {}, entry.changed_at), el("td", {}, entry.event), el("td", {}, entry.product ? entry.product.name : "(deleted)"),
    el("td", {}, String(entry.version)),
    el("td", {}, entry.product ? el("button", { type: "button", className: "secondary", onclick: (event) => restore(entry.version, event.currentTarget) },
      `Restore version ${entry.version}`) : "")));
  show("History", el("p", {}, el("a", { href: `#/products/${encodeURIComponent(id)}` }, "Back to the product")),
    el("table", {}, el("thead", {}, el("tr", {}, ...["Changed", "Event", "Name", "Version", ""].map((name) => el("th", { scope: "col" }, name)))),
      el("tbody", {}, rows)));
}

// MARK: Imports and exports

function importsView() {
  const file = el("input", { type: "file", accept: ".jsonl,.ndjson,application/x-ndjson", required: true });
  const mode = el("select", {}, el("option", { value: "create" }, "Create new products"), el("option", { value: "upsert" }, "Create or replace (by id)"));
  const policy = el("select", {}, el("option", { value: "reject_all" }, "Write nothing if a line is invalid"),
    el("option", { value: "skip_invalid" }, "Skip invalid lines"));
  const job = el("div", { "aria-live": "polite" });
  const form = el("form", { className: "panel", noValidate: true },
    el("p", { className: "form-error", tabIndex: -1 }),
    el("div", { className: "row" }, field("Import file (JSON Lines)", file, { param: "file" }), field("Mode", mode, { param: "mode" }),
      field("When a line is invalid", policy, { param: "error_policy" })),
    el("button", { type: "submit" }, "Upload and import"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!file.files.length) return showError(form, Object.assign(new Error("Choose a file to import"), { param: "file" }));
    try {
      const { data } = await api("POST", `/imports?mode=${mode.value}&error_policy=${policy.value}`,
        { body: file.files[0], contentType: "application/x-ndjson" });
      watchImport(data.id, job);
    } catch (error) {
      if (error.status !== 401) showError(form, error);
    }
  });
  const download = el("button", { type: "button", onclick: exportCatalog }, "Download the catalog (JSON Lines)");
  show("Imports and exports", form, job, el("div", { className: "panel" }, el("h3", {}, "Export"),
    el("p", {}, "Every product of the shop, one JSON object per line: a file an import takes back as it is."), download));
}

async function watchImport(id, place) {
  const current = location.hash;
  for (;;) {
    let job;
    try {
      job = (await api("GET", `/imports/${id}`)).data;
    } catch (error) {
      if (error.status !== 401) place.replaceChildren(el("p", { className: "form-error" }, error.message));
      return;
    }
    const facts = el("dl", { className: "facts" },
      ...[["Job", job.id], ["Status", job.status], ["Lines", job.lines], ["Validated", job.validated], ["Written", job.written],
        ["Rejected", job.rejected], ["Progress", `${Math.round(job.progress * 100)}%`], ["Error", job.error]]
        .filter(([, value]) => value !== null && value !== undefined)
        .flatMap(([name, value]) => [el("dt", {}, name), el("dd", { "data-fact": name.toLowerCase() }, String(value))]));
    place.replaceChildren(el("div", { className: "panel" }, el("h3", {}, "Import"), facts));
    if (["succeeded", "failed", "partially_succeeded"].includes(job.status)) {
      if (job.rejected > 0) {
        const errors = (await api("GET", `/imports/${id}/errors?limit=100`)).data;
        place.firstChild.append(el("h3", {}, "Rejected lines"), el("table", {},
          el("thead", {}, el("tr", {}, ...["Line", "Code", "Field", "Error"].map((name) => el("th", { scope: "col" }, name)))),
          el("tbody", {}, errors.map((line) => el("tr", {}, el("td", {}, String(line.line)), el("td", {}, line.code),
            el("td", {}, line.param || ""), el("td", {}, line.error))))));
      }
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    if (location.hash !== current) return;
  }
}

async function exportCatalog() {
  try {
    const response = await api("GET", "/exports/products.jsonl", { raw: true });
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: "products.jsonl" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    if (error.status !== 401) toast(error.message);
  }
}

// MARK: Webhooks

const EVENTS = ["product.created", "product.updated", "product.deleted"];

async function webhooksView(secretNotice) {
  let endpoints;
  try {
    endpoints = (await api("GET", "/webhook_endpoints")).data;
  } catch (error) {
    if (error.status !== 401) show("Webhooks", el("p", { className: "form-error" }, error.message));
    return;
  }
  const url = el("input", { type: "url", required: true, placeholder: "https://example.com/hooks" });
  const description = el("input", { type: "text" });
  const boxes = EVENTS.map((name) => el("input", { type: "checkbox", value: name, checked: true }));
  const events = el("fieldset", {}, el("legend", {}, "Events"), boxes.map((box) => el("label", {}, box, box.value)));
  events.dataset.param = "enabled_events";
  events.id = "webhook-events";
  const form = el("form", { className: "panel", noValidate: true },
    el("p", { className: "form-error", tabIndex: -1 }),
    el("div", { className: "row" }, field("Endpoint URL", url, { param: "url" }), field("Description", description, { param: "description" })),
    events, el("p", { className: "field-error", id: "webhook-events-error" }),
    el("button", { type: "submit" }, "Add endpoint"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const enabled = boxes.filter((box) => box.checked).map((box) => box.value);
    try {
      const { data } = await api("POST", "/webhook_endpoints", {
        body: { url: url.value.trim(), enabled_events: enabled, ...(description.value.trim() ? { description: description.value.trim() } : {}) },
      });
      webhooksView(el("div", { className: "banner info", role: "alert" },
        el("p", {}, `Endpoint ${data.url} added. Its signing secret, shown only now:`), el("p", { className: "secret" }, data.secret)));
    } catch (error) {
      if (error.status !== 401) showError(form, error);
    }
  });
  const deliveries = el("div");
  const rows = endpoints.map((endpoint) => el("tr", {},
    el("td", {}, endpoint.url), el("td", {}, endpoint.enabled_events.join(", ")),
    el("td", {}, el("span", { className: `status ${endpoint.status === "enabled" ? "good" : "bad"}` }, endpoint.status)),
    el("td", {},
      el("button", { type: "button", className: "secondary", onclick: () => change(endpoint, { status: endpoint.status === "enabled" ? "disabled" : "enabled" }) },
        endpoint.status === "enabled" ? `Disable ${endpoint.url}` : `Enable ${endpoint.url}`), " ",
      el("button", { type: "button", className: "secondary", onclick: () => showDeliveries(endpoint, deliveries) }, `Deliveries to ${endpoint.url}`), " ",
      el("button", { type: "button", className: "danger", onclick: () => change(endpoint, null) }, `Delete ${endpoint.url}`))));
  async function change(endpoint, patch) {
    if (patch === null && !window.confirm(`Delete the endpoint ${endpoint.url}?`)) return;
    try {
      if (patch === null) await api("DELETE", `/webhook_endpoints/${endpoint.id}`);
      else await api("PATCH", `/webhook_endpoints/${endpoint.id}`, { body: patch });
      webhooksView();
    } catch (error) {
      if (error.status !== 401) toast(error.message);
    }
  }
  show("Webhooks", secretNotice || "", form,
    el("table", {}, el("thead", {}, el("tr", {}, ...["URL", "Events", "Status", ""].map((name) => el("th", { scope: "col" }, name)))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colSpan: 4 }, "No endpoints yet.")))), deliveries);
}

async function showDeliveries(endpoint, place) {
  try {
    const attempts = (await api("GET", `/webhook_endpoints/${endpoint.id}/deliveries?limit=50`)).data;
    place.replaceChildren(el("h3", { tabIndex: -1 }, `Deliveries to ${endpoint.url}`), el("table", {},
      el("thead", {}, el("tr", {}, ...["Attempted", "Event", "Try", "Status", "Response", "Latency", "Error"].map((name) => el("th", { scope: "col" }, name)))),
      el("tbody", {}, attempts.length ? attempts.map((attempt) => el("tr", {}, el("td", {}, attempt.attempted_at), el("td", {}, attempt.event_type),
        el("td", {}, String(attempt.attempt)), el("td", {}, attempt.status), el("td", {}, attempt.response_code ?? ""),
        el("td", {}, `${attempt.latency_ms} ms`), el("td", {}, attempt.error || ""))) : el("tr", {}, el("td", { colSpan: 7 }, "No deliveries yet.")))));
    place.firstChild.focus();
  } catch (error) {
    if (error.status !== 401) toast(error.message);
  }
}

// MARK: Health

async function healthView() {
  const facts = el("dl", { className: "facts" });
  const refresh = el("button", { type: "button", className: "secondary", onclick: () => load() }, "Refresh");
  show("Health", el("div", { className: "panel", "aria-live": "polite" }, facts), refresh);
  const current = location.hash;
  async function load() {
    let health, stats;
    try {
      const response = await fetch(apiURL("/health"), { headers: session.key ? { Authorization: `Bearer ${session.key}` } : {} });
      health = await response.json();
      stats = (await api("GET", "/cache/stats")).data;
    } catch (error) {
      if (error.status !== 401) facts.replaceChildren(el("dt", {}, "Error"), el("dd", {}, error.message));
      return;
    }
    const lag = health.feed?.lag_seconds;
    const entries = [
      ["Status", health.status], ["Reasons", health.reasons?.length ? health.reasons.join(", ") : "none"],
      ["Products in this shop", stats.total_products], ["Writes not yet stored by the database (this shop)", stats.pending_writes],
      ["Replica backlog", health.persistence?.pending], ["Change feed lag", lag === undefined || lag === null ? (health.reasons?.includes("feed_behind") ? "behind" : "current") : `${lag} s`],
      ["Dead letters", stats.persistence?.dead_letters?.count], ["Cache memory", `${stats.memory_usage_mb} MB`], ["Checked", health.timestamp],
    ].filter(([, value]) => value !== undefined && value !== null);
    facts.replaceChildren(...entries.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, String(value))]));
  }
  await load();
  const timer = setInterval(() => (location.hash === current ? load() : clearInterval(timer)), 5000);
}

// MARK: Routing

function navigate(view, query) {
  for (const [name, value] of [...query]) if (!value) query.delete(name);
  const text = query.toString();
  location.hash = `#/${view}${text ? `?${text}` : ""}`;
}

function route() {
  const [path, search = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  for (const link of document.querySelectorAll("header nav a")) {
    link.toggleAttribute("aria-current", link.getAttribute("href") === `#/${parts[0] || "products"}`);
    if (link.hasAttribute("aria-current")) link.setAttribute("aria-current", "page");
  }
  if (parts[0] === "products" && parts[1]) return parts[2] === "history" ? historyView(parts[1]) : productView(parts[1]);
  if (parts[0] === "imports") return importsView();
  if (parts[0] === "webhooks") return webhooksView();
  if (parts[0] === "health") return healthView();
  return productsView(new URLSearchParams(search));
}

document.getElementById("sign-out").addEventListener("click", () => signOut("Signed out."));
window.addEventListener("hashchange", route);

// Asks for a key only when the stack wants one.
(async () => {
  try {
    const headers = session.key ? { Authorization: `Bearer ${session.key}` } : {};
    const probe = await fetch(apiURL("/products?limit=1"), { headers });
    if (probe.status === 401) return signInView();
    document.getElementById("sign-out").hidden = !session.key;
    route();
  } catch (error) {
    show("Products console", el("p", { className: "form-error" }, `The Products Service did not answer: ${error.message}`));
  }
})();
