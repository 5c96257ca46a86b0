// Admin Markdown preview: sends the textarea's current text to the preview endpoint and shows
// the HTML it returns. That HTML is already sanitised on the server, exactly as students get it,
// so inserting it is safe. Delegated clicks also cover inline rows added after page load.
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest(".markdown-preview-button");
  if (!button) {
    return;
  }
  const editor = button.closest(".markdown-editor");
  const textarea = editor.querySelector("textarea");
  const preview = editor.querySelector(".markdown-preview");
  const error = editor.querySelector(".markdown-preview-error");
  const token = textarea.form.querySelector("[name=csrfmiddlewaretoken]").value;
  error.textContent = "";
  button.disabled = true;
  try {
    const response = await fetch(button.dataset.previewUrl, {
      method: "POST",
      headers: { "X-CSRFToken": token },
      body: new URLSearchParams({ source: textarea.value }),
      credentials: "same-origin",
    });
    const data = await response.json();
    if (!response.ok) {
      error.textContent = data.error || "Preview failed.";
      return;
    }
    preview.innerHTML = data.html;
    preview.hidden = false;
  } catch (failure) {
    error.textContent = "Preview failed: " + failure;
  } finally {
    button.disabled = false;
  }
});
