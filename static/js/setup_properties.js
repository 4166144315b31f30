// Properties and units: list, add, edit; import units from CSV with refusals by line.
"use strict";

(function () {
  const PROPERTY_LABELS = {name: "Name", address: "Address", property_id: "Property"};
  const UNIT_LABELS = {property_id: "Property", label: "Unit", address: "Address", lat: "Latitude",
                       lng: "Longitude", access_notes: "How to get in", tenant_name: "Tenant's name",
                       tenant_phone: "Tenant's mobile", unit_id: "Unit"};
  const $ = (id) => document.getElementById(id);
  let properties = [];
  let editingProperty = null;
  let editingUnit = null;

  async function loadProperties() {
    const r = await apiAll("/properties", "properties");
    if (!r.ok) return;
    properties = r.data.properties;
    fillRows(document.querySelector("#properties tbody"), properties, (p) => [
      p.name, p.address || "", button("Edit", () => editProperty(p))]);
    $("no-properties").hidden = properties.length > 0;
    const select = $("unit-property");
    const chosen = select.value;
    select.innerHTML = "";
    for (const p of properties) select.add(new Option(p.name, p.id));
    if (chosen) select.value = chosen;
  }

  async function loadUnits() {
    const r = await apiAll("/units", "units");
    if (!r.ok) return;
    const names = Object.fromEntries(properties.map((p) => [p.id, p.name]));
    fillRows(document.querySelector("#units tbody"), r.data.units, (u) => [
      names[u.property_id] || "", u.label, u.address,
      [u.tenant_name, u.tenant_phone].filter(Boolean).join(", "),
      button("Edit", () => editUnit(u))]);
    $("no-units").hidden = r.data.units.length > 0;
  }

  function editProperty(p) {
    editingProperty = p ? p.id : null;
    $("property-name").value = p ? p.name : "";
    $("property-address").value = p ? p.address || "" : "";
    $("property-form-title").textContent = p ? `Edit ${p.name}` : "Add a property";
    $("property-save").textContent = p ? "Save property" : "Add property";
    $("property-cancel").hidden = !p;
    $("property-error").textContent = "";
    if (p) $("property-name").focus();
  }

  $("property-cancel").addEventListener("click", () => editProperty(null));
  $("property-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {name: $("property-name").value, address: $("property-address").value || null};
    const r = editingProperty
      ? await api("PUT", `/properties/${editingProperty}`, body)
      : await api("POST", "/properties", body);
    if (!r.ok) { $("property-error").textContent = problemText(r.data, PROPERTY_LABELS); return; }
    editProperty(null);
    await loadProperties();
    await loadUnits();
  });

  const UNIT_FIELDS = {label: "unit-label", address: "unit-address", access_notes: "unit-access",
                       tenant_name: "unit-tenant", tenant_phone: "unit-phone"};

  function editUnit(u) {
    editingUnit = u ? u.id : null;
    for (const [field, id] of Object.entries(UNIT_FIELDS)) $(id).value = u ? u[field] || "" : "";
    $("unit-lat").value = u ? u.lat : "";
    $("unit-lng").value = u ? u.lng : "";
    if (u) $("unit-property").value = u.property_id;
    $("unit-form-title").textContent = u ? `Edit unit ${u.label}` : "Add a unit";
    $("unit-save").textContent = u ? "Save unit" : "Add unit";
    $("unit-cancel").hidden = !u;
    $("unit-error").textContent = "";
    if (u) $("unit-label").focus();
  }

  function number(id, field) {
    const text = $(id).value.trim();
    const value = Number(text);
    if (!text || !Number.isFinite(value)) throw new Error(`${UNIT_LABELS[field]}: a number, e.g. 37.7749.`);
    return value;
  }

  $("unit-cancel").addEventListener("click", () => editUnit(null));
  $("unit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("unit-error").textContent = "";
    const body = {property_id: Number($("unit-property").value)};
    for (const [field, id] of Object.entries(UNIT_FIELDS)) body[field] = $(id).value.trim() || null;
    try {
      body.lat = number("unit-lat", "lat");
      body.lng = number("unit-lng", "lng");
    } catch (error) { $("unit-error").textContent = error.message; return; }
    const r = editingUnit
      ? await api("PUT", `/units/${editingUnit}`, body)
      : await api("POST", "/units", body);
    if (!r.ok) { $("unit-error").textContent = problemText(r.data, UNIT_LABELS); return; }
    editUnit(null);
    await loadUnits();
  });

  $("import-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("import-error").textContent = "";
    $("import-result").textContent = "";
    const file = $("import-file").files[0];
    if (!file) return;
    const r = await uploadCsv("/units/import", file);
    if (!r.ok) {
      $("import-error").textContent = problemText(r.data, {file: "The file", "Content-Type": "The file"});
      return;
    }
    const saved = r.data.accepted.length;
    const refused = r.data.rejected.length;
    $("import-result").textContent = `${saved} unit${saved === 1 ? "" : "s"} saved` +
      (refused ? `, ${refused} row${refused === 1 ? "" : "s"} refused: fix them and import the file again.` : ".");
    showRowProblems($("import-rejected"), r.data.rejected);
    await loadUnits();
  });

  loadProperties().then(loadUnits);
})();
