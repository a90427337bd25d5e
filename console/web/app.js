// The operator console's page: renders the view the console streams as
// server-sent events, and sends actions with a reason after a confirmation.
// No framework: rows are keyed and cells only rewritten when they change,
// so buttons and selections survive the updates.
"use strict";

const state = { session: null, view: null, dirs: [], action: null };

const $ = (sel, root = document) => root.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const st = (s, text) => `<span class="state st-${esc(s || "none")}">${esc(text ?? s ?? "-")}</span>`;

function ago(t) {
  if (!t || t.startsWith("0001") || t.startsWith("1970")) return "";
  const s = Math.max(0, (Date.now() - Date.parse(t)) / 1000);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)}h ago`;
  return `${(s / 86400).toFixed(1)}d ago`;
}
function clock(t) { return t ? new Date(t).toLocaleTimeString() : ""; }
function rate(v, unit) {
  if (!v) return `0${unit}`;
  const k = [["G", 1e9], ["M", 1e6], ["k", 1e3]].find(([, n]) => v >= n);
  return k ? `${(v / k[1]).toFixed(1)}${k[0]}${unit}` : `${v < 10 ? v.toFixed(1) : Math.round(v)}${unit}`;
}
function numbers(n) {
  if (!n) return "";
  return `${n.active} act / ${n.inactive} inact · ${rate(n.cps, " c/s")} · ${rate(n.bps_in + n.bps_out, "B/s")}`;
}

// syncRows keeps one <tr> per key in order and rewrites only changed cells.
function syncRows(tbody, rows) {
  const old = new Map([...tbody.children].map((tr) => [tr.dataset.key, tr]));
  let prev = null;
  for (const r of rows) {
    let tr = old.get(r.key);
    if (tr) old.delete(r.key); else { tr = document.createElement("tr"); tr.dataset.key = r.key; }
    for (const [k, v] of Object.entries(r.data || {})) if (tr.dataset[k] !== v) tr.dataset[k] = v;
    if (tr.className !== (r.cls || "")) tr.className = r.cls || "";
    r.cells.forEach((c, i) => {
      let td = tr.children[i];
      if (!td) { td = document.createElement("td"); tr.appendChild(td); }
      const html = typeof c === "string" ? c : c.html;
      const attrs = typeof c === "string" ? {} : c;
      if (td._html !== html) { td.innerHTML = html; td._html = html; }
      const cls = attrs.cls || "";
      if (td.className !== cls) td.className = cls;
      const span = String(attrs.colspan || 1);
      if (td.getAttribute("colspan") !== span) td.setAttribute("colspan", span);
      if (attrs.dir !== undefined && td.dataset.director !== attrs.dir) td.dataset.director = attrs.dir;
      for (const [k, v] of Object.entries(attrs.data || {})) if (td.dataset[k] !== v) td.dataset[k] = v;
    });
    while (tr.children.length > r.cells.length) tr.lastChild.remove();
    const want = prev ? prev.nextSibling : tbody.firstChild;
    if (want !== tr) tbody.insertBefore(tr, want);
    prev = tr;
  }
  for (const tr of old.values()) tr.remove();
}

// orEmpty stands in one explanatory row for an empty table.
function orEmpty(rows, cols, text) {
  return rows.length ? rows : [{ key: "empty", cls: "empty", cells: [{ html: `<span class="muted">${esc(text)}</span>`, colspan: cols }] }];
}

function setHead(table, cols) {
  const html = "<tr>" + cols.map((c) => `<th>${c}</th>`).join("") + "</tr>";
  const thead = table.tHead;
  if (thead._html !== html) { thead.innerHTML = html; thead._html = html; }
}

const canAct = () => state.session && state.session.can_act;
const btn = (act, label, data) =>
  canAct() ? `<button type="button" data-act="${act}" ${Object.entries(data).map(([k, v]) => `data-${k}="${esc(v)}"`).join(" ")}>${label}</button>` : "";

// ---- fleet -----------------------------------------------------------------

function renderDirectors(v) {
  syncRows($("#directors tbody"), v.directors.map((d) => {
    let s = d.connected ? st("ok", "connected") : st("error", "unreachable");
    if (d.learning) s += " " + st("learning");
    if (d.shutting_down) s += " " + st("draining", "shutting down");
    if (d.withdrawn_for_failures) s += " " + st("withdrawn", "withdrawn: passes failing");
    if (d.drained) s += ` ${st("drained")} <span class="reason">${esc(d.drained.reason)} (${esc(d.drained.who)})</span>`;
    if (d.error) s += `<div class="error">${esc(d.error)}</div>`;
    const cfg = d.version ? `v${d.version} <code>${esc(d.digest)}</code> <span class="reason">${ago(d.loaded)}</span>` : "";
    const fp = `<code>${esc(d.fingerprint || "-")}</code>${d.mismatch ? '<span class="badge">differs</span>' : ""}`;
    const acts = d.drained ? btn("undrain-director", "Undrain", { dir: d.name }) : btn("drain-director", "Drain", { dir: d.name });
    return {
      key: d.name, data: { director: d.name },
      cells: [`<b>${esc(d.name)}</b>${d.daemon && d.daemon !== d.name ? ` <span class="reason">(${esc(d.daemon)})</span>` : ""}`,
        `<span class="mono">${esc(d.target)}</span>`, { html: s, data: { connected: String(d.connected) } }, cfg,
        { html: fp, cls: d.mismatch ? "mismatch" : "" }, `${d.passes}${d.failed_passes ? ` (${d.failed_passes} failed)` : ""}`,
        { html: acts, cls: "acts" }],
    };
  }));
}

function renderVIPs(v) {
  setHead($("#vips"), ["VIP", "services", ...state.dirs.map(esc), ""]);
  syncRows($("#vips tbody"), v.vips.map((x) => {
    const cells = state.dirs.map((d) => {
      const c = x.cells[d];
      if (!c) return { html: '<span class="muted">-</span>', dir: d, data: { state: "" } };
      return { html: `${st(c.state)}${c.disabled ? " " + st("drained", "disabled") : ""} <div class="reason">${esc(c.reason)}</div>`, dir: d, data: { state: c.state } };
    });
    const disabled = Object.values(x.cells).some((c) => c.disabled);
    const acts = btn("disable-vip", "Disable", { vip: x.address }) + (disabled ? btn("enable-vip", "Enable", { vip: x.address }) : "");
    return {
      key: x.address, data: { vip: x.address }, cls: x.disagree ? "disagree" : "",
      cells: [`<b class="mono">${esc(x.address)}</b>${x.disagree ? '<span class="badge">differs</span>' : ""}`, esc(x.services.join(", ")), ...cells, { html: acts, cls: "acts" }],
    };
  }));
}

function renderPrints(v) {
  setHead($("#prints"), ["service", "scheduler", ...state.dirs.map(esc)]);
  syncRows($("#prints tbody"), orEmpty(v.services.filter((s) => s.forwarding !== "local").map((s) => ({
    key: s.name, data: { service: s.name }, cls: s.mismatch ? "disagree" : "",
    cells: [`${esc(s.name)}${s.mismatch ? '<span class="badge">differs</span>' : ""}`, esc(`${s.scheduler} ${(s.flags || []).join(",")}`),
      ...state.dirs.map((d) => ({ html: s.errors[d] ? `<span class="error">${esc(s.errors[d])}</span>` : `<code>${esc(s.fingerprints[d] || "-")}</code>`, dir: d, cls: s.mismatch ? "mismatch" : "", data: { fingerprint: s.fingerprints[d] || "" } }))],
  })), 2 + state.dirs.length, "no IPVS services: every service is forwarding: local"));
}

function renderPeers(v) {
  syncRows($("#peers tbody"), orEmpty(v.peers.map((p) => ({
    key: p.director + "|" + p.address,
    cells: [esc(p.director), `<span class="mono">${esc(p.address)}</span>`, String(p.asn), st(p.state), st(p.bfd === "up" ? "up" : p.bfd === "off" ? "off" : "down", p.bfd),
      ago(p.since), String(p.flaps), String(p.advertised), `<span class="reason">${esc(p.last_error || "")}</span>`],
  })), 9, "no routing sessions (announce: none, or kernel through a local routing daemon)"));
}

// ---- real servers -------------------------------------------------------------

function renderServices(v) {
  const root = $("#services");
  const seen = new Set();
  let prev = null;
  for (const s of v.services) {
    seen.add(s.name);
    let box = root.querySelector(`div.service[data-service="${CSS.escape(s.name)}"]`);
    if (!box) {
      box = document.createElement("div");
      box.className = "service";
      box.dataset.service = s.name;
      box.innerHTML = '<h3></h3><table class="grid"><thead></thead><tbody></tbody></table>';
    }
    const want = prev ? prev.nextSibling : root.firstChild;
    if (want !== box) root.insertBefore(box, want);
    prev = box;
    const health = state.dirs.map((d) => s.health[d] ? `${esc(d)} ${esc(s.health[d])}` : "").filter(Boolean).join(" · ");
    const title = `${esc(s.name)} <span class="mono">${esc(s.protocol)} ${esc(s.vip)}:${s.port}</span> <span class="reason">${esc(s.forwarding)} · ${esc(s.scheduler)} · healthy ${health}</span>`;
    const h3 = box.querySelector("h3");
    if (h3._html !== title) { h3.innerHTML = title; h3._html = title; }
    setHead(box.querySelector("table"), ["real server", ...state.dirs.map(esc), "all directors", ""]);
    syncRows(box.querySelector("tbody"), s.backends.map((b) => backendRow(s, b)));
  }
  for (const box of [...root.children]) if (!seen.has(box.dataset.service)) box.remove();
}

function backendRow(s, b) {
  const cells = state.dirs.map((d) => {
    const c = b.cells[d];
    if (!c) return { html: '<span class="muted">-</span>', dir: d, data: { health: "" } };
    let h = st(c.health);
    if (c.draining) h += " " + st("draining");
    h += ` <span class="mono">w${c.weight}${c.weight !== c.configured ? `/${c.configured}` : ""}</span>`;
    if (c.override) h += `<div class="reason">${esc(c.override)}</div>`;
    else if (c.health !== "up" && c.last_error) h += `<div class="reason">${esc(c.last_error)}</div>`;
    h += `<div class="numbers">${numbers(c)}</div>`;
    return { html: h, dir: d, data: { health: c.health, weight: String(c.weight), draining: String(c.draining),
      active: String(c.active), cps: c.cps.toFixed(2) } };
  });
  const ref = { service: s.name, address: b.address, port: String(b.port) };
  const acts = btn("drain-backend", "Drain", ref) + btn("enable-backend", "Enable", ref) + btn("set-weight", "Weight", ref);
  return {
    key: b.key, data: { backend: b.key }, cls: b.disagree ? "disagree" : "",
    cells: [`<span class="mono">${esc(b.address)}:${b.port}</span>${b.disagree ? '<span class="badge">differs</span>' : ""}`, ...cells,
      { html: `<span class="numbers">${numbers(b.total)}</span>`, cls: "num" }, { html: acts, cls: "acts" }],
  };
}

// ---- events -------------------------------------------------------------------

function renderEvents(v) {
  const rows = [...v.events].reverse().map((e) => ({
    key: `${e.director}|${e.seq}|${e.time}`, data: { kind: e.kind },
    cells: [clock(e.time), esc(e.director), esc(e.kind), `<span class="mono">${esc(e.subject)}</span>`,
      `${esc(e.from || "")}${e.from || e.to ? " → " : ""}${esc(e.to || "")}`, `<span class="reason">${esc(e.reason)}</span>`, esc(e.who || "")],
  }));
  syncRows($("#event-log tbody"), orEmpty(rows, 7, "no events yet"));
}

function render(v) {
  for (const k of ["directors", "vips", "services", "peers", "events"]) v[k] = v[k] || [];
  state.view = v;
  const dirs = v.directors.map((d) => d.name);
  if (dirs.join("\n") !== state.dirs.join("\n")) state.dirs = dirs;
  renderDirectors(v);
  renderVIPs(v);
  renderPrints(v);
  renderPeers(v);
  renderServices(v);
  renderEvents(v);
  document.body.dataset.generated = v.generated;
}

// ---- actions ------------------------------------------------------------------

const titles = {
  "drain-backend": "Drain real server", "enable-backend": "Enable real server", "set-weight": "Set weight",
  "disable-vip": "Disable VIP", "enable-vip": "Enable VIP", "drain-director": "Drain director", "undrain-director": "Undrain director",
};

function openAction(b) {
  const a = { kind: b.dataset.act, service: b.dataset.service || "", address: b.dataset.address || "", port: Number(b.dataset.port || 0), vip: b.dataset.vip || "" };
  state.action = a;
  const what = a.address ? `${a.address}:${a.port} in service ${a.service}` : a.vip ? `VIP ${a.vip}` : "the whole director (every VIP is withdrawn gracefully; IPVS keeps forwarding)";
  $("#act-title").textContent = titles[a.kind];
  $("#act-summary").textContent = `${titles[a.kind]}: ${what}. Every selected director gets the same call; the reason and your name go to its event log.`;
  const only = b.dataset.dir;
  $("#act-directors").innerHTML = "<legend>on directors</legend>" + state.dirs.map((d) =>
    `<label><input type="checkbox" name="dir" value="${esc(d)}" ${!only || only === d ? "checked" : ""}> ${esc(d)}</label>`).join("");
  $("#act-weight-row").hidden = a.kind !== "set-weight";
  $("#act-for-row").hidden = !["drain-backend", "set-weight", "disable-vip", "drain-director"].includes(a.kind);
  $("#act-reason").value = "";
  $("#act-clear").checked = false;
  $("#act-for").value = "";
  $("#act-results").innerHTML = "";
  $("#act-confirm").disabled = false;
  $("#act-confirm").hidden = false;
  $("#act-cancel").textContent = "Cancel";
  $("#action-dialog").showModal();
  $("#act-reason").focus();
}

async function post(url, body) {
  const r = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": state.session.csrf }, body: JSON.stringify(body),
  });
  const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  return { ok: r.ok, data };
}

async function confirmAction() {
  const a = { ...state.action, reason: $("#act-reason").value.trim(), for: $("#act-for").value.trim(),
    directors: [...document.querySelectorAll('#act-directors input[name="dir"]:checked')].map((i) => i.value) };
  if (a.kind === "set-weight" && $("#act-clear").checked) a.kind = "clear-weight";
  else if (a.kind === "set-weight") a.weight = Number($("#act-weight").value);
  const out = $("#act-results");
  if (!a.reason) { out.innerHTML = '<p class="error">A reason is required.</p>'; return; }
  if (!a.directors.length) { out.innerHTML = '<p class="error">Select at least one director.</p>'; return; }
  $("#act-confirm").disabled = true;
  const { ok, data } = await post("/api/action", a);
  if (!ok) { out.innerHTML = `<p class="error">${esc(data.error)}</p>`; $("#act-confirm").disabled = false; return; }
  out.innerHTML = data.results.map((r) => `<div class="${r.ok ? "result-ok" : "result-err"}" data-director="${esc(r.director)}" data-ok="${r.ok}">${esc(r.director)}: ${r.ok ? "✓" : "✗"} ${esc(r.message)}</div>`).join("");
  $("#act-confirm").hidden = true;
  $("#act-cancel").textContent = "Close";
}

// ---- history ------------------------------------------------------------------

async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin" });
  const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

function histDirector() { return $("#hist-director").value; }

async function loadHistory() {
  const d = histDirector();
  const detail = $("#hist-detail");
  try {
    const data = await getJSON(`/api/configs?director=${encodeURIComponent(d)}`);
    syncRows($("#hist-list tbody"), [...data.configs].reverse().map((c) => {
      const running = c.version === data.running;
      const acts = `<button type="button" data-hist="show" data-version="${c.version}">Show</button>` +
        (running ? "" : `<button type="button" data-hist="diff" data-version="${c.version}">Diff with running</button>` +
          `<button type="button" data-hist="preview" data-version="${c.version}">Roll back…</button>`);
      return { key: String(c.version), data: { version: String(c.version) }, cells: [`v${c.version}${running ? " " + st("ok", "running") : ""}`,
        `<code>${esc(c.digest)}</code>`, `${new Date(c.loaded).toLocaleString()} <span class="reason">${ago(c.loaded)}</span>`, `<span class="mono">${esc(c.source)}</span>`, { html: acts, cls: "acts" }] };
    }));
  } catch (e) { detail.innerHTML = `<p class="error">${esc(e.message)}</p>`; }
}

function diffHTML(d) {
  if (!d.hunks || !d.hunks.length) return '<p class="muted">The files are identical (secrets are not shown, so a changed password does not show either).</p>';
  const lines = [`<div class="hunk">--- v${d.from.version} (${esc(d.from.digest)})</div>`, `<div class="hunk">+++ v${d.to.version} (${esc(d.to.digest)})</div>`];
  for (const h of d.hunks) {
    lines.push(`<div class="hunk">@@ -${h.a},${h.a_len} +${h.b},${h.b_len} @@</div>`);
    for (const l of h.lines) lines.push(`<div class="${l.op === "+" ? "ins" : l.op === "-" ? "del" : "ctx"}">${esc(l.op + l.text)}</div>`);
  }
  return `<div class="diff">${lines.join("")}</div>`;
}

async function historyAction(b) {
  const d = histDirector();
  const v = b.dataset.version;
  const detail = $("#hist-detail");
  try {
    if (b.dataset.hist === "show") {
      const c = await getJSON(`/api/config?director=${encodeURIComponent(d)}&version=${v}`);
      detail.innerHTML = `<h3>${esc(d)} v${c.version.version} <code>${esc(c.version.digest)}</code></h3><pre class="config">${esc(c.content)}</pre>`;
    } else if (b.dataset.hist === "diff") {
      const diff = await getJSON(`/api/diff?director=${encodeURIComponent(d)}&a=${v}&b=0`);
      detail.innerHTML = `<h3>${esc(d)}: v${v} → running</h3>${diffHTML(diff)}`;
    } else if (b.dataset.hist === "preview") {
      const p = await getJSON(`/api/rollback/preview?director=${encodeURIComponent(d)}&version=${v}`);
      const plan = p.changes && p.changes.length ? `<table class="grid" id="plan"><thead><tr><th>action</th><th>what</th><th>subject</th><th>detail</th></tr></thead><tbody>${
        p.changes.map((c) => `<tr><td>${esc(c.action)}</td><td>${esc(c.kind)}</td><td class="mono">${esc(c.subject)}</td><td>${esc(c.detail)}</td></tr>`).join("")}</tbody></table>` : '<p class="muted">No change to IPVS or routes.</p>';
      const confirm = canAct() ? `<p><label>reason <input id="rb-reason" type="text" maxlength="200" placeholder="ticket and a few words"></label></p>
        <p><button type="button" class="danger" id="rb-confirm" data-version="${esc(v)}">Roll back ${esc(d)} to v${esc(v)}</button></p><div id="rb-result"></div>` :
        `<p class="muted">${esc(state.session.read_only_note || "read-only")}: preview only.</p>`;
      detail.innerHTML = `<h3 id="preview-title">Dry run: roll back ${esc(d)} to v${esc(v)}</h3><p>Configuration changes (running → v${esc(v)}):</p>${diffHTML(p.diff)}<p>What the director would change:</p>${plan}${confirm}`;
    }
  } catch (e) { detail.innerHTML = `<p class="error">${esc(e.message)}</p>`; }
}

async function confirmRollback(b) {
  const reason = $("#rb-reason").value.trim();
  const out = $("#rb-result");
  if (!reason) { out.innerHTML = '<p class="error">A reason is required.</p>'; return; }
  b.disabled = true;
  const { ok, data } = await post("/api/rollback", { director: histDirector(), version: Number(b.dataset.version), reason });
  out.innerHTML = ok ? `<p class="result-ok" id="rb-done">Rolled back: now v${data.version.version} (${esc(data.version.digest)}).</p>` : `<p class="error">${esc(data.error)}</p>`;
  if (ok) loadHistory(); else b.disabled = false;
}

// ---- wiring -------------------------------------------------------------------

function showTab() {
  const tab = (location.hash || "#fleet").slice(1);
  for (const s of document.querySelectorAll("section.tab")) s.hidden = s.id !== tab;
  for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("active", a.dataset.tab === tab);
  if (tab === "history") loadHistory();
}

function connect() {
  const es = new EventSource("/api/stream");
  es.addEventListener("view", (e) => { $("#live").className = "live-on"; $("#live").textContent = "live"; render(JSON.parse(e.data)); });
  es.onerror = () => { $("#live").className = "live-off"; $("#live").textContent = "reconnecting"; };
}

async function start() {
  state.session = await getJSON("/api/session");
  const s = state.session;
  $("#who").textContent = (s.user ? `${s.user} (${s.role})` : "anonymous") + (s.read_only_note ? ` · ${s.read_only_note}` : "");
  $("#hist-director").innerHTML = s.directors.map((d) => `<option>${esc(d)}</option>`).join("");
  document.body.dataset.canAct = String(s.can_act);
  document.addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    if (b.dataset.act) openAction(b);
    else if (b.dataset.hist) historyAction(b);
    else if (b.id === "rb-confirm") confirmRollback(b);
  });
  $("#act-confirm").addEventListener("click", confirmAction);
  $("#act-cancel").addEventListener("click", () => $("#action-dialog").close());
  $("#hist-director").addEventListener("change", () => { $("#hist-detail").innerHTML = ""; loadHistory(); });
  $("#hist-refresh").addEventListener("click", loadHistory);
  window.addEventListener("hashchange", showTab);
  showTab();
  connect();
  setInterval(() => state.view && renderDirectors(state.view), 5000); // keep the "ago" columns fresh
}

start().catch((e) => { document.body.insertAdjacentHTML("afterbegin", `<p class="error">${esc(e.message)}</p>`); });
