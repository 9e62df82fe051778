// The review app's page: the worklist ("/") and the case view ("/case/<id>").
import { openCase } from "/static/viewer.js";

const state = { session: null, rows: [], shown: [], selected: 0, sort: "id", desc: false };

export async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (options.method && options.method !== "GET") {
    headers["content-type"] = "application/json";
    headers["x-csrf-token"] = state.session.csrf;
  }
  const r = await fetch(path, { credentials: "same-origin", ...options, headers });
  if (r.status === 401) { window.location.assign("/login"); throw new Error("session ended"); }
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

const text = (v) => (v === null || v === undefined ? "" : String(v));
const el = (tag, content, cls) => {
  const e = document.createElement(tag);
  if (content !== undefined) e.textContent = text(content);
  if (cls) e.className = cls;
  return e;
};

function stagesCell(stages) {
  const values = Object.values(stages);
  const done = values.filter((s) => s === "done").length;
  const other = Object.entries(stages).filter(([, s]) => s && s !== "done" && s !== "skipped");
  return `${done}/${values.length} done` + (other.length ? ` (${other.map(([n, s]) => `${n}: ${s}`).join(", ")})` : "");
}

function qcCell(row) {
  const parts = [];
  if (row.qc.brain_volume_cm3) parts.push(`brain ${Math.round(row.qc.brain_volume_cm3)} cm³`);
  if (row.qc.mask_template_dice) parts.push(`template Dice ${row.qc.mask_template_dice}`);
  return parts.join(", ");
}

function sortKey(row, key) {
  switch (key) {
    case "lesions": return row.lesions ?? -1;
    case "review": return row.review.state;
    case "by": return text(row.review.at);
    case "stages": return stagesCell(row.stages);
    case "qc": return row.flags.length;
    default: return row.id;
  }
}

function renderWorklist() {
  const q = document.getElementById("filter").value.trim().toLowerCase();
  const st = document.getElementById("state-filter").value;
  state.shown = state.rows
    .filter((r) => !st || r.review.state === st)
    .filter((r) => !q || [r.id, r.review.state, ...r.flags, r.status].join(" ").toLowerCase().includes(q))
    .sort((a, b) => {
      const x = sortKey(a, state.sort), y = sortKey(b, state.sort);
      return (x < y ? -1 : x > y ? 1 : 0) * (state.desc ? -1 : 1);
    });
  state.selected = Math.min(state.selected, Math.max(0, state.shown.length - 1));
  const body = document.querySelector("#worklist tbody");
  body.replaceChildren(...state.shown.map((r, i) => {
    const tr = el("tr");
    tr.dataset.id = r.id;
    if (i === state.selected) tr.className = "selected";
    tr.append(el("td", r.id), el("td", r.status === "excluded" ? `excluded: ${text(r.excluded_reason)}` : stagesCell(r.stages)),
      el("td", r.lesions));
    const qc = el("td", qcCell(r));
    for (const f of r.flags) qc.append(" ", el("span", f, "flag"));
    const rv = el("td");
    if (!r.has_images && !r.review.by) rv.append(el("small", "no label map to review"));
    else {
      rv.append(el("span", r.review.state, `state ${r.review.state.replace(" ", "-")}`));
      if (r.review.detail) rv.append(" ", el("small", r.review.detail));
    }
    tr.append(qc, rv, el("td", r.review.by ? `${r.review.by}, ${r.review.at}` : ""));
    tr.addEventListener("click", () => go(`/case/${encodeURIComponent(r.id)}`));
    return tr;
  }));
}

function go(path) { window.location.assign(path); }

async function showWorklist() {
  document.getElementById("worklist-view").hidden = false;
  state.rows = await api("/api/patients");
  renderWorklist();
  for (const id of ["filter", "state-filter"]) document.getElementById(id).addEventListener("input", renderWorklist);
  for (const th of document.querySelectorAll("#worklist th[data-sort]")) {
    th.addEventListener("click", () => {
      state.desc = state.sort === th.dataset.sort ? !state.desc : false;
      state.sort = th.dataset.sort;
      renderWorklist();
    });
  }
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    if (e.key === "j" || e.key === "ArrowDown") state.selected = Math.min(state.selected + 1, state.shown.length - 1);
    else if (e.key === "k" || e.key === "ArrowUp") state.selected = Math.max(state.selected - 1, 0);
    else if (e.key === "Enter" && state.shown[state.selected]) return go(`/case/${encodeURIComponent(state.shown[state.selected].id)}`);
    else return;
    renderWorklist();
  });
}

async function main() {
  state.session = await api("/api/session");
  document.getElementById("who").textContent = `${state.session.user} (${state.session.role})`;
  document.getElementById("logout").addEventListener("click", async () => {
    await api("/api/logout", { method: "POST", body: "{}" });
    go("/login");
  });
  const m = window.location.pathname.match(/^\/case\/([^/]+)$/);
  if (m) await openCase(decodeURIComponent(m[1]), { api, session: state.session, el, go });
  else await showWorklist();
}

main();
