// Create or edit the organization; set its webhook address; the signing secret shown once.
"use strict";

(function () {
  const LABELS = {name: "Company name", webhook_url: "Address", organization: "Organization"};
  const create = document.getElementById("org-create");
  const edit = document.getElementById("org-edit");
  const errorBox = document.getElementById("org-error");
  const marketplace = document.getElementById("org-marketplace");
  const name = document.getElementById("org-name");

  if (create) {
    create.addEventListener("submit", async (event) => {
      event.preventDefault();
      errorBox.textContent = "";
      const r = await api("POST", "/org", {name: name.value, allow_marketplace: marketplace.checked});
      if (!r.ok) { errorBox.textContent = problemText(r.data, LABELS); return; }
      window.location.assign("/properties"); // next: the properties and their units
    });
    return;
  }

  edit.addEventListener("submit", async (event) => {
    event.preventDefault();
    errorBox.textContent = "";
    const r = await api("PATCH", "/org", {name: name.value, allow_marketplace: marketplace.checked});
    if (!r.ok) { errorBox.textContent = problemText(r.data, LABELS); return; }
    document.querySelector("h1").textContent = r.data.name;
    document.getElementById("org-saved").textContent = "Saved.";
  });

  const hook = document.getElementById("webhook");
  const hookError = document.getElementById("webhook-error");
  const rotate = document.getElementById("rotate");
  const state = document.getElementById("webhook-state");

  function showSecret(org) {
    rotate.hidden = !org.webhook_secret_set;
    state.textContent = org.webhook_secret_set
      ? "Changes are signed with your secret. It is shown once, when it is made; if you lose it, make a new one."
      : "No address set: nothing is sent.";
    const box = document.getElementById("secret-box");
    box.hidden = !org.webhook_secret;
    document.getElementById("secret").textContent = org.webhook_secret || "";
  }

  hook.addEventListener("submit", async (event) => {
    event.preventDefault();
    hookError.textContent = "";
    const url = document.getElementById("webhook-url").value.trim();
    const r = await api("PATCH", "/org", {webhook_url: url});
    if (!r.ok) { hookError.textContent = problemText(r.data, LABELS); return; }
    showSecret(r.data);
  });

  rotate.addEventListener("click", async () => {
    if (!window.confirm("Make a new secret? The old one stops working at once.")) return;
    hookError.textContent = "";
    const r = await api("POST", "/org/webhook-secret");
    if (!r.ok) { hookError.textContent = problemText(r.data, LABELS); return; }
    showSecret(r.data);
  });
})();
