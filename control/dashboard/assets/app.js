// The operator dashboard. Plain DOM, no dependencies: every value from
// the network goes into the page as text (textContent, never innerHTML),
// and the Content-Security-Policy forbids inline script, so a site name
// or URL that looks like markup stays text.

const $ = (id) => document.getElementById(id);

// el builds an element: attributes, then children (strings become text).
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

let session = null; // {csrf, name, scopes, admin}
let snapshot = null; // the latest network snapshot
let events = null; // the EventSource
let sites = [];

// --- talking to control --------------------------------------------------

class HTTPError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function call(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = session ? session.csrf : "";
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    showBanner("Control is unreachable; retrying…");
    throw new HTTPError(0, "unreachable", "control is unreachable");
  }
  let data = null;
  if (res.status !== 204) {
    try { data = await res.json(); } catch { data = null; }
  }
  if (!res.ok) {
    const err = (data && data.error) || {};
    if (res.status === 401 && path !== "/dashboard/signin") signedOut(err.message || "Signed out");
    if (res.status === 503) showBanner("Control cannot reach its state right now; retrying…");
    throw new HTTPError(res.status, err.code || "error", err.message || res.statusText);
  }
  return data;
}

const api = (method, path, body) => call(method, "/dashboard/api" + path, body);

function showBanner(text) { const b = $("banner"); b.textContent = text; b.hidden = false; }
function hideBanner() { $("banner").hidden = true; }

// --- permissions ---------------------------------------------------------

function can(scope) {
  if (!session) return false;
  return session.scopes.includes("admin") || (scope && session.scopes.includes(scope));
}

// actButton is a button that acts; a token that may not act sees it
// disabled, with the reason.
function actButton(label, scope, onclick, extra = {}) {
  const allowed = can(scope);
  return el("button", { type: "button", class: "act " + (extra.class || ""), disabled: !allowed,
    title: allowed ? undefined : "this token is read-only here", onclick, ...extra.attrs }, label);
}

// confirmAction asks in a modal dialog; resolves true on Confirm.
function confirmAction(text) {
  const d = $("confirm");
  $("confirm-text").textContent = text;
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.returnValue = "";
    d.showModal();
    $("confirm-cancel").focus();
  });
}

// --- formatting ----------------------------------------------------------

const num = (x, d = 1) => (x === undefined || x === null) ? "–" : x.toFixed(d);
const pct = (x) => (x === undefined || x === null || x < 0) ? "–" : (x * 100).toFixed(1) + " %";
function bytes(x) {
  if (!x) return "0 B/s";
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (x >= 1000 && i < u.length - 1) { x /= 1000; i++; }
  return x.toFixed(i ? 1 : 0) + " " + u[i] + "/s";
}
const when = (t) => t ? new Date(t).toLocaleString() : "–";

// --- sign-in -------------------------------------------------------------

function signedOut(message) {
  session = null;
  if (events) { events.close(); events = null; }
  hideBanner();
  $("nav").hidden = true;
  $("who").textContent = "";
  for (const v of document.querySelectorAll(".view")) v.hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  $("token").focus();
}

$("signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("signin-error").textContent = "";
  try {
    await call("POST", "/dashboard/signin", { token: $("token").value });
    $("token").value = "";
    await start();
  } catch (e) {
    $("signin-error").textContent = e.message;
  }
});

async function start() {
  try {
    session = await call("GET", "/dashboard/session");
  } catch (e) {
    if (e.status !== 401) setTimeout(start, 1000);
    else if (location.hash === "#signin-link-used") signedOut("That sign-in link was used or has expired; sign in with a token.");
    return;
  }
  $("signin").hidden = true;
  $("nav").hidden = false;
  $("who").replaceChildren(el("span", {}, "Signed in as " + (session.name || session.id) + " (" + session.scopes.join(", ") + ") "),
    el("button", { type: "button", id: "signout", onclick: signOut }, "Sign out"));
  connect();
  await loadSites();
  route();
}

async function signOut() {
  try { await call("POST", "/dashboard/signout"); } catch { /* signed out anyway */ }
  signedOut("Signed out.");
}

// --- live feed -----------------------------------------------------------

function connect() {
  if (events) events.close();
  events = new EventSource("/dashboard/events");
  events.onmessage = (m) => {
    snapshot = JSON.parse(m.data);
    if (snapshot.linked) hideBanner();
    else showBanner("Control is up but cannot reach NATS; the figures below are stale.");
    renderNetwork();
    renderPurges();
    if (currentView() === "releases") renderReleaseEdges();
  };
  events.onerror = async () => {
    showBanner("Control is unreachable; retrying…");
    if (events.readyState === EventSource.CLOSED) {
      // The stream was refused (signed out, or control answering 503):
      // ask why, and come back when control does.
      try {
        await call("GET", "/dashboard/session");
        setTimeout(connect, 1000);
      } catch (e) {
        if (e.status !== 401) setTimeout(connect, 1000);
      }
    }
  };
}

// replaceRows sets the rows of table body tb, and keeps the keyboard
// focus on the same control of the same row (rows are named by their
// data-key): the rows are built anew on every snapshot, every few
// seconds, and a keyboard user's focus would go back to the page.
function replaceRows(tb, key, rows) {
  const controls = (row) => [...row.querySelectorAll("button, a[href], input, select")];
  const focused = document.activeElement;
  const row = tb.contains(focused) ? focused.closest("tr") : null;
  const at = row && { name: row.dataset[key], i: controls(row).indexOf(focused) };
  tb.replaceChildren(...rows);
  if (!at || at.i < 0) return;
  const again = [...tb.rows].find((r) => r.dataset[key] === at.name);
  const control = again && controls(again)[at.i];
  if (control) control.focus();
}

let rendered = false;

function renderNetwork() {
  if (!snapshot) return;
  $("updated").textContent = "Updated " + new Date(snapshot.time).toLocaleTimeString() + ".";
  $("regions").tBodies[0].replaceChildren(...snapshot.regions.map((r) => el("tr", { dataset: { region: r.name } },
    el("th", { scope: "row" }, r.name), el("td", {}, r.up + " of " + r.edges), el("td", {}, num(r.rps)),
    el("td", {}, pct(r.hit_ratio)), el("td", {}, bytes(r.bps)), el("td", {}, num(r.e4xx)), el("td", {}, num(r.e5xx)))));
  replaceRows($("edges").tBodies[0], "edge", snapshot.edges.map((e) => {
    const rel = Object.entries(e.releases || {}).map(([s, r]) => s + " #" + r.serving + (r.wanted ? " → #" + r.wanted : ""));
    const action = e.draining
      ? actButton("Undrain", null, () => drain(e.name, false), { attrs: { "aria-label": "Undrain " + e.name } })
      : actButton("Drain", null, () => drain(e.name, true), { attrs: { "aria-label": "Drain " + e.name } });
    return el("tr", { dataset: { edge: e.name, health: e.health, draining: String(e.draining), rps: String(e.live ? e.rps : 0) } },
      el("th", { scope: "row" }, e.name), el("td", {}, e.region),
      el("td", { class: e.health, title: e.reason || undefined }, e.health),
      el("td", { class: e.draining ? "draining" : undefined }, e.draining ? "draining" : "no"),
      el("td", {}, pct(e.load)), el("td", {}, e.live ? num(e.rps) : "–"), el("td", {}, e.live ? pct(e.hit_ratio) : "–"),
      el("td", {}, e.live ? bytes(e.bps) : "–"), el("td", {}, e.live ? num(e.e4xx) : "–"), el("td", {}, e.live ? num(e.e5xx) : "–"),
      el("td", { class: "purge-version" }, String(e.purge_applied)), el("td", { class: "wrap" }, rel.join(", ") || "–"), el("td", {}, action));
  }));
  if (!rendered && snapshot.edges.length > 0) {
    rendered = true;
    // When the page first showed the network, and how many edges: the
    // time to interactive the browser tests measure.
    performance.mark("network-rendered", { detail: { rows: snapshot.edges.length } });
  }
}

async function drain(name, on) {
  if (!await confirmAction((on ? "Drain " : "Undrain ") + name + "? " + (on ? "GeoDNS stops sending it new clients." : "GeoDNS sends it clients again."))) return;
  try {
    await api("POST", "/v1/edges/" + encodeURIComponent(name) + (on ? "/drain" : "/undrain"));
  } catch (e) {
    showBanner("Could not " + (on ? "drain " : "undrain ") + name + ": " + e.message);
  }
}

// --- charts --------------------------------------------------------------

const charts = [
  ["Requests/s", (s) => s.requests],
  ["Hit ratio %", (s) => (s.hits + s.misses) ? 100 * s.hits / (s.hits + s.misses) : null],
  ["Origin offload % (bytes)", (s) => s.bytes ? 100 * s.hit_bytes / s.bytes : null],
  ["Bandwidth B/s", (s) => s.bytes],
  ["4xx/s", (s) => s.status_4xx],
  ["5xx/s", (s) => s.status_5xx],
];
let chartTimer = null;

async function loadCharts() {
  const sel = $("series");
  const key = sel.value || "all";
  let data;
  try { data = await call("GET", "/dashboard/series?key=" + encodeURIComponent(key)); } catch { return; }
  const keys = ["all", ...data.keys.filter((k) => k !== "all").sort()];
  if (sel.options.length !== keys.length) {
    sel.replaceChildren(...keys.map((k) => el("option", { value: k, selected: k === key }, k === "all" ? "whole network" : k)));
  }
  const list = $("chart-list");
  if (list.children.length !== charts.length) {
    list.replaceChildren(...charts.map(([title], i) => el("figure", {},
      el("figcaption", { id: "chart-cap-" + i }, title),
      el("canvas", { id: "chart-" + i, width: 720, height: 160, role: "img", "aria-labelledby": "chart-cap-" + i }))));
  }
  charts.forEach(([title, f], i) => draw($("chart-" + i), data.samples.map(f), title));
}

function draw(canvas, values, title) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const known = values.filter((v) => v !== null);
  const top = Math.max(1, ...known);
  ctx.fillStyle = "#555";
  ctx.font = "12px sans-serif";
  ctx.fillText(top.toFixed(top < 10 ? 1 : 0), 4, 12);
  ctx.fillText("−60 min", 4, h - 4);
  ctx.fillText("now", w - 28, h - 4);
  ctx.strokeStyle = "#0b57d0";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  let drawing = false;
  values.forEach((v, i) => {
    if (v === null) { drawing = false; return; }
    const x = (i / (values.length - 1)) * (w - 2) + 1;
    const y = h - 16 - (v / top) * (h - 32);
    if (drawing) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    drawing = true;
  });
  ctx.stroke();
  const last = known.length ? known[known.length - 1] : 0;
  canvas.setAttribute("aria-label", title + ": latest " + last.toFixed(1) + ", peak " + top.toFixed(1) + " over the last hour");
}

$("series").addEventListener("change", loadCharts);

// --- sites ---------------------------------------------------------------

async function loadSites() {
  try { sites = (await api("GET", "/v1/sites")).sites; } catch (e) { sites = []; return; }
  $("site-list").tBodies[0].replaceChildren(...sites.map((s) => el("tr", { dataset: { site: s.name } },
    el("th", { scope: "row" }, s.name), el("td", { class: "wrap" }, (s.hosts || []).join(", ")), el("td", {}, s.origin || (s.push_only ? "(pushed)" : "")),
    el("td", {}, actButton("Edit", null, () => editSite(s), { attrs: { "aria-label": "Edit " + s.name } })))));
  for (const id of ["purge-site", "release-site"]) {
    const sel = $(id);
    const cur = sel.value;
    sel.replaceChildren(...sites.map((s) => el("option", { value: s.name, selected: s.name === cur }, s.name)));
  }
}

let editing = null;

function editSite(s) {
  editing = s ? s.name : null;
  const form = $("site-form");
  form.hidden = false;
  $("site-form-title").textContent = s ? "Edit " + s.name : "New site";
  $("site-name").value = s ? s.name : "";
  $("site-name").readOnly = !!s;
  $("site-hosts").value = s ? (s.hosts || []).join(", ") : "";
  $("site-origin").value = s ? (s.origin || "") : "";
  const other = Object.assign({}, s || {});
  delete other.name; delete other.hosts; delete other.origin;
  $("site-other").value = Object.keys(other).length ? JSON.stringify(other, null, 2) : "";
  clearFieldErrors();
  $("site-status").textContent = "";
  $("site-name").focus();
}

function clearFieldErrors() {
  for (const p of document.querySelectorAll(".field-error")) p.textContent = "";
  for (const i of $("site-form").querySelectorAll("[aria-invalid]")) i.removeAttribute("aria-invalid");
}

$("site-new").addEventListener("click", () => editSite(null));
$("site-cancel").addEventListener("click", () => { $("site-form").hidden = true; });
$("site-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  clearFieldErrors();
  let body = {};
  const otherText = $("site-other").value.trim();
  if (otherText) {
    try { body = JSON.parse(otherText); } catch (e) {
      fieldError("other", "not JSON: " + e.message);
      return;
    }
  }
  body.name = $("site-name").value.trim();
  body.hosts = $("site-hosts").value.split(",").map((h) => h.trim()).filter(Boolean);
  body.origin = $("site-origin").value.trim();
  if (!body.origin) delete body.origin;
  try {
    if (editing) await api("PUT", "/v1/sites/" + encodeURIComponent(editing), body);
    else await api("POST", "/v1/sites", body);
    $("site-status").textContent = "Saved " + body.name + ".";
    editing = body.name;
    $("site-name").readOnly = true;
    await loadSites();
  } catch (e) {
    showFieldErrors(e.message);
  }
});

// showFieldErrors places "field: problem" lines under their inputs; the
// rest go under the JSON settings.
function showFieldErrors(message) {
  for (const line of message.split("\n")) {
    const m = line.match(/^([a-z_]+)(?:[.[][^:]*)?: (.*)$/);
    const field = m && ["name", "hosts", "origin"].includes(m[1]) ? m[1] : "other";
    fieldError(field, line);
  }
}

function fieldError(field, text) {
  const p = $("site-" + field + "-error");
  p.textContent = p.textContent ? p.textContent + "\n" + text : text;
  $("site-" + field).setAttribute("aria-invalid", "true");
}

// --- purges --------------------------------------------------------------

let pendingPurge = null;

function purgeRequest() {
  const kind = document.querySelector("input[name=kind]:checked").value;
  const r = { soft: $("purge-soft").checked || undefined };
  if (kind === "all") r.all = true;
  else r[kind] = $("purge-items").value.split("\n").map((s) => s.trim()).filter(Boolean);
  return r;
}

$("purge-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("purge-error").textContent = "";
  const site = $("purge-site").value;
  const req = purgeRequest();
  try {
    const res = await call("POST", "/dashboard/count", { site, purge: req });
    pendingPurge = { site, req };
    let total = 0;
    $("blast-table").tBodies[0].replaceChildren(...res.edges.sort((a, b) => a.edge.localeCompare(b.edge)).map((a) => {
      total += a.matched;
      return el("tr", { dataset: { edge: a.edge } }, el("th", { scope: "row" }, a.edge),
        el("td", { class: "matched" }, a.error ? "unknown: " + a.error : String(a.matched)), el("td", {}, a.error ? "–" : String(a.scanned)));
    }));
    $("blast-total").textContent = "This purge of " + site + " matches " + total + " cached objects across " + res.edges.length + " edges.";
    $("blast").hidden = false;
    $("purge-confirm").disabled = !can("purge:" + site);
    $("purge-confirm").focus();
  } catch (e) {
    $("purge-error").textContent = e.message;
  }
});

$("purge-cancel").addEventListener("click", () => { $("blast").hidden = true; pendingPurge = null; });
$("purge-confirm").addEventListener("click", async () => {
  if (!pendingPurge) return;
  try {
    const res = await api("POST", "/v1/sites/" + encodeURIComponent(pendingPurge.site) + "/purge", pendingPurge.req);
    $("blast").hidden = true;
    $("purge-error").textContent = "";
    $("blast-total").textContent = "";
    pendingPurge = null;
    $("purge-items").value = "";
    lastIssued = res.version;
  } catch (e) {
    $("purge-error").textContent = e.message;
  }
});

let lastIssued = 0;

function describe(req) {
  if (!req) return "";
  const parts = [];
  if (req.all) parts.push("everything");
  for (const k of ["urls", "prefixes", "tags"]) if (req[k] && req[k].length) parts.push(k + ": " + req[k].join(" "));
  if (req.soft) parts.push("(soft)");
  return parts.join("; ");
}

function renderPurges() {
  if (!snapshot) return;
  $("purge-list").tBodies[0].replaceChildren(...snapshot.purges.map((p) => {
    const n = p.applied.length + p.pending.length;
    return el("tr", { dataset: { version: String(p.version), done: String(p.pending.length === 0) } },
      el("th", { scope: "row" }, String(p.version)), el("td", {}, p.site), el("td", { class: "wrap" }, describe(p.request)), el("td", {}, when(p.time)),
      el("td", {}, el("span", { class: "progress" }, p.applied.length + " of " + n + " edges "),
        ...p.applied.map((e) => el("span", { class: "badge done", title: "applied" }, "✓ " + e)),
        ...p.pending.map((e) => el("span", { class: "badge wait", title: "pending" }, "… " + e))));
  }));
}

// --- releases ------------------------------------------------------------

let releases = null;

async function loadReleases() {
  const site = $("release-site").value;
  $("release-error").textContent = "";
  if (!site) return;
  try {
    releases = await api("GET", "/v1/sites/" + encodeURIComponent(site) + "/releases");
  } catch (e) {
    releases = null;
    $("release-list").tBodies[0].replaceChildren();
    $("release-error").textContent = e.message;
    return;
  }
  renderReleaseEdges();
}

function renderReleaseEdges() {
  if (!releases) return;
  const site = releases.site;
  const serving = (n) => (snapshot ? snapshot.edges : []).filter((e) => e.releases && e.releases[site] && e.releases[site].serving === n).map((e) => e.name);
  replaceRows($("release-list").tBodies[0], "release", (releases.releases || []).map((r) => {
    const live = r.number === releases.live;
    return el("tr", { dataset: { release: String(r.number), live: String(live) } },
      el("th", { scope: "row" }, "#" + r.number + (live ? " (live)" : "")), el("td", {}, when(r.created)), el("td", { class: "wrap" }, r.message || ""),
      el("td", {}, String(r.files)), el("td", { class: "serving" }, serving(r.number).join(", ") || "–"),
      el("td", {}, live ? "" : actButton(r.number < releases.live ? "Roll back to #" + r.number : "Activate #" + r.number, "push:" + site,
        () => activate(site, r.number))));
  }));
}

async function activate(site, n) {
  if (!await confirmAction("Make release #" + n + " of " + site + " live on every edge?")) return;
  try {
    await api("POST", "/v1/sites/" + encodeURIComponent(site) + "/releases/" + n + "/activate");
    await loadReleases();
  } catch (e) {
    $("release-error").textContent = e.message;
  }
}

$("release-site").addEventListener("change", loadReleases);

// --- GeoDNS --------------------------------------------------------------

$("explain-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("explain-error").textContent = "";
  const out = $("explain-out");
  out.replaceChildren();
  let ex;
  try { ex = await call("GET", "/dashboard/explain?client=" + encodeURIComponent($("explain-client").value.trim())); } catch (e) {
    $("explain-error").textContent = e.message;
    return;
  }
  if (ex.error) { $("explain-error").textContent = ex.error; return; }
  const loc = ex.location;
  const place = [loc.region && "mapped to region " + loc.region, loc.has_point && "at " + loc.lat.toFixed(2) + ", " + loc.lon.toFixed(2),
    loc.country, loc.continent].filter(Boolean).join("; ") || "unknown place";
  out.append(
    el("p", {}, "Client " + ex.client + ": " + place + " (holds for a /" + loc.bits + ")."),
    el("p", { id: "explain-answer" }, ex.fail_open ? "No healthy edge: every edge answers (fail open)."
      : "Answered from region " + (ex.region || "any (unknown place)") + " with " + (ex.chosen.join(", ") || "no edge") + "."),
    el("div", { class: "scroll" }, el("table", { id: "explain-table" },
      el("thead", {}, el("tr", {}, ...["Region (in the order tried)", "Distance", "Edge", "Health", "Draining", "Eligible", "Weight", "Load"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...ex.regions.flatMap((r) => r.edges.map((e, i) => el("tr", { dataset: { edge: e.name, eligible: String(e.eligible) } },
        el("td", {}, i === 0 ? r.name : ""), el("td", {}, i === 0 && loc.has_point || loc.region ? (i === 0 ? Math.round(r.distance_km) + " km" : "") : ""),
        el("th", { scope: "row" }, e.name), el("td", { class: e.health }, e.health), el("td", {}, e.draining ? "draining" : "no"),
        el("td", {}, e.eligible ? "yes" : "no"), el("td", {}, num(e.weight, 2)), el("td", {}, pct(e.load)))))))));
});

// --- tokens --------------------------------------------------------------

async function loadTokens() {
  $("tokens-error").textContent = "";
  let list;
  try { list = (await api("GET", "/v1/tokens")).tokens; } catch (e) {
    $("tokens-error").textContent = e.status === 403 ? "Only an admin token lists tokens." : e.message;
    $("token-list").tBodies[0].replaceChildren();
    return;
  }
  $("token-list").tBodies[0].replaceChildren(...list.map((t) => el("tr", { dataset: { token: t.id } },
    el("th", { scope: "row" }, t.id), el("td", { class: "wrap" }, t.name || ""), el("td", {}, t.scopes.join(", ")), el("td", {}, t.expires ? when(t.expires) : "never"),
    el("td", {}, actButton("Revoke", null, () => revoke(t), { class: "danger", attrs: { "aria-label": "Revoke " + (t.name || t.id) } })))));
}

async function revoke(t) {
  if (!await confirmAction("Revoke token " + (t.name || t.id) + "? Whoever holds it loses access at once.")) return;
  try { await api("DELETE", "/v1/tokens/" + encodeURIComponent(t.id)); } catch (e) { $("tokens-error").textContent = e.message; }
  loadTokens();
}

$("token-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("token-error").textContent = "";
  const body = { name: $("token-name").value.trim(), scopes: $("token-scopes").value.split(",").map((s) => s.trim()).filter(Boolean) };
  if ($("token-ttl").value.trim()) body.ttl = $("token-ttl").value.trim();
  try {
    const res = await api("POST", "/v1/tokens", body);
    $("token-secret-value").textContent = res.token;
    $("token-secret").hidden = false;
    loadTokens();
  } catch (e) {
    $("token-error").textContent = e.message;
  }
});

// --- views ---------------------------------------------------------------

const views = ["network", "charts", "sites", "purges", "releases", "geodns", "tokens"];
const currentView = () => { const v = location.hash.slice(1); return views.includes(v) ? v : "network"; };

function route() {
  if (!session) return;
  const v = currentView();
  for (const name of views) $(name).hidden = name !== v;
  for (const a of $("nav").querySelectorAll("a")) {
    if (a.getAttribute("href") === "#" + v) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  clearInterval(chartTimer);
  if (v === "charts") { loadCharts(); chartTimer = setInterval(loadCharts, 2000); }
  if (v === "sites" || v === "purges" || v === "releases") loadSites().then(() => { if (v === "releases") loadReleases(); });
  if (v === "tokens") loadTokens();
  // Read-only tokens see the forms' action buttons disabled.
  for (const b of document.querySelectorAll("form button.act")) {
    b.disabled = !session.admin && !(b.id === "purge-check");
  }
  if (!session.admin) $("purge-check").disabled = !session.scopes.some((s) => s.startsWith("purge:"));
}

window.addEventListener("hashchange", route);
start();
