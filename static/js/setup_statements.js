// The organization's statement for a month: rows, totals and the CSV download links.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const month = $("statement-month");
  const LABELS = {month: "Month", property_id: "Property"};

  function money(cents, currency) {
    return cents ? formatCents(cents, currency) : "";
  }

  function links() {
    for (const a of document.querySelectorAll("a.statement-csv")) {
      const params = new URLSearchParams({month: month.value});
      if (a.dataset.propertyId) params.set("property_id", a.dataset.propertyId);
      a.href = `/api/v1/statements.csv?${params}`;
    }
  }

  async function load() {
    if (!month.value) return;
    links();
    $("statement-error").textContent = "";
    const r = await api("GET", `/statements?month=${encodeURIComponent(month.value)}`);
    if (!r.ok) { $("statement-error").textContent = problemText(r.data, LABELS); return; }
    fillRows(document.querySelector("#statement tbody"), r.data.rows, (row, tr) => {
      tr.id = `statement-job-${row.job_id}`;
      const link = document.createElement("a");
      link.href = `/jobs/${row.job_id}`;
      link.textContent = `#${row.job_id}`;
      return [link, row.invoice_number || "", row.invoice_status || "", row.date, [row.property, row.unit].filter(Boolean).join(" "),
              row.category, row.payment_status,
              money(row.held_cents, row.currency), money(row.charged_cents, row.currency),
              money(row.refunded_cents, row.currency),
              money(row.cancellation_fee_cents, row.currency)];
    });
    fillRows(document.querySelector("#statement tfoot"), r.data.totals, (t, tr) => {
      tr.className = "total";
      return ["Total", "", "", t.jobs === 1 ? "1 job" : `${t.jobs} jobs`, "", "", "",
              formatCents(t.held_cents, t.currency), formatCents(t.charged_cents, t.currency),
              formatCents(t.refunded_cents, t.currency),
              formatCents(t.cancellation_fee_cents, t.currency)];
    });
    $("statement-empty").hidden = r.data.rows.length > 0;
  }

  month.addEventListener("change", load);
  load();
})();
