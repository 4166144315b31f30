// On the Work page: organizations inviting this worker to be their preferred contractor.
"use strict";

(function () {
  const box = document.getElementById("invitations");

  async function load() {
    const r = await apiAll("/invitations", "invitations");
    if (!r.ok) return;
    box.innerHTML = "";
    for (const invitation of r.data.invitations) {
      const card = document.createElement("div");
      card.className = "card invitation";
      const text = document.createElement("p");
      text.textContent = `${invitation.organization} invites you to be one of their preferred ` +
        "contractors: their jobs come to you first.";
      const row = document.createElement("div");
      row.className = "row";
      const error = document.createElement("p");
      error.className = "error";
      error.setAttribute("role", "alert");
      for (const [label, answer, cls] of [["Accept", "accept", "primary grow"], ["Decline", "decline", "grow"]]) {
        const b = document.createElement("button");
        b.textContent = label;
        b.className = cls;
        b.addEventListener("click", async () => {
          const answered = await api("POST", `/invitations/${invitation.id}/${answer}`);
          if (!answered.ok && answered.status !== 409) {
            error.textContent = "That did not work. Please try again.";
            return;
          }
          load();
        });
        row.appendChild(b);
      }
      card.append(text, row, error);
      box.appendChild(card);
    }
    box.hidden = r.data.invitations.length === 0;
  }

  load();
})();
