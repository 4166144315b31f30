// Every job the caller booked, on a map and in a table, with live status.
"use strict";

(function () {
  const map = makeMap("map", 37.7749, -122.4194, 12);
  const markers = L.layerGroup().addTo(map);
  const filter = document.getElementById("status-filter");
  let jobs = [];

  const propertyFilter = document.getElementById("property-filter");

  function render() {
    const wanted = filter.value;
    const property = propertyFilter ? propertyFilter.value : "";
    const body = document.querySelector("#jobs tbody");
    body.innerHTML = "";
    markers.clearLayers();
    const shown = jobs.filter((j) => (!wanted || j.status === wanted)
      && (!property || String(j.property_id) === property));
    for (const job of shown) {
      const tr = document.createElement("tr");
      tr.id = `job-${job.id}`;
      tr.innerHTML = '<td><a></a></td><td></td><td></td><td></td><td></td><td><span class="status"></span></td>';
      const link = tr.querySelector("a");
      link.href = `/jobs/${job.id}`;
      link.textContent = job.id;
      tr.children[1].textContent = job.category.name;
      tr.children[2].textContent = job.address || `${job.lat.toFixed(4)}, ${job.lng.toFixed(4)}`;
      tr.children[3].textContent = dueText(job);
      tr.children[4].textContent = job.worker ? job.worker.name : "";
      const badge = tr.querySelector(".status");
      badge.textContent = statusLabel(job.status);
      badge.className = `status ${job.status}`;
      body.appendChild(tr);
      L.marker([job.lat, job.lng], {title: `#${job.id} ${job.status}`}).addTo(markers);
    }
    document.getElementById("empty").hidden = shown.length > 0;
    if (shown.length) map.fitBounds(L.latLngBounds(shown.map((j) => [j.lat, j.lng])).pad(0.2), {maxZoom: 15});
  }

  async function load() {
    const r = await api("GET", "/jobs");
    if (r.ok) { jobs = r.data.jobs; render(); }
  }

  filter.addEventListener("change", render);
  if (propertyFilter) {
    propertyFilter.addEventListener("change", render);
    apiAll("/properties", "properties").then((r) => {
      if (!r.ok) return;
      for (const p of r.data.properties) {
        const option = document.createElement("option");
        option.value = p.id;
        option.textContent = p.name;
        propertyFilter.appendChild(option);
      }
    });
  }

  // Batches: upload a CSV, list refused rows, follow the background processing.
  const batchForm = document.getElementById("batch-form");
  if (batchForm) {
    batchForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const file = document.getElementById("batch-file").files[0];
      const errorBox = document.getElementById("batch-error");
      errorBox.textContent = "";
      if (!file) return;
      const key = `${file.name}-${file.size}-${file.lastModified}`;
      const response = await fetch(`/api/v1/batches?batch_key=${encodeURIComponent(key)}`, {
        method: "POST", credentials: "same-origin", body: await file.text(),
        headers: {"Content-Type": "text/csv", "X-CSRFToken": CSRF},
      });
      const data = await response.json();
      if (!response.ok) { errorBox.textContent = errorText(data); return; }
      showBatch(data);
      follow(data.id);
    });
  }

  function showBatch(batch) {
    document.getElementById("batch-progress").hidden = false;
    document.getElementById("batch-status").textContent = `Batch ${batch.id}: ${batch.status}`;
    document.getElementById("batch-count").textContent =
      `${batch.processed_rows} of ${batch.accepted_rows} jobs opened, ${batch.rejected.length} rows refused`;
    const bar = document.getElementById("batch-bar");
    bar.max = Math.max(1, batch.accepted_rows);
    bar.value = batch.status === "done" ? bar.max : batch.processed_rows;
    const table = document.getElementById("batch-rejected");
    const body = table.querySelector("tbody");
    body.innerHTML = "";
    for (const problem of batch.rejected) {
      const tr = document.createElement("tr");
      tr.innerHTML = "<td></td><td></td><td></td>";
      tr.children[0].textContent = problem.line;
      tr.children[1].textContent = problem.field;
      tr.children[2].textContent = problem.problem;
      body.appendChild(tr);
    }
    table.hidden = batch.rejected.length === 0;
  }

  async function follow(batchId) {
    const r = await apiAll(`/batches/${batchId}`, "jobs");
    if (!r.ok) return;
    showBatch(r.data);
    if (r.data.status === "done") { load(); if (month) loadSla(); }
    else if (r.data.status === "failed") {
      document.getElementById("batch-error").textContent = "Processing failed; operators have been told.";
    } else setTimeout(() => follow(batchId), 1000); // leave and come back: it carries on
  }

  // The on-time report for a month, with a bar per property and a CSV download.
  const month = document.getElementById("sla-month");
  if (month) {
    month.value = new Date().toISOString().slice(0, 7);
    month.addEventListener("change", loadSla);
    loadSla();
  }

  async function loadSla() {
    document.getElementById("sla-csv").href = `/api/v1/reports/sla?month=${month.value}&format=csv`;
    const r = await api("GET", `/reports/sla?month=${month.value}`);
    if (!r.ok) return;
    const body = document.querySelector("#sla-table tbody");
    body.innerHTML = "";
    for (const row of r.data.rows) {
      const tr = document.createElement("tr");
      tr.innerHTML = '<td></td><td></td><td></td><td><div class="bar"><span></span></div></td><td></td><td></td><td></td><td></td><td></td>';
      tr.children[0].textContent = row.property;
      tr.children[1].textContent = row.jobs;
      const due = row.on_time + row.late;
      tr.children[2].textContent = row.on_time_pct === null
        ? "none due yet" : `${row.on_time_pct}% (${row.on_time} of ${due} due)`;
      tr.querySelector(".bar span").style.width = `${row.on_time_pct || 0}%`;
      tr.children[4].textContent = row.late;
      tr.children[5].textContent = row.open;
      tr.children[6].textContent = row.median_arrival_min === null ? "" : `${row.median_arrival_min} min`;
      tr.children[7].textContent = row.budget_caps_total === null ? "" : row.budget_caps_total.toFixed(2);
      // Blank while every hold of the row is still open: nothing charged yet.
      tr.children[8].textContent = row.cost_total === null ? "" : row.cost_total.toFixed(2);
      body.appendChild(tr);
    }
    document.getElementById("sla-empty").hidden = r.data.rows.length > 0;
    showStuck(r.data.stuck);
  }

  // Open jobs that need a person (past their promise, or nobody being asked), with why.
  function showStuck(stuck) {
    const body = document.querySelector("#stuck-table tbody");
    body.innerHTML = "";
    for (const job of stuck) {
      const tr = document.createElement("tr");
      tr.id = `stuck-${job.job_id}`;
      tr.innerHTML = "<td><a></a></td><td></td><td></td><td></td><td></td>";
      const link = tr.querySelector("a");
      link.href = `/jobs/${job.job_id}`;
      link.textContent = job.job_id;
      tr.children[1].textContent = `${job.property} ${job.unit}`;
      tr.children[2].textContent = job.category;
      tr.children[3].textContent = dueText(job);
      tr.children[4].textContent = job.reason;
      body.appendChild(tr);
    }
    document.getElementById("stuck-box").hidden = stuck.length === 0;
  }
  const socket = connectSocket();
  socket.on("connect", load); // catch up after any disconnect
  socket.on("resync", load); // and after pushes lost while the server could not hear Redis
  load();
  socket.on("job_update", (update) => {
    const job = jobs.find((j) => j.id === update.id);
    if (job) { Object.assign(job, update); render(); } else load();
  });
})();
