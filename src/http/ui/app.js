// The jobs page: a domain's imports and exports, newest first, followed
// live through their Server-Sent Events. Everything shown comes from the
// /v1 API with the key the user pasted (kept in this tab's session
// storage), and is put into the page as text, never as markup.
"use strict";

const KEY = "ferry.apiKey";
const REFRESH_MS = 2000;
// A browser keeps about six connections per host; streams take at most
// this many, and the lists' refresh keeps the other jobs current.
const MAX_STREAMS = 3;
const ACTIVE = new Set(["PENDING", "RUNNING", "SCHEDULED", "IN_PROGRESS"]);
const DONE = new Set(["COMPLETED", "DONE"]);
const FAILED = new Set(["FAILED", "ERROR"]);

const $ = (id) => document.getElementById(id);
const streams = new Map(); // job id -> AbortController
let timer = null;

function key() {
  return sessionStorage.getItem(KEY);
}

function headers() {
  return { Authorization: `Bearer ${key()}` };
}

function notice(text, isError) {
  $("notice").textContent = text;
  $("notice").className = isError ? "error" : "";
}

async function api(path, init = {}) {
  const res = await fetch(path, { ...init, headers: { ...headers(), ...(init.headers || {}) } });
  if (res.status === 401) {
    forget();
    notice("That API key is not accepted.", true);
    throw new Error("unauthorized");
  }
  return res;
}

// PostgreSQL's `2026-12-01 03:35:22.64+00` as well as RFC 3339.
function parseTime(s) {
  if (!s) return null;
  const iso = s.replace(" ", "T").replace(/([+-]\d\d)$/, "$1:00");
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function bar(fraction, status) {
  const pct = Math.max(0, Math.min(1, fraction)) * 100;
  const cls = DONE.has(status) ? "bar done" : FAILED.has(status) ? "bar failed" : "bar";
  const fill = el("div");
  fill.style.width = `${pct.toFixed(1)}%`;
  const outer = el("div", { class: cls, role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": pct.toFixed(0) }, fill);
  return outer;
}

function link(url, text) {
  if (!url || !/^https?:\/\//.test(url)) return null;
  return el("a", { href: url, rel: "noopener", text });
}

function rate(rows, secs) {
  if (!secs || secs <= 0 || !rows) return "";
  return Math.round(rows / secs).toLocaleString();
}

function importRow(job) {
  const read = job.sourceRead;
  const fraction = DONE.has(job.status) ? 1 : read && read.bytesTotal ? read.bytesRead / read.bytesTotal : 0;
  const rows = job.rows;
  const counts = `${rows.loaded.toLocaleString()} loaded · ${rows.rejected.toLocaleString()} rejected`;
  // A multi-file job: how many files, once listed.
  const files = job.files ? ` · ${job.files.length} files` : "";
  return [
    el("td", { class: "num", text: new Date(parseTime(job.createdAt)).toLocaleString() }),
    el("td", {}, el("span", { text: `${job.kind} · ${job.groupId}${files}` }), el("span", { class: "id", text: job.id })),
    el("td", { class: `status ${job.status}`, text: job.status }),
    el("td", {}, bar(fraction, job.status)),
    el("td", { class: "num rate", text: rate(rows.read, job.durationSecs) }),
    el("td", { class: "num rows", text: `${rows.read.toLocaleString()} read`, title: counts }, el("span", { class: "id", text: counts })),
    el("td", { class: "reason", text: job.failureReason || "" }),
    el("td", { class: "path" }, link(job.rejectsPath, "rejects") || (job.rejectsPath || "")),
  ];
}

function exportRow(job) {
  const p = job.progress;
  const fraction = DONE.has(job.status) ? 1 : p.total ? p.rows / p.total : 0;
  const started = parseTime(job.started_at);
  const ended = parseTime(job.finished_at) || Date.now();
  const result = job.result;
  const file = result && (link(result.download_url, "download") || link(result.url, "download"));
  return [
    el("td", { class: "num", text: new Date(parseTime(job.created_at)).toLocaleString() }),
    el("td", {}, el("span", { text: `${job.exported_object} · ${job.parameters.format}` }), el("span", { class: "id", text: job.id })),
    el("td", { class: `status ${job.status}`, text: job.status }),
    el("td", {}, bar(fraction, job.status)),
    el("td", { class: "num rate", text: started ? rate(p.rows, (ended - started) / 1000) : "" }),
    el("td", { class: "num rows", text: `${p.rows.toLocaleString()} of ${p.total.toLocaleString()}` }),
    el("td", { class: "reason", text: job.error ? job.error.message : "" }),
    el("td", { class: "file" }, file || (result ? `${result.files.length} file(s)` : "")),
  ];
}

// Puts a job's row in its table: replaced in place when shown, else added
// in its place by creation time, newest first.
function show(table, job, render) {
  const body = $(table).tBodies[0];
  const cells = render(job);
  let row = body.querySelector(`tr[data-id="${CSS.escape(job.id)}"]`);
  if (row) {
    row.replaceChildren(...cells);
  } else {
    const created = parseTime(job.createdAt || job.created_at) || 0;
    row = el("tr", { "data-id": job.id, "data-created": String(created) });
    row.append(...cells);
    const after = [...body.rows].find((r) => Number(r.dataset.created) < created);
    body.insertBefore(row, after || null);
  }
  row.dataset.status = job.status;
  $(`${table}-empty`).hidden = body.rows.length > 0;
}

const KINDS = {
  imports: { table: "imports", render: importRow },
  exports: { table: "exports", render: exportRow },
};

// Follows one job's events (fetch, since EventSource cannot send a key).
async function follow(kind, id) {
  if (streams.has(id) || streams.size >= MAX_STREAMS) return;
  const abort = new AbortController();
  streams.set(id, abort);
  try {
    const res = await api(`/v1/${kind}/${id}/events`, { signal: abort.signal });
    if (!res.ok || !res.body) return;
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if ((event === "progress" || event === "end") && data.length) {
          const { table, render } = KINDS[kind];
          show(table, JSON.parse(data.join("\n")), render);
        }
      }
    }
  } catch (e) {
    if (e.name !== "AbortError" && e.message !== "unauthorized") notice(`Following ${id}: ${e.message}`, true);
  } finally {
    streams.delete(id);
  }
}

async function refresh() {
  try {
    const [imports, exports] = await Promise.all([api("/v1/imports?limit=50"), api("/v1/exports?limit=50")]);
    if (!imports.ok || !exports.ok) {
      notice(`The API answered ${imports.status}/${exports.status}; retrying.`, true);
      return;
    }
    for (const job of (await imports.json()).items) {
      show("imports", job, importRow);
      if (ACTIVE.has(job.status)) follow("imports", job.id);
    }
    for (const job of (await exports.json()).exports) {
      show("exports", job, exportRow);
      if (ACTIVE.has(job.status)) follow("exports", job.id);
    }
    for (const t of ["imports", "exports"]) $(`${t}-empty`).hidden = $(t).tBodies[0].rows.length > 0;
    notice("Live: running jobs update as they go.", false);
    await deadLetters();
  } catch (e) {
    if (e.message !== "unauthorized") notice(`Could not reach ferry: ${e.message}`, true);
  }
}

// `ferry_kafka_dlq_total{reason="…"} N` lines of /metrics.
async function deadLetters() {
  const res = await fetch("/metrics");
  if (!res.ok) return;
  const counts = [];
  for (const line of (await res.text()).split("\n")) {
    const m = /^ferry_kafka_dlq_total\{[^}]*reason="([^"]*)"[^}]*\} (\S+)$/.exec(line);
    if (m) counts.push([m[1], Number(m[2])]);
  }
  counts.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  $("dead-letters").tBodies[0].replaceChildren(
    ...counts.map(([reason, n]) => el("tr", {}, el("td", { text: reason }), el("td", { class: "num", text: n.toLocaleString() })))
  );
}

async function createExport(event) {
  event.preventDefault();
  $("export-error").textContent = "";
  const fields = $("export-fields").value.split(",").map((f) => f.trim()).filter(Boolean);
  const body = {
    exported_object: $("export-object").value.trim(),
    parameters: { format: $("export-format").value, ...(fields.length ? { fields } : {}) },
  };
  try {
    const res = await api("/v1/exports", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const answer = await res.json();
    if (res.status !== 202) {
      const allowed = answer.details && answer.details.allowed ? ` (allowed: ${answer.details.allowed.join(", ")})` : "";
      $("export-error").textContent = `${answer.error}${allowed}`;
      return;
    }
    show("exports", answer, exportRow);
    follow("exports", answer.id);
  } catch (e) {
    if (e.message !== "unauthorized") $("export-error").textContent = e.message;
  }
}

function start() {
  $("jobs").hidden = false;
  $("forget-key").hidden = false;
  $("key").value = "";
  $("key").placeholder = "key in use";
  refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

function forget() {
  sessionStorage.removeItem(KEY);
  clearInterval(timer);
  for (const abort of streams.values()) abort.abort();
  streams.clear();
  for (const t of ["imports", "exports"]) $(t).tBodies[0].replaceChildren();
  $("jobs").hidden = true;
  $("forget-key").hidden = true;
  $("key").placeholder = "fk_…";
  notice("Paste an API key to see its domain's jobs. The key stays in this tab's session storage.", false);
}

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("key").value.trim());
    start();
  });
  $("forget-key").addEventListener("click", forget);
  $("export-form").addEventListener("submit", createExport);
  if (key()) start();
});
