// Shared by the set-up pages: refusals in words, tables of rows, dates in the service's zone.
"use strict";

// A refusal in words for people: each field's problem under the label the page shows for
// that field (never the API's field name); the message when no field is named.
function problemText(data, labels) {
  if (!data || !data.error) return "Something went wrong. Please try again.";
  const fields = (data.error.fields || []).filter((f) => labels && labels[f.field]);
  if (!fields.length) return sentence(data.error.message);
  return fields.map((f) => `${labels[f.field]}: ${sentence(f.problem)}`).join(" ");
}

function sentence(text) {
  return text ? text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".") : "";
}

// A day and time in the service area's zone, named.
function when(iso) {
  return iso ? `${dayOf(iso)} ${clock(iso)}` : "";
}

// Fill a table body: one row per item, cells from `cells(item)` (text, or a DOM node).
function fillRows(tbody, items, cells) {
  tbody.innerHTML = "";
  for (const item of items) {
    const tr = document.createElement("tr");
    for (const value of cells(item, tr)) {
      const td = document.createElement("td");
      if (value instanceof Node) td.appendChild(value); else td.textContent = value ?? "";
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
}

// A refused CSV row, by line and column, as the person fixing the file reads it.
function showRowProblems(table, problems) {
  fillRows(table.querySelector("tbody"), problems,
           (p) => [p.line, p.field, sentence(p.problem)]);
  table.hidden = problems.length === 0;
}

function button(label, onClick, className) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  if (className) b.className = className;
  b.addEventListener("click", onClick);
  return b;
}

async function uploadCsv(path, file) {
  const response = await fetch("/api/v1" + path, {
    method: "POST", credentials: "same-origin", body: await file.text(),
    headers: {"Content-Type": "text/csv", "X-CSRFToken": CSRF},
  });
  return {status: response.status, ok: response.ok, data: await response.json()};
}
