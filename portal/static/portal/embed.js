// The embed view's "sign in" page: tell apart "not signed in" from "this browser blocks cookies in
// embedded pages", and offer the Storage Access API where the browser has it.

const blocked = document.getElementById("embed-cookies-blocked");
const reason = document.getElementById("embed-reason");
const accessButton = document.getElementById("storage-access");

function cookiesWork() {
  const name = "lo_cookie_test";
  const secure = window.location.protocol === "https:" ? "; SameSite=None; Secure" : "; SameSite=Lax";
  document.cookie = `${name}=1; path=/; max-age=60${secure}`;
  const works = document.cookie.split("; ").some((item) => item === `${name}=1`);
  document.cookie = `${name}=; path=/; max-age=0${secure}`;
  return works;
}

function showBlocked() {
  blocked.hidden = false;
  reason.textContent = "This frame cannot use your Lab Orchestrator session.";
}

const framed = window.top !== window.self;
if (framed && !cookiesWork()) showBlocked();

if (framed && document.hasStorageAccess && document.requestStorageAccess) {
  document.hasStorageAccess().then((has) => {
    if (!has) accessButton.hidden = false;
  });
  accessButton.addEventListener("click", async () => {
    try {
      await document.requestStorageAccess();
      window.location.reload();
    } catch {
      accessButton.hidden = true;
      showBlocked();
    }
  });
}

document.getElementById("reload-frame").addEventListener("click", () => window.location.reload());
