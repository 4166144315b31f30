// The organization's invoices: a list by status, and one invoice's lines on a click.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  function numberLink(invoice) {
    const link = document.createElement("a");
    link.href = "#";
    link.textContent = invoice.number;
    link.addEventListener("click", (event) => { event.preventDefault(); show(invoice.id); });
    return link;
  }

  async function load() {
    const status = $("invoice-status").value;
    const r = await apiAll(`/invoices${status ? `?status=${status}` : ""}`, "invoices");
    if (!r.ok) { $("invoice-error").textContent = problemText(r.data, {}); return; }
    const list = r.data.invoices;
    fillRows(document.querySelector("#invoices tbody"), list, (inv, tr) => {
      tr.id = `invoice-${inv.id}`;
      return [numberLink(inv), `#${inv.job_id}`, statusLabel(inv.status),
              formatCents(inv.amount_cents, inv.currency), when(inv.issued_at)];
    });
    $("no-invoices").hidden = list.length > 0;
  }

  async function show(id) {
    const r = await api("GET", `/invoices/${id}`);
    if (!r.ok) { $("invoice-error").textContent = problemText(r.data, {}); return; }
    const inv = r.data;
    $("invoice-detail").hidden = false;
    $("invoice-title").textContent = `${inv.number} · ${statusLabel(inv.status)}`;
    fillRows(document.querySelector("#invoice-lines tbody"), inv.line_items,
             (item) => [item.description, formatCents(item.amount_cents, inv.currency)]);
    $("invoice-money").textContent = inv.held_cents === null ? "" :
      `Held ${formatCents(inv.held_cents, inv.currency)} · charged ` +
      `${formatCents(inv.charged_cents, inv.currency)} · given back ` +
      `${formatCents(inv.refunded_cents, inv.currency)}`;
  }

  $("invoice-status").addEventListener("change", load);
  load();
})();
