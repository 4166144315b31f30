// Book urgent help: pick a service, place the pin (geolocation or tap), and get the promise
// or the honest no at once.
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
  document.getElementById("locate").addEventListener("click", () => {
    if (!navigator.geolocation) { where.textContent = "No location on this device."; return; }
    where.textContent = "Finding you…";
    navigator.geolocation.getCurrentPosition(
      (p) => place(p.coords.latitude, p.coords.longitude),
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
    const button = document.getElementById("submit");
    button.disabled = true;
    const r = await api("POST", "/jobs", body, {"Idempotency-Key": idempotencyKey});
    button.disabled = false;
    if (r.status === 201 || r.status === 200) {
      window.location.href = `/jobs/${r.data.id}`;
    } else if (r.status === 409 && r.data.error.code === "no_coverage") {
      document.getElementById("no-coverage-detail").textContent = refusalText(r.data.error);
      document.getElementById("no-coverage").hidden = false;
    } else {
      errorBox.textContent = errorText(r.data);
    }
  });
})();
