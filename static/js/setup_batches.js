// Batch history: send a CSV (a file already sent is caught and sent again only on purpose),
// follow each batch's progress and jobs, cancel a batch's open jobs.
"use strict";

(function () {
  const LABELS = {file: "The file", rows: "The file", batch_key: "The file", batch: "The batch",
                  "Content-Type": "The file", confirm_duplicate: "The file"};
  const STATES = {queued: "Waiting", processing: "Opening jobs", done: "Done", failed: "Failed"};
  const $ = (id) => document.getElementById(id);
  let batchKey = null; // one per chosen file: a retry of the same send is not a second batch
  let shown = null;
  let units = {};

  $("batch-file").addEventListener("change", () => { batchKey = newKey(); });

  async function send(confirm) {
    const file = $("batch-file").files[0];
    if (!file) return;
    batchKey = batchKey || newKey();
    const query = `?batch_key=${encodeURIComponent(batchKey)}` + (confirm ? "&confirm_duplicate=true" : "");
    const r = await uploadCsv(`/batches${query}`, file);
    $("duplicate").hidden = true;
    if (r.status === 409 && r.data.error && r.data.error.code === "duplicate_batch") {
      $("duplicate-text").textContent = sentence(r.data.error.message) +
        " Sending it again requests every repair in it a second time.";
      $("duplicate").hidden = false;
      return;
    }
    if (!r.ok) { $("batch-error").textContent = problemText(r.data, LABELS); return; }
    const refused = r.data.rejected.length;
    $("batch-sent").textContent = (r.status === 200 ? `Already sent as batch ${r.data.id}. ` : `Sent as batch ${r.data.id}: `) +
      `${r.data.accepted_rows} repair${r.data.accepted_rows === 1 ? "" : "s"} accepted` +
      (refused ? `, ${refused} row${refused === 1 ? "" : "s"} refused.` : ".");
    showRowProblems($("batch-rejected"), r.data.rejected);
    await load();
    show(r.data.id);
  }

  $("batch-form").addEventListener("submit", (event) => {
    event.preventDefault();
    $("batch-error").textContent = "";
    $("batch-sent").textContent = "";
    send(false);
  });
  $("send-again").addEventListener("click", () => { batchKey = newKey(); send(true); });
  $("keep-first").addEventListener("click", () => { $("duplicate").hidden = true; });

  function jobsText(batch) {
    const counts = Object.entries(batch.jobs_by_status).map(([s, n]) => `${n} ${statusLabel(s)}`);
    return counts.join(", ") || "none yet";
  }

  async function load() {
    const r = await api("GET", "/batches");
    if (!r.ok) return;
    fillRows(document.querySelector("#batches tbody"), r.data.batches, (b, tr) => {
      tr.id = `batch-${b.id}`;
      return [`#${b.id}`, when(b.created_at), STATES[b.status] || b.status,
              `${b.accepted_rows} of ${b.total_rows} accepted` + (b.rejected_rows ? `, ${b.rejected_rows} refused` : ""),
              jobsText(b), button("Show", () => show(b.id))];
    });
    $("no-batches").hidden = r.data.batches.length > 0;
    const busy = r.data.batches.some((b) => b.status === "queued" || b.status === "processing");
    if (busy) setTimeout(load, 1500);
    return r.data.batches;
  }

  async function show(batchId) {
    shown = batchId;
    const [r, list] = await Promise.all([apiAll(`/batches/${batchId}`, "jobs"), apiAll("/units", "units")]);
    if (!r.ok || shown !== batchId) return;
    if (list.ok) units = Object.fromEntries(list.data.units.map((u) => [u.id, u.label]));
    const batch = r.data;
    $("batch-detail").hidden = false;
    $("detail-title").textContent = `Batch #${batch.id}: ${STATES[batch.status] || batch.status}`;
    const bar = $("detail-bar");
    bar.max = Math.max(1, batch.accepted_rows);
    bar.value = batch.status === "done" ? bar.max : batch.processed_rows;
    fillRows(document.querySelector("#detail-jobs tbody"), batch.jobs, (j) => {
      const link = document.createElement("a");
      link.href = `/jobs/${j.id}`;
      link.textContent = `#${j.id}`;
      const badge = document.createElement("span");
      badge.className = `status ${j.status}`;
      badge.textContent = statusLabel(j.status);
      return [link, units[j.unit_id] || "", badge];
    });
    showRowProblems($("detail-rejected"), batch.rejected);
    const summary = ((await api("GET", "/batches")).data.batches || []).find((b) => b.id === batch.id);
    const open = summary ? summary.open_jobs : 0;
    const cancel = $("cancel-open");
    cancel.hidden = open === 0;
    cancel.textContent = `Cancel ${open} open job${open === 1 ? "" : "s"}`;
    cancel.onclick = () => cancelOpen(batch.id, open);
    if (batch.status === "queued" || batch.status === "processing") {
      setTimeout(() => shown === batchId && show(batchId), 1500);
    }
  }

  async function cancelOpen(batchId, open) {
    if (!window.confirm(`Cancel ${open} job${open === 1 ? "" : "s"} of batch #${batchId} that no worker has taken yet?`)) return;
    const r = await api("POST", `/batches/${batchId}/cancel`, {});
    if (!r.ok) { $("cancel-result").textContent = problemText(r.data, LABELS); return; }
    const n = r.data.cancelled.length;
    $("cancel-result").textContent = `${n} job${n === 1 ? "" : "s"} cancelled` +
      (r.data.kept ? `; ${r.data.kept} taken by a worker or already over ${r.data.kept === 1 ? "was" : "were"} kept.` : ".");
    await load();
    show(batchId);
  }

  load();
})();
