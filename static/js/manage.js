// Every job the caller booked, on a map and in a table, with live status.
"use strict";

(function () {
  const map = makeMap("map", 37.7749, -122.4194, 12);
  const markers = L.layerGroup().addTo(map);
  const filter = document.getElementById("status-filter");
  let jobs = [];

  function render() {
    const wanted = filter.value;
    const body = document.querySelector("#jobs tbody");
    body.innerHTML = "";
    markers.clearLayers();
    const shown = jobs.filter((j) => !wanted || j.status === wanted);
    for (const job of shown) {
      const tr = document.createElement("tr");
      tr.id = `job-${job.id}`;
      tr.innerHTML = '<td><a></a></td><td></td><td></td><td></td><td></td><td><span class="status"></span></td>';
      const link = tr.querySelector("a");
      link.href = `/jobs/${job.id}`;
      link.textContent = job.id;
      tr.children[1].textContent = job.category.name;
      tr.children[2].textContent = job.address || `${job.lat.toFixed(4)}, ${job.lng.toFixed(4)}`;
      tr.children[3].textContent = clock(job.arrive_by);
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
  const socket = connectSocket();
  socket.on("connect", load); // catch up after any disconnect
  load();
  socket.on("job_update", (update) => {
    const job = jobs.find((j) => j.id === update.id);
    if (job) { Object.assign(job, update); render(); } else load();
  });
})();
