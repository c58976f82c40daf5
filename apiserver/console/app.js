// Berth console: sign-in, the live lease table, one lease in detail.
// Read-only; every byte of data comes from the REST API with the tenant's key.
import { $, el } from "./dom.js";
import { changedHands, countdown, matches, nextExpiry, targetText } from "./format.js";
import { leaseSections } from "./lease.js";
import { watchLeases } from "./watch.js";

const KEY_STORAGE = "berth.apiKey";
/** How long a lease that changed hands stays marked. */
const CHANGED_MARK_MS = 15_000;

const state = {
  /** key "ns/name" -> { view, updatedAt, changedAt } */
  leases: new Map(),
  /** Events of a (re)connection before its initial list is complete. */
  pending: null,
  synced: false,
  everSynced: false,
  stop: null,
  filters: { namespace: "", state: "", text: "" },
};

const leaseKey = (view) => `${view.namespace}/${view.name}`;

// ---- session -------------------------------------------------------------

function showLogin(message) {
  if (state.stop) state.stop();
  state.stop = null;
  state.leases.clear();
  state.synced = state.everSynced = false;
  $("login").hidden = false;
  $("leases").hidden = true;
  $("detail").hidden = true;
  $("sign-out").hidden = true;
  setConnection("idle", "");
  $("login-error").textContent = message || "";
  $("api-key").value = "";
  $("api-key").focus();
}

function signIn(key) {
  $("login").hidden = true;
  $("sign-out").hidden = false;
  $("login-error").textContent = "";
  state.leases.clear();
  state.synced = state.everSynced = false;
  route();
  state.stop = watchLeases(key, {
    connecting() {
      state.pending = new Map();
      state.synced = false;
      setConnection("connecting", state.everSynced ? "Reconnecting…" : "Connecting…");
    },
    event(kind, view) {
      if (!state.synced) {
        if (kind === "deleted") state.pending.delete(leaseKey(view));
        else state.pending.set(leaseKey(view), view);
        return;
      }
      apply(kind, view);
    },
    synced() {
      replaceAll(state.pending);
      state.pending = null;
      state.synced = state.everSynced = true;
      setConnection("live", "Live");
      render();
    },
    lost(retryMs, reason) {
      state.synced = false;
      setConnection("lost", `Connection lost (${reason}). Reconnecting in ${Math.ceil(retryMs / 1000)} s…`);
      render();
    },
    refused(status, message) {
      sessionStorage.removeItem(KEY_STORAGE);
      const why = status === 401 ? "The API key was refused" : "This key may not list leases";
      showLogin(`${why}: ${message} (HTTP ${status}).`);
    },
  });
}

function setConnection(kind, text) {
  const node = $("connection");
  node.dataset.state = kind;
  node.textContent = text;
  document.body.dataset.connection = kind;
}

// ---- data ----------------------------------------------------------------

function replaceAll(views) {
  const now = Date.now();
  const next = new Map();
  for (const [key, view] of views) {
    const before = state.leases.get(key);
    const changed = state.everSynced && (!before || changedHands(before.view, view));
    const unchanged = before && before.view.updatedAt === view.updatedAt && !changed;
    next.set(key, {
      view,
      updatedAt: unchanged ? before.updatedAt : now,
      changedAt: changed ? now : before ? before.changedAt : 0,
    });
  }
  state.leases = next;
}

function apply(kind, view) {
  const key = leaseKey(view);
  const now = Date.now();
  if (kind === "deleted") {
    state.leases.delete(key);
  } else {
    const before = state.leases.get(key);
    const changed = kind === "added" || changedHands(before && before.view, view);
    state.leases.set(key, { view, updatedAt: now, changedAt: changed ? now : before ? before.changedAt : 0 });
  }
  render();
}

// ---- rendering -------------------------------------------------------------

let scheduled = false;
function render() {
  if (scheduled) return;
  scheduled = true;
  queueMicrotask(() => {
    scheduled = false;
    if (!$("login").hidden) return;
    if (currentLease()) renderDetail();
    else renderTable();
  });
}

function currentLease() {
  const match = /^#\/leases\/([^/]+)\/([^/]+)$/.exec(location.hash);
  return match ? `${decodeURIComponent(match[1])}/${decodeURIComponent(match[2])}` : null;
}

function route() {
  const detail = currentLease() !== null;
  $("leases").hidden = detail;
  $("detail").hidden = !detail;
  if (detail) {
    $("detail-body").replaceChildren();
    renderDetail();
    $("detail-title").focus();
  } else {
    renderTable();
  }
}

function renderTable() {
  const all = [...state.leases.values()].map((e) => e.view);
  updateNamespaceFilter(all);
  const shown = [...state.leases.entries()]
    .filter(([, entry]) => matches(entry.view, state.filters))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const loading = !state.everSynced;
  $("loading").hidden = !loading;
  $("lease-table").hidden = loading || shown.length === 0;
  const empty = $("empty");
  empty.hidden = loading || shown.length > 0;
  empty.textContent = all.length === 0
    ? "No leases yet. Leases this key may read appear here the moment they are created, for example by an acquire."
    : "No lease matches the filters.";
  const held = all.filter((v) => v.state === "held").length;
  $("summary").textContent = loading ? "" : `${all.length} leases, ${held} held; ${shown.length} shown.`;

  const body = $("lease-rows");
  const existing = new Map([...body.children].map((tr) => [tr.dataset.key, tr]));
  const rows = shown.map(([key, entry]) => {
    const tr = existing.get(key) || el("tr", { "data-key": key });
    existing.delete(key);
    fillRow(tr, entry);
    return tr;
  });
  for (const stale of existing.values()) stale.remove();
  const inOrder = rows.every((tr, i) => body.children[i] === tr);
  if (!inOrder) body.replaceChildren(...rows);
  tick();
}

function fillRow(tr, { view, updatedAt, changedAt }) {
  const now = Date.now();
  tr.dataset.token = view.fencingToken;
  tr.dataset.state = view.state;
  tr.dataset.holders = (view.holders || []).map((h) => h.identity).join(",");
  tr.dataset.updatedAt = updatedAt;
  tr.dataset.changedAt = changedAt;
  const expires = nextExpiry(view, now);
  const holders = view.holders || [];
  const holderText = holders.length ? holders.map((h) => h.identity).join(", ") : "—";
  const capacity = view.maxHolders ? ` (max ${view.maxHolders})` : "";
  const link = el("a", { href: `#/leases/${encodeURIComponent(view.namespace)}/${encodeURIComponent(view.name)}` }, view.name);
  tr.replaceChildren(
    el("th", { scope: "row", "data-label": "Lease" }, link, el("span", { class: "ns", text: view.namespace }),
      el("span", { class: "badge changed", text: "changed hands" })),
    el("td", { "data-label": "State" }, el("span", { class: `state state-${view.state}`, text: view.state })),
    el("td", { "data-label": "Holders", text: holderText + capacity }),
    el("td", { "data-label": "Token", class: "num", text: String(view.fencingToken) }),
    el("td", { "data-label": "Expires in", class: "num expires", "data-expires": expires ?? "" }),
    el("td", { "data-label": "Semantics", text: view.semantics }),
    el("td", { "data-label": "Target", text: targetText(view.target) }),
    el("td", { "data-label": "Transitions", class: "num", text: String(view.transitions) }),
  );
}

function updateNamespaceFilter(views) {
  const select = $("filter-namespace");
  const namespaces = [...new Set(views.map((v) => v.namespace))].sort();
  if (state.filters.namespace && !namespaces.includes(state.filters.namespace)) namespaces.push(state.filters.namespace);
  const have = [...select.options].slice(1).map((o) => o.value);
  if (have.join("\n") === namespaces.join("\n")) return;
  select.replaceChildren(el("option", { value: "" }, "All namespaces"),
    ...namespaces.map((ns) => el("option", { value: ns }, ns)));
  select.value = state.filters.namespace;
}

function renderDetail() {
  const key = currentLease();
  const [namespace, name] = [key.slice(0, key.indexOf("/")), key.slice(key.indexOf("/") + 1)];
  $("detail-title").textContent = `${name} · ${namespace}`;
  document.title = `${name} · Berth console`;
  const entry = state.leases.get(key);
  const gone = $("detail-gone");
  if (!entry) {
    gone.hidden = !state.everSynced;
    gone.textContent = "This lease does not exist, was deleted, or this key may not read it.";
    $("detail-body").replaceChildren();
    return;
  }
  gone.hidden = true;
  $("detail-body").replaceChildren(...leaseSections(entry.view, Date.now()));
  tick();
}

/** Live countdowns, holder bars and the fading "changed hands" mark. */
function tick() {
  const now = Date.now();
  for (const node of document.querySelectorAll("[data-expires]")) {
    const at = Number(node.dataset.expires);
    const left = node.dataset.expires === "" ? null : at - now;
    if (node.tagName === "PROGRESS") {
      node.value = Math.max(0, left);
      node.textContent = countdown(left);
    } else {
      node.textContent = left === null ? "—" : countdown(left);
    }
  }
  for (const tr of document.querySelectorAll("#lease-rows tr")) {
    tr.classList.toggle("changed", now - Number(tr.dataset.changedAt) < CHANGED_MARK_MS);
  }
}

// ---- wiring ----------------------------------------------------------------

function init() {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) {
      $("login-error").textContent = "Enter an API key.";
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, key);
    $("api-key").value = "";
    signIn(key);
  });
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    showLogin("");
  });
  const filter = (name, node, eventName) => node.addEventListener(eventName, () => {
    state.filters[name] = node.value;
    render();
  });
  filter("namespace", $("filter-namespace"), "change");
  filter("state", $("filter-state"), "change");
  filter("text", $("filter-text"), "input");
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  window.addEventListener("hashchange", () => {
    if ($("login").hidden) route();
    if (!currentLease()) document.title = "Berth console";
  });
  setInterval(tick, 500);
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) signIn(key);
  else showLogin("");
}

init();
