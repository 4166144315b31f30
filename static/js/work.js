// A worker's shift on a phone: go online, share position while online, take offers before
// their window closes, move the job through its states, see today's jobs.
"use strict";

(function () {
  // A button for each move the state machine gives a worker on an active job.
  const MOVE_LABELS = {
    en_route: "On my way", arrived: "I have arrived", in_progress: "Start work", completed: "Job done",
  };
  const NEXT = Object.fromEntries(STATES.active.map((from) => [from,
    (STATES.worker_moves[from] || []).filter((to) => to in MOVE_LABELS)
      .map((to) => [to, MOVE_LABELS[to]])]));
  const toggle = document.getElementById("toggle");
  const errorBox = document.getElementById("work-error");
  const offersBox = document.getElementById("offers");
  const offerTimers = {};
  let availability = null;
  let watchId = null;
  let lastSent = 0;
  let lastConfirmed = 0; // when a ping last asked for an acknowledgement
  const CONFIRM_EVERY_MS = 30000;
  const STILL_EVERY_MS = 45000; // well within POSITION_STALE_SECONDS (120 by default)
  let stillTimer = null;
  let askingStill = false;

  const socket = connectSocket();

  function setAvailability(value) {
    availability = value;
    document.getElementById("availability").textContent = value;
    toggle.disabled = value === "busy";
    toggle.textContent = value === "offline" ? "Go online" : "Go offline";
    toggle.className = value === "offline" ? "toggle primary" : "toggle";
    if (value === "offline") stopSharing(); else startSharing();
  }

  function startSharing() {
    if (watchId !== null || !navigator.geolocation) return;
    watchId = navigator.geolocation.watchPosition(send, (e) => {
      errorBox.textContent = `Location unavailable (${e.message}); offers need your position.`;
    }, {enableHighAccuracy: true, maximumAge: 5000, timeout: 20000});
    // A phone that does not move reports nothing: ask for a fresh fix now and then, or a
    // worker waiting at home would drop out of matching and show as "last seen".
    stillTimer = setInterval(() => {
      if (askingStill || Date.now() - lastSent < STILL_EVERY_MS) return;
      askingStill = true;
      navigator.geolocation.getCurrentPosition((p) => { askingStill = false; send(p); },
        () => { askingStill = false; }, {enableHighAccuracy: true, maximumAge: 0, timeout: 20000});
    }, STILL_EVERY_MS / 3);
  }

  function stopSharing() {
    if (watchId !== null) navigator.geolocation.clearWatch(watchId);
    watchId = null;
    clearInterval(stillTimer);
  }

  function showFixAnswer(answer) {
    const shown = document.getElementById("fix");
    if (answer && answer.ok && answer.accepted) shown.textContent = `Position sent ${clock(new Date().toISOString())}`;
    else if (answer && answer.ok) shown.textContent = `Position skipped: ${answer.message}`;
    else shown.textContent = errorText(answer);
  }

  function send(position) {
    const now = Date.now();
    if (now - lastSent < 1000) return; // the server allows one fix a second
    lastSent = now;
    const c = position.coords;
    const fix = {lat: c.latitude, lng: c.longitude, recorded_at: new Date(position.timestamp || now).toISOString()};
    if (c.accuracy != null) fix.accuracy_m = Math.min(c.accuracy, 10000);
    if (c.heading != null && !Number.isNaN(c.heading)) fix.heading = c.heading;
    if (c.speed != null && !Number.isNaN(c.speed)) fix.speed_mps = Math.min(c.speed, 100);
    if (!socket.connected) {
      api("POST", "/worker/location", fix).then((r) => showFixAnswer(r.ok ? Object.assign({ok: true}, r.data) : r.data));
    } else if (now - lastConfirmed >= CONFIRM_EVERY_MS) {
      // An acknowledgement now and then: the server tells refusals by `location_refused`.
      lastConfirmed = now;
      socket.emit("location", fix, showFixAnswer);
    } else {
      socket.emit("location", fix);
    }
  }

  socket.on("connect", () => { lastConfirmed = 0; }); // a new socket: confirm its first fix
  socket.on("location_refused", (answer) => {
    lastConfirmed = 0; // confirm the next one
    showFixAnswer(answer);
  });

  toggle.addEventListener("click", async () => {
    errorBox.textContent = "";
    const want = availability === "offline" ? "online" : "offline";
    const r = await api("POST", "/worker/availability", {availability: want});
    if (r.ok) { setAvailability(r.data.availability); warnIfNoOffers(r.data); }
    else errorBox.textContent = errorText(r.data);
  });

  // Before and when going online: a worker without a verified skill would wait in vain.
  function warnIfNoOffers(profile) {
    const box = document.getElementById("no-offers");
    box.querySelector(".text").textContent = noOffersWarning(profile);
    box.hidden = !noOffersWarning(profile);
  }

  // An organization's job: its soft approval limit, above which the worker asks first.
  function showAskBefore(node, item) {
    const limit = item.ask_before_cents;
    node.hidden = limit === null || limit === undefined;
    node.textContent = node.hidden ? "" : `Ask before going above ${formatCents(limit, item.currency)}`;
  }

  function showOffer(offer) {
    if (document.getElementById(`offer-${offer.id}`)) return;
    const node = document.getElementById("offer-template").content.firstElementChild.cloneNode(true);
    node.id = `offer-${offer.id}`;
    node.querySelector(".title").textContent = offer.job.category.name;
    node.querySelector(".detail").textContent = offer.job.description;
    node.querySelector(".earn").textContent = `You earn ${formatCents(offer.earn_low_cents, offer.currency)}` +
      `–${formatCents(offer.earn_high_cents, offer.currency)}`;
    showAskBefore(node.querySelector(".ask"), offer);
    const away = `${(offer.distance_m / 1000).toFixed(1)} km away`;
    node.querySelector(".trip").textContent = offer.job.window_start
      ? `Booked window ${dueText(offer.job)} · ${away} now`
      : offer.queued
        ? `Next, after this job · ${away} · there in about ` +
          `${Math.round(offer.eta_seconds / 60)} min`
        : `${away} · about ${Math.round(offer.eta_seconds / 60)} min to get there`;
    const counter = node.querySelector(".countdown");
    const tick = () => {
      counter.textContent = countdown(offer.expires_at);
      if (new Date(offer.expires_at) <= new Date()) removeOffer(offer.id);
    };
    tick();
    offerTimers[offer.id] = setInterval(tick, 500);
    node.querySelector(".accept").addEventListener("click", async () => {
      const r = await api("POST", `/offers/${offer.id}/accept`);
      removeOffer(offer.id);
      if (r.ok && occupying(r.data.job)) { setAvailability("busy"); showActive(r.data.job); }
      if (r.ok) loadToday();
      else errorBox.textContent = errorText(r.data);
    });
    node.querySelector(".decline").addEventListener("click", async () => {
      await api("POST", `/offers/${offer.id}/decline`);
      removeOffer(offer.id);
    });
    offersBox.prepend(node);
  }

  function removeOffer(id) {
    clearInterval(offerTimers[id]);
    delete offerTimers[id];
    const node = document.getElementById(`offer-${id}`);
    if (node) node.remove();
  }

  // Renders of the active job overlap (a push, the list reload, a tap's answer), and each
  // may wait for a fetch: only the one started last may draw, or an answer fetched before a
  // status change could land after it and show the old status again.
  let activeRender = 0;

  async function showActive(job) {
    const render = ++activeRender;
    const box = document.getElementById("active");
    if (!job || !occupying(job)) { box.hidden = true; return; }
    if (job.lat === undefined || job.milestones === undefined) { // a pushed update: fetch it
      const r = await api("GET", `/jobs/${job.id}`);
      if (!r.ok || render !== activeRender) return;
      job = r.data;
    }
    box.hidden = false;
    box.dataset.jobId = job.id;
    document.getElementById("active-title").textContent = job.category.name;
    const badge = document.getElementById("active-status");
    badge.textContent = statusLabel(job.status);
    badge.className = `status ${job.status}`;
    document.getElementById("active-detail").textContent =
      `${job.description}${job.address ? " · " + job.address : ""} · due ${dueText(job)}`;
    showAskBefore(document.getElementById("active-ask"), job);
    document.getElementById("navigate").href =
      `https://www.google.com/maps/dir/?api=1&destination=${job.lat},${job.lng}`;
    if (job.masked_number === undefined || job.masked_number === null) {
      const full = await api("GET", `/jobs/${job.id}`); // lists leave the number out
      if (render !== activeRender) return;
      if (full.ok) job.masked_number = full.data.masked_number;
    }
    const link = document.getElementById("masked-number");
    document.getElementById("contact").hidden = !job.masked_number;
    link.textContent = job.masked_number || "";
    link.href = job.masked_number ? `tel:${job.masked_number}` : "#";
    document.getElementById("cant-make-it").hidden = !STATES.cant_make_it.includes(job.status);
    document.getElementById("give-back").hidden = !STATES.give_back.includes(job.status);
    const moves = document.getElementById("moves");
    moves.innerHTML = "";
    // A job paid in stages is done stage by stage: the held one is the current one.
    const stages = job.milestones || [];
    const current = stages.find((m) => m.status === "held");
    if (job.status === "in_progress" && current) {
      const b = document.createElement("button");
      b.className = "primary grow";
      b.id = "stage-done";
      b.textContent = `Stage ${current.position} done: ${current.title}`;
      b.addEventListener("click", async () => {
        const r = await api("POST", `/jobs/${job.id}/milestones/${current.position}/done`, {});
        if (!r.ok) { errorBox.textContent = errorText(r.data); return; }
        if (r.data.status === "completed") { box.hidden = true; syncAvailability(); }
        else showActive(r.data);
        loadToday();
      });
      moves.appendChild(b);
    } else if (job.status === "in_progress" && stages.length) {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = "The next stage's money is not held yet: wait for the payer.";
      moves.appendChild(p);
    }
    const paidInStages = stages.length > 0;
    for (const [status, label] of (NEXT[job.status] || [])
      .filter(([status]) => !(paidInStages && status === "completed"))) {
      const b = document.createElement("button");
      b.className = "primary grow";
      b.textContent = label;
      b.dataset.status = status;
      b.addEventListener("click", async () => {
        // Done: the completion form says what the job came to (time and parts).
        if (status === "completed") { openCompletion(job); return; }
        const r = await api("POST", `/jobs/${job.id}/status`, {status});
        if (!r.ok) { errorBox.textContent = errorText(r.data); return; }
        if (status === "completed") { box.hidden = true; syncAvailability(); }
        else showActive(r.data);
        loadToday();
      });
      moves.appendChild(b);
    }
  }

  // The completion form: minutes and parts, priced live as the server prices them
  // (call-out and urgent surcharge from the category, labour = minutes x hourly rate).
  const completeForm = document.getElementById("complete-form");
  const PRICES = JSON.parse(completeForm.dataset.prices || "{}");
  const partsBody = document.getElementById("complete-parts");
  const COMPLETE_LABELS = {minutes: "Minutes", hourly_rate_cents: "Hourly rate",
                           note: "Note", parts: "Parts"};
  let completing = null; // the job the form is for

  function dollarsToCents(text) {
    const value = String(text).trim().replace(/^\$/, "");
    if (!/^[0-9]+(\.[0-9]{1,2})?$/.test(value)) return null;
    return Math.round(Number(value) * 100);
  }

  function addPartRow(description, dollars) {
    const tr = document.createElement("div");
    tr.className = "row part";
    const what = document.createElement("input");
    what.className = "part-description";
    what.maxLength = 200;
    what.value = description || "";
    what.setAttribute("aria-label", "Part");
    const amount = document.createElement("input");
    amount.className = "part-amount";
    amount.inputMode = "decimal";
    amount.value = dollars || "";
    amount.setAttribute("aria-label", "Amount in dollars");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "part-remove";
    remove.textContent = "Remove";
    remove.addEventListener("click", () => { tr.remove(); showTotal(); });
    what.placeholder = "Part";
    what.className += " grow";
    amount.placeholder = "$";
    amount.size = 7;
    tr.append(what, amount, remove);
    what.addEventListener("input", showTotal);
    amount.addEventListener("input", showTotal);
    partsBody.appendChild(tr);
  }

  function completionBody() {
    const parts = [...partsBody.children].map((tr) => ({
      description: tr.querySelector(".part-description").value.trim(),
      amount_cents: dollarsToCents(tr.querySelector(".part-amount").value),
    }));
    const rateText = document.getElementById("complete-rate").value.trim();
    const body = {minutes: Number(document.getElementById("complete-minutes").value || 0),
                  parts};
    if (rateText) body.hourly_rate_cents = dollarsToCents(rateText);
    const note = document.getElementById("complete-note").value.trim();
    if (note) body.note = note;
    return body;
  }

  function showTotal() {
    if (!completing) return;
    const price = PRICES[completing.category.id] || {call_out: 0, surcharge: 0, low: 0, high: 0};
    const body = completionBody();
    const rate = body.hourly_rate_cents || price.low;
    const labour = Math.floor((body.minutes * rate + 30) / 60);
    const surcharge = completing.urgency === "urgent" ? price.surcharge : 0;
    const parts = body.parts.reduce((sum, p) => sum + (p.amount_cents || 0), 0);
    const total = price.call_out + surcharge + labour + parts;
    document.getElementById("complete-total").textContent = formatCents(total);
    document.getElementById("complete-lines").textContent =
      `Call-out ${formatCents(price.call_out)}` +
      (surcharge ? ` · urgent ${formatCents(surcharge)}` : "") +
      ` · labour ${formatCents(labour)} · parts ${formatCents(parts)}`;
  }

  function openCompletion(job, revising) {
    completing = job;
    const price = PRICES[job.category.id];
    document.getElementById("complete-rate-range").textContent = price
      ? `Between ${formatCents(price.low)} and ${formatCents(price.high)} an hour.` : "";
    if (!revising || !partsBody.children.length) partsBody.innerHTML = "";
    document.getElementById("complete-error").textContent = "";
    completeForm.hidden = false;
    document.getElementById("complete-minutes").focus();
    showTotal();
  }

  document.getElementById("complete-add-part").addEventListener("click", () => {
    addPartRow();
    showTotal();
  });
  document.getElementById("complete-minutes").addEventListener("input", showTotal);
  document.getElementById("complete-rate").addEventListener("input", showTotal);
  document.getElementById("complete-cancel").addEventListener("click", () => {
    completeForm.hidden = true;
    completing = null;
  });

  function fieldText(data) {
    const found = (data && data.error && data.error.fields) || [];
    if (!found.length) return errorText(data);
    return found.map((f) => {
      const m = /^parts\.(\d+)\.(\w+)$/.exec(f.field);
      const label = m ? `Part ${Number(m[1]) + 1} ${m[2] === "amount_cents" ? "amount" : "description"}`
        : (COMPLETE_LABELS[f.field] || f.field);
      return `${label}: ${f.problem}`;
    }).join(" ");
  }

  const DECISION_TEXT = {
    auto_approved: "Sent: the payer is charged this when they confirm.",
    needs_payer_approval: "Sent: above what was held, so the payer approves it first.",
    needs_approval: "Sent: above the organization's limit, so one of its managers approves it.",
  };

  completeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const job = completing;
    if (!job) return;
    const r = await api("POST", `/jobs/${job.id}/complete`, completionBody());
    if (!r.ok) { document.getElementById("complete-error").textContent = fieldText(r.data); return; }
    completeForm.hidden = true;
    completing = null;
    document.getElementById("active").hidden = true;
    // Said where the shift's messages go (a status line, not an error).
    document.getElementById("work-error").textContent =
      `${formatCents(r.data.invoice.amount_cents, r.data.invoice.currency)}. ` +
      DECISION_TEXT[r.data.decision];
    syncAvailability();
    loadToday();
  });

  // A completed job whose final amount was declined: the worker revises it from Today.
  async function offerRevision(job, tr) {
    const r = await api("GET", `/jobs/${job.id}/invoice`);
    if (!r.ok || !["declined", "in_review"].includes(r.data.status)) return;
    const cell = tr.children[2];
    cell.textContent = r.data.status === "declined"
      ? `Amount declined: ${r.data.decline_reason || ""} ` : "Amount awaiting approval ";
    const revise = document.createElement("button");
    revise.type = "button";
    revise.className = "revise";
    revise.textContent = "Revise";
    revise.addEventListener("click", () => openCompletion(job, true));
    cell.appendChild(revise);
  }

  // "Give this job back" (before setting out) and "I can't make it" (with a reason, until
  // arriving): the job goes back to dispatch at once and is recorded against the worker.
  const handedBack = new Set();
  const cantForm = document.getElementById("cant-form");

  async function handBack(jobId, path, body) {
    handedBack.add(jobId);
    const r = await api("POST", `/jobs/${jobId}/${path}`, body);
    if (!r.ok) { handedBack.delete(jobId); errorBox.textContent = errorText(r.data); return; }
    cantForm.hidden = true;
    if (Number(document.getElementById("active").dataset.jobId) === jobId) {
      document.getElementById("active").hidden = true;
    }
    errorBox.textContent = "The job went back to dispatch; someone else will be asked.";
    syncAvailability();
    loadToday();
  }

  const activeJobId = () => Number(document.getElementById("active").dataset.jobId);
  document.getElementById("give-back").addEventListener("click",
    () => handBack(activeJobId(), "give-back", {}));
  document.getElementById("cant-make-it").addEventListener("click", () => {
    cantForm.hidden = false;
    document.getElementById("cant-reason").focus();
  });
  document.getElementById("cant-keep").addEventListener("click", () => { cantForm.hidden = true; });
  cantForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const note = document.getElementById("cant-note").value.trim();
    handBack(activeJobId(), "cant-make-it",
      {reason: document.getElementById("cant-reason").value, note: note || null});
  });

  // The calendar day of a moment in a zone, as "2026-12-03": "today" is today where the
  // job is (the service's zone), not in the phone's zone and not the day it was booked.
  function dayKey(iso, timeZone) {
    return new Date(iso).toLocaleDateString("en-CA", {timeZone: zoneOf(timeZone)});
  }

  function jobDay(job) {
    return dayKey(job.window_start || job.assigned_at || job.requested_at, job.time_zone);
  }

  function timeText(job) {
    if (job.window_start) {
      return `${hourMinute(job.window_start, job.time_zone)}–${clock(job.window_end, job.time_zone)}`;
    }
    return clock(job.assigned_at || job.requested_at, job.time_zone);
  }

  function dayTable(rows) {
    const table = document.createElement("table");
    table.innerHTML = "<thead><tr><th>Time</th><th>Job</th><th>Status</th></tr></thead><tbody></tbody>";
    for (const tr of rows) table.tBodies[0].appendChild(tr);
    return table;
  }

  function dayRow(job) {
    const tr = document.createElement("tr");
    tr.innerHTML = "<td></td><td></td><td></td>";
    tr.children[0].textContent = timeText(job);
    tr.children[1].textContent = job.category.name;
    tr.children[2].textContent = statusLabel(job.status);
    if (job.status === "completed") offerRevision(job, tr);
    return tr;
  }

  // Today's jobs in the "Today" table; later days (booked windows) each under their day.
  function showDays(jobs) {
    const today = dayKey(new Date().toISOString(), jobs.length ? jobs[0].time_zone : undefined);
    const body = document.querySelector("#today tbody");
    body.innerHTML = "";
    const later = {};
    const byTime = (j) => new Date(j.window_start || j.assigned_at || j.requested_at).getTime();
    for (const job of [...jobs].sort((a, b) => byTime(a) - byTime(b))) {
      const day = jobDay(job);
      if (day === today) body.appendChild(dayRow(job));
      else if (day > today) (later[day] = later[day] || []).push(job);
    }
    const laterBox = document.getElementById("later-days");
    laterBox.innerHTML = "";
    for (const day of Object.keys(later).sort()) {
      const heading = document.createElement("h2");
      heading.textContent = dayOf(later[day][0].window_start || later[day][0].requested_at,
                                  later[day][0].time_zone);
      laterBox.append(heading, dayTable(later[day].map(dayRow)));
    }
  }

  async function loadToday() {
    const r = await api("GET", "/jobs");
    if (!r.ok) return;
    showDays(r.data.jobs);
    const active = r.data.jobs.find(occupying);
    showActive(active);
    showUpcoming(r.data.jobs.filter((j) => j.status === "assigned" && !occupying(j)), !active);
  }

  // Jobs the worker accepted and has not set out for yet: an urgent one queued behind the
  // job they are on (it becomes the current job when that one ends), then booked windows,
  // soonest first.
  let setOutTimer = null;

  function showUpcoming(jobs, free) {
    clearTimeout(setOutTimer);
    let nextSetOut = Infinity;
    const body = document.querySelector("#upcoming tbody");
    body.innerHTML = "";
    document.getElementById("upcoming-box").hidden = jobs.length === 0;
    const when = (j) => (j.queued ? 0 : new Date(j.window_start).getTime());
    jobs.sort((a, b) => when(a) - when(b));
    for (const job of jobs) {
      const tr = document.createElement("tr");
      tr.id = `upcoming-${job.id}`;
      tr.innerHTML = "<td></td><td></td><td></td>";
      tr.children[1].textContent = `${job.category.name} · ${job.address || ""}`;
      const giveBack = document.createElement("button");
      giveBack.textContent = "Give back";
      giveBack.className = "give-back";
      giveBack.addEventListener("click", () => handBack(job.id, "give-back", {}));
      tr.children[2].appendChild(giveBack);
      if (job.queued) {
        tr.className = "queued";
        tr.children[0].textContent = `Next, after this job (${dueText(job)})`;
        body.appendChild(tr);
        continue;
      }
      tr.children[0].textContent = dueText(job);
      const from = job.set_out_from ? new Date(job.set_out_from) : null;
      if (from && from > new Date()) {
        // Too early to leave: say from when, and offer the button once it is time.
        const wait = document.createElement("span");
        wait.className = "set-out-later muted";
        const day = dayKey(job.set_out_from, job.time_zone) === dayKey(new Date().toISOString(), job.time_zone)
          ? "" : `${dayOf(job.set_out_from, job.time_zone)} `;
        wait.textContent = `You can set out from ${day}${clock(job.set_out_from, job.time_zone)}`;
        tr.children[2].appendChild(wait);
        body.appendChild(tr);
        const due = Math.min(from - new Date() + 1000, 6 * 3600 * 1000);
        if (due < nextSetOut) { clearTimeout(setOutTimer); nextSetOut = due; setOutTimer = setTimeout(loadToday, due); }
        continue;
      }
      const go = document.createElement("button");
      go.textContent = "On my way";
      go.className = "set-out";
      go.disabled = !free;
      go.addEventListener("click", async () => {
        const r = await api("POST", `/jobs/${job.id}/status`, {status: "en_route"});
        if (!r.ok) { errorBox.textContent = errorText(r.data); return; }
        setAvailability("busy");
        loadToday();
      });
      tr.children[2].appendChild(go);
      body.appendChild(tr);
    }
  }

  socket.on("offer", showOffer);
  socket.on("offer_closed", (o) => removeOffer(o.offer_id));
  socket.on("job_update", (job) => {
    if (!job.worker && !handedBack.has(job.id) && document.getElementById(`upcoming-${job.id}`)) {
      // Queued behind a job that ran long: it went back to dispatch while others can come.
      errorBox.textContent = `${job.category.name}: you could no longer get there in time, ` +
        "so it went to someone else.";
    }
    if (occupying(job)) showActive(job);
    else if (Number(document.getElementById("active").dataset.jobId) === job.id) {
      document.getElementById("active").hidden = true;
      if (!handedBack.has(job.id)) {
        errorBox.textContent = job.status === "cancelled" ? "The job was cancelled." : "";
      }
      syncAvailability(); // online, or still busy when a queued job starts now
    }
    loadToday();
  });

  function syncAvailability() {
    api("GET", "/worker/profile").then((r) => {
      if (r.ok) { setAvailability(r.data.availability); warnIfNoOffers(r.data); }
      else errorBox.textContent = errorText(r.data);
    });
  }

  // On every (re)connect, catch up on what was pushed while the socket was down.
  function refresh() {
    syncAvailability();
    api("GET", "/offers").then((r) => { if (r.ok) r.data.offers.forEach(showOffer); });
    loadToday();
  }
  socket.on("connect", refresh);
  socket.on("resync", refresh); // the socket stayed open, but pushes were lost (Redis restarted)
  refresh();
})();
