/* The Eye admin: the few things a page cannot do without script. Every page
   works without it; with it, times read in the reader's own zone, the
   date-time pickers know that zone, and the live view streams. */
(() => {
  "use strict";
  const d = document;

  // Times: the short local form, or "3 min ago" within the hour; the full
  // UTC value stays on hover (the title the server wrote).
  const sameYear = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const otherYear = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit" });
  const full = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });
  const localise = (t) => {
    const at = new Date(t.dateTime);
    if (isNaN(at)) return;
    if (!t.dataset.utc) {
      t.dataset.utc = t.title;
      t.title = t.dataset.utc + "\n" + full.format(at);
    }
    const age = (Date.now() - at) / 1000;
    if (age >= -30 && age < 45) t.textContent = "just now";
    else if (age >= 45 && age < 3600) t.textContent = Math.round(age / 60) + " min ago";
    else t.textContent = (at.getFullYear() === new Date().getFullYear() ? sameYear : otherYear).format(at);
  };
  const times = (root) => root.querySelectorAll("time[datetime]").forEach(localise);
  times(d);
  setInterval(() => times(d), 30000);

  // On a phone, filters nobody set are folded away, so the list comes first.
  if (window.matchMedia("(max-width: 600px)").matches) {
    d.querySelectorAll("details[data-fold-narrow]").forEach((box) => { box.open = false; });
  }

  // Date-time pickers read and write the browser's zone; the server needs its offset.
  d.querySelectorAll("input[name=tz]").forEach((i) => { i.value = String(new Date().getTimezoneOffset()); });

  // The live view.
  const live = d.getElementById("live");
  if (!live) return;
  const body = live.querySelector("tbody");
  const state = d.getElementById("live-state");
  const waiting = d.getElementById("live-queue");
  const pause = d.getElementById("live-pause");
  const empty = d.getElementById("live-empty");
  const MAX_ROWS = 500;
  let source = null, last = "";
  const cell = (row, text, opts = {}) => {
    const td = row.insertCell();
    let el = td;
    if (opts.href) { el = d.createElement("a"); el.href = opts.href; td.append(el); }
    if (opts.code) { const c = d.createElement("code"); c.className = "clip"; el.append(c); el = c; }
    if (opts.time) { const t = d.createElement("time"); t.dateTime = text; t.title = text + " UTC"; el.append(t); localise(t); return td; }
    if (opts.badge) { const b = d.createElement("span"); b.className = "badge " + opts.badge; b.textContent = text; el.append(b); return td; }
    el.textContent = text || "";
    if (opts.code) el.title = text || "";
    return td;
  };
  const show = (kind, item) => {
    const row = body.insertRow(0);
    row.className = "fresh";
    cell(row, item.time, { time: true });
    cell(row, kind === "event" ? "event" : "error", { badge: kind === "event" ? "ok" : "bad", href: item.href });
    cell(row, item.category || "—");
    cell(row, kind === "event" ? item.name : item.codes, { code: kind !== "event" });
    cell(row, item.session_id || "—", item.session_href ? { href: item.session_href, code: true } : { code: true });
    cell(row, kind === "event" ? item.path : item.preview, { code: true });
    cell(row, item.application || "");
    while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
    if (empty) empty.hidden = true;
  };
  const start = () => {
    const params = new URLSearchParams(location.search);
    if (last) params.set("after", last);
    source = new EventSource(live.dataset.stream + "?" + params.toString());
    source.addEventListener("event", (m) => { last = m.lastEventId || last; show("event", JSON.parse(m.data)); });
    source.addEventListener("error-row", (m) => { last = m.lastEventId || last; show("error", JSON.parse(m.data)); });
    source.addEventListener("status", (m) => {
      const s = JSON.parse(m.data);
      last = m.lastEventId || last;
      if (waiting) waiting.textContent = s.queue;
    });
    source.onopen = () => { state.textContent = "Live"; state.classList.add("on"); };
    source.onerror = () => { state.textContent = "Reconnecting…"; state.classList.remove("on"); };
  };
  const stop = () => { if (source) source.close(); source = null; state.textContent = "Paused"; state.classList.remove("on"); };
  pause.addEventListener("click", () => {
    if (source) { stop(); pause.textContent = "Resume"; pause.setAttribute("aria-pressed", "true"); }
    else { start(); pause.textContent = "Pause"; pause.setAttribute("aria-pressed", "false"); }
  });
  d.getElementById("live-clear").addEventListener("click", () => {
    while (body.rows.length) body.deleteRow(0);
    if (empty) empty.hidden = false;
  });
  pause.hidden = false;
  d.getElementById("live-clear").hidden = false;
  start();
})();
