// A worker's earnings: today and this week from the ledger (jobs paid, gross, the platform's
// fees, net), the balance, the payouts with their status, and an instant payout whose fee
// is shown before it is asked for.
"use strict";

(function () {
  const form = document.getElementById("instant-form");
  const amountInput = document.getElementById("instant-amount");
  const note = document.getElementById("instant-note");
  const formError = document.getElementById("instant-error");
  const pageError = document.getElementById("earnings-error");
  let figures = null;
  let key = newKey();  // one per payout meant: a double click or a retry pays once

  function minorDigits(currency) {
    return new Intl.NumberFormat(undefined, {style: "currency", currency})
      .resolvedOptions().maximumFractionDigits;
  }

  // What the field says, in cents; NaN when it is not an amount.
  function enteredCents() {
    const text = amountInput.value.trim();
    if (!/^\d+(\.\d+)?$/.test(text)) return NaN;
    return Math.round(Number(text) * 10 ** minorDigits(figures.currency));
  }

  function money(cents) {
    return formatCents(cents, figures.currency);
  }

  function showTotals(rowId, totals) {
    const row = document.getElementById(rowId);
    row.querySelector(".jobs").textContent = String(totals.jobs_paid);
    row.querySelector(".gross").textContent = money(totals.gross_cents);
    row.querySelector(".fees").textContent = money(totals.platform_fees_cents);
    row.querySelector(".net").textContent = money(totals.net_cents);
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function showPayouts(payouts) {
    const body = document.querySelector("#payouts tbody");
    body.innerHTML = "";
    for (const p of payouts) {
      const tr = document.createElement("tr");
      tr.dataset.status = p.status;
      tr.append(cell(dayOf(p.requested_at, figures.time_zone) + " " +
                     hourMinute(p.requested_at, figures.time_zone)),
                cell(p.kind), cell(money(p.amount_cents), "amount"),
                cell(p.fee_cents ? money(p.fee_cents) : "—"),
                cell(p.status.replace(/_/g, " "), "status"));
      body.appendChild(tr);
    }
    document.getElementById("no-payouts").hidden = payouts.length > 0;
  }

  function showNote() {
    const cents = enteredCents();
    if (!figures || Number.isNaN(cents) || cents <= 0) {
      note.textContent = "Fee " + (figures ? money(figures.instant_fee_cents) : "");
      return;
    }
    note.textContent = "Fee " + money(figures.instant_fee_cents) + ": " +
      money(Math.max(0, cents - figures.instant_fee_cents)) + " reaches your bank.";
  }

  async function load() {
    const r = await api("GET", "/worker/earnings");
    if (!r.ok) {
      pageError.textContent = errorText(r.data);
      return;
    }
    figures = r.data;
    document.querySelectorAll(".zone-name").forEach((n) => {
      n.textContent = zoneName(figures.time_zone);
    });
    showTotals("totals-today", figures.today);
    showTotals("totals-week", figures.week);
    document.getElementById("balance").textContent = money(figures.balance_cents);
    document.getElementById("instant-min").textContent = money(figures.instant_min_cents);
    document.getElementById("instant-fee").textContent = money(figures.instant_fee_cents);
    showPayouts(figures.payouts);
    showAccount(figures.payout_account, figures.payouts_enabled);
    showNote();
  }

  // Where payouts go: ready, or a button that sets the account up (with Stripe, its
  // hosted onboarding; with the simulated provider, at once).
  function showAccount(account, enabled) {
    document.getElementById("payout-account-ready").hidden = !enabled;
    document.getElementById("payout-account-needed").hidden = enabled;
    document.getElementById("payout-account-id").textContent = account || "";
  }

  document.getElementById("payout-account-setup").addEventListener("click", async () => {
    const button = document.getElementById("payout-account-setup");
    const error = document.getElementById("payout-account-error");
    error.textContent = "";
    button.disabled = true;
    try {
      const r = await api("POST", "/worker/payout-account", {});
      if (!r.ok) {
        error.textContent = errorText(r.data);
        return;
      }
      if (r.data.onboarding_url) {
        window.location.assign(r.data.onboarding_url);
        return;
      }
      await load();
    } finally {
      button.disabled = false;
    }
  });

  amountInput.addEventListener("input", () => {
    key = newKey();
    showNote();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError.textContent = "";
    if (!figures) return;
    const cents = enteredCents();
    if (Number.isNaN(cents)) {
      formError.textContent = "Enter the amount, like 25.00.";
      return;
    }
    const button = document.getElementById("instant-submit");
    button.disabled = true;
    try {
      const r = await api("POST", "/worker/payouts", {amount_cents: cents},
                          {"Idempotency-Key": key});
      if (!r.ok) {
        formError.textContent = errorText(r.data);
        return;
      }
      key = newKey();
      amountInput.value = "";
      await load();
    } finally {
      button.disabled = false;
    }
  });

  load();
})();
