// Follow one job: the promise, the status, the worker's marker moving and the ETA counting
// down, all live from the job's Socket.IO room.
"use strict";

(function () {
  const root = document.getElementById("job");
  const jobId = Number(root.dataset.jobId);
  const home = [Number(root.dataset.lat), Number(root.dataset.lng)];
  const map = makeMap("map", home[0], home[1], 14);
  L.marker(home, {title: "Job location"}).addTo(map);
  const mapEl = document.getElementById("map");
  const CANCELLABLE = Object.keys(STATES.resident_moves)
    .filter((from) => STATES.resident_moves[from].includes("cancelled"));
  let workerMarker = null;
  let etaAt = null;
  let status = null;
  let wasQueued = false;

  function render(job) {
    status = job.status;
    const badge = document.getElementById("status");
    badge.textContent = statusLabel(job.status);
    badge.className = `status ${job.status}`;
    const promise = document.getElementById("promise");
    if (job.status === "unfilled") {
      promise.textContent = "Nobody could take this job in time. Nothing was charged.";
    } else if (STATES.done.includes(job.status)) {
      promise.textContent = `Done at ${clock(job.completed_at, job.time_zone)}.`;
    } else if (job.status === "cancelled") {
      promise.textContent = "Cancelled.";
    } else if (job.status === "arrived" || job.status === "in_progress") {
      promise.textContent = `Arrived at ${clock(job.arrived_at, job.time_zone)}.`;
    } else if (job.promised === false && job.worker && job.estimated_arrival) {
      // Taken by a worker finishing another job: an estimate, not a promise.
      promise.textContent = job.queued
        ? `Expected around ${clock(job.estimated_arrival, job.time_zone)}, after the job they are finishing (an estimate: it depends on when that job ends).`
        : `Expected around ${clock(job.estimated_arrival, job.time_zone)}.`;
    } else {
      promise.textContent = job.promised === false
        ? `Only one or two workers can reach you by ${clock(job.arrive_by, job.time_zone)}; we are asking them and confirm when one accepts.`
        : `Someone ${dueText(job)}`;
    }
    const queued = Boolean(job.queued) && job.status === "assigned";
    document.getElementById("worker").textContent = job.worker
      ? (queued
        ? `${job.worker.name} (${job.worker.travel_mode}) is finishing a job nearby and comes straight after.`
        : `${job.worker.name} (${job.worker.travel_mode}) is on the job.`)
      : (job.status === "dispatching" ? "Asking the nearest vetted workers…" : "");
    // A queued job's ETA counts the wait; when the other job ends it is the trip alone.
    if (job.estimated_arrival && STATES.coming.includes(job.status)
        && (!etaAt || queued !== wasQueued)) {
      etaAt = job.estimated_arrival;
    }
    wasQueued = queued;
    if (!STATES.coming.includes(job.status)) etaAt = null;
    document.getElementById("cancel").hidden = !CANCELLABLE.includes(job.status);
    tick();
  }

  function tick() {
    document.getElementById("eta").textContent = etaAt ? `ETA ${countdown(etaAt)}` : "";
  }
  setInterval(tick, 1000);

  function moveWorker(p) {
    if (workerMarker) workerMarker.setLatLng([p.lat, p.lng]);
    else workerMarker = L.marker([p.lat, p.lng], {icon: workerIcon(), title: "Worker"}).addTo(map);
    mapEl.dataset.workerLat = p.lat;
    mapEl.dataset.workerLng = p.lng;
    if (STATES.coming.includes(status)) etaAt = p.eta_at; // none once arrived
    map.fitBounds(L.latLngBounds([home, [p.lat, p.lng]]).pad(0.3), {maxZoom: 16});
    tick();
  }

  const socket = connectSocket();
  socket.on("connect", () => {
    socket.emit("watch_job", {job_id: jobId}, (answer) => {
      if (answer && answer.ok) render(answer.job);
      else document.getElementById("message").textContent = errorText(answer);
    });
  });
  function showContact(number) {
    const link = document.getElementById("masked-number");
    document.getElementById("contact").hidden = !number;
    link.textContent = number || "";
    link.href = number ? `tel:${number}` : "#";
  }

  socket.on("job_update", (job) => {
    if (job.id !== jobId) return;
    render(job);
    // The masked number comes with the job itself (opened when the job is assigned).
    api("GET", `/jobs/${jobId}`).then((r) => { if (r.ok) showContact(r.data.masked_number); });
  });
  socket.on("worker_location", (p) => { if (p.job_id === jobId) moveWorker(p); });

  document.getElementById("cancel").addEventListener("click", async () => {
    if (!confirm("Cancel this job?")) return;
    const r = await api("POST", `/jobs/${jobId}/cancel`, {reason: "cancelled on the job page"});
    if (r.ok) render(Object.assign({}, r.data));
    else document.getElementById("message").textContent = errorText(r.data);
  });

  api("GET", `/jobs/${jobId}`).then((r) => { if (r.ok && status === null) render(r.data); });
})();
