// raftlite console: plain JS, no dependencies, talks only to the node that served it.
"use strict";

const $ = (sel) => document.querySelector(sel);
const el = (tag, props = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : String(k));
  return e;
};

// ---------- credentials and requests ----------

const creds = {
  get header() {
    const c = sessionStorage.getItem("raftlite-creds");
    return c ? "Basic " + c : null;
  },
  set(user, pass) {
    // btoa needs Latin-1: encode UTF-8 first.
    const bytes = new TextEncoder().encode(user + ":" + pass);
    sessionStorage.setItem("raftlite-creds", btoa(String.fromCharCode(...bytes)));
  },
  clear() { sessionStorage.removeItem("raftlite-creds"); },
};

class HttpError extends Error {
  constructor(status, text) {
    super(explain(status, text));
    this.status = status;
  }
}

// Turns a refused request into a sentence a user can act on.
function explain(status, text) {
  text = (text || "").trim();
  if (status === 401) {
    return "401 Unauthorized: the node requires credentials, or refused the ones given. " +
      "Enter a user and password under \u201cCredentials\u201d." + (text ? " (" + text + ")" : "");
  }
  if (status === 403) {
    return "403 Forbidden: this user lacks the permission for this action." + (text ? " (" + text + ")" : "");
  }
  return status + ": " + (text || "request failed");
}

function showAuthBanner(err) {
  const b = $("#auth-banner");
  if (err && (err.status === 401 || err.status === 403)) {
    b.textContent = err.message;
    b.hidden = false;
  } else if (!err) {
    b.hidden = true;
  }
}

async function api(path, opts = {}) {
  // X-Raftlite-Console: the node then leaves out its WWW-Authenticate challenge, which would
  // make the browser show its own login dialog instead of handing a 401 to the console.
  const headers = Object.assign({ "X-Raftlite-Console": "1" }, opts.headers || {});
  if (creds.header) headers["Authorization"] = creds.header;
  const resp = await fetch(path, Object.assign({}, opts, { headers, cache: "no-store" }));
  if (!resp.ok) {
    const err = new HttpError(resp.status, await resp.text());
    showAuthBanner(err);
    throw err;
  }
  showAuthBanner(null);
  return resp;
}

const apiJson = async (path, opts) => (await api(path, opts)).json();

// ---------- formatting ----------

function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0, v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? String(v) : v.toFixed(1)) + " " + units[i] + (i ? " (" + n.toLocaleString("en") + " bytes)" : "");
}
const fmtRate = (n) => (n === null || n === undefined ? "–" : fmtBytes(n).split(" (")[0] + "/s");
const fmtSecs = (s) => (s >= 1 ? s.toFixed(3) + " s" : (s * 1000).toFixed(2) + " ms");

// ---------- tabs and theme ----------

const TABS = ["query", "schema", "backup", "restore", "cluster"];
const onShow = {};

function showTab(name) {
  if (!TABS.includes(name)) name = "query";
  for (const t of TABS) {
    $("#panel-" + t).hidden = t !== name;
    $("#tab-" + t).setAttribute("aria-selected", String(t === name));
  }
  if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
  if (onShow[name]) onShow[name]();
  clusterTimer.update(name === "cluster");
}

const THEMES = ["auto", "light", "dark"];
function applyTheme(t) {
  if (t === "auto") document.documentElement.removeAttribute("data-theme");
  else document.documentElement.setAttribute("data-theme", t);
  $("#theme-toggle").textContent = "Theme: " + t;
  localStorage.setItem("raftlite-theme", t);
}

// ---------- query ----------

// Splits SQL text into statements at top-level semicolons (quotes, comments and trigger
// bodies respected). The node runs each statement in the order given.
function splitSql(text) {
  const out = [];
  let cur = "", i = 0, depth = 0;
  const word = () => cur.replace(/--[^\n]*|\/\*[\s\S]*?\*\//g, " ").trim().toUpperCase();
  while (i < text.length) {
    const c = text[i], n = text[i + 1];
    if (c === "'" || c === '"' || c === "`" || c === "[") {
      const close = c === "[" ? "]" : c;
      let j = i + 1;
      while (j < text.length) {
        if (text[j] === close) {
          if (close !== "]" && text[j + 1] === close) { j += 2; continue; }
          break;
        }
        j++;
      }
      cur += text.slice(i, j + 1); i = j + 1; continue;
    }
    if (c === "-" && n === "-") {
      const j = text.indexOf("\n", i); const end = j < 0 ? text.length : j;
      cur += text.slice(i, end); i = end; continue;
    }
    if (c === "/" && n === "*") {
      const j = text.indexOf("*/", i + 2); const end = j < 0 ? text.length : j + 2;
      cur += text.slice(i, end); i = end; continue;
    }
    if (/[A-Za-z_]/.test(c) && (i === 0 || !/[A-Za-z0-9_]/.test(text[i - 1]))) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i))[0];
      const up = m.toUpperCase();
      if (/^CREATE\s+(TEMP\s+|TEMPORARY\s+)?TRIGGER\b/.test(word() + " " + up) || depth > 0) {
        if (up === "BEGIN" || up === "CASE") depth++;
        if (up === "END" && depth > 0) depth--;
      }
      cur += m; i += m.length; continue;
    }
    if (c === ";" && depth === 0) {
      if (cur.trim()) out.push(cur.trim());
      cur = ""; i++; continue;
    }
    cur += c; i++;
  }
  if (cur.replace(/--[^\n]*|\/\*[\s\S]*?\*\//g, "").trim()) out.push(cur.trim());
  return out;
}

function cell(value, type) {
  if (value === null || value === undefined) return el("td", { class: "null", text: "NULL" });
  if ((type || "").toLowerCase() === "blob" && typeof value === "string") {
    let n = 0;
    try { n = atob(value).length; } catch (e) { n = value.length; }
    const hex = (() => {
      try { return Array.from(atob(value).slice(0, 16), (ch) => ch.charCodeAt(0).toString(16).padStart(2, "0")).join(""); } catch (e) { return ""; }
    })();
    return el("td", { class: "blob", title: "base64: " + value, text: "BLOB " + n + " bytes x'" + hex + (n > 16 ? "\u2026" : "") + "'" });
  }
  const td = el("td", { text: typeof value === "object" ? JSON.stringify(value) : String(value) });
  if (typeof value === "number") td.className = "num";
  return td;
}

function resultTable(r) {
  const t = el("table", { class: "grid" });
  const head = el("tr");
  (r.columns || []).forEach((c, i) => head.append(el("th", { title: (r.types || [])[i] || "", text: c })));
  t.append(el("thead", {}, head));
  const body = el("tbody");
  for (const row of r.values || []) {
    const tr = el("tr");
    row.forEach((v, i) => tr.append(cell(v, (r.types || [])[i])));
    body.append(tr);
  }
  t.append(body);
  return t;
}

async function runQuery() {
  const text = $("#sql").value;
  const stmts = splitSql(text);
  const out = $("#results");
  out.replaceChildren();
  if (!stmts.length) { $("#query-status").textContent = "nothing to run"; return; }
  $("#query-status").textContent = "running\u2026";
  const level = $("#level").value;
  const started = performance.now();
  try {
    const resp = await apiJson("/db/request?timings&level=" + encodeURIComponent(level), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(stmts),
    });
    const ms = performance.now() - started;
    $("#query-status").textContent = stmts.length + " statement(s), server " + fmtSecs(resp.time || 0) +
      ", round trip " + fmtSecs(ms / 1000) + (resp.raft_index ? ", raft index " + resp.raft_index : "");
    if (resp.error) out.append(el("div", { class: "error", text: resp.error }));
    (resp.results || []).forEach((r, i) => {
      const box = el("div", { class: "result" });
      box.append(el("div", { class: "stmt" }, el("code", { text: stmts[i] || "" }),
        " ", el("span", { class: "muted small", text: r.time !== undefined ? fmtSecs(r.time) : "" })));
      if (r.error) box.append(el("div", { class: "error stmt-error", text: r.error }));
      else if (r.columns) {
        box.append(resultTable(r));
        box.append(el("div", { class: "muted small", text: (r.values || []).length + " row(s)" }));
      } else {
        box.append(el("div", { class: "muted", text: "rows affected: " + (r.rows_affected || 0) + ", last insert id: " + (r.last_insert_id || 0) }));
      }
      out.append(box);
    });
  } catch (e) {
    $("#query-status").textContent = "";
    out.append(el("div", { class: "error", text: e.message }));
  }
}

// ---------- schema ----------

const qid = (name) => '"' + name.replace(/"/g, '""') + '"';
const qstr = (s) => "'" + s.replace(/'/g, "''") + "'";

async function loadSchema() {
  const out = $("#schema");
  $("#schema-status").textContent = "loading\u2026";
  try {
    const master = await apiJson("/db/query?level=weak", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(["SELECT type, name, tbl_name, sql FROM sqlite_master " +
        "WHERE name NOT LIKE 'sqlite_%' AND name <> '_raftlite_state' ORDER BY tbl_name, type <> 'table', name"]),
    });
    const r0 = master.results[0];
    if (r0.error) throw new Error(r0.error);
    const objs = (r0.values || []).map(([type, name, tbl, sql]) => ({ type, name, tbl, sql }));
    const tables = objs.filter((o) => o.type === "table");
    const details = {};
    if (tables.length) {
      const stmts = [];
      for (const t of tables) {
        stmts.push("SELECT count(*) FROM " + qid(t.name));
        stmts.push("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(" + qstr(t.name) + ")");
      }
      const more = await apiJson("/db/query?level=weak", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(stmts),
      });
      tables.forEach((t, i) => {
        const c = more.results[2 * i], cols = more.results[2 * i + 1];
        details[t.name] = {
          count: c.error ? c.error : c.values[0][0],
          cols: cols.error ? [] : cols.values,
        };
      });
    }
    out.replaceChildren();
    if (!objs.length) out.append(el("p", { class: "muted", text: "The database is empty: no tables." }));
    for (const t of tables) {
      const card = el("div", { class: "card schema-table", "data-table": t.name });
      card.append(el("h3", {}, el("span", { text: t.name }), " ",
        el("span", { class: "muted small", text: details[t.name].count + " row(s)" })));
      const g = el("table", { class: "grid" });
      g.append(el("thead", {}, el("tr", {}, ...["Column", "Type", "Not null", "Default", "Primary key"].map((h) => el("th", { text: h })))));
      const b = el("tbody");
      for (const [name, type, notnull, dflt, pk] of details[t.name].cols) {
        b.append(el("tr", {}, el("td", { text: name }), el("td", { text: type || "" }),
          el("td", { text: notnull ? "yes" : "" }), el("td", { text: dflt === null ? "" : String(dflt) }), el("td", { text: pk ? String(pk) : "" })));
      }
      g.append(b);
      card.append(g);
      for (const o of objs.filter((o) => o.tbl === t.name && o.type !== "table")) {
        card.append(el("div", {}, el("strong", { text: o.type + " " }), el("span", { text: o.name })));
        if (o.sql) card.append(el("pre", { class: "sql", text: o.sql }));
      }
      out.append(card);
    }
    const views = objs.filter((o) => o.type === "view");
    for (const v of views) {
      const card = el("div", { class: "card" }, el("h3", { text: "view " + v.name }));
      if (v.sql) card.append(el("pre", { class: "sql", text: v.sql }));
      out.append(card);
    }
    $("#schema-status").textContent = tables.length + " table(s), " + views.length + " view(s); read " + new Date().toLocaleTimeString();
  } catch (e) {
    $("#schema-status").textContent = "";
    out.replaceChildren(el("div", { class: "error", text: e.message }));
  }
}

// ---------- backup ----------

async function startBackup() {
  const fmt = document.querySelector('input[name="fmt"]:checked').value;
  const job = {
    fmt,
    compress: $("#backup-gzip").checked,
    noleader: $("#backup-noleader").checked,
  };
  if (fmt === "sql" && $("#backup-tables").value.trim()) job.tables = $("#backup-tables").value.trim();
  const state = $("#backup-state");
  const bar = $("#backup-progress");
  bar.value = 0; bar.max = 1;
  for (const id of ["bytes", "total", "rate", "index", "file"]) $("#backup-" + id).textContent = "–";
  $("#backup-start").disabled = true;
  state.className = "muted";
  state.textContent = "starting\u2026";
  try {
    const created = await apiJson("/console/api/backup-jobs", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(job),
    });
    // The browser downloads it: the body goes straight to disk, never into this page.
    const a = el("a", { href: created.download, download: "" });
    document.body.append(a);
    a.click();
    a.remove();
    await followBackup(created.id);
  } catch (e) {
    state.className = "bad";
    state.textContent = e.message;
  } finally {
    $("#backup-start").disabled = false;
  }
}

async function followBackup(id) {
  const state = $("#backup-state"), bar = $("#backup-progress");
  for (let i = 0; i < 100000; i++) {
    const p = await apiJson("/console/api/backup-jobs/" + id);
    $("#backup-bytes").textContent = fmtBytes(p.bytes);
    $("#backup-total").textContent = p.total === null ? "unknown (streamed)" : fmtBytes(p.total);
    $("#backup-rate").textContent = fmtRate(p.rate);
    $("#backup-index").textContent = p.raft_index === null ? "–" : String(p.raft_index);
    $("#backup-file").textContent = p.filename || "–";
    if (p.total) { bar.max = p.total; bar.value = p.bytes; } else if (p.state === "streaming") bar.removeAttribute("value");
    if (p.state === "done") {
      bar.max = 1; bar.value = 1;
      state.className = "ok";
      state.textContent = "done: " + fmtBytes(p.bytes) + " at raft index " + p.raft_index;
      return;
    }
    if (p.state === "failed") {
      bar.max = 1; bar.value = 0;
      state.className = "bad";
      state.textContent = "failed: " + p.error;
      return;
    }
    state.className = "muted";
    state.textContent = p.state === "created" ? "waiting for the browser to start the download\u2026" : "downloading\u2026";
    await new Promise((r) => setTimeout(r, 300));
  }
}

// ---------- restore ----------

let stagedId = null;

function resetRestore() {
  for (const id of ["#restore-error", "#restore-report", "#restore-done"]) $(id).hidden = true;
  $("#restore-confirm").checked = false;
  $("#restore-install").disabled = true;
}

function uploadFile(file) {
  if (stagedId) discardStaged();
  resetRestore();
  $("#upload").hidden = false;
  $("#upload-name").textContent = file.name;
  const bar = $("#upload-progress"), text = $("#upload-text");
  bar.max = Math.max(file.size, 1); bar.value = 0;
  text.textContent = "uploading 0 of " + fmtBytes(file.size);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/console/api/restores");
  xhr.setRequestHeader("X-Raftlite-Console", "1");
  if (creds.header) xhr.setRequestHeader("Authorization", creds.header);
  xhr.setRequestHeader("Content-Type", "application/octet-stream");
  const t0 = performance.now();
  xhr.upload.onprogress = (e) => {
    bar.value = e.loaded;
    const secs = (performance.now() - t0) / 1000;
    text.textContent = "uploading " + fmtBytes(e.loaded) + " of " + fmtBytes(e.total) +
      (secs > 0 ? ", " + fmtRate(Math.round(e.loaded / secs)) : "");
  };
  xhr.upload.onload = () => { text.textContent = "uploaded; checking the file on the node\u2026"; };
  xhr.onerror = () => restoreError("the upload failed (connection lost)");
  xhr.onload = () => {
    if (xhr.status !== 201) {
      text.textContent = "";
      const err = new HttpError(xhr.status, xhr.responseText);
      showAuthBanner(err);
      restoreError("Refused: " + err.message);
      return;
    }
    bar.value = bar.max;
    text.textContent = "uploaded and checked";
    showReport(JSON.parse(xhr.responseText));
  };
  xhr.send(file);
}

function restoreError(msg) {
  const e = $("#restore-error");
  e.textContent = msg;
  e.hidden = false;
}

function showReport(staged) {
  stagedId = staged.id;
  const r = staged.report;
  $("#report-kind").textContent = r.kind === "sqlite" ? "SQLite database" : "SQL text";
  const coding = r.gzip ? "gzip" : r.zstd ? "zstd" : "";
  $("#report-kind").textContent += coding ? " (" + coding + ", " + fmtBytes(r.received) + " compressed)" : "";
  $("#report-size").textContent = fmtBytes(r.bytes);
  $("#report-pages").textContent = r.pages !== undefined ? r.pages + " \u00d7 " + r.page_size + " bytes" : "–";
  $("#report-tables").textContent = r.tables !== undefined ? String(r.tables) : "–";
  $("#report-expires").textContent = Math.round(staged.expires_in / 60) + " min, then discarded unless confirmed";
  if (r.kind === "sqlite") {
    $("#restore-warning").textContent = "Restoring REPLACES ALL current data of the cluster with this database.";
    $("#restore-confirm-text").textContent = "I understand that the current data will be replaced";
  } else {
    $("#restore-warning").textContent = "Restoring RUNS these SQL statements on the current data (adding to it), all or nothing.";
    $("#restore-confirm-text").textContent = "I understand that these statements will change the current data";
  }
  $("#restore-report").hidden = false;
}

async function installStaged() {
  if (!stagedId || !$("#restore-confirm").checked) return;
  const id = stagedId;
  $("#restore-install").disabled = true;
  try {
    const resp = await apiJson("/console/api/restores/" + id + "/install", { method: "POST" });
    stagedId = null;
    $("#restore-report").hidden = true;
    const err = (resp.results || []).find((r) => r.error);
    if (err) { restoreError("The restore ran and failed; nothing changed: " + err.error); return; }
    const done = $("#restore-done");
    done.textContent = "Restored " + fmtBytes(resp.load.bytes) + " (" + resp.load.kind + ") at raft index " + resp.raft_index + ".";
    done.hidden = false;
  } catch (e) {
    restoreError(e.message);
    $("#restore-install").disabled = false;
  }
}

async function discardStaged() {
  const id = stagedId;
  stagedId = null;
  resetRestore();
  $("#upload").hidden = true;
  if (id) { try { await api("/console/api/restores/" + id, { method: "DELETE" }); } catch (e) { /* expired */ } }
}

// ---------- cluster ----------

const clusterTimer = {
  handle: null,
  update(visible) {
    const want = visible && $("#cluster-auto").checked;
    if (want && !this.handle) this.handle = setInterval(loadCluster, 3000);
    if (!want && this.handle) { clearInterval(this.handle); this.handle = null; }
  },
};

async function loadCluster() {
  try {
    const [nodes, status, details] = await Promise.all([
      apiJson("/nodes?ver=2&nonvoters"), apiJson("/status"), apiJson("/console/api/cluster"),
    ]);
    const detail = Object.fromEntries((details.nodes || []).map((d) => [d.id, d]));
    const s = status.store || {}, raft = s.raft || {};
    const facts = [
      ["This node", s.node_id],
      ["State", raft.state],
      ["Leader", (s.leader && (s.leader.node_id || s.leader.addr)) || "none"],
      ["Applied index", raft.applied_index],
      ["Commit index", raft.commit_index],
      ["Last snapshot index", raft.last_snapshot_index],
      ["Database size", s.sqlite3 ? fmtBytes(s.sqlite3.db_size) : "–"],
      ["Last backup", s.last_backup_time || status.last_backup_time || "never (since start)"],
      ["Uptime", status.node ? status.node.uptime : "–"],
    ];
    $("#node-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v === undefined || v === null ? "–" : String(v) })]));
    const tb = $("#nodes tbody");
    tb.replaceChildren();
    for (const n of nodes.nodes || []) {
      const d = detail[n.id] || {};
      tb.append(el("tr", { "data-node": n.id },
        el("td", { text: n.id }),
        el("td", { class: n.leader ? "ok" : "", text: n.leader ? "leader" : (n.voter ? "follower" : "non-voter") }),
        el("td", { text: n.voter ? "yes" : "no" }),
        el("td", { class: n.reachable ? "ok" : "bad", text: n.reachable ? "yes" : "no" }),
        el("td", { class: "num", text: d.applied_index === undefined || d.applied_index === null ? "–" : String(d.applied_index) }),
        el("td", { text: d.last_backup_time || "never" }),
        el("td", { text: n.api_addr || "" }),
        el("td", { text: n.addr || "" }),
        el("td", { text: n.time ? fmtSecs(n.time) : (n.reachable ? "local" : "") }),
        el("td", { class: "bad", text: n.error || d.error || "" })));
    }
    $("#cluster-status").textContent = (nodes.nodes || []).length + " node(s); refreshed " + new Date().toLocaleTimeString();
    $("#node-badge").textContent = (s.node_id || "") + " \u00b7 " + (raft.state || "");
  } catch (e) {
    $("#cluster-status").textContent = e.message;
  }
}

// ---------- wiring ----------

function init() {
  applyTheme(localStorage.getItem("raftlite-theme") || "auto");
  $("#theme-toggle").addEventListener("click", () => {
    const cur = localStorage.getItem("raftlite-theme") || "auto";
    applyTheme(THEMES[(THEMES.indexOf(cur) + 1) % THEMES.length]);
  });
  for (const t of TABS) $("#tab-" + t).addEventListener("click", () => showTab(t));
  window.addEventListener("hashchange", () => showTab(location.hash.slice(1)));

  $("#creds-form").addEventListener("submit", (e) => {
    e.preventDefault();
    creds.set($("#creds-user").value, $("#creds-pass").value);
    $("#creds-summary").textContent = "Credentials: " + $("#creds-user").value;
    $("#creds").open = false;
    showAuthBanner(null);
  });
  $("#creds-clear").addEventListener("click", () => {
    creds.clear();
    $("#creds-summary").textContent = "Credentials";
  });

  $("#run").addEventListener("click", runQuery);
  $("#sql").addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter") { e.preventDefault(); runQuery(); }
  });

  $("#schema-refresh").addEventListener("click", loadSchema);
  onShow.schema = loadSchema;

  for (const r of document.querySelectorAll('input[name="fmt"]')) {
    r.addEventListener("change", () => {
      $("#backup-tables").disabled = document.querySelector('input[name="fmt"]:checked').value !== "sql";
    });
  }
  $("#backup-start").addEventListener("click", startBackup);

  const drop = $("#drop");
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const f = e.dataTransfer && e.dataTransfer.files[0];
    if (f) uploadFile(f);
  });
  $("#restore-file").addEventListener("change", (e) => {
    if (e.target.files[0]) uploadFile(e.target.files[0]);
    e.target.value = "";
  });
  $("#restore-confirm").addEventListener("change", (e) => { $("#restore-install").disabled = !e.target.checked; });
  $("#restore-install").addEventListener("click", installStaged);
  $("#restore-discard").addEventListener("click", discardStaged);
  window.addEventListener("pagehide", () => {
    // Leaving the page abandons the staged upload: free it now rather than at its expiry.
    if (stagedId) fetch("/console/api/restores/" + stagedId, { method: "DELETE", keepalive: true,
      headers: creds.header ? { Authorization: creds.header, "X-Raftlite-Console": "1" }
        : { "X-Raftlite-Console": "1" } });
  });

  $("#cluster-refresh").addEventListener("click", loadCluster);
  $("#cluster-auto").addEventListener("change", () => clusterTimer.update(!$("#panel-cluster").hidden));
  onShow.cluster = loadCluster;

  showTab(location.hash.slice(1) || "query");
  loadCluster(); // fills the node badge
}

document.addEventListener("DOMContentLoaded", init);
