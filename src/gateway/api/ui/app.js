// The ww-sched dashboard: plain JavaScript, no framework, no build step.
// Data comes from the gateway's JSON API; changes come from GET /events,
// read with fetch() so the token goes in the Authorization header (an
// EventSource cannot send one) and never in a URL. Everything shown is set
// with textContent: task descriptions, errors and stdout are user data.
"use strict";

const TOKEN_KEY = "ww-sched-token";
const PAGE_SIZE = 20;
const RUNS_PAGE = 100;
const CLUSTER_REFRESH_MS = 10000;
const FINAL = new Set(["succeeded", "failed", "cancelled"]);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  // Cursors of the pages before the current one; "" is the first page.
  cursors: [""],
  lastId: "",
  detail: null, // id of the task shown in detail
  runsOffset: 0, // first run shown in detail
  pendingTasks: new Set(),
  flushTimer: null,
  streamAbort: null,
  reloadTimer: null,
};

const $ = (selector) => document.querySelector(selector);

/** An element with properties and children (strings become text nodes). */
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

function notice(text, isError) {
  const node = $("#notice");
  node.textContent = text;
  node.classList.toggle("error", Boolean(isError));
}

function time(ms) {
  if (ms === null || ms === undefined) return "";
  return new Date(ms).toLocaleString();
}

class Unauthorized extends Error {}

/** Fetches `path` with the token; asks for the token on 401. */
async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = Object.assign({}, opts.headers || {});
  if (state.token) opts.headers["Authorization"] = "Bearer " + state.token;
  const response = await fetch(path, opts);
  if (response.status === 401) {
    askToken();
    throw new Unauthorized("the API needs its token");
  }
  return response;
}

async function apiJson(path, options) {
  const response = await api(path, options);
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = { error: "bad_response", detail: text };
  }
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : response.statusText;
    throw new Error(response.status + " " + detail);
  }
  return body;
}

function askToken() {
  const dialog = $("#token-dialog");
  if (!dialog.open) {
    $("#token-input").value = "";
    dialog.showModal();
  }
}

function saveToken(event) {
  event.preventDefault();
  const token = $("#token-input").value.trim();
  if (!token) return;
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("#token-dialog").close();
  startStream();
}

// ---- pool and cluster ----

async function loadWorkers() {
  const rows = await apiJson("/workers");
  const body = $("#workers tbody");
  body.replaceChildren();
  let slots = 0;
  let busy = 0;
  for (const w of rows) {
    slots += w.slots;
    busy += w.in_flight;
    const load = w.slots ? Math.round((100 * w.in_flight) / w.slots) + "%" : "";
    const meter = el("meter", { min: 0, max: w.slots || 1, value: w.in_flight });
    body.append(
      el("tr", { className: "worker" },
        el("td", { className: "mono" }, w.worker),
        el("td", {}, w.slots),
        el("td", {}, w.in_flight),
        el("td", {}, meter, " ", load),
        el("td", {}, time(w.joined_ms))));
  }
  const plural = rows.length === 1 ? "" : "s";
  $("#pool-summary").textContent = `${rows.length} worker${plural}, ${busy}/${slots} slots busy`;
}

async function loadCluster() {
  const rows = await apiJson("/cluster");
  const body = $("#cluster tbody");
  body.replaceChildren();
  for (const r of rows) {
    body.append(
      el("tr", {},
        el("td", { className: "mono" }, r.peer),
        el("td", {}, r.host),
        el("td", {}, (r.meta && r.meta.role) || ""),
        el("td", {}, Math.round(r.expires_in_ms / 1000) + " s")));
  }
  const peers = rows.length === 1 ? "1 peer" : `${rows.length} peers`;
  $("#cluster-summary").textContent = rows.length ? peers : "(no membership view)";
}

// ---- tasks ----

function taskRow(t) {
  const cancel = el("button", { type: "button", className: "cancel", textContent: "cancel" });
  cancel.dataset.id = t.id;
  cancel.hidden = FINAL.has(t.status);
  cancel.addEventListener("click", (e) => {
    e.stopPropagation();
    cancelTask(t.id);
  });
  const row = el("tr", { className: "task" },
    el("td", { className: "mono id" }, t.id),
    el("td", {}, t.description),
    el("td", { className: "status " + t.status }, t.status),
    el("td", {}, t.completions),
    el("td", {}, t.repeats),
    el("td", {}, cancel));
  row.dataset.id = t.id;
  row.addEventListener("click", () => showDetail(t.id));
  return row;
}

function findRow(id) {
  for (const row of document.querySelectorAll("#tasks tbody tr")) {
    if (row.dataset.id === id) return row;
  }
  return null;
}

async function loadTasks() {
  const status = $("#status-filter").value;
  const after = state.cursors[state.cursors.length - 1];
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (status) query.set("status", status);
  if (after) query.set("after", after);
  const rows = await apiJson("/tasks?" + query);
  const body = $("#tasks tbody");
  body.replaceChildren(...rows.map(taskRow));
  state.lastId = rows.length ? rows[rows.length - 1].id : "";
  $("#page-next").disabled = rows.length < PAGE_SIZE;
  $("#page-first").disabled = state.cursors.length === 1;
  $("#page-prev").disabled = state.cursors.length === 1;
  $("#page-info").textContent = `page ${state.cursors.length}`;
}

/** Refetches the tasks an event named, coalesced over a short while. */
function taskChanged(id) {
  state.pendingTasks.add(id);
  if (state.flushTimer) return;
  state.flushTimer = setTimeout(flushTasks, 50);
}

async function flushTasks() {
  state.flushTimer = null;
  const ids = [...state.pendingTasks];
  state.pendingTasks.clear();
  for (const id of ids) {
    try {
      await refreshTask(id);
    } catch (e) {
      if (!(e instanceof Unauthorized)) notice(String(e.message || e), true);
    }
  }
}

async function refreshTask(id) {
  const filter = $("#status-filter").value;
  const row = findRow(id);
  if (!row) {
    // A new task (or one entering the filter) shows on the first page.
    if (state.cursors.length === 1) scheduleReload();
  } else {
    const task = await apiJson("/tasks/" + encodeURIComponent(id) + "?runs_limit=1");
    if (filter && task.status !== filter) {
      row.remove();
    } else {
      row.replaceWith(taskRow(task));
    }
  }
  if (state.detail === id) await loadDetail();
}

function scheduleReload() {
  if (state.reloadTimer) return;
  state.reloadTimer = setTimeout(() => {
    state.reloadTimer = null;
    loadTasks().catch(report);
  }, 100);
}

async function cancelTask(id) {
  try {
    const task = await apiJson("/tasks/" + encodeURIComponent(id), { method: "DELETE" });
    notice(`task ${id} is ${task.status}`);
    taskChanged(id);
  } catch (e) {
    report(e);
  }
}

// ---- one task ----

async function showDetail(id) {
  state.detail = id;
  state.runsOffset = 0;
  $("#stdout").hidden = true;
  await loadDetail().catch(report);
}

async function loadDetail() {
  const id = state.detail;
  if (!id) return;
  const query = `?runs_offset=${state.runsOffset}&runs_limit=${RUNS_PAGE}`;
  const task = await apiJson("/tasks/" + encodeURIComponent(id) + query);
  if (state.detail !== id) return;
  const shownRuns = (task.runs || []).length;
  $("#runs-info").textContent = shownRuns
    ? `runs ${state.runsOffset}-${state.runsOffset + shownRuns - 1} of ${task.runs_total}`
    : `${task.runs_total} runs`;
  $("#runs-prev").disabled = state.runsOffset === 0;
  $("#runs-next").disabled = state.runsOffset + RUNS_PAGE >= task.runs_total;
  $("#detail-section").hidden = false;
  $("#detail-id").textContent = task.id;
  const status = $("#detail-status");
  status.textContent = task.status;
  status.className = "status " + task.status;
  $("#detail-cancel").hidden = FINAL.has(task.status);
  const fields = $("#detail-fields");
  fields.replaceChildren();
  const shown = [
    ["description", task.description],
    ["module", task.module],
    ["export", task.export],
    ["args", JSON.stringify(task.args)],
    ["repeats", task.repeats],
    ["runs", task.runs_total],
    ["completions", task.completions],
    ["submitted", time(task.submitted_ms)],
    ["finished", time(task.finished_ms)],
  ];
  for (const [name, value] of shown) {
    fields.append(el("dt", {}, name), el("dd", {}, value));
  }
  const body = $("#runs tbody");
  body.replaceChildren();
  for (const run of task.runs || []) {
    const out = el("button", { type: "button", textContent: `${run.stdout_bytes} B` });
    out.disabled = !run.stdout_bytes;
    out.addEventListener("click", () => showStdout(task.id, run.index));
    const row = el("tr", { className: "run" },
      el("td", {}, run.index),
      el("td", { className: "status " + run.status }, run.status),
      el("td", {}, run.attempt),
      el("td", { className: "mono" }, run.worker || ""),
      el("td", {}, time(run.scheduled_ms)),
      el("td", {}, time(run.started_ms)),
      el("td", {}, time(run.finished_ms)),
      el("td", {}, (run.results || []).join(", ")),
      el("td", { className: "error" }, run.error_kind ? `${run.error_kind}: ${run.error || ""}` : ""),
      el("td", {}, out));
    row.dataset.index = String(run.index);
    body.append(row);
  }
}

async function showStdout(id, index) {
  try {
    const response = await api(`/tasks/${encodeURIComponent(id)}/runs/${index}/stdout`);
    const text = await response.text();
    const pre = $("#stdout");
    pre.textContent = response.ok ? text : `${response.status}: ${text}`;
    pre.hidden = false;
  } catch (e) {
    report(e);
  }
}

// ---- submit ----

function base64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

async function submitTask(event) {
  event.preventDefault();
  const number = (sel) => Number($(sel).value || 0);
  const body = {
    description: $("#description").value,
    export: $("#export").value || "run",
    args: $("#args").value.split(/[\s,]+/).filter(Boolean).map(Number),
    repeats: number("#repeats") || 1,
    start_ms: number("#start") * 1000,
    delay_ms: number("#delay") * 1000,
    duration_ms: (number("#duration") || 30) * 1000,
  };
  if (body.args.some((n) => !Number.isInteger(n))) {
    notice("args must be integers", true);
    return;
  }
  const id = $("#task-id").value.trim();
  if (id) body.id = id;
  const file = $("#wasm").files[0];
  const hash = $("#module-hash").value.trim();
  if (file) {
    body.wasm_base64 = base64(new Uint8Array(await file.arrayBuffer()));
  } else if (hash) {
    body.module = hash;
  } else {
    notice("choose a module file or give a module hash", true);
    return;
  }
  $("#submit-button").disabled = true;
  try {
    const task = await apiJson("/tasks", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    notice(`task ${task.id} submitted`);
    $("#task-id").value = "";
    await showDetail(task.id);
    taskChanged(task.id);
  } catch (e) {
    report(e);
  } finally {
    $("#submit-button").disabled = false;
  }
}

// ---- live events ----

function setLive(on, text) {
  const node = $("#live");
  node.textContent = text;
  node.classList.toggle("on", on);
  node.classList.toggle("off", !on);
}

function handleEvent(event) {
  switch (event.type) {
    case "hello":
    case "resync":
      // Subscribed (again), or fell behind: whatever is shown may be stale.
      reloadAll();
      break;
    case "task":
      taskChanged(event.id);
      break;
    case "run":
      taskChanged(event.task);
      break;
    case "worker_joined":
    case "worker_left":
      loadWorkers().catch(report);
      loadCluster().catch(report);
      break;
  }
}

/** Reads `text/event-stream` from a fetch() body: `data:` lines, blank line ends an event. */
async function readStream(response, signal) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let data = [];
  while (!signal.aborted) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).replace(/\r$/, "");
      buffer = buffer.slice(newline + 1);
      if (line === "") {
        if (data.length) {
          try {
            handleEvent(JSON.parse(data.join("\n")));
          } catch (e) {
            console.warn("bad event", e);
          }
        }
        data = [];
      } else if (line.startsWith("data:")) {
        data.push(line.slice(5).replace(/^ /, ""));
      }
      // Comments (keep-alives) and other fields are ignored.
    }
  }
}

async function startStream() {
  if (state.streamAbort) state.streamAbort.abort();
  const controller = new AbortController();
  state.streamAbort = controller;
  setLive(false, "connecting");
  try {
    const response = await api("/events", {
      signal: controller.signal,
      headers: { Accept: "text/event-stream" },
    });
    if (!response.ok) throw new Error(`/events answered ${response.status}`);
    setLive(true, "live");
    await readStream(response, controller.signal);
    if (!controller.signal.aborted) throw new Error("the event stream ended");
  } catch (e) {
    if (controller.signal.aborted) return;
    if (e instanceof Unauthorized) {
      setLive(false, "token needed");
      return;
    }
    setLive(false, "reconnecting");
    notice(String(e.message || e), true);
    setTimeout(() => {
      if (state.streamAbort === controller) startStream();
    }, 2000);
  }
}

function report(e) {
  if (e instanceof Unauthorized) return;
  notice(String((e && e.message) || e), true);
}

function reloadAll() {
  loadWorkers().catch(report);
  loadCluster().catch(report);
  loadTasks().catch(report);
  if (state.detail) loadDetail().catch(report);
}

function init() {
  $("#token-form").addEventListener("submit", saveToken);
  $("#submit-form").addEventListener("submit", submitTask);
  $("#status-filter").addEventListener("change", () => {
    state.cursors = [""];
    loadTasks().catch(report);
  });
  $("#page-first").addEventListener("click", () => {
    state.cursors = [""];
    loadTasks().catch(report);
  });
  $("#page-prev").addEventListener("click", () => {
    if (state.cursors.length > 1) state.cursors.pop();
    loadTasks().catch(report);
  });
  $("#page-next").addEventListener("click", () => {
    if (!state.lastId) return;
    state.cursors.push(state.lastId);
    loadTasks().catch(report);
  });
  $("#detail-cancel").addEventListener("click", () => {
    if (state.detail) cancelTask(state.detail);
  });
  $("#runs-prev").addEventListener("click", () => {
    state.runsOffset = Math.max(0, state.runsOffset - RUNS_PAGE);
    loadDetail().catch(report);
  });
  $("#runs-next").addEventListener("click", () => {
    state.runsOffset += RUNS_PAGE;
    loadDetail().catch(report);
  });
  $("#detail-close").addEventListener("click", () => {
    state.detail = null;
    $("#detail-section").hidden = true;
  });
  // The stream's first event (hello) loads everything.
  startStream();
  // The membership view changes without events (heartbeats): refresh it,
  // and only it, now and then.
  setInterval(() => {
    if (state.token || !$("#token-dialog").open) loadCluster().catch(report);
  }, CLUSTER_REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", init);
