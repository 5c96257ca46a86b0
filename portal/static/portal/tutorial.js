// The tutorial pane: pages with previous/next, steps ticked through the API at once, a progress
// bar for the whole tutorial, and a "Type into VM" button on every code block.
//
// The HTML of pages and steps comes from the API already sanitised (tutorials/rendering.py, when
// the page was saved) with this instance's variables filled in and escaped (tutorials/variables.py);
// everything else goes into the page as text.
import { api } from "./api.js";

export class TutorialPane {
  constructor({ root, tutorialsUrl, instanceId, tutorials, typeIntoMachine, describeTarget }) {
    this.root = root;
    this.tutorialsUrl = tutorialsUrl;
    this.instanceId = instanceId;
    this.typeIntoMachine = typeIntoMachine;
    this.describeTarget = describeTarget;
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
    this.pageIndex = Math.max(0, Math.min(index, pages.length - 1));
    sessionStorage.setItem(this.storageKey, String(this.pageIndex));
    const page = pages[this.pageIndex];
    const ticked = new Set(this.data.progress?.ticked_step_ids || []);

    const heading = document.createElement("h2");
    heading.textContent = page.title;
    heading.tabIndex = -1;
    const body = document.createElement("div");
    body.className = "tutorial-content";
    body.innerHTML = page.body_html; // sanitised on the server, see the module comment
    const parts = [heading, body];
    if (page.steps.length) parts.push(this.renderSteps(page.steps, ticked));
    this.article.replaceChildren(...parts);
    this.decorate(this.article);

    this.position.textContent = `Page ${this.pageIndex + 1} of ${pages.length}`;
    this.prevButton.disabled = this.pageIndex === 0;
    this.nextButton.disabled = this.pageIndex === pages.length - 1;
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
      box.addEventListener("change", () => this.tick(step, box));
      item.classList.toggle("done", box.checked);
      item.append(box, text);
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

  showProgress(progress) {
    if (!progress) return;
    this.progressBar.value = progress.percent;
    this.progressBar.setAttribute("aria-valuetext", `${progress.percent}%`);
    this.progressText.textContent = `${progress.ticked} of ${progress.total} steps (${progress.percent}%)`;
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
      const button = document.createElement("button");
      button.type = "button";
      button.className = "type-into-vm";
      button.textContent = "Type into VM";
      button.setAttribute("aria-label", "Type this code into the selected machine");
      button.addEventListener("click", () => this.type(pre, button));
      bar.append(button);
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
      await this.typeIntoMachine(text);
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
