// Approve or decline final amounts above the hard limit; set the organization's limits.
"use strict";

(function () {
  const FIELDS = ["emergency_soft_cents", "emergency_hard_cents", "routine_soft_cents",
                  "routine_hard_cents"];
  const LABELS = {emergency_soft_cents: "Emergency soft limit",
                  emergency_hard_cents: "Emergency hard limit",
                  routine_soft_cents: "Routine soft limit", routine_hard_cents: "Routine hard limit",
                  reason: "Reason"};
  const $ = (id) => document.getElementById(id);

  function decisionCell(approval) {
    const box = document.createElement("span");
    box.className = "row";
    const reason = document.createElement("input");
    reason.placeholder = "Why decline?";
    reason.maxLength = 500;
    reason.className = "reason";
    box.append(button("Approve", () => decide(approval, "approve", {}), "primary approve"),
               reason,
               button("Decline", () => decide(approval, "decline", {reason: reason.value}),
                      "danger decline"));
    return box;
  }

  async function load() {
    const r = await apiAll("/approvals?status=pending", "approvals");
    if (!r.ok) { $("approval-error").textContent = problemText(r.data, LABELS); return; }
    const list = r.data.approvals;
    fillRows(document.querySelector("#approvals tbody"), list, (a, tr) => {
      tr.id = `approval-${a.id}`;
      return [`#${a.job_id}`, formatCents(a.amount_cents, a.currency),
              a.hard_limit_cents === null ? "" : formatCents(a.hard_limit_cents, a.currency),
              when(a.requested_at), decisionCell(a)];
    });
    $("no-approvals").hidden = list.length > 0;
  }

  async function decide(approval, verb, body) {
    $("approval-error").textContent = "";
    const r = await api("POST", `/approvals/${approval.id}/${verb}`, body);
    if (!r.ok) $("approval-error").textContent = problemText(r.data, LABELS);
    load();
  }

  // Dollars typed -> whole cents; empty -> null (inherit); anything else is sent as typed so
  // the API's refusal names the field.
  function cents(text) {
    const value = text.trim().replace(/^\$/, "");
    if (!value) return null;
    if (!/^[0-9]+(\.[0-9]{1,2})?$/.test(value)) return value;
    return Math.round(Number(value) * 100);
  }

  function dollars(value) {
    return value === null || value === undefined ? "" : (value / 100).toFixed(2);
  }

  async function loadLimits() {
    const r = await api("GET", "/org/limits");
    if (r.ok) for (const f of FIELDS) $(f).value = dollars(r.data[f]);
  }

  $("limits-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("limits-error").textContent = "";
    $("limits-saved").textContent = "";
    const body = {};
    for (const f of FIELDS) body[f] = cents($(f).value);
    const r = await api("PUT", "/org/limits", body);
    if (!r.ok) { $("limits-error").textContent = problemText(r.data, LABELS); return; }
    $("limits-saved").textContent = "Saved.";
    for (const f of FIELDS) $(f).value = dollars(r.data[f]);
  });

  load();
  loadLimits();
})();
