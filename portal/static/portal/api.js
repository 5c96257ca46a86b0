// The REST API from the page: session cookie + CSRF token, JSON in and out, readable errors.

export class ApiError extends Error {
  constructor(status, data) {
    super(messageOf(status, data));
    this.status = status;
    this.data = data || {};
    this.code = this.data.code || null;
  }

  // Not signed in (401), or a session the browser did not send (CSRF refusal, 403 "credentials").
  get authLost() {
    const detail = String(this.data.detail || "");
    return this.status === 401 || (this.status === 403 && /csrf|credentials/i.test(detail));
  }
}

function messageOf(status, data) {
  if (data && typeof data.detail === "string") return data.detail;
  if (data && typeof data === "object") {
    const first = Object.values(data).flat().find((value) => typeof value === "string");
    if (first) return first;
  }
  if (status === 0) return "The server cannot be reached; check your connection.";
  return `The server answered ${status}.`;
}

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content || "";
}

export async function api(method, url, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, null);
  }
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (error.authLost) document.dispatchEvent(new CustomEvent("lab:auth-lost"));
    throw error;
  }
  return data;
}
