// Book help: pick a service, place the pin (geolocation or tap), and get the promise or the
// honest no at once; or book a window on a later day (times in the service's zone, named).
"use strict";

(function () {
  const form = document.getElementById("book-form");
  const where = document.getElementById("where");
  const errorBox = document.getElementById("form-error");
  const map = makeMap("map", 37.7749, -122.4194, 13);
  const idempotencyKey = newKey(); // one booking per page: a double tap books once
  let pin = null;

  function place(lat, lng) {
    if (pin) pin.setLatLng([lat, lng]);
    else pin = L.marker([lat, lng], {draggable: true}).addTo(map);
    map.setView([lat, lng], Math.max(map.getZoom(), 14));
    where.textContent = `Pin at ${lat.toFixed(5)}, ${lng.toFixed(5)}`;
    form.dataset.lat = lat;
    form.dataset.lng = lng;
  }

  map.on("click", (e) => place(e.latlng.lat, e.latlng.lng));

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
    submitButton.textContent = wantsLater() ? "Book this window" : "Book now";
  }));
  // Refusals of the window say which part is wrong, in the form's own words.
  const WINDOW_PARTS = {"window.date": "Day", "window.start": "Between", "window.end": "Between"};
  function refusalText(data) {
    const fields = (data && data.error && data.error.fields) || [];
    const parts = fields.filter((f) => f.field in WINDOW_PARTS);
    if (!parts.length) return errorText(data);
    return parts.map((f) => `${WINDOW_PARTS[f.field]}: ${f.problem}`).join("; ");
  }
  document.getElementById("locate").addEventListener("click", () => {
    if (!navigator.geolocation) { where.textContent = "No location on this device."; return; }
    where.textContent = "Finding you…";
    navigator.geolocation.getCurrentPosition(
      (p) => place(p.coords.latitude, p.coords.longitude),
      () => { where.textContent = "Location refused: tap the map instead."; },
      {enableHighAccuracy: true, timeout: 10000});
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errorBox.textContent = "";
    document.getElementById("no-coverage").hidden = true;
    if (!form.dataset.lat) { errorBox.textContent = "Place the pin first."; return; }
    const body = {
      category_id: Number(form.category_id.value),
      description: form.description.value,
      lat: Number(form.dataset.lat),
      lng: Number(form.dataset.lng),
    };
    if (form.address.value.trim()) body.address = form.address.value.trim();
    if (wantsLater()) {
      const [start, end] = form.window_slot.value.split("-");
      body.window = {date: dateInput.value, start, end};
    }
    const button = submitButton;
    button.disabled = true;
    const r = await api("POST", "/jobs", body, {"Idempotency-Key": idempotencyKey});
    button.disabled = false;
    if (r.status === 201 || r.status === 200) {
      window.location.href = `/jobs/${r.data.id}`;
    } else if (r.status === 409 && r.data.error.code === "no_coverage") {
      const earliest = r.data.error.earliest_arrival;
      document.getElementById("no-coverage-detail").textContent = earliest
        ? `The earliest anyone could arrive is ${clock(earliest)}. Nothing was booked.`
        : "No verified worker for this service is available near you. Nothing was booked.";
      document.getElementById("no-coverage").hidden = false;
    } else {
      errorBox.textContent = refusalText(r.data);
    }
  });
})();
