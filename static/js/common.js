// Shared by the pages: the JSON API with the page session's CSRF token, maps, sockets, times.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;

async function api(method, path, body, headers) {
  const response = await fetch("/api/v1" + path, {
    method,
    credentials: "same-origin",
    headers: Object.assign({"Content-Type": "application/json", "X-CSRFToken": CSRF},
                           headers || {}),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.status === 204 ? null : await response.json();
  return {status: response.status, ok: response.ok, data};
}

// Every item of a list: the API answers a page at a time, so follow `next_cursor` to the end.
// Answers like `api` does, with the whole list under `key`.
async function apiAll(path, key) {
  const items = [];
  let cursor = null;
  for (;;) {
    const sep = path.includes("?") ? "&" : "?";
    const page = cursor ? "&cursor=" + encodeURIComponent(cursor) : "";
    const r = await api("GET", path + sep + "limit=200" + page);
    if (!r.ok) return r;
    items.push(...r.data[key]);
    cursor = r.data.next_cursor;
    if (!cursor) return {status: r.status, ok: true, data: {...r.data, [key]: items}};
  }
}

// A refusal as sentences for people: each field's problem is already a sentence from the
// message catalogue (dispatch/domain/messages.py) that names the thing in the page's words,
// so internal field names never show. Each sentence once (lat and lng say the same).
function errorText(data) {
  if (!data || !data.error) return "Something went wrong. Try again in a moment.";
  const sentences = [...new Set((data.error.fields || []).map((f) => f.problem))];
  return sentences.length ? sentences.join(" ") : data.error.message;
}

// Tiles are optional: the map (markers, pins) works without them, e.g. offline.
function makeMap(element, lat, lng, zoom) {
  const map = L.map(element).setView([lat, lng], zoom || 13);
  const cfg = window.DISPATCH_MAP || {};
  if (cfg.tileUrl) {
    L.tileLayer(cfg.tileUrl, {maxZoom: 19, attribution: cfg.attribution || ""}).addTo(map);
  }
  return map;
}

function workerIcon() {
  return L.divIcon({className: "", html: '<div class="worker-dot"></div>', iconSize: [24, 24]});
}

// The socket authenticates with the page's login session cookie.
// socket.io-client retries a dropped connection by itself, but not one the server refused
// or closed: a refusal while the database restarts ("unavailable") is retried with a growing
// pause, and a close by the server (a password changed on another page, which renewed this
// page's login) is retried once; the server refuses a credential that really ended.
function connectSocket() {
  const socket = io({transports: ["websocket", "polling"]});
  let pause = 1000;
  let closedByServer = false;
  socket.on("connect", () => { pause = 1000; closedByServer = false; });
  socket.on("connect_error", (err) => {
    if (socket.active) return;  // the client's own retries are still going
    if (err && err.message === "unavailable") {
      setTimeout(() => socket.connect(), pause);
      pause = Math.min(pause * 2, 30000);
    }
  });
  socket.on("disconnect", (reason) => {
    if (reason === "io server disconnect" && !closedByServer) {
      closedByServer = true;
      setTimeout(() => socket.connect(), 1000);
    }
  });
  return socket;
}

// Times are shown in the place's time zone (a job's `time_zone`, else the service's, from
// base.html), with the zone named: never in the browser's own zone, so that a manager in
// New York reads a San Francisco window as "09:00 PST", as the tenant does.
function zoneOf(timeZone) {
  return timeZone || window.DISPATCH_TIME_ZONE || undefined;
}

function clock(iso, timeZone) {
  if (!iso) return "";
  return new Date(iso).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", hourCycle: "h23",
                                              timeZone: zoneOf(timeZone), timeZoneName: "short"});
}

function dayOf(iso, timeZone) {
  return new Date(iso).toLocaleDateString([], {weekday: "short", month: "short", day: "numeric",
                                               timeZone: zoneOf(timeZone)});
}

function hourMinute(iso, timeZone) {
  return new Date(iso).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", hourCycle: "h23",
                                              timeZone: zoneOf(timeZone)});
}

// When someone is due: "by 14:05 PST" for an urgent job, "Fri, Dec 4 09:00–12:00 PST" for a
// booked window.
function dueText(job) {
  if (!job.window_start) return `by ${clock(job.arrive_by, job.time_zone)}`;
  return `${dayOf(job.window_start, job.time_zone)} ${hourMinute(job.window_start, job.time_zone)}–` +
         clock(job.window_end, job.time_zone);
}

// The state machines' status lists, from dispatch/domain/states.py (base.html).
const STATES = window.DISPATCH_STATES;

// Whether the job keeps its worker busy now (dispatch.domain.states.occupies_worker): an
// urgent job from the accept (unless it is queued behind the one they are on), a booked
// window only once the worker sets out.
function occupying(job) {
  if (job.urgency === "scheduled") return STATES.under_way.includes(job.status);
  if (job.queued && job.status === "assigned") return false;
  return STATES.active.includes(job.status);
}

function countdown(untilIso) {
  const seconds = Math.max(0, Math.round((new Date(untilIso) - new Date()) / 1000));
  const m = Math.floor(seconds / 60);
  return m >= 1 ? `${m} min ${seconds % 60} s` : `${seconds} s`;
}

function statusLabel(status) {
  return status.replace("_", " ");
}

function newKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return String(Date.now()) + Math.random().toString(16).slice(2);
}

// Why a worker would wait in vain: offers come only for skills an operator has verified.
function noOffersWarning(profile) {
  if (!profile.skills.length) {
    return "No offers will come until you add a skill to your work profile and an operator " +
      "verifies it.";
  }
  if (!profile.skills.some((s) => s.verified)) {
    return "No offers will come until an operator verifies one of your skills (they are " +
      "waiting for an operator to verify them).";
  }
  return "";
}

// The zone's name as people say it ("Pacific Standard Time"), for forms that take times.
function zoneName(timeZone) {
  const zone = zoneOf(timeZone);
  const parts = new Intl.DateTimeFormat([], {timeZone: zone, timeZoneName: "long"})
    .formatToParts(new Date());
  const named = parts.find((p) => p.type === "timeZoneName");
  return named ? named.value : zone;
}

// Money: integer minor units ("cents") of an ISO currency, written the currency's way
// ("$12.50", "¥1,500"); a whole amount without its zero decimals ("$95"), as ranges are
// shown. The server's twin is dispatch/domain/money.py format_cents.
function formatCents(cents, currency) {
  const code = currency || "USD";
  const lang = document.documentElement.lang || undefined;
  const digits = new Intl.NumberFormat(lang, {style: "currency", currency: code})
    .resolvedOptions().maximumFractionDigits;
  const whole = cents % 10 ** digits === 0;
  return new Intl.NumberFormat(lang, {
    style: "currency", currency: code,
    minimumFractionDigits: whole ? 0 : digits, maximumFractionDigits: whole ? 0 : digits,
  }).format(cents / 10 ** digits);
}
