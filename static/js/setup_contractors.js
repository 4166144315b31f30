// Invite workers as preferred contractors, follow the answers, stop preferring someone.
"use strict";

(function () {
  const LABELS = {contact: "E-mail or mobile number", invitation: "Invitation",
                  invitation_id: "Invitation"};
  const ANSWERS = {pending: "Waiting for an answer", accepted: "Accepted", declined: "Declined",
                   withdrawn: "Withdrawn"};
  const $ = (id) => document.getElementById(id);

  function answerCell(invitation) {
    const span = document.createElement("span");
    span.className = "answer";
    span.textContent = ANSWERS[invitation.status] || invitation.status;
    if (invitation.worker_name) span.textContent += ` by ${invitation.worker_name}`;
    return span;
  }

  async function load() {
    const [invitations, contractors] = await Promise.all([
      apiAll("/org/invitations", "invitations"), apiAll("/org/contractors", "contractors")]);
    if (invitations.ok) {
      const list = invitations.data.invitations;
      fillRows(document.querySelector("#invitations tbody"), list, (i) => [
        i.contact, answerCell(i), when(i.created_at), when(i.responded_at),
        i.status === "pending" ? button("Withdraw", () => withdraw(i)) : ""]);
      $("no-invitations").hidden = list.length > 0;
    }
    if (contractors.ok) {
      const list = contractors.data.contractors;
      fillRows(document.querySelector("#contractors tbody"), list, (c) => [
        c.name, when(c.approved_at), button("Remove", () => remove(c), "danger")]);
      $("no-contractors").hidden = list.length > 0;
    }
  }

  async function withdraw(invitation) {
    const r = await api("DELETE", `/org/invitations/${invitation.id}`);
    if (!r.ok) $("invite-error").textContent = problemText(r.data, LABELS);
    load();
  }

  async function remove(contractor) {
    if (!window.confirm(`Stop sending your jobs to ${contractor.name} first?`)) return;
    await api("DELETE", `/org/contractors/${contractor.worker_id}`);
    load();
  }

  $("invite-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("invite-error").textContent = "";
    const r = await api("POST", "/org/invitations", {contact: $("invite-contact").value});
    if (!r.ok) { $("invite-error").textContent = problemText(r.data, LABELS); return; }
    $("invite-contact").value = "";
    load();
  });

  load();
})();
