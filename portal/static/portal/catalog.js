// Lab catalog (and the embeddable start card): "Start lab" starts an instance through the API and
// opens its page.
import { api } from "./api.js";

const list = document.querySelector(".lab-list");

for (const button of document.querySelectorAll(".start-lab")) {
  button.addEventListener("click", async () => {
    const card = button.closest(".lab-card");
    const message = card.querySelector(".message");
    button.disabled = true;
    message.classList.remove("error");
    message.textContent = "Starting…";
    try {
      const instance = await api("POST", list.dataset.api, { lab: button.dataset.lab });
      message.textContent = "Started; opening your lab…";
      window.location.assign(list.dataset.instancePage.replace("/0/", `/${instance.id}/`));
    } catch (error) {
      message.textContent = error.message;
      message.classList.add("error");
      button.disabled = false;
    }
  });
}
