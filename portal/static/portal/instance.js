// The instance page: live state from the API (polled), start/stop/pause/resume, time left, the
// machine selector with each machine's screen and terminal, logins, and the tutorial beside them.
import { api } from "./api.js";
import { SerialConsole } from "./console-serial.js";
import { VncConsole } from "./console-vnc.js";
import { TutorialPane } from "./tutorial.js";

const config = JSON.parse(document.getElementById("workspace-config").textContent);

const BUSY_POLL_MS = 2000; // while something changes: starting, stopping, machines booting
const STEADY_POLL_MS = 15000;
const NOTICES_POLL_MS = 4000; // instructors' messages and watches show within seconds
const WARN_BEFORE_EXPIRY_MS = 10 * 60 * 1000;
const BUSY = new Set(["requested", "starting", "stopping"]);
const ACTIVE_WITH_MACHINES = new Set(["running", "paused"]);
const FINISHED = new Set(["stopped", "failed", "expired"]);
const STATUS_LABELS = {
  requested: "Requested", starting: "Starting", running: "Running", paused: "Paused",
  stopping: "Stopping", stopped: "Stopped", failed: "Failed", expired: "Expired",
};
// KubeVirt VMI phases as the student's four steps (a paused VMI stays "Running").
const STAGES = ["waiting", "scheduled", "booting", "running"];
const STAGE_LABELS = {
  waiting: "Waiting", scheduled: "Scheduled", booting: "Booting", running: "Running",
  paused: "Paused", stopped: "Stopped", stopping: "Stopping", failed: "Failed", unknown: "…",
};

function machineStage(status, machine) {
  if (status === "stopping") return "stopping";
  if (FINISHED.has(status)) return status === "failed" ? "failed" : "stopped";
  if (machine.phase === "Failed" || machine.phase === "Succeeded") return "failed";
  if (machine.paused) return "paused";
  switch (machine.phase) {
    case "Scheduling":
      return "scheduled";
    case "Scheduled":
      return "booting";
    case "Running":
      return machine.ready === false ? "booting" : "running";
    default:
      return "waiting"; // not created yet (null, ""), or Pending
  }
}

function formatDuration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}` : `${minutes}:${seconds}`;
}

// --- One machine: its tab, its panel, its consoles, its login ------------------------------------

class MachineView {
  constructor(workspace, spec) {
    this.workspace = workspace;
    this.name = spec.name;
    this.tab = document.getElementById(`tab-${spec.name}`);
    this.panel = document.getElementById(`panel-${spec.name}`);
    this.stateText = this.panel.querySelector(".console-state");
    this.data = null;
    this.consoles = {};
    const ticketUrl = `${config.urls.instance}machines/${encodeURIComponent(spec.name)}/ticket/`;
    for (const element of this.panel.querySelectorAll(".console")) {
      const kind = element.dataset.kind;
      const View = kind === "vnc" ? VncConsole : SerialConsole;
      this.consoles[kind] = new View({
        element,
        instanceId: config.instanceId,
        machine: spec.name,
        kind,
        ticketUrl,
        onStateChange: (view) => this.consoleChanged(view),
      });
    }
    this.view = spec.isContainer ? "terminal" : spec.hasSerial ? "serial" : "vnc";
    for (const button of this.panel.querySelectorAll(".view-switch button")) {
      button.addEventListener("click", () => this.showView(button.dataset.view));
    }
    this.bindLogin();
  }

  get console() {
    return this.consoles[this.view];
  }

  show() {
    this.panel.hidden = false;
    this.console?.activate();
  }

  showView(view) {
    if (!this.consoles[view]) return;
    this.view = view;
    for (const [kind, consoleView] of Object.entries(this.consoles)) {
      consoleView.element.hidden = kind !== view;
    }
    for (const button of this.panel.querySelectorAll(".view-switch button")) {
      button.setAttribute("aria-pressed", String(button.dataset.view === view));
    }
    this.console.activate();
    this.consoleChanged(this.console);
  }

  consoleChanged(view) {
    if (view === this.console) {
      this.stateText.textContent = `${view.label[0].toUpperCase()}${view.label.slice(1)}: ${view.stateText}`;
    }
  }

  update(status, data) {
    this.data = data;
    const stage = machineStage(status, data);
    const stageElement = this.tab.querySelector(".stage");
    stageElement.dataset.stage = stage;
    stageElement.dataset.step = String(STAGES.indexOf(stage));
    const pulling = data.pull_progress !== null && data.pull_progress !== undefined && stage === "scheduled";
    this.tab.querySelector(".stage-label").textContent = pulling ? `Downloading ${data.pull_progress} %` : STAGE_LABELS[stage];
    this.tab.querySelector(".machine-ip").textContent = data.ip_address || "";
    this.tab.setAttribute("aria-label", `${this.name}: ${STAGE_LABELS[stage]}${data.ip_address ? `, ${data.ip_address}` : ""}`);
    this.panel.querySelector('[data-field="username"]').textContent = data.username;
    this.panel.querySelector('[data-field="password"]').textContent = data.password;
    const running = status === "running" && stage === "running";
    // The reason is the API's: plain words for students, the cluster's for staff. The only way on
    // from a finished lab is the "Start again" button above, so that is what the words offer.
    const startAgain = "Click \u201cStart again\u201d above to start a new copy of this lab.";
    const whyNot = {
      paused: "The lab is paused. Resume it to use this machine.",
      stopping: "The lab is stopping.",
      stopped: FINISHED.has(status) ? `The lab is ${STATUS_LABELS[status].toLowerCase()}. ${startAgain}` : "",
      failed: `${data.message || this.workspace.data?.last_error || "This lab failed."} ${startAgain}`,
    }[stage] || data.message || `The machine is ${STAGE_LABELS[stage].toLowerCase()}…`;
    for (const consoleView of Object.values(this.consoles)) consoleView.setRunning(running, whyNot);
  }

  bindLogin() {
    const reveal = this.panel.querySelector(".reveal-login");
    const login = this.panel.querySelector(".login");
    reveal.addEventListener("click", () => {
      const open = login.hidden;
      login.hidden = !open;
      reveal.setAttribute("aria-expanded", String(open));
      reveal.textContent = open ? "Hide login" : "Show login";
    });
    const copy = this.panel.querySelector(".copy-password");
    copy.addEventListener("click", async () => {
      const password = this.data?.password || "";
      try {
        await navigator.clipboard.writeText(password);
        copy.textContent = "Copied";
      } catch {
        // No clipboard permission (e.g. in a frame without allow="clipboard-write"): select it.
        const selection = window.getSelection();
        selection.selectAllChildren(this.panel.querySelector('[data-field="password"]'));
        copy.textContent = "Selected: press Ctrl+C";
      }
      setTimeout(() => {
        copy.textContent = "Copy";
      }, 2500);
    });
  }
}

// --- The page --------------------------------------------------------------------------------------

class Workspace {
  constructor() {
    this.status = config.status;
    this.data = null;
    this.busySince = Date.now();
    this.expiresAt = null;
    this.warnedMinute = null;
    this.pollTimer = null;
    this.addresses = null;
    this.badge = document.getElementById("instance-status");
    this.message = document.getElementById("instance-message");
    this.timeLeft = document.getElementById("time-left");
    this.expiryWarning = document.getElementById("expiry-warning");
    this.staleness = document.getElementById("status-staleness");
    this.stalenessText = document.getElementById("status-staleness-text");
    this.refreshButton = document.getElementById("btn-refresh");
    this.buttons = {
      start: document.getElementById("btn-start"),
      pause: document.getElementById("btn-pause"),
      resume: document.getElementById("btn-resume"),
      stop: document.getElementById("btn-stop"),
    };
    this.machines = new Map(config.machines.map((spec) => [spec.name, new MachineView(this, spec)]));
    this.selected = [...this.machines.values()].find((m) => m.tab.getAttribute("aria-selected") === "true");
    this.bindTabs();
    this.bindControls();
    const tutorialRoot = document.getElementById("tutorial-pane");
    this.tutorial = config.tutorials.length
      ? new TutorialPane({
          root: tutorialRoot,
          tutorialsUrl: config.urls.tutorials,
          instanceId: config.instanceId,
          tutorials: config.tutorials,
          typeIntoMachine: (text, machine) => this.typeInto(text, machine),
          interruptMachine: (machine) => this.interrupt(machine),
          describeTarget: () => this.selected?.name || "the machine",
          onPageShown: (slug, pageId) => this.reportPage(slug, pageId),
        })
      : null;
    document.addEventListener("lab:auth-lost", () => {
      document.getElementById("auth-lost").hidden = false;
    });
    document.getElementById("auth-reload").addEventListener("click", () => window.location.reload());
  }

  start() {
    this.selected?.show();
    this.tutorial?.load();
    this.poll();
    if (config.urls.notices) this.pollNotices();
    setInterval(() => this.tick(), 1000);
  }

  // --- The class: the page the student has open, instructors' messages, who watched --------------

  reportPage(slug, pageId) {
    if (!config.urls.position || this.reportedPage === `${slug}:${pageId}`) return;
    this.reportedPage = `${slug}:${pageId}`;
    api("POST", config.urls.position, { tutorial: slug, page: pageId }).catch(() => {
      this.reportedPage = null; // told again on the next page change
    });
  }

  async pollNotices() {
    try {
      this.showNotices(await api("GET", config.urls.notices));
    } catch {
      // The banner is a convenience: the lab works without it, and the next poll tries again.
    }
    setTimeout(() => this.pollNotices(), NOTICES_POLL_MS);
  }

  showNotices(data) {
    const banner = document.getElementById("class-notices");
    const dismissed = Number(sessionStorage.getItem(`lab-orchestrator:notices:${config.instanceId}`) || 0);
    const messages = data.messages.filter((message) => message.id > dismissed);
    const watchingNow = data.watches.filter((watch) => watch.now);
    const lines = messages.map((message) => `${message.from}: ${message.text}`);
    for (const watch of watchingNow) {
      lines.push(`${watch.by} is watching your ${watch.kind === "vnc" ? "screen" : "terminal"} on ${watch.machine} (read-only).`);
    }
    const list = document.getElementById("class-notices-list");
    list.replaceChildren(...lines.map((line) => Object.assign(document.createElement("li"), { textContent: line })));
    banner.hidden = lines.length === 0;
    const past = data.watches.filter((watch) => !watch.now);
    const history = document.getElementById("class-watch-history");
    history.hidden = past.length === 0;
    history.textContent = past.length
      ? `Watched ${past.length} time(s); last by ${past[0].by}, ${new Date(past[0].started_at).toLocaleString()}, for ${past[0].seconds} s.`
      : "";
    document.getElementById("class-notices-dismiss").onclick = () => {
      const newest = Math.max(0, ...data.messages.map((message) => message.id));
      sessionStorage.setItem(`lab-orchestrator:notices:${config.instanceId}`, String(newest));
      this.showNotices(data);
    };
  }

  // --- State from the API -------------------------------------------------------------------------

  async poll() {
    clearTimeout(this.pollTimer);
    try {
      this.update(await api("GET", config.urls.instance));
      this.lastPollError = null;
    } catch (error) {
      this.lastPollError = error.status === 503 ? error.message : `Cannot update the lab's state: ${error.message} Retrying…`;
      this.showMessage(this.lastPollError, "error");
    }
    this.pollTimer = setTimeout(() => this.poll(), this.pollInterval());
  }

  pollInterval() {
    if (this.lastPollError) return BUSY_POLL_MS * 2;
    if (BUSY.has(this.status) || this.data?.pending_action) return BUSY_POLL_MS;
    if (this.status === "running" && this.data?.machines.some((m) => machineStage(this.status, m) !== "running")) {
      return BUSY_POLL_MS;
    }
    return FINISHED.has(this.status) ? STEADY_POLL_MS * 4 : STEADY_POLL_MS;
  }

  update(data) {
    if (data.status !== this.status) this.busySince = Date.now();
    this.status = data.status;
    this.data = data;
    this.expiresAt = data.expires_at ? Date.parse(data.expires_at) : null;
    this.badge.dataset.status = data.status;
    this.badge.textContent = STATUS_LABELS[data.status] || data.status;
    this.buttons.start.hidden = !FINISHED.has(data.status);
    this.buttons.pause.hidden = data.status !== "running";
    this.buttons.resume.hidden = data.status !== "paused";
    this.buttons.stop.hidden = FINISHED.has(data.status) || data.status === "stopping";
    for (const machine of data.machines) this.machines.get(machine.name)?.update(data.status, machine);
    this.showStaleness();
    if (data.status === "failed") this.showMessage(data.last_error || "The lab failed to start.", "error");
    // A stop that was not the student's own (e.g. the local cluster shut down) says why.
    else if (data.status === "stopped" && data.last_error) this.showMessage(`${data.last_error} ${this.describe()}`, "");
    // A running or paused lab has an error only when a pause or resume was not confirmed in time.
    else if (ACTIVE_WITH_MACHINES.has(data.status) && data.last_error && !data.pending_action) {
      this.showMessage(data.last_error, "error");
    }
    else this.showMessage(this.describe(), "");
    // Addresses arrived or changed: the tutorial's {{ vm.NAME.ip }} can be filled in now. The first
    // answer reloads it too if it has any address: the tutorial's first load may have been answered
    // before the machines had theirs.
    const addresses = data.machines.map((m) => `${m.name}=${m.ip_address || ""}`).join(",");
    const first = this.addresses === null;
    if (first ? data.machines.some((m) => m.ip_address) : addresses !== this.addresses) this.tutorial?.load();
    this.addresses = addresses;
    this.tick();
  }

  describe() {
    const elapsed = formatDuration(Date.now() - this.busySince);
    const counts = this.data ? this.data.machines.map((m) => machineStage(this.status, m)) : [];
    const ready = counts.filter((stage) => stage === "running").length;
    switch (this.status) {
      case "requested":
      case "starting": {
        // A machine that waits for something says what (e.g. room in the lab's quota).
        const why = this.data ? this.data.machines.map((m) => m.message).filter(Boolean) : [];
        return [`Starting your machines: ${ready} of ${counts.length} running (${elapsed}).`, ...why].join(" ");
      }
      case "running":
        if (this.data?.pending_action === "resume") return "Resuming the machines…";
        return ready < counts.length ? `Machines booting: ${ready} of ${counts.length} running.` : "";
      case "stopping":
        return `Stopping and deleting the machines (${elapsed})…`;
      case "paused":
        if (this.data?.pending_action === "pause") return "Pausing the machines…";
        return "Paused: the machines keep their state until you resume them.";
      case "stopped":
        return "This lab is stopped; its machines were deleted, so the tutorial no longer shows their addresses and logins.";
      case "expired":
        return "This lab ran out of time and was stopped; the tutorial no longer shows its machines' addresses and logins.";
      default:
        return "";
    }
  }

  // The status comes from the cluster's watch; when that is down or the cluster unreachable, say
  // how old the status shown is, and offer to ask the cluster once.
  showStaleness() {
    const data = this.data;
    const stale = data && !FINISHED.has(data.status) && data.status_current === false;
    this.staleness.hidden = !stale;
    if (!stale) return;
    const asOf = data.status_as_of ? Date.parse(data.status_as_of) : null;
    const age = asOf ? `, as of ${formatDuration(Date.now() - asOf)} ago` : "";
    this.stalenessText.textContent = data.cluster_unreachable_since
      ? `Cluster unreachable since ${new Date(data.cluster_unreachable_since).toLocaleTimeString()}: this is the last known status${age}.`
      : `This is the last known status${age}; it is not being updated right now.`;
  }

  async refreshNow() {
    this.refreshButton.disabled = true;
    try {
      this.update(await api("POST", `${config.urls.instance}refresh/`));
    } catch (error) {
      this.showMessage(error.message, "error");
    } finally {
      this.refreshButton.disabled = false;
    }
  }

  showMessage(text, kind) {
    this.message.textContent = text;
    this.message.className = `message ${kind}`;
  }

  // Every second: the countdown, and "still working" text that visibly moves while busy.
  tick() {
    if (BUSY.has(this.status) && !this.lastPollError) this.showMessage(this.describe(), "");
    if (this.data && !this.staleness.hidden) this.showStaleness();
    const active = this.status === "running" || this.status === "paused" || this.status === "starting";
    if (!this.expiresAt || !active) {
      this.timeLeft.hidden = true;
      this.expiryWarning.hidden = true;
      return;
    }
    const left = this.expiresAt - Date.now();
    this.timeLeft.hidden = false;
    this.timeLeft.textContent = `Time left: ${formatDuration(left)}`;
    this.timeLeft.classList.toggle("soon", left <= WARN_BEFORE_EXPIRY_MS);
    if (left <= WARN_BEFORE_EXPIRY_MS) {
      const minutes = Math.max(0, Math.ceil(left / 60000));
      if (minutes !== this.warnedMinute) {
        this.warnedMinute = minutes;
        this.expiryWarning.hidden = false;
        this.expiryWarning.textContent = minutes > 0
          ? `This lab stops in ${minutes} minute${minutes === 1 ? "" : "s"}. Note down anything you want to keep.`
          : "This lab's time is up; it is being stopped.";
      }
      if (left <= 0 && !BUSY.has(this.status)) this.poll();
    } else {
      this.expiryWarning.hidden = true;
    }
  }

  // --- Controls ---------------------------------------------------------------------------------------

  bindControls() {
    const { start, pause, resume, stop } = this.buttons;
    stop.addEventListener("click", () => {
      if (window.confirm("Stop this lab? Its machines and everything on them are deleted.")) {
        this.act(stop, "DELETE", config.urls.instance);
      }
    });
    pause.addEventListener("click", () => this.act(pause, "POST", `${config.urls.instance}pause/`));
    this.refreshButton.addEventListener("click", () => this.refreshNow());
    resume.addEventListener("click", () => this.act(resume, "POST", `${config.urls.instance}resume/`));
    start.addEventListener("click", async () => {
      start.disabled = true;
      this.showMessage("Starting a new copy of this lab…", "");
      try {
        const instance = await api("POST", config.urls.instances, { lab: config.lab });
        window.location.assign(config.urls.instancePage.replace("/0/", `/${instance.id}/`));
      } catch (error) {
        this.showMessage(error.message, "error");
        start.disabled = false;
      }
    });
  }

  async act(button, method, url) {
    for (const b of Object.values(this.buttons)) b.disabled = true;
    try {
      this.update(await api(method, url));
    } catch (error) {
      this.showMessage(error.message, "error");
    } finally {
      for (const b of Object.values(this.buttons)) b.disabled = false;
      this.poll();
    }
  }

  // --- Machine selector (ARIA tabs: arrows move between machines) --------------------------------------

  bindTabs() {
    const tabs = [...this.machines.values()].map((m) => m.tab);
    for (const machine of this.machines.values()) {
      machine.tab.addEventListener("click", () => this.select(machine));
      machine.tab.addEventListener("keydown", (event) => {
        const index = tabs.indexOf(machine.tab);
        const next = { ArrowRight: index + 1, ArrowDown: index + 1, ArrowLeft: index - 1, ArrowUp: index - 1,
          Home: 0, End: tabs.length - 1 }[event.key];
        if (next === undefined) return;
        event.preventDefault();
        const target = tabs[(next + tabs.length) % tabs.length];
        target.focus();
        this.select(this.machines.get(target.dataset.machine));
      });
    }
  }

  select(machine) {
    if (machine === this.selected) return;
    for (const other of this.machines.values()) {
      const on = other === machine;
      other.tab.setAttribute("aria-selected", String(on));
      other.tab.tabIndex = on ? 0 : -1;
      other.panel.hidden = !on;
    }
    this.selected = machine;
    machine.show();
  }

  // The named machine (its tab is shown, so the student sees what happens), or the selected one.
  target(name) {
    if (name) {
      const machine = this.machines.get(name);
      if (!machine) throw new Error(`This lab has no machine called ${name}.`);
      this.select(machine);
      return machine;
    }
    return this.selected;
  }

  async typeInto(text, name) {
    const machine = this.target(name);
    if (!machine?.console) throw new Error("Pick a machine first.");
    await machine.console.waitUntilConnected();
    await machine.console.typeText(text);
  }

  async interrupt(name) {
    const machine = this.target(name);
    if (!machine?.console) throw new Error("Pick a machine first.");
    await machine.console.waitUntilConnected();
    await machine.console.sendInterrupt();
  }
}

const workspace = new Workspace();
workspace.start();
