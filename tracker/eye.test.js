// Unit tests of the tracker's logic with Node's test runner, in a fake
// browser: `node --test tracker/`. The real browser runs in tests/it/website.rs.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { webcrypto } = require("node:crypto");
const factory = require("../static/eye.js");

function storage(initial = {}) {
  const m = new Map(Object.entries(initial));
  return { getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), map: m };
}

const ok = () => ({ ok: true, status: 202, headers: { get: () => null } });

/** A fake window, document and script tag; `respond(n)` answers the n-th fetch. */
function browser({ attrs = { key: "K" }, nav = {}, respond = ok, local = storage(), session = storage(), path = "/" } = {}) {
  const on = {}, onDoc = {}, timers = [], fetches = [], beacons = [];
  const w = {
    location: { host: "shop.example", pathname: path },
    navigator: { sendBeacon: (url, blob) => (beacons.push({ url, blob }), true), ...nav },
    localStorage: local,
    sessionStorage: session,
    crypto: webcrypto,
    history: { pushState(s, t, u) { w.location.pathname = u; }, replaceState() {} },
    addEventListener: (type, f) => (on[type] ||= []).push(f),
    setTimeout: (f, ms) => timers.push({ f, ms }),
    fetch: async (url, init) => {
      fetches.push({ url, init, body: JSON.parse(init.body) });
      const r = respond(fetches.length);
      if (r instanceof Error) throw r;
      return r;
    },
  };
  const d = { title: "Home", visibilityState: "visible", addEventListener: (type, f) => (onDoc[type] ||= []).push(f) };
  const script = { src: "https://eye.example/static/eye.js", getAttribute: (n) => attrs[n.slice(5)] ?? null };
  const eye = factory(w, d, script);
  const queue = () => JSON.parse(local.getItem("eye:queue") || "[]");
  /** Runs the next pending timer and lets the fetch it starts settle. */
  const tick = async () => {
    const t = timers.shift();
    assert.ok(t, "a timer is pending");
    t.f();
    await new Promise((r) => setImmediate(r));
    return t.ms;
  };
  return { w, d, eye, on, onDoc, timers, fetches, beacons, queue, tick, local, session };
}

const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test("a pageview on load, batched, sent as text/plain with the key and keepalive", async () => {
  const b = browser();
  assert.equal(b.queue().length, 1);
  assert.equal(await b.tick(), 1000, "batched for a second");
  assert.equal(b.fetches.length, 1);
  const { url, init, body } = b.fetches[0];
  assert.equal(url, "https://eye.example/collector?key=K");
  assert.equal(init.headers["Content-Type"], "text/plain");
  assert.equal(init.keepalive, true);
  const [e] = body;
  assert.equal(e.category, "page interaction");
  assert.equal(e.name, "pageview");
  assert.deepEqual(e.data, { host: "shop.example", path: "/", title: "Home" });
  assert.match(e.event_id, UUID7);
  assert.ok(!Number.isNaN(Date.parse(e.timestamp)) && e.timestamp.endsWith("Z"), "RFC 3339");
  assert.equal(e.session_id, b.session.getItem("eye:session"));
  assert.equal(b.queue().length, 0, "sent, so forgotten");
});

test("one session id per tab session, across pages", () => {
  const session = storage();
  const first = browser({ session }).eye.session();
  assert.equal(browser({ session }).eye.session(), first, "the next page of the tab");
  assert.notEqual(browser().eye.session(), first, "another tab");
});

test("SPA navigations send a pageview each, once per path", () => {
  const b = browser();
  b.w.history.pushState({}, "", "/products/");
  b.w.history.pushState({}, "", "/products/");
  b.w.history.replaceState({}, "", "/products/");
  const paths = b.queue().map((e) => e.data.path);
  assert.deepEqual(paths, ["/", "/products/"]);
});

test("a 503 is retried after Retry-After with the same event ids; nothing is lost or doubled", async () => {
  const b = browser({ respond: (n) => (n === 1 ? { ok: false, status: 503, headers: { get: () => "7" } } : ok()) });
  await b.tick();
  assert.equal(b.queue().length, 1, "kept for the retry");
  assert.equal(await b.tick(), 7000, "waits as long as the server asked");
  assert.equal(b.fetches.length, 2);
  assert.equal(b.fetches[1].body[0].event_id, b.fetches[0].body[0].event_id, "the retry is deduplicated by id");
  assert.equal(b.queue().length, 0);
});

test("network failures back off exponentially, up to a minute", async () => {
  const b = browser({ respond: () => new Error("offline") });
  const waits = [];
  await b.tick();
  for (let i = 0; i < 8; i++) waits.push(await b.tick());
  assert.deepEqual(waits, [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]);
  assert.equal(b.queue().length, 1);
});

test("a request refused for good (400) is not retried", async () => {
  const b = browser({ respond: () => ({ ok: false, status: 400, headers: { get: () => null } }) });
  await b.tick();
  assert.equal(b.queue().length, 0);
  assert.equal(b.timers.length, 0);
});

test("the queue in localStorage keeps the newest 200 events", () => {
  const old = Array.from({ length: 250 }, (_, i) => ({ event_id: String(i) }));
  const b = browser({ local: storage({ "eye:queue": JSON.stringify(old) }), respond: () => new Error("offline") });
  const q = b.queue();
  assert.equal(q.length, 200);
  assert.equal(q[q.length - 1].name, "pageview", "the newest is kept");
  assert.equal(q[0].event_id, "51");
});

function field(name, value, type = "text", extra = {}) {
  return { name, value, type, disabled: false, checked: false, hasAttribute: (a) => a in (extra.attrs || {}), ...extra };
}

test("a submit sends the form's fields, never passwords, hidden or ignored fields, then a beacon", () => {
  const b = browser();
  const form = {
    hasAttribute: (a) => a === "data-eye-form",
    elements: [
      field("name", "Ada"),
      field("email", "ada@example.com", "email"),
      field("password", "hunter2", "password"),
      field("csrf", "tok", "hidden"),
      field("card", "4111", "text", { attrs: { "data-eye-ignore": "" } }),
      field("news", "yes", "checkbox", { checked: true }),
      field("spam", "yes", "checkbox"),
      field("", "nameless"),
    ],
  };
  b.onDoc.submit[0]({ target: form });
  assert.equal(b.beacons.length, 1, "the page is about to leave: a beacon");
  assert.equal(b.beacons[0].url, "https://eye.example/collector?key=K");
  assert.equal(b.beacons[0].blob.type, "text/plain");
  assert.equal(b.queue().length, 0);
  return b.beacons[0].blob.text().then((text) => {
    const submit = JSON.parse(text).find((e) => e.name === "submit");
    assert.equal(submit.category, "form interaction");
    assert.deepEqual(submit.data.form, { name: "Ada", email: "ada@example.com", news: "yes" });
    assert.equal(submit.data.path, "/");
  });
});

test("clicks on data-eye-click elements are named by the attribute", () => {
  const b = browser();
  const banner = { getAttribute: (a) => ({ "data-eye-click": "banner image click" })[a] ?? null };
  b.onDoc.click[0]({ target: { closest: (sel) => (sel === "[data-eye-click]" ? banner : null) } });
  b.onDoc.click[0]({ target: { closest: () => null } });
  const names = b.queue().map((e) => `${e.category}/${e.name}`);
  assert.deepEqual(names, ["page interaction/pageview", "page interaction/banner image click"]);
});

test("leaving the page flushes with sendBeacon", () => {
  const b = browser();
  b.d.visibilityState = "hidden";
  b.onDoc.visibilitychange[0]();
  assert.equal(b.beacons.length, 1);
  b.on.pagehide[0]();
  assert.equal(b.beacons.length, 1, "nothing left to send");
});

test("Do-Not-Track and GPC are respected when the site asks for it", () => {
  const dnt = browser({ attrs: { key: "K", "respect-dnt": "" }, nav: { doNotTrack: "1" } });
  dnt.eye.track("x", "y", {});
  assert.equal(dnt.queue().length, 0);
  const gpc = browser({ attrs: { key: "K", "respect-dnt": "" }, nav: { globalPrivacyControl: true } });
  assert.equal(gpc.queue().length, 0);
  const ignored = browser({ nav: { doNotTrack: "1" } });
  assert.equal(ignored.queue().length, 1, "not configured: tracked");
});

test("eye.track adds host and path; data-endpoint and data-pageviews are honoured", () => {
  const b = browser({ attrs: { key: "K", endpoint: "https://collect.example/collector", pageviews: "off" } });
  assert.equal(b.queue().length, 0, "no automatic pageview");
  b.eye.track("shop", "add to cart", { sku: "F-12", path: "/custom" });
  const [e] = b.queue();
  assert.deepEqual(e.data, { host: "shop.example", path: "/custom", sku: "F-12" });
  return b.tick().then(() => assert.equal(b.fetches[0].url, "https://collect.example/collector?key=K"));
});

test("event ids are UUIDv7: time first, so they sort by time", () => {
  const b = browser();
  const before = Date.now();
  const id = b.eye.uuid7();
  assert.match(id, UUID7);
  const ms = parseInt(id.replace(/-/g, "").slice(0, 12), 16);
  assert.ok(ms >= before && ms <= Date.now());
  assert.notEqual(b.eye.uuid7(), id);
});
