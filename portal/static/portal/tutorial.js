// The tutorial pane: pages with previous/next, steps ticked through the API at once (or, for a step
// with a check, a Check button that runs it on this instance's machine), a progress bar for the whole
// tutorial, and buttons on code blocks: "Type into VM" on every one, Run/Type/Copy/Interrupt where the
// author marked the block (see tutorials/rendering.py).
//
// The HTML of pages and steps comes from the API already sanitised (tutorials/rendering.py, when
// the page was saved) with this instance's variables filled in and escaped (tutorials/variables.py);
// everything else goes into the page as text.
import { api } from "./api.js";

// Click-to-run blocks: the class the author gave (```{.bash .run machine=beta}) on <pre>, or on
// <code> as `language-run` when it was the block's only class.
const ACTIONS = ["run", "type", "copy", "interrupt"];
const ACTION_LABELS = { run: "Run", type: "Type", copy: "Copy", interrupt: "Interrupt" };
const ACTION_HELP = {
  run: "type this code and press Enter on",
  type: "type this code, without Enter, on",
  interrupt: "press Ctrl-C on",
};

function codeAction(pre) {
  const code = pre.querySelector("code");
  return ACTIONS.find((action) => pre.classList.contains(action) || code?.classList.contains(`language-${action}`)) || null;
}

export class TutorialPane {
  constructor({ root, tutorialsUrl, instanceId, tutorials, typeIntoMachine, interruptMachine, describeTarget, onPageShown }) {
    this.root = root;
    this.tutorialsUrl = tutorialsUrl;
    this.instanceId = instanceId;
    // typeIntoMachine(text, machineName or null); interruptMachine(machineName or null): Ctrl-C.
    this.typeIntoMachine = typeIntoMachine;
    this.interruptMachine = interruptMachine;
    this.describeTarget = describeTarget;
    this.onPageShown = onPageShown || (() => {});
    this.article = root.querySelector("#tutorial-page");
    this.progressBar = root.querySelector("#tutorial-progress");
    this.progressText = root.querySelector("#tutorial-progress-text");
    this.position = root.querySelector("#page-position");
    this.prevButton = root.querySelector("#page-prev");
    this.nextButton = root.querySelector("#page-next");
    this.select = root.querySelector("#tutorial-select");
    this.slug = tutorials[0]?.slug || null;
    this.data = null;
    this.pageIndex = 0;
    this.loads = 0; // requests made; only the newest one's answer is shown
    this.prevButton.addEventListener("click", () => this.showPage(this.pageIndex - 1, true));
    this.nextButton.addEventListener("click", () => this.showPage(this.pageIndex + 1, true));
    this.select?.addEventListener("change", () => {
      this.slug = this.select.value;
      this.data = null;
      this.load();
    });
  }

  get storageKey() {
    return `lab-orchestrator:tutorial-page:${this.instanceId}:${this.slug}`;
  }

  // (Re)load the tutorial, e.g. once the machines have addresses to fill in; keeps the page shown.
  async load() {
    if (!this.slug) return;
    const url = `${this.tutorialsUrl}${encodeURIComponent(this.slug)}/?instance=${this.instanceId}`;
    const request = ++this.loads;
    let data;
    try {
      data = await api("GET", url);
    } catch (error) {
      if (!this.data && request === this.loads) this.showError(`The tutorial cannot be loaded: ${error.message}`);
      return;
    }
    // An older request answering last (it may predate the machines' addresses) must not win.
    if (request !== this.loads) return;
    const first = this.data === null;
    this.data = data;
    const saved = Number.parseInt(sessionStorage.getItem(this.storageKey) || "0", 10);
    this.showPage(first ? saved : this.pageIndex, false);
    this.showProgress(data.progress);
  }

  showError(text) {
    const message = document.createElement("p");
    message.className = "alert";
    message.setAttribute("role", "alert");
    message.textContent = text;
    this.article.replaceChildren(message);
  }

  showPage(index, moveFocus) {
    const pages = this.data?.pages || [];
    if (!pages.length) {
      this.article.replaceChildren(Object.assign(document.createElement("p"), { textContent: "This tutorial has no pages yet." }));
      this.position.textContent = "";
      this.prevButton.disabled = this.nextButton.disabled = true;
      return;
    }
    // A page locked behind unpassed checks (tutorials with checks_gate_pages) cannot be opened.
    const firstLocked = pages.findIndex((page) => page.locked);
    const lastOpen = firstLocked === -1 ? pages.length - 1 : Math.max(0, firstLocked - 1);
    this.pageIndex = Math.max(0, Math.min(index, lastOpen));
    sessionStorage.setItem(this.storageKey, String(this.pageIndex));
    const page = pages[this.pageIndex];
    this.onPageShown(this.slug, page.id);
    const ticked = new Set(this.data.progress?.ticked_step_ids || []);

    const heading = document.createElement("h2");
    heading.textContent = page.title;
    heading.tabIndex = -1;
    const body = document.createElement("div");
    body.className = "tutorial-content";
    body.innerHTML = page.body_html; // sanitised on the server, see the module comment
    const parts = [heading, body];
    if (page.steps.length) parts.push(this.renderSteps(page.steps, ticked));
    if (this.pageIndex === lastOpen && firstLocked !== -1) {
      const note = document.createElement("p");
      note.className = "locked-note";
      note.textContent = "The next page opens once the checks on this page have passed.";
      parts.push(note);
    }
    this.article.replaceChildren(...parts);
    this.decorate(this.article);

    this.position.textContent = `Page ${this.pageIndex + 1} of ${pages.length}`;
    this.prevButton.disabled = this.pageIndex === 0;
    this.nextButton.disabled = this.pageIndex >= lastOpen;
    if (moveFocus) {
      heading.focus({ preventScroll: true });
      this.root.scrollTop = 0;
    }
  }

  renderSteps(steps, ticked) {
    const section = document.createElement("section");
    section.className = "steps";
    const title = document.createElement("h3");
    title.textContent = "Steps";
    const list = document.createElement("ol");
    list.className = "step-list";
    for (const step of steps) {
      const item = document.createElement("li");
      item.className = "step";
      item.dataset.step = step.id;
      const box = document.createElement("input");
      box.type = "checkbox";
      box.id = `step-${step.id}`;
      box.checked = ticked.has(step.id);
      box.dataset.step = step.id;
      const text = document.createElement("div");
      text.className = "tutorial-content step-text";
      text.id = `step-text-${step.id}`;
      text.innerHTML = step.text_html; // sanitised on the server
      box.setAttribute("aria-labelledby", text.id);
      item.classList.toggle("done", box.checked);
      item.append(box, text);
      if (step.check) {
        // Only the check can mark this step done: the box shows its result.
        box.disabled = true;
        box.title = "Checked automatically: press Check";
        item.classList.add("checked-step");
        item.append(this.renderCheck(step, item, box));
      } else {
        box.addEventListener("change", () => this.tick(step, box));
      }
      list.append(item);
    }
    section.append(title, list);
    return section;
  }

  async tick(step, box) {
    const checked = box.checked;
    const item = box.closest(".step");
    item.classList.toggle("done", checked);
    box.disabled = true;
    const url = `${this.tutorialsUrl}${encodeURIComponent(this.slug)}/steps/${step.id}/tick/`;
    try {
      const progress = await api(checked ? "POST" : "DELETE", url);
      this.data.progress = progress;
      this.showProgress(progress);
    } catch (error) {
      box.checked = !checked;
      item.classList.toggle("done", !checked);
      this.flash(item, `Not saved: ${error.message}`);
    } finally {
      box.disabled = false;
    }
  }

  renderCheck(step, item, box) {
    const area = document.createElement("div");
    area.className = "check-area";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "check-button";
    button.textContent = "Check";
    button.setAttribute("aria-label", `Check this step on ${step.check.machine}`);
    const verified = document.createElement("span");
    verified.className = "verified-mark";
    verified.textContent = "✓ Verified";
    verified.hidden = !step.verified;
    const result = document.createElement("p");
    result.className = "check-result";
    result.setAttribute("role", "status");
    result.setAttribute("aria-live", "polite");
    button.addEventListener("click", () => this.check(step, { item, box, button, verified, result }));
    area.append(button, verified, result);
    return area;
  }

  async check(step, { item, box, button, verified, result }) {
    button.disabled = true;
    button.textContent = "Checking…";
    result.className = "check-result";
    result.textContent = "";
    const url = `${this.tutorialsUrl}${encodeURIComponent(this.slug)}/steps/${step.id}/check/`;
    try {
      const outcome = await api("POST", url, { instance: this.instanceId });
      const run = outcome.run;
      result.dataset.result = run.result;
      result.classList.add(`check-${run.result}`);
      result.textContent = run.result === "failed" ? `Not yet: ${run.message}` : run.message;
      verified.hidden = !outcome.verified;
      box.checked = outcome.verified;
      item.classList.toggle("done", outcome.verified);
      this.data.progress = outcome.progress;
      this.showProgress(outcome.progress);
      const wasLocked = this.data.pages.some((page) => page.locked);
      if (run.result === "passed" && wasLocked) await this.load(); // the next page may open now
    } catch (error) {
      result.dataset.result = "refused";
      result.classList.add("check-refused");
      result.textContent = error.message;
    } finally {
      button.disabled = false;
      button.textContent = "Check";
    }
  }

  showProgress(progress) {
    if (!progress) return;
    this.progressBar.value = progress.percent;
    this.progressBar.setAttribute("aria-valuetext", `${progress.percent}%`);
    const checks = progress.checked_step_ids?.length || 0;
    const passed = checks ? `, ${progress.verified_step_ids.length} of ${checks} checks passed` : "";
    this.progressText.textContent = `${progress.ticked} of ${progress.total} steps (${progress.percent}%)${passed}`;
  }

  // Links open beside the lab (never inside the frame); code blocks get "Type into VM".
  decorate(container) {
    for (const link of container.querySelectorAll("a[href]")) {
      if (!link.getAttribute("href").startsWith("#")) {
        link.target = "_blank";
        link.rel = "noopener noreferrer";
      }
    }
    for (const pre of container.querySelectorAll("pre")) {
      const bar = document.createElement("div");
      bar.className = "code-actions";
      const action = codeAction(pre);
      if (action) {
        bar.append(this.actionButton(pre, action));
      } else {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "type-into-vm";
        button.textContent = "Type into VM";
        button.setAttribute("aria-label", "Type this code into the selected machine");
        button.addEventListener("click", () => this.type(pre, button));
        bar.append(button);
      }
      pre.before(bar);
    }
  }

  async type(pre, button) {
    const text = pre.textContent;
    // A previous click's "back to Type into VM" must not cut this one's message short.
    clearTimeout(button.resetTimer);
    button.disabled = true;
    const target = this.describeTarget();
    button.textContent = `Typing into ${target}…`;
    try {
      await this.typeIntoMachine(text, null);
      button.textContent = `Typed into ${target}`;
    } catch (error) {
      button.textContent = "Type into VM";
      this.flash(button.parentElement, error.message);
    } finally {
      button.disabled = false;
      button.resetTimer = setTimeout(() => {
        button.textContent = "Type into VM";
      }, 2500);
    }
  }

  // An author-marked block: one button doing what the block's class says, on its machine (or the
  // selected one).
  actionButton(pre, action) {
    const machine = pre.querySelector("code")?.getAttribute("machine") || null;
    const label = ACTION_LABELS[action];
    const button = document.createElement("button");
    button.type = "button";
    button.className = `code-action code-${action}`;
    button.dataset.action = action;
    button.textContent = machine && action !== "copy" ? `${label} on ${machine}` : label;
    const where = machine || "the selected machine";
    button.setAttribute("aria-label", action === "copy" ? "Copy this code" : `${label}: ${ACTION_HELP[action]} ${where}`);
    button.addEventListener("click", () => this.runAction(pre, action, machine, button));
    return button;
  }

  async runAction(pre, action, machine, button) {
    const text = pre.querySelector("code")?.textContent ?? pre.textContent;
    const shown = button.textContent;
    clearTimeout(button.resetTimer);
    button.disabled = true;
    try {
      if (action === "copy") {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } else if (action === "interrupt") {
        await this.interruptMachine(machine);
        button.textContent = `Sent Ctrl-C to ${machine || this.describeTarget()}`;
      } else {
        // Run presses Enter after the code (one Enter, however the block ends); Type does not.
        const code = text.replace(/\n+$/, "");
        await this.typeIntoMachine(action === "run" ? `${code}\n` : code, machine);
        button.textContent = `${action === "run" ? "Ran" : "Typed"} on ${machine || this.describeTarget()}`;
      }
    } catch (error) {
      this.flash(button.parentElement, error.message);
    } finally {
      button.disabled = false;
      button.resetTimer = setTimeout(() => {
        button.textContent = shown;
      }, 2500);
    }
  }

  flash(anchor, text) {
    anchor.querySelector(":scope > .inline-error")?.remove();
    const message = document.createElement("span");
    message.className = "inline-error";
    message.setAttribute("role", "alert");
    message.textContent = text;
    anchor.append(message);
    setTimeout(() => message.remove(), 6000);
  }
}
