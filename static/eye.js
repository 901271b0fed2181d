/*! The Eye tracker; see its README */
((factory) => {
  if (typeof module === "object" && module.exports) module.exports = factory;
  else factory(window, document, document.currentScript);
})((w, d, script) => {
  "use strict";
  const attr = (name) => script && script.getAttribute("data-" + name);
  const nav = w.navigator || {};
  if (attr("respect-dnt") !== null && (nav.doNotTrack === "1" || nav.globalPrivacyControl === true)) {
    return (w.eye = { track() {}, flush() {} });
  }
  let url = attr("endpoint") || new URL("../collector", script.src).href;
  url += (url.includes("?") ? "&" : "?") + "key=" + encodeURIComponent(attr("key") || "");
  const QUEUE = "eye:queue", BATCH = 50;
  let timer = null, sending = false, delay = 0, lastPath = null, ls, ss, sid;
  try { ls = w.localStorage; ss = w.sessionStorage; } catch (e) {}

  const uuid7 = () => {
    const b = new Uint8Array(16);
    w.crypto.getRandomValues(b);
    for (let i = 5, t = Date.now(); i >= 0; i--, t = Math.floor(t / 256)) b[i] = t % 256;
    b[6] = (b[6] & 15) | 112;
    b[8] = (b[8] & 63) | 128;
    const h = Array.from(b, (x) => (x + 256).toString(16).slice(1)).join("");
    return h.replace(/(.{8})(.{4})(.{4})(.{4})/, "$1-$2-$3-$4-");
  };
  const load = () => { try { return JSON.parse(ls.getItem(QUEUE)) || []; } catch (e) { return []; } };
  const save = (q) => { try { ls.setItem(QUEUE, JSON.stringify(q.slice(-200))); } catch (e) {} };
  const session = () => {
    try { sid = sid || ss.getItem("eye:session"); } catch (e) {}
    if (!sid) {
      sid = w.crypto.randomUUID ? w.crypto.randomUUID() : uuid7();
      try { ss.setItem("eye:session", sid); } catch (e) {}
    }
    return sid;
  };
  const track = (category, name, data) => {
    const q = load();
    q.push({ event_id: uuid7(), session_id: session(), category, name,
             data: Object.assign({ host: w.location.host, path: w.location.pathname }, data),
             timestamp: new Date().toISOString() });
    save(q);
    schedule(q.length >= BATCH ? 0 : 1000);
  };
  const schedule = (ms) => {
    if (timer === null) timer = w.setTimeout(() => { timer = null; send(); }, ms);
  };
  const forget = (sent) => {
    const ids = new Set(sent.map((e) => e.event_id));
    save(load().filter((e) => !ids.has(e.event_id)));
  };
  const retry = (after) => {
    delay = Math.min(delay ? delay * 2 : 1000, 60000);
    schedule(Math.max(after * 1000 || 0, delay));
  };
  const send = () => {
    const batch = load().slice(0, BATCH);
    if (sending || !batch.length) return;
    sending = true;
    w.fetch(url, { method: "POST", body: JSON.stringify(batch), keepalive: true,
                   headers: { "Content-Type": "text/plain" } }).then((r) => {
      sending = false;
      if (r.ok || (r.status < 500 && r.status !== 408 && r.status !== 429)) {
        forget(batch);
        delay = 0;
        if (load().length) schedule(0);
      } else retry(Number(r.headers.get("Retry-After")));
    }, () => { sending = false; retry(0); });
  };
  const flush = () => {
    const batch = load().slice(0, BATCH);
    if (!batch.length || !nav.sendBeacon) return send();
    if (nav.sendBeacon(url, new Blob([JSON.stringify(batch)], { type: "text/plain" }))) forget(batch);
  };
  const pageview = () => {
    if (w.location.pathname === lastPath) return;
    lastPath = w.location.pathname;
    track("page interaction", "pageview", { title: d.title });
  };
  const fields = (form) => {
    const out = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled || el.hasAttribute("data-eye-ignore")) continue;
      if (/^(password|hidden|file|submit|button|reset|image)$/.test(el.type)) continue;
      if (/^(checkbox|radio)$/.test(el.type) && !el.checked) continue;
      out[el.name] = el.value;
    }
    return out;
  };
  d.addEventListener("click", (e) => {
    const el = e.target.closest && e.target.closest("[data-eye-click]");
    if (el) track(el.getAttribute("data-eye-category") || "page interaction", el.getAttribute("data-eye-click") || "click");
  }, true);
  d.addEventListener("submit", (e) => {
    if (!e.target.hasAttribute("data-eye-form")) return;
    track("form interaction", "submit", { form: fields(e.target) });
    flush();
  }, true);
  w.addEventListener("pagehide", flush);
  d.addEventListener("visibilitychange", () => { if (d.visibilityState === "hidden") flush(); });
  if (attr("pageviews") !== "off") {
    for (const m of ["pushState", "replaceState"]) {
      const original = w.history[m];
      w.history[m] = function () { const r = original.apply(this, arguments); pageview(); return r; };
    }
    w.addEventListener("popstate", pageview);
    pageview();
  }
  if (load().length) schedule(0);
  return (w.eye = { track, flush, session, uuid7 });
});
