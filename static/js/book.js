// Book help: pick a service, say where (type the address and pick a suggestion, or place
// the pin: geolocation, a tap, a drag), and get the promise or the honest no at once; or book
// a window on a later day (times in the service's zone, named). The address and the pin
// follow each other: a picked address moves the pin, a moved pin fills the address (unless
// the resident typed one). The server asks when they disagree. The card: with Stripe, Stripe
// Elements (Stripe's own iframe; only the pm_... id it makes is sent to us), with the
// simulated provider a choice of Stripe's test cards; a decline is said by the field.
"use strict";

(function () {
  const form = document.getElementById("book-form");
  const where = document.getElementById("where");
  const errorBox = document.getElementById("form-error");
  const addressBox = document.getElementById("address");
  const addressNote = document.getElementById("address-note");
  const suggestions = document.getElementById("address-suggestions");
  const check = document.getElementById("address-check");
  const map = makeMap("map", 37.7749, -122.4194, 13);
  let idempotencyKey = newKey(); // one booking per try: a double tap books once
  const UNAVAILABLE = "Address search is not available right now: place the pin on the map.";
  let pin = null;
  let addressTyped = false; // typed by the resident, not filled from the pin or a suggestion
  let lookups = 0;          // answers to older lookups are dropped
  let typingTimer = null;
  let addressFound = null;  // where the server placed the address it asked about

  function place(lat, lng, fillAddress) {
    if (pin) pin.setLatLng([lat, lng]);
    else {
      pin = L.marker([lat, lng], {draggable: true}).addTo(map);
      pin.on("dragend", () => {
        const p = pin.getLatLng();
        place(p.lat, p.lng, true);
      });
    }
    map.setView([lat, lng], Math.max(map.getZoom(), 15));
    where.textContent = `Pin at ${lat.toFixed(5)}, ${lng.toFixed(5)}`;
    form.dataset.lat = lat;
    form.dataset.lng = lng;
    check.hidden = true;
    suggestions.hidden = true;
    if (fillAddress && !(addressTyped && addressBox.value.trim())) addressAt(lat, lng);
    showEstimate();
  }

  // What it will likely cost, for the service, the urgency and (once pinned) the area:
  // asked again whenever one of them changes; an older answer arriving late is dropped.
  const estimateBox = document.getElementById("estimate");
  // The cancellation rules, before booking (the fee is the server's: services/escrow.py).
  const cancelRule = document.getElementById("cancel-rule");
  const FREE_TO_CANCEL = "Free to cancel until a worker is assigned.";
  let estimates = 0;
  async function showEstimate() {
    const mine = ++estimates;
    const urgency = form.when.value === "later" ? "scheduled" : "urgent";
    let query = `/estimate?category_id=${encodeURIComponent(form.category_id.value)}&urgency=${urgency}`;
    if (form.dataset.lat) query += `&lat=${form.dataset.lat}&lng=${form.dataset.lng}`;
    const r = await api("GET", query);
    if (mine !== estimates) return;
    if (!r.ok) { estimateBox.textContent = ""; return; }
    const e = r.data;
    const money = (cents) => formatCents(cents, e.currency);
    const notes = [];
    if (e.call_out_cents) notes.push(`call-out ${money(e.call_out_cents)} included`);
    if (e.surcharge_cents) notes.push(`urgent +${money(e.surcharge_cents)}`);
    estimateBox.textContent = `Usually ${money(e.low_cents)}–${money(e.high_cents)}` +
      (notes.length ? ` (${notes.join("; ")})` : "") + " · " +
      (e.basis === "history" ? `from ${e.jobs_counted} jobs nearby` : "typical prices");
    cancelRule.textContent = FREE_TO_CANCEL + (e.cancel_fee_cents
      ? ` Once the worker has set out, cancelling costs ${money(e.cancel_fee_cents)}.` : "");
  }

  async function addressAt(lat, lng) {
    const mine = ++lookups;
    const r = await api("GET", `/places/reverse?lat=${lat}&lng=${lng}`);
    if (mine !== lookups) return;
    if (!r.ok || !r.data.available) { addressNote.textContent = UNAVAILABLE; return; }
    addressTyped = false;
    addressBox.value = r.data.places.length ? r.data.places[0].label : "";
    addressNote.textContent = r.data.places.length
      ? "Address from the pin: add the apartment or fix it if needed."
      : "We know no address at the pin: type it, so the worker finds the door.";
  }

  function showSuggestions(found) {
    suggestions.replaceChildren(...found.map((p) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.setAttribute("role", "option");
      button.textContent = p.label;
      button.addEventListener("click", () => {
        addressBox.value = p.label;
        addressTyped = false;
        suggestions.hidden = true;
        addressNote.textContent = "The pin is on this address: add the apartment if needed.";
        place(p.lat, p.lng, false);
      });
      item.append(button);
      return item;
    }));
    suggestions.hidden = found.length === 0;
  }

  async function search(text) {
    const mine = ++lookups;
    const r = await api("GET", `/places/search?q=${encodeURIComponent(text)}`);
    if (mine !== lookups) return;
    if (!r.ok || !r.data.available) { addressNote.textContent = UNAVAILABLE; showSuggestions([]); return; }
    addressNote.textContent = r.data.places.length
      ? "Pick the address to move the pin there."
      : "No address found: check it, or place the pin on the map.";
    showSuggestions(r.data.places);
  }

  addressBox.addEventListener("input", () => {
    addressTyped = true;
    check.hidden = true;
    clearTimeout(typingTimer);
    const text = addressBox.value.trim();
    if (text.length < 3) { lookups++; showSuggestions([]); return; }
    typingTimer = setTimeout(() => search(text), 250);
  });

  map.on("click", (e) => place(e.latlng.lat, e.latlng.lng, true));

  // Booking for later: a day (from today, where the job is) and a window on it.
  const later = document.getElementById("later");
  const dateInput = document.getElementById("window-date");
  const submitButton = document.getElementById("submit");
  const isoDay = (date) => new Intl.DateTimeFormat("en-CA", {timeZone: zoneOf()}).format(date);
  const today = isoDay(new Date());
  dateInput.min = today;
  dateInput.max = isoDay(new Date(Date.now() + 60 * 86400000));
  dateInput.value = isoDay(new Date(Date.now() + 86400000));
  document.querySelectorAll(".zone-name").forEach((n) => { n.textContent = zoneName(); });
  const wantsLater = () => form.when.value === "later";
  form.querySelectorAll("input[name=when]").forEach((radio) => radio.addEventListener("change", () => {
    later.hidden = !wantsLater();
    // Stages are for booked windows (an urgent job is held whole): the server says so too.
    document.getElementById("stages").hidden = !wantsLater();
    submitButton.textContent = wantsLater() ? "Book this window" : "Book now";
    showEstimate();
  }));
  form.category_id.addEventListener("change", showEstimate);
  showEstimate();
  // Refusals of the window say which part is wrong, in the form's own words.
  const WINDOW_PARTS = {"window.date": "Day", "window.start": "Between", "window.end": "Between"};
  function windowRefusalText(data) {
    const fields = (data && data.error && data.error.fields) || [];
    const parts = fields.filter((f) => f.field in WINDOW_PARTS);
    if (!parts.length) return errorText(data);
    return parts.map((f) => `${WINDOW_PARTS[f.field]}: ${f.problem}`).join("; ");
  }
  document.getElementById("locate").addEventListener("click", () => {
    if (!navigator.geolocation) { where.textContent = "No location on this device."; return; }
    where.textContent = "Finding you…";
    navigator.geolocation.getCurrentPosition(
      (p) => place(p.coords.latitude, p.coords.longitude, true),
      () => { where.textContent = "Location refused: tap the map instead."; },
      {enableHighAccuracy: true, timeout: 10000});
  });

  // The honest no: when someone could come after all, or plainly why nobody can say.
  function refusalText(error) {
    const earliest = error.earliest_arrival;
    if (earliest) {
      const zone = error.time_zone;
      const today = dayOf(new Date().toISOString(), zone) === dayOf(earliest, zone);
      const when = today ? clock(earliest, zone) : `${dayOf(earliest, zone)} ${clock(earliest, zone)}`;
      return error.earliest_after_current_job
        ? `The earliest anyone could arrive is about ${when}, after a job they are finishing ` +
          "nearby: too uncertain to promise. Nothing was booked."
        : `The earliest anyone could arrive is ${when}. Nothing was booked.`;
    }
    if (error.reason === "nobody_on_duty") {
      return "The workers who serve this place are offline or busy right now, so nobody can " +
        "say when someone could come. Nothing was booked: please try again later.";
    }
    return "No vetted worker for this service covers this place. Nothing was booked.";
  }

  document.getElementById("use-address").addEventListener("click", () => {
    if (addressFound) place(addressFound.lat, addressFound.lng, false);
  });
  document.getElementById("confirm-pin").addEventListener("click", () => submit(true));

  const cardBox = document.getElementById("card-element");
  const testCard = document.getElementById("test-card");
  const paymentError = document.getElementById("payment-error");
  let stripe = null;
  let card = null;
  let cardMethod = null; // the pm_... id made from the card as it is now
  if (cardBox && window.Stripe && cardBox.dataset.publishableKey) {
    stripe = window.Stripe(cardBox.dataset.publishableKey);
    card = stripe.elements().create("card");
    card.mount(cardBox);
    card.on("change", () => { cardMethod = null; });
  } else if (cardBox) {
    paymentError.textContent = "Card payments are not available right now.";
  }

  // The payment method to hold the job on, or null (the reason shown by the field).
  async function paymentMethod() {
    if (testCard) return testCard.value;
    if (!stripe) return null;
    if (cardMethod) return cardMethod;
    const result = await stripe.createPaymentMethod({type: "card", card});
    if (result.error) {
      paymentError.textContent = result.error.message;
      return null;
    }
    cardMethod = result.paymentMethod.id;
    return cardMethod;
  }
  if (testCard) testCard.addEventListener("change", () => { paymentError.textContent = ""; });

  function paymentProblem(data) {
    const fields = (data && data.error && data.error.fields) || [];
    const found = fields.find((f) => f.field === "payment_method");
    return found ? found.problem : null;
  }

  async function submit(pinConfirmed) {
    errorBox.textContent = "";
    paymentError.textContent = "";
    check.hidden = true;
    suggestions.hidden = true;
    lookups++; // a suggestion arriving now must not reopen the list
    document.getElementById("no-coverage").hidden = true;
    if (!form.dataset.lat) { errorBox.textContent = "Place the pin first."; return; }
    const body = {
      category_id: Number(form.category_id.value),
      description: form.description.value,
      lat: Number(form.dataset.lat),
      lng: Number(form.dataset.lng),
    };
    if (addressBox.value.trim()) body.address = addressBox.value.trim();
    if (pinConfirmed) body.pin_confirmed = true;
    if (wantsLater()) {
      const [start, end] = form.window_slot.value.split("-");
      body.window = {date: dateInput.value, start, end};
    }
    const stages = stagesWanted();
    if (stages) body.milestones = stages;
    const button = submitButton;
    button.disabled = true;
    const method = await paymentMethod();
    if (!method && cardBox) {
      button.disabled = false;
      return;
    }
    if (method) body.payment_method = method;
    const r = await api("POST", "/jobs", body, {"Idempotency-Key": idempotencyKey});
    button.disabled = false;
    const code = r.data && r.data.error ? r.data.error.code : null;
    if (r.status === 201 || r.status === 200) {
      window.location.href = `/jobs/${r.data.id}`;
    } else if (r.status === 409 && code === "no_coverage") {
      document.getElementById("no-coverage-detail").textContent = refusalText(r.data.error);
      document.getElementById("no-coverage").hidden = false;
    } else if (code === "address_unconfirmed") {
      addressFound = r.data.error.address_found || null;
      document.getElementById("address-check-text").textContent =
        `${r.data.error.message} Nothing was booked yet.`;
      document.getElementById("use-address").hidden = !addressFound;
      check.hidden = false;
    } else if (paymentProblem(r.data)) {
      // Declined (402) or unknown: nothing was booked; another card is another booking.
      paymentError.textContent = `${paymentProblem(r.data)} Nothing was booked.`;
      idempotencyKey = newKey();
      cardMethod = null;
    } else if (code === "outside_service_area") {
      errorBox.textContent = `${r.data.error.message} Nothing was booked.`;
    } else {
      errorBox.textContent = windowRefusalText(r.data);
    }
  }

  // "Pay in stages": two stages to start with, up to MAX_STAGES, sent as `milestones`
  // (title, amount in minor units); left closed or empty, the job is held whole.
  const MAX_STAGES = 10;
  const stageRows = document.getElementById("stage-rows");
  const stagesBox = document.getElementById("stages");
  function addStage() {
    if (stageRows.children.length >= MAX_STAGES) return;
    stageRows.appendChild(document.getElementById("stage-template").content.cloneNode(true));
    document.getElementById("add-stage").hidden = stageRows.children.length >= MAX_STAGES;
  }
  addStage();
  addStage();
  document.getElementById("add-stage").addEventListener("click", addStage);
  function stagesWanted() {
    if (!stagesBox.open || stagesBox.hidden) return null;
    const rows = [...stageRows.children].map((li) => ({
      title: li.querySelector(".stage-title").value.trim(),
      text: li.querySelector(".stage-amount").value.trim(),
    })).filter((row) => row.title || row.text);
    if (!rows.length) return null;
    // Amounts typed in the currency's units; the server refuses what is not a price.
    return rows.map((row) => ({
      title: row.title,
      amount_cents: row.text && Number.isFinite(Number(row.text))
        ? Math.round(Number(row.text) * 100) : null,
    }));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit(false);
  });
})();
