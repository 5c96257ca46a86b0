// The live class view: polls the class's state every few seconds (a fixed number of queries on the
// server, however big the class), renders rows, the step summary and the action log, and sends
// actions. Everything from the server goes into the page as text.
import { api } from "/static/portal/api.js";
import { watchConsole } from "./watch.js";

const config = JSON.parse(document.getElementById("class-config").textContent);
const rowsBody = document.getElementById("class-rows");
const filter = document.getElementById("class-filter");
const stuckInput = document.getElementById("class-stuck");
const feedback = document.getElementById("class-feedback");
const selected = new Set();
let state = { rows: [], steps: [], actions: [], totals: {} };
let sortKey = "student";
let sortDescending = false;
let watching = null;

function el(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function ago(iso) {
  if (!iso) return "never";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

function timeLeft(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const minutes = Math.floor(seconds / 60);
  return minutes >= 60 ? `${Math.floor(minutes / 60)} h ${minutes % 60} min` : `${minutes} min`;
}

function visibleRows() {
  const which = filter.value;
  const rows = state.rows.filter((row) => which === "all" || row[which]);
  rows.sort((a, b) => {
    const x = a[sortKey] ?? "";
    const y = b[sortKey] ?? "";
    const order = x < y ? -1 : x > y ? 1 : 0;
    return sortDescending ? -order : order;
  });
  return rows;
}

function actionButton(label, action, row) {
  const button = el("button", label, { type: "button", "data-action": action });
  button.addEventListener("click", () => act(action, [row.instance]));
  return button;
}

function renderRow(row) {
  const tr = el("tr", null, { "data-instance": row.instance, "data-student": row.student });
  const flags = ["stuck", "failed", "finished"].filter((flag) => row[flag]);
  tr.className = flags.join(" ");
  const check = el("input", null, { type: "checkbox", "aria-label": `Select ${row.student}` });
  check.checked = selected.has(row.instance);
  check.addEventListener("change", () => {
    if (check.checked) selected.add(row.instance); else selected.delete(row.instance);
    renderSelection();
  });
  const cells = [
    check,
    el("span", row.student_name ? `${row.student} (${row.student_name})` : row.student),
    el("span", row.status_label + (row.pending ? ` (${row.pending} pending)` : "") + (flags.length ? ` · ${flags.join(", ")}` : "")),
    el("span", timeLeft(row.seconds_left)),
    el("span", ago(row.last_activity_at)),
    el("span", row.current_page || "–"),
    el("span", `${row.steps_done} / ${row.steps_total}`, { "data-field": "steps" }),
    el("span", row.checks_total ? `${row.checks_passed} / ${row.checks_total}` : "–"),
    el("span", row.failed_checks.join("; ") || "–"),
  ];
  for (const cell of cells) {
    const td = el("td");
    td.append(cell);
    tr.append(td);
  }
  const actions = el("td", null, { class: "row-actions" });
  const tutorial = el("a", "Tutorial", { href: config.urls.studentTutorial.replace("/0/", `/${row.instance}/`), target: "_blank" });
  actions.append(tutorial);
  if (row.active) {
    actions.append(actionButton("+15 min", "extend", row));
    if (row.status === "running") actions.append(actionButton("Pause", "pause", row));
    if (row.status === "paused") actions.append(actionButton("Resume", "resume", row));
    actions.append(actionButton("Stop", "stop", row));
    actions.append(actionButton("Message", "message", row));
  }
  if (row.status === "running") {
    for (const machine of row.machines) {
      for (const kind of ["serial", "vnc"]) {
        if (!machine[kind]) continue;
        const label = `Watch ${machine.name} ${kind === "vnc" ? "screen" : "terminal"}`;
        const button = el("button", label, { type: "button", "data-watch": `${machine.name}/${kind}` });
        button.addEventListener("click", () => startWatching(row, machine.name, kind));
        actions.append(button);
      }
    }
  }
  tr.append(actions);
  return tr;
}

function render() {
  const t = state.totals;
  document.getElementById("class-totals").textContent =
    `${t.students ?? 0} students · ${t.stuck ?? 0} stuck · ${t.failed ?? 0} failed · ${t.finished ?? 0} finished`;
  rowsBody.replaceChildren(...visibleRows().map(renderRow));
  document.getElementById("class-steps").replaceChildren(
    ...state.steps.map((step) => {
      const tr = el("tr");
      const median = step.median_minutes === null ? "–" : `${step.median_minutes} min`;
      for (const value of [step.label + (step.checked ? " (checked)" : ""), step.reached, step.passed, median]) tr.append(el("td", value));
      return tr;
    }),
  );
  document.getElementById("class-actions").replaceChildren(
    ...state.actions.map((action) => {
      const who = action.student ? ` → ${action.student}` : "";
      const detail = action.detail ? `: ${action.detail}` : "";
      const error = action.error ? ` (failed: ${action.error})` : "";
      return el("li", `${new Date(action.at).toLocaleTimeString()} ${action.actor} ${action.kind_label}${who}${detail}${error}`);
    }),
  );
  renderSelection();
}

function renderSelection() {
  const present = new Set(state.rows.map((row) => row.instance));
  for (const id of [...selected]) if (!present.has(id)) selected.delete(id);
  document.getElementById("class-selected").textContent = `${selected.size} selected`;
}

async function refresh() {
  try {
    const url = `${config.urls.state}?stuck=${encodeURIComponent(stuckInput.value || config.stuckMinutes)}`;
    state = await api("GET", url);
    render();
  } catch (error) {
    feedback.textContent = `Could not update: ${error.message}`;
  }
}

async function act(action, instances, extra = {}) {
  const body = { action, instances, ...extra };
  if (action === "extend" && body.minutes === undefined) body.minutes = 15;
  if (action === "message" && body.text === undefined) {
    const text = window.prompt("Message to the student:");
    if (!text) return;
    body.text = text;
  }
  if (action === "stop" && !window.confirm(`Stop ${instances.length} lab instance(s)?`)) return;
  try {
    const answer = await api("POST", config.urls.actions, body);
    const failed = answer.results.filter((result) => !result.ok);
    feedback.textContent = failed.length
      ? `Done for ${answer.results.length - failed.length}; failed for ${failed.length}: ${failed.map((r) => r.message).join("; ")}`
      : `Done for ${answer.results.length}.`;
  } catch (error) {
    feedback.textContent = error.message;
  }
  await refresh();
}

document.querySelectorAll("[data-bulk]").forEach((button) => {
  button.addEventListener("click", () => {
    const kind = button.dataset.bulk;
    const text = document.getElementById("bulk-text").value;
    const minutes = Number(document.getElementById("bulk-minutes").value);
    if (kind === "broadcast") {
      const everyone = state.rows.filter((row) => row.active).map((row) => row.instance);
      act("message", everyone, { text });
    } else {
      act(kind, [...selected], kind === "extend" ? { minutes } : kind === "message" ? { text } : {});
    }
  });
});
document.getElementById("select-all").addEventListener("change", (event) => {
  for (const row of visibleRows()) {
    if (event.target.checked) selected.add(row.instance); else selected.delete(row.instance);
  }
  render();
});
document.querySelectorAll("[data-sort]").forEach((button) => {
  button.addEventListener("click", () => {
    sortDescending = sortKey === button.dataset.sort ? !sortDescending : false;
    sortKey = button.dataset.sort;
    render();
  });
});
filter.addEventListener("change", render);
stuckInput.addEventListener("change", () => {
  document.getElementById("class-export").href = `${config.urls.export}?stuck=${encodeURIComponent(stuckInput.value)}`;
  refresh();
});

function startWatching(row, machine, kind) {
  if (watching) watching.close();
  const panel = document.getElementById("class-watch");
  panel.hidden = false;
  document.getElementById("watch-title").textContent =
    `Watching ${row.student}: ${machine} ${kind === "vnc" ? "screen" : "terminal"} (read-only)`;
  watching = watchConsole({
    instanceId: row.instance,
    machine,
    kind,
    screen: document.getElementById("watch-screen"),
    status: document.getElementById("watch-status"),
  });
}
document.getElementById("watch-close").addEventListener("click", () => {
  if (watching) watching.close();
  watching = null;
  document.getElementById("class-watch").hidden = true;
});

refresh();
setInterval(refresh, config.pollSeconds * 1000);
