// bulkkm's web page: one module, no framework, no build step.
//
// The token is asked once and kept in sessionStorage (gone when the tab closes). Every call
// sends it as `Authorization: Bearer`; the event stream is read with fetch() and a
// ReadableStream, since EventSource cannot send that header and the service refuses tokens
// in query strings. The live grid draws only the rows in view on a canvas, so a run of
// 10,000 clusters costs the page about forty rows of drawing per frame.

const API = "/api/v1";
const KEY = "bulkkm.token";
const OUTCOMES = [
  "added", "present", "would_add", "removed", "absent", "would_remove",
  "blocked", "failed", "skipped", "cancelled",
];
const BAD = new Set(["failed", "blocked"]);
const COLOURS = {
  added: "#1a7f37", present: "#6fbf73", would_add: "#d4a72c", removed: "#0969da",
  absent: "#8fb8ed", would_remove: "#bf8700", blocked: "#e16f24", failed: "#cf222e",
  skipped: "#8c959f", cancelled: "#b1bac4", unreached: "#82071e",
};
const ROW = 22;
const NAME_WIDTH = 190;
const CELL = 88;
const TERMINAL = new Set([
  "succeeded", "failed", "stopped", "cancelled", "discarded", "expired", "interrupted",
]);

const main = document.getElementById("main");
let leave = () => {}; // stops the current screen's streams and timers

// --- small helpers ---------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function when(iso) {
  if (!iso) return "—";
  const t = h("time", { datetime: iso, title: iso }, new Date(iso).toLocaleString());
  return t;
}

function stateBadge(state) {
  return h("span", { class: `state s-${state}` }, state.replace("_", " "));
}

function say(message) {
  const box = document.getElementById("status");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(say.timer);
  say.timer = setTimeout(() => { box.hidden = true; }, 5000);
}

function token() { return sessionStorage.getItem(KEY); }

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.problems = (body && body.problems) || [];
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(API + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    login("The token was refused (not valid, or revoked). Enter it again.");
    throw new ApiError(401, null);
  }
  const parsed = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

function failure(error) {
  if (error.status === 401) return;
  const extra = error.problems.length ? `: ${error.problems.slice(0, 3).join("; ")}` : "";
  say(`${error.message}${extra}`);
}

// Server-sent events over fetch(): calls onBatch with each chunk's messages, reconnects with
// Last-Event-ID after a dropped connection, resolves at the stream's `end` (or a 204).
async function streamEvents(runId, onBatch, signal) {
  let last = 0;
  while (!signal.aborted) {
    let response;
    try {
      response = await fetch(`${API}/runs/${encodeURIComponent(runId)}/events`, {
        headers: { Authorization: `Bearer ${token()}`, "Last-Event-ID": String(last) },
        signal,
      });
    } catch (error) {
      if (signal.aborted) return;
      await new Promise((r) => setTimeout(r, 1000));
      continue;
    }
    if (response.status === 204) return;
    if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        const batch = [];
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const message = { event: "message", data: "" };
          for (const line of buffer.slice(0, cut).split("\n")) {
            if (line.startsWith(":")) continue;
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "data") message.data += text;
            else if (field === "id") message.id = Number(text);
            else if (field === "event") message.event = text;
          }
          buffer = buffer.slice(cut + 2);
          if (!message.data) continue;
          if (message.id) last = message.id;
          message.data = JSON.parse(message.data);
          batch.push(message);
        }
        if (batch.length) onBatch(batch);
        if (batch.some((m) => m.event === "end")) return;
      }
    } catch (error) {
      if (signal.aborted) return;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

// --- screens ---------------------------------------------------------------------------

function show(...children) {
  main.replaceChildren(...children);
  main.focus({ preventScroll: true });
}

function login(message) {
  leave();
  document.getElementById("nav").hidden = true;
  const input = h("input", {
    type: "password", id: "token", name: "token", autocomplete: "off", required: true,
    "aria-describedby": "token-help",
  });
  const error = h("p", { class: "error", role: "alert" }, message || "");
  const form = h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY, input.value.trim());
      try {
        await api("/runs?limit=1");
      } catch (e) {
        if (e.status !== 401) { error.textContent = e.message; }
        return;
      }
      route();
    },
  },
  h("label", { for: "token" }, "API token"), input,
  h("p", { id: "token-help", class: "meta" },
    "Made with `bulkkm token create`. Kept in this tab only, until it closes."),
  h("button", { type: "submit", class: "primary" }, "Sign in"), error);
  document.title = "Sign in · bulkkm";
  show(h("section", { class: "login" }, h("h1", {}, "Sign in to bulkkm"), form));
  input.focus();
}

async function runsScreen() {
  document.title = "Runs · bulkkm";
  const [{ runs }, { inventories }] = await Promise.all([
    api("/runs?limit=200"), api("/inventories"),
  ]);
  const inventory = h("select", { id: "inventory", name: "inventory" },
    inventories.map((i) => h("option", { value: i.name, disabled: !i.valid },
      i.valid ? `${i.name} (${i.clusters} clusters)` : `${i.name} (invalid)`)));
  const command = h("select", { id: "command", name: "command" },
    ["plan", "check", "apply", "migrate"].map((c) => h("option", { value: c }, c)));
  const dryRun = h("input", { type: "checkbox", id: "dry_run" });
  const form = h("form", {
    class: "inline", "aria-label": "Start a run",
    onsubmit: async (event) => {
      event.preventDefault();
      const options = dryRun.checked ? { dry_run: true } : {};
      try {
        const run = await api("/runs", {
          method: "POST",
          body: { inventory: inventory.value, command: command.value, options },
        });
        location.hash = `#/runs/${run.id}`;
      } catch (e) { failure(e); }
    },
  },
  h("label", { for: "inventory" }, "Inventory", inventory),
  h("label", { for: "command" }, "Command", command),
  h("label", { class: "check", for: "dry_run" }, dryRun, " dry run"),
  h("button", { type: "submit", class: "primary" }, "Start"));
  const rows = runs.map((r) => h("tr", {},
    h("td", {}, h("a", { href: `#/runs/${r.id}` }, r.id.slice(0, 8))),
    h("td", {}, stateBadge(r.state)),
    h("td", {}, r.command), h("td", {}, r.inventory),
    h("td", { class: "num" }, r.clusters),
    h("td", {}, [...Object.entries(r.counts).map(([k, v]) => `${k} ${v}`),
      ...(r.clusters_failed ? [`${r.clusters_failed} cluster(s) unreachable`] : [])].join(", ") || "—"),
    h("td", {}, r.created_by), h("td", {}, when(r.created_at))));
  show(
    h("h1", {}, "Runs"),
    h("h2", {}, "Start a run"), form,
    h("p", { class: "meta" },
      "An apply or a migrate plans first and waits for an approval of exactly that plan."),
    h("h2", {}, "Latest runs"),
    runs.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["Run", "State", "Command", "Inventory", "Clusters",
        "Outcomes", "By", "Created"].map((t, i) => h("th", { scope: "col", class: i === 4 ? "num" : null }, t)))),
      h("tbody", {}, rows)) : h("p", {}, "No runs yet."));
}

// The live view's model: per cluster, outcome counts and errors, fed by events.
class Fleet {
  constructor() {
    this.names = []; this.index = new Map(); this.rows = [];
    this.reset();
  }
  // A new phase (an apply's execution after its plan) starts its counts again; the clusters
  // keep their places in the grid.
  reset() {
    for (const row of this.rows) Object.assign(row, { counts: {}, errors: [], unreached: null, bad: false });
    this.totals = {}; this.unreached = 0; this.finished = null;
  }
  row(name) {
    let i = this.index.get(name);
    if (i === undefined) {
      i = this.names.length;
      this.index.set(name, i);
      this.names.push(name);
      this.rows.push({ name, counts: {}, errors: [], unreached: null, bad: false });
    }
    return this.rows[i];
  }
  apply(event) {
    switch (event.type) {
      case "run_started": this.reset(); break;
      case "cluster_discovered": this.row(event.cluster); break;
      case "target_result": {
        const row = this.row(event.cluster);
        row.counts[event.outcome] = (row.counts[event.outcome] || 0) + 1;
        this.totals[event.outcome] = (this.totals[event.outcome] || 0) + 1;
        if (BAD.has(event.outcome)) row.bad = true;
        if (event.error || event.reason) {
          row.errors.push({
            where: `${event.svm || "cluster"} · ${event.server}`, outcome: event.outcome,
            message: event.error ? event.error.message : event.reason,
            code: event.error ? event.error.code : null,
          });
        }
        break;
      }
      case "cluster_result": {
        const row = this.row(event.cluster);
        if (event.outcome === "failed") { row.bad = true; this.unreached += 1; }
        row.unreached = event.outcome;
        if (event.error || event.reason) {
          row.errors.push({
            where: "cluster", outcome: event.outcome,
            message: event.error ? event.error.message : event.reason,
            code: event.error ? event.error.code : null,
          });
        }
        break;
      }
      case "run_finished": this.finished = event; break;
      default: break;
    }
  }
}

function drawGrid(canvas, wrap, fleet, rows, selected) {
  const ratio = window.devicePixelRatio || 1;
  const width = wrap.clientWidth;
  const height = wrap.clientHeight;
  if (canvas.width !== width * ratio || canvas.height !== height * ratio) {
    canvas.width = width * ratio; canvas.height = height * ratio;
    canvas.style.width = `${width}px`; canvas.style.height = `${height}px`;
  }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  g.font = "12px system-ui, sans-serif";
  g.textBaseline = "middle";
  const columns = [...OUTCOMES, "unreached"];
  // header
  g.fillStyle = "#f6f8fa"; g.fillRect(0, 0, width, ROW);
  g.fillStyle = "#1b1f24";
  g.fillText(`cluster (${rows.length})`, 8, ROW / 2);
  columns.forEach((c, i) => g.fillText(c.replace("_", " "), NAME_WIDTH + i * CELL + 4, ROW / 2));
  const first = Math.floor(wrap.scrollTop / ROW);
  const visible = Math.ceil(height / ROW);
  for (let n = 0; n < visible; n += 1) {
    const index = first + n;
    if (index >= rows.length) break;
    const row = fleet.rows[rows[index]];
    const y = ROW * (n + 1);
    if (row.name === selected) { g.fillStyle = "#ddf4ff"; g.fillRect(0, y, width, ROW); }
    g.fillStyle = row.bad ? "#cf222e" : "#1b1f24";
    g.fillText(row.name, 8, y + ROW / 2, NAME_WIDTH - 12);
    columns.forEach((c, i) => {
      const count = c === "unreached" ? (row.unreached === "failed" ? 1 : 0) : row.counts[c] || 0;
      const x = NAME_WIDTH + i * CELL;
      if (count) {
        g.fillStyle = COLOURS[c]; g.fillRect(x + 2, y + 3, CELL - 4, ROW - 6);
        g.fillStyle = "#fff"; g.fillText(c === "unreached" ? "✗" : String(count), x + 8, y + ROW / 2);
      } else {
        g.fillStyle = "#eaeef2"; g.fillRect(x + 2, y + 3, CELL - 4, ROW - 6);
      }
    });
  }
}

async function runScreen(id) {
  document.title = "Run · bulkkm";
  let run = await api(`/runs/${encodeURIComponent(id)}`);
  const fleet = new Fleet();
  const controller = new AbortController();
  let failedOnly = false;
  let selected = null;
  let order = [];
  let dirty = true;

  const heading = h("h1", {});
  const meta = h("p", { class: "meta" });
  const counts = h("ul", { class: "counts", "aria-label": "Outcomes so far" });
  const approval = h("div");
  const actions = h("div", { class: "row" });
  const spacer = h("div");
  const canvas = h("canvas", {
    tabindex: 0, role: "img",
    "aria-label": "Clusters by outcome; the list of clusters with errors below says the same",
  });
  const wrap = h("div", { class: "grid-wrap", id: "grid" }, canvas, spacer);
  const filter = h("input", {
    type: "checkbox", id: "failed-only",
    onchange: () => { failedOnly = filter.checked; dirty = true; wrap.scrollTop = 0; },
  });
  const errorsTitle = h("h2", { id: "errors-title" }, "Errors");
  const errorsBox = h("div", { "aria-labelledby": "errors-title" });
  const problems = h("ul", { class: "errors", "aria-label": "Clusters with errors" });

  function select(name) { selected = name; dirty = true; showErrors(); }

  function showErrors() {
    if (!selected) { errorsBox.replaceChildren(h("p", { class: "meta" }, "Select a cluster in the grid, or below.")); return; }
    const row = fleet.rows[fleet.index.get(selected)];
    const list = row && row.errors.length
      ? h("ul", { class: "errors" }, row.errors.slice(0, 200).map((e) => h("li", {},
        h("b", {}, e.outcome), ` ${e.where}: ${e.message}`, e.code ? ` (code ${e.code})` : "")))
      : h("p", {}, "No errors.");
    errorsBox.replaceChildren(h("h3", {}, selected), list);
  }

  canvas.addEventListener("click", (event) => {
    const rect = canvas.getBoundingClientRect();
    const n = Math.floor((event.clientY - rect.top) / ROW) - 1;
    const index = Math.floor(wrap.scrollTop / ROW) + n;
    if (n >= 0 && index < order.length) select(fleet.rows[order[index]].name);
  });
  canvas.addEventListener("keydown", (event) => {
    if (!["ArrowDown", "ArrowUp"].includes(event.key) || !order.length) return;
    event.preventDefault();
    const at = order.findIndex((i) => fleet.rows[i].name === selected);
    const next = Math.max(0, Math.min(order.length - 1, at + (event.key === "ArrowDown" ? 1 : -1)));
    select(fleet.rows[order[next]].name);
    const top = next * ROW;
    if (top < wrap.scrollTop || top > wrap.scrollTop + wrap.clientHeight - 2 * ROW) wrap.scrollTop = top;
  });
  wrap.addEventListener("scroll", () => { dirty = true; });

  function render() {
    heading.replaceChildren(`${run.command} on ${run.inventory} `, stateBadge(run.state));
    meta.replaceChildren(`Run ${run.id} · started by ${run.created_by}`,
      run.approved_by ? ` · approved by ${run.approved_by}` : "",
      " · created ", when(run.created_at),
      run.finished_at ? " · finished " : "", run.finished_at ? when(run.finished_at) : "",
      run.message ? ` · ${run.message}` : "");
    actions.replaceChildren(...[
      ["queued", "planning", "running"].includes(run.state)
        ? h("button", { type: "button", class: "danger", onclick: () => act("cancel") }, "Cancel run") : null,
      ["failed", "stopped", "cancelled", "interrupted"].includes(run.state)
        ? h("button", { type: "button", onclick: () => act("retry") }, "Retry what is left") : null,
      h("a", { href: `${API}/runs/${run.id}/report`, onclick: download }, "Download report"),
    ].filter(Boolean));
    approval.replaceChildren(run.state === "awaiting_approval" ? approveBox(run) : "");
  }

  async function download(event) {
    event.preventDefault();
    try {
      const response = await fetch(`${API}/runs/${run.id}/report`, { headers: { Authorization: `Bearer ${token()}` } });
      if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
      const url = URL.createObjectURL(await response.blob());
      const a = h("a", { href: url, download: `bulkkm-${run.id}.jsonl` });
      document.body.append(a); a.click(); a.remove(); URL.revokeObjectURL(url);
    } catch (e) { failure(e); }
  }

  async function act(what, body) {
    try {
      const answer = await api(`/runs/${run.id}/${what}`, { method: "POST", body });
      if (what === "retry") { location.hash = `#/runs/${answer.id}`; return; }
      say(`${what}: the run is ${answer.state.replace("_", " ")}`);
      await refresh();
      if (what === "approve") follow();
    } catch (e) { failure(e); }
  }

  function approveBox(current) {
    const plan = current.plan || { clusters: [] };
    const changes = [];
    for (const cluster of plan.clusters) {
      for (const km of cluster.key_managers) {
        const add = km.add || [];
        const remove = km.remove || [];
        if (add.length || remove.length || (km.blocked || []).length) changes.push([cluster.name, km, add, remove]);
      }
    }
    const shown = changes.slice(0, 500);
    const changing = changes.filter(([, , add, remove]) => add.length || remove.length);
    const blocked = changes.filter(([, km]) => (km.blocked || []).length).length;
    // Clusters the plan could not discover are in no row: an approval leaves them untouched,
    // and the board must know before it approves (the run then ends failed).
    const missing = plan.not_discovered || [];
    const comment = h("input", { type: "text", id: "comment", maxlength: 2000, placeholder: "change ticket, reason" });
    return h("section", { class: "panel approve", "aria-labelledby": "approve-title" },
      h("h2", { id: "approve-title" }, "Approve this plan"),
      h("p", {}, `${changing.length} key managers change on ${new Set(changing.map((c) => c[0])).size} clusters. `,
        "Approving executes exactly this plan; a key manager that changed since is skipped."),
      missing.length || blocked ? h("p", { class: "error", id: "plan-incomplete" },
        "This plan is incomplete: ",
        [missing.length ? `${missing.length} cluster(s) could not be discovered (${missing.slice(0, 10).join(", ")}${missing.length > 10 ? ", …" : ""})` : "",
          blocked ? `${blocked} key manager(s) have blocked targets` : ""].filter(Boolean).join("; "),
        ". Approving leaves them untouched, and the run ends failed.") : "",
      h("p", {}, "Plan hash (sha256): ", h("code", { class: "hash", id: "plan-hash" }, current.plan_hash)),
      h("p", { class: "meta" }, "Expires ", when(current.plan_expires_at)),
      h("div", { class: "row" },
        h("label", { for: "comment" }, "Comment", comment),
        h("button", { type: "button", class: "primary", id: "approve",
          onclick: () => act("approve", { plan_hash: current.plan_hash, comment: comment.value || undefined }) }, "Approve"),
        h("button", { type: "button", class: "danger", id: "discard", onclick: () => act("discard") }, "Discard")),
      h("div", { class: "plan-box", tabindex: 0, role: "region", "aria-label": "The plan, per key manager" }, h("table", { id: "plan-table" },
        h("thead", {}, h("tr", {}, ["Cluster", "SVM", "Additions", "Removals", "Blocked"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, shown.map(([name, km, add, remove]) => h("tr", {},
          h("td", {}, name), h("td", {}, km.svm || "(cluster)"),
          h("td", { class: "mono" }, add.join(", ") || "—"),
          h("td", { class: "mono" }, remove.join(", ") || "—"),
          h("td", {}, (km.blocked || []).map(([s, why]) => `${s}: ${why}`).join("; ") || "—")))))),
      changes.length > shown.length ? h("p", { class: "meta" }, `… and ${changes.length - shown.length} more (GET ${API}/runs/${current.id}/plan has them all).`) : "");
  }

  async function refresh() {
    run = await api(`/runs/${encodeURIComponent(id)}`);
    render();
  }

  function frame() {
    if (controller.signal.aborted) return;
    if (dirty) {
      dirty = false;
      order = [];
      fleet.rows.forEach((row, i) => { if (!failedOnly || row.bad) order.push(i); });
      spacer.style.height = `${(order.length + 1) * ROW}px`;
      canvas.style.marginBottom = `-${wrap.clientHeight}px`;
      drawGrid(canvas, wrap, fleet, order, selected);
      counts.replaceChildren(
        ...OUTCOMES.filter((o) => fleet.totals[o]).map((o) => h("li", {}, `${o.replace("_", " ")} `, h("b", {}, fleet.totals[o]))),
        fleet.unreached ? h("li", {}, "clusters unreachable ", h("b", {}, fleet.unreached)) : "",
        h("li", {}, "clusters ", h("b", {}, fleet.rows.length)));
      const bad = fleet.rows.filter((r) => r.errors.length);
      problems.replaceChildren(...bad.slice(0, 100).map((r) => h("li", {},
        h("button", { type: "button", class: "link", onclick: () => select(r.name) }, r.name),
        ` ${r.errors.length} error${r.errors.length > 1 ? "s" : ""}: ${r.errors[0].message}`)));
      if (bad.length > 100) problems.append(h("li", {}, `… and ${bad.length - 100} more: tick “failed only” and use the grid.`));
      if (selected) showErrors();
    }
    requestAnimationFrame(frame);
  }

  let following = false;
  async function follow() {
    if (following) return;
    following = true;
    try {
      await streamEvents(id, (batch) => {
        for (const message of batch) if (message.event !== "end") fleet.apply(message.data);
        dirty = true;
        if (batch.some((m) => m.event === "end" || m.data.type === "run_finished")) refresh().catch(failure);
      }, controller.signal);
    } catch (e) { failure(e); }
    following = false;
    await refresh().catch(failure);
  }

  const poll = setInterval(() => { if (!TERMINAL.has(run.state)) refresh().catch(() => {}); }, 2000);
  leave = () => { controller.abort(); clearInterval(poll); };
  render();
  showErrors();
  show(heading, meta, actions, approval,
    h("h2", {}, "Outcomes"), counts,
    h("div", { class: "row" }, h("label", { class: "check", for: "failed-only" }, filter, " failed only")),
    h("div", { class: "legend", "aria-hidden": "true" },
      [...OUTCOMES, "unreached"].map((o) => { const s = h("span", {}, o.replace("_", " ")); s.style.setProperty("--c", COLOURS[o]); return s; })),
    wrap, errorsTitle, errorsBox, h("h2", {}, "Clusters with errors"), problems);
  requestAnimationFrame(frame);
  follow();
}

async function complianceScreen() {
  document.title = "Compliance · bulkkm";
  const wanted = new URLSearchParams(location.hash.split("?")[1] || "").get("state") || "";
  const data = await api(`/compliance${wanted ? `?state=${encodeURIComponent(wanted)}` : ""}`);
  const picker = h("select", {
    id: "state-filter",
    onchange: () => { location.hash = picker.value ? `#/compliance?state=${picker.value}` : "#/compliance"; },
  }, ["", "compliant", "drift", "failed", "unknown"].map((s) => h("option", { value: s, selected: s === wanted }, s || "every state")));
  const rows = data.key_managers.slice(0, 2000);
  show(h("h1", {}, "Compliance"),
    h("p", { class: "meta" }, "Each key manager as the latest run that saw it found it."),
    h("ul", { class: "counts", "aria-label": "Key managers by state" },
      Object.entries(data.totals).map(([s, n]) => h("li", {}, stateBadge(s), " ", h("b", {}, n)))),
    h("div", { class: "row" }, h("label", { for: "state-filter" }, "Show", picker)),
    rows.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["Cluster", "SVM", "State", "Detail", "Seen", "By run"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows.map((r) => h("tr", {},
        h("td", {}, r.cluster), h("td", {}, r.svm || "(cluster)"), h("td", {}, stateBadge(r.state)),
        h("td", {}, r.detail || "—"), h("td", {}, when(r.seen_at)),
        h("td", {}, h("a", { href: `#/runs/${r.run_id}` }, `${r.command} ${r.run_id.slice(0, 8)}`))))))
      : h("p", {}, "Nothing yet: a check (or any run) fills this when it ends."),
    data.key_managers.length > rows.length ? h("p", { class: "meta" }, `First ${rows.length} of ${data.key_managers.length}.`) : "");
}

async function schedulesScreen() {
  document.title = "Schedules · bulkkm";
  const [{ schedules }, { inventories }] = await Promise.all([api("/schedules"), api("/inventories")]);
  const inventory = h("select", { id: "s-inventory" }, inventories.filter((i) => i.valid).map((i) => h("option", { value: i.name }, i.name)));
  const command = h("select", { id: "s-command" }, ["check", "apply", "migrate"].map((c) => h("option", { value: c }, c)));
  const cron = h("input", { type: "text", id: "s-cron", value: "0 3 * * *", required: true, "aria-describedby": "cron-help" });
  const tz = h("input", { type: "text", id: "s-tz", value: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC", required: true });
  const auto = h("input", { type: "checkbox", id: "s-auto" });
  const form = h("form", {
    class: "inline", "aria-label": "New schedule",
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        await api("/schedules", { method: "POST", body: { inventory: inventory.value, command: command.value, cron: cron.value, tz: tz.value, auto_approve: auto.checked } });
        say("Schedule created");
        await schedulesScreen();
      } catch (e) { failure(e); }
    },
  },
  h("label", { for: "s-inventory" }, "Inventory", inventory),
  h("label", { for: "s-command" }, "Command", command),
  h("label", { for: "s-cron" }, "Cron", cron),
  h("label", { for: "s-tz" }, "Time zone", tz),
  h("label", { class: "check", for: "s-auto" }, auto, " approve its own plans"),
  h("button", { type: "submit", class: "primary" }, "Create"));
  const table = schedules.length ? h("table", {},
    h("thead", {}, h("tr", {}, ["Command", "Inventory", "When", "Next runs (this browser's time)", "Last run", "Missed", ""].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, schedules.map((s) => h("tr", {},
      h("td", {}, s.command, s.auto_approve ? " (auto-approved)" : ""),
      h("td", {}, s.inventory),
      h("td", {}, h("code", {}, s.cron), ` ${s.tz}`),
      h("td", {}, h("ol", {}, s.next_fires.map((t) => h("li", {}, when(t))))),
      h("td", {}, s.last_run_id ? h("a", { href: `#/runs/${s.last_run_id}` }, s.last_run_id.slice(0, 8)) : "—",
        s.last_error ? h("div", { class: "error" }, s.last_error) : ""),
      h("td", { class: "num" }, s.missed_fires),
      h("td", {}, h("button", {
        type: "button", class: "danger", "aria-label": `Delete schedule ${s.id}`,
        onclick: async () => {
          if (!confirm(`Delete the ${s.command} schedule on ${s.inventory}?`)) return;
          try { await api(`/schedules/${s.id}`, { method: "DELETE" }); await schedulesScreen(); } catch (e) { failure(e); }
        },
      }, "Delete")))))) : h("p", {}, "No schedules.");
  show(h("h1", {}, "Schedules"), h("h2", {}, "New schedule"), form,
    h("p", { id: "cron-help", class: "meta" },
      "Five fields: minute hour day-of-month month day-of-week, on the time zone's clock (DST included). ",
      "An apply or migrate waits for an approval unless it approves its own plans (that needs an admin token)."),
    h("h2", {}, "Schedules"), table);
}

// --- routing ---------------------------------------------------------------------------

async function route() {
  document.getElementById("status").hidden = true;
  leave();
  leave = () => {};
  if (!token()) { login(); return; }
  document.getElementById("nav").hidden = false;
  const path = location.hash.replace(/^#/, "").split("?")[0] || "/runs";
  for (const link of document.querySelectorAll("nav a")) {
    const here = path.startsWith(link.getAttribute("href").slice(1));
    if (here) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  try {
    const run = path.match(/^\/runs\/([\w-]+)$/);
    if (run) await runScreen(run[1]);
    else if (path === "/compliance") await complianceScreen();
    else if (path === "/schedules") await schedulesScreen();
    else await runsScreen();
  } catch (e) {
    if (e.status !== 401) show(h("h1", {}, "Something went wrong"), h("p", { class: "error" }, e.message));
  }
}

document.getElementById("signout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  location.hash = "";
  login("Signed out.");
});
window.addEventListener("hashchange", route);
route();
