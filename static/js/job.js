// Follow one job: the promise, the status, the worker's marker moving and the ETA counting
// down, all live from the job's Socket.IO room. Every sentence follows the job's real state:
// who is being asked now (how many, never who), where the worker was last seen and when.
"use strict";

(function () {
  const root = document.getElementById("job");
  const jobId = Number(root.dataset.jobId);
  const staleAfterMs = Number(root.dataset.staleAfterS) * 1000;
  const home = [Number(root.dataset.lat), Number(root.dataset.lng)];
  const map = makeMap("map", home[0], home[1], 14);
  L.marker(home, {title: "Job location"}).addTo(map);
  const mapEl = document.getElementById("map");
  // Whoever booked the job pays for it, and confirms the work is done (escrow released).
  const payer = root.dataset.payer === "yes";
  const CANCELLABLE = Object.keys(STATES.resident_moves)
    .filter((from) => STATES.resident_moves[from].includes("cancelled"));
  // While a job is looking for a worker, its answer is read again at least this often (an
  // offer running out changes what is true without changing the job's status).
  const LOOKING_REFRESH_MS = 15000;
  let job = null; // the job's latest answer from the API
  let seen = null; // the worker's latest position: {lat, lng, at, eta_at}
  let workerMarker = null;
  let refreshTimer = null;
  let asked = 0;
  let shown = 0;

  function at(iso) { return clock(iso, job.time_zone); }

  function lookingText() {
    if (job.asking_workers > 0) {
      return job.promised === false
        ? `Only one or two workers can reach you by ${at(job.arrive_by)}; we are asking them and confirm when one accepts.`
        : `Someone ${dueText(job)}: we are asking the nearest vetted workers now.`;
    }
    const until = job.looking_until ? ` until ${at(job.looking_until)}` : "";
    return "Still looking: nobody has accepted yet. We ask more workers as they come free " +
      `or come online${until}, and tell you at once.`;
  }

  function promiseText() {
    const s = job.status;
    if (s === "unfilled") return "Nobody could come in time. Nothing was charged.";
    if (STATES.done.includes(s)) return `Done at ${at(job.completed_at)}.`;
    if (s === "cancelled") return "Cancelled.";
    if (s === "disputed") return "Under review by our team.";
    if (s === "arrived" || s === "in_progress") return `Arrived at ${at(job.arrived_at)}.`;
    if (s === "dispatching" || s === "requested") return lookingText();
    if (job.promised === false && job.worker && job.estimated_arrival) {
      // Taken by a worker finishing another job: an estimate, not a promise.
      return job.queued
        ? `Expected around ${at(job.estimated_arrival)}, after the job they are finishing (an estimate: it depends on when that job ends).`
        : `Expected around ${at(job.estimated_arrival)}.`;
    }
    return `Someone ${dueText(job)}`;
  }

  function workerText() {
    const s = job.status;
    if (s === "dispatching") {
      const n = job.asking_workers;
      return n > 0 ? `Asking ${n} vetted worker${n === 1 ? "" : "s"} nearby…` : "";
    }
    if (!job.worker) return "";
    const who = `${job.worker.name} (${job.worker.travel_mode})`;
    if (s === "assigned" && job.queued) return `${who} is finishing a job nearby and comes straight after.`;
    if (s === "assigned") return `${who} is on the job: getting ready to set out.`;
    if (s === "en_route") return `${who} is on the job: on the way.`;
    if (s === "arrived" || s === "in_progress") return `${who} is on the job.`;
    if (STATES.done.includes(s)) return `${who} did this job.`;
    return "";
  }

  function render(next) {
    job = next;
    const badge = document.getElementById("status");
    badge.textContent = statusLabel(job.status);
    badge.className = `status ${job.status}`;
    document.getElementById("promise").textContent = promiseText();
    document.getElementById("worker").textContent = workerText();
    // The number reaches the worker only while the job is under way.
    showContact(STATES.active.includes(job.status) ? job.masked_number : null);
    if (job.worker_position) moveWorker(job.worker_position);
    if (!tracked()) hideWorker();
    document.getElementById("cancel").hidden = !CANCELLABLE.includes(job.status);
    const staged = (job.milestones || []).length > 0;
    document.getElementById("confirm-done").hidden =
      !(payer && job.status === "completed" && !staged);
    showMilestones();
    document.getElementById("paid").hidden = !(payer && job.status === "closed");
    showInvoice();
    scheduleRefresh();
    tick();
  }

  // A job paid in stages: each stage, where its money is, and the payer's "Confirm" on a
  // done one ("Hold again" on one whose hold was refused).
  const STAGE_TEXT = {planned: "not held yet", held: "held: being worked on",
    done: "done: waiting for your confirmation", released: "paid", cancelled: "cancelled"};
  function stageStatus(m) {
    if ((m.status === "planned" || m.status === "done") && m.hold_declined) {
      return `card declined (${m.hold_declined.replace(/_/g, " ")}): hold it again to go on`;
    }
    if (m.status === "done" && m.release_due_at && !m.hold_declined) {
      return `${STAGE_TEXT.done} (paid by itself at ${at(m.release_due_at)})`;
    }
    return STAGE_TEXT[m.status] || m.status;
  }
  function showMilestones() {
    const stages = job.milestones || [];
    document.getElementById("milestones").hidden = stages.length === 0;
    const rows = document.getElementById("milestone-rows");
    rows.innerHTML = "";
    for (const m of stages) {
      const tr = document.createElement("tr");
      tr.dataset.position = m.position;
      for (const text of [`${m.position}. ${m.title}`, formatCents(m.amount_cents, job.currency),
        stageStatus(m)]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      const cell = document.createElement("td");
      const act = payer && (m.status === "done" || (m.status === "planned" && m.hold_declined));
      if (act) {
        const b = document.createElement("button");
        const path = m.status === "done" && !m.hold_declined ? "confirm" : "hold";
        b.className = "primary stage-action";
        b.textContent = path === "confirm" ? "Confirm" : "Hold again";
        b.addEventListener("click", async () => {
          b.disabled = true;
          const r = await api("POST", `/jobs/${jobId}/milestones/${m.position}/${path}`, {});
          if (r.ok) render(r.data);
          else { b.disabled = false; document.getElementById("message").textContent = errorText(r.data); }
        });
        cell.appendChild(b);
      }
      tr.appendChild(cell);
      rows.appendChild(tr);
    }
  }

  // The worker's position is this resident's to see while the job occupies the worker.
  function tracked() {
    return job !== null && occupying(job);
  }

  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    if (job.status !== "dispatching") return;
    let wait = LOOKING_REFRESH_MS;
    if (job.asking_workers > 0 && job.asking_until) {
      wait = Math.min(wait, new Date(job.asking_until) - Date.now() + 1000);
    }
    refreshTimer = setTimeout(refresh, Math.max(wait, 1000));
  }

  // Answers can cross: only the newest request's answer is shown.
  function refresh() {
    const mine = ++asked;
    api("GET", `/jobs/${jobId}`).then((r) => {
      if (mine < shown) return;
      shown = mine;
      if (r.ok) render(r.data);
      else document.getElementById("message").textContent = errorText(r.data);
    });
  }

  function minutesAgo(iso) {
    const minutes = Math.floor((Date.now() - new Date(iso)) / 60000);
    return minutes < 1 ? "less than a minute ago" : `${minutes} min ago`;
  }

  function tick() {
    const eta = document.getElementById("eta");
    const lastSeen = document.getElementById("seen");
    eta.textContent = "";
    lastSeen.textContent = "";
    if (!job || !STATES.coming.includes(job.status)) return;
    const stale = seen && Date.now() - new Date(seen.at) > staleAfterMs;
    if (seen && tracked() && stale) {
      // An estimate from an old position is not live: say when the worker was last seen.
      lastSeen.textContent = `Worker's position last seen ${at(seen.at)}, ${minutesAgo(seen.at)}. ` +
        "No live arrival time until it comes in again.";
      return;
    }
    const until = seen && tracked() ? seen.eta_at : job.estimated_arrival;
    if (!until) return;
    eta.textContent = new Date(until) > Date.now() ? `ETA ${countdown(until)}` : "Arriving any moment";
  }
  setInterval(tick, 1000);

  function moveWorker(p) {
    if (seen && new Date(p.at) < new Date(seen.at)) return; // an older fix than shown
    seen = {lat: p.lat, lng: p.lng, at: p.at, eta_at: p.eta_at};
    if (!tracked()) return;
    if (workerMarker) workerMarker.setLatLng([p.lat, p.lng]);
    else workerMarker = L.marker([p.lat, p.lng], {icon: workerIcon(), title: "Worker"}).addTo(map);
    mapEl.dataset.workerLat = p.lat;
    mapEl.dataset.workerLng = p.lng;
    map.fitBounds(L.latLngBounds([home, [p.lat, p.lng]]).pad(0.3), {maxZoom: 16});
    tick();
  }

  function hideWorker() {
    if (workerMarker) map.removeLayer(workerMarker);
    workerMarker = null;
    seen = null;
    delete mapEl.dataset.workerLat;
    delete mapEl.dataset.workerLng;
  }

  function showContact(number) {
    const link = document.getElementById("masked-number");
    document.getElementById("contact").hidden = !number;
    link.textContent = number || "";
    link.href = number ? `tel:${number}` : "#";
  }

  const socket = connectSocket();
  socket.on("connect", () => {
    socket.emit("watch_job", {job_id: jobId}, (answer) => {
      if (answer && answer.ok) refresh();
      else document.getElementById("message").textContent = errorText(answer);
    });
  });
  // A change is told in the room; the job's own answer says all of it (the masked number
  // opens with the accept, the search's progress, the worker's last position).
  socket.on("job_update", (update) => { if (update.id === jobId) refresh(); });
  // The server's message queue was down a moment (the socket stayed open): pushes were lost.
  socket.on("resync", refresh);
  socket.on("worker_location", (p) => { if (p.job_id === jobId && job) moveWorker(p); });

  document.getElementById("cancel").addEventListener("click", async () => {
    if (!confirm("Cancel this job?")) return;
    const r = await api("POST", `/jobs/${jobId}/cancel`, {reason: "cancelled on the job page"});
    if (r.ok) refresh();
    else document.getElementById("message").textContent = errorText(r.data);
  });

  document.getElementById("confirm-done").addEventListener("click", async () => {
    const r = await api("POST", `/jobs/${jobId}/confirm`);
    if (r.ok) refresh();
    else document.getElementById("message").textContent = errorText(r.data);
  });

  // The final amount (line items) once the worker completes; the payer approves or
  // declines an amount above the hold plus tolerance; once paid, the receipt.
  const INVOICE_WORDS = {
    hold: "Charged when you confirm the work is done.",
    in_review: "Waiting for approval.",
    approved: "Approved: charged when you confirm the work is done.",
    declined: "Declined: the worker is revising it.",
    paid: "Paid.",
    void: "Nothing was charged.",
  };
  let invoiceAsked = 0;

  async function showInvoice() {
    const box = document.getElementById("final-amount");
    if (!payer || !STATES.done.includes(job.status)) { box.hidden = true; return; }
    const mine = ++invoiceAsked;
    const r = await api("GET", `/jobs/${jobId}/invoice`);
    if (mine !== invoiceAsked || !r.ok) return;
    const inv = r.data;
    if (!inv.line_items.length && inv.status !== "paid") { box.hidden = true; return; }
    box.hidden = false;
    document.getElementById("invoice-number").textContent = inv.number;
    const body = document.querySelector("#line-items tbody");
    body.innerHTML = "";
    for (const item of inv.line_items) {
      const tr = document.createElement("tr");
      tr.innerHTML = "<td></td><td></td>";
      tr.children[0].textContent = item.description;
      tr.children[1].textContent = formatCents(item.amount_cents, inv.currency);
      body.appendChild(tr);
    }
    document.getElementById("final-total").textContent = formatCents(inv.amount_cents, inv.currency);
    const organization = inv.payer_organization_id !== null;
    document.getElementById("final-note").textContent = inv.status === "in_review" && organization
      ? "Waiting for your organization's approvers (Approvals)." : INVOICE_WORDS[inv.status];
    document.getElementById("final-decision").hidden = !(inv.status === "in_review" && !organization);
    const paid = inv.status === "paid";
    document.getElementById("receipt").hidden = !paid;
    if (paid) {
      document.getElementById("receipt-charged").textContent = formatCents(inv.charged_cents, inv.currency);
      document.getElementById("receipt-refunded").textContent = formatCents(inv.refunded_cents, inv.currency);
    }
    // Confirming waits for an amount in review or declined (the API refuses it too).
    if (["in_review", "declined"].includes(inv.status)) {
      document.getElementById("confirm-done").hidden = true;
    }
  }

  async function decideAmount(body) {
    document.getElementById("message").textContent = "";
    const r = await api("POST", `/jobs/${jobId}/final-amount`, body);
    if (r.ok) refresh();
    else document.getElementById("message").textContent = errorText(r.data);
  }

  document.getElementById("approve-amount").addEventListener("click",
    () => decideAmount({approve: true}));
  document.getElementById("decline-amount").addEventListener("click",
    () => decideAmount({approve: false,
                        reason: document.getElementById("decline-reason").value}));

  refresh();
})();
