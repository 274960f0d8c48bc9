// cxpulse helpdesk page: search, one agent's experience with a zoomable timeline, the fleet.
// Plain JavaScript, no framework and no build step: the collector serves this file as is, and
// nothing is fetched from anywhere but the collector (the page also works on a closed network).
"use strict";
(() => {
  const SVGNS = "http://www.w3.org/2000/svg";
  const BROWSER_ZONE = (Intl.DateTimeFormat().resolvedOptions().timeZone) || "UTC";
  // The view's zone: the browser's, or the one a link names (a ticket's "View:" link carries the
  // zone it was written in, so the page shows the same clock times as the ticket).
  let ZONE = BROWSER_ZONE;
  function knownZone(tz) {
    if (!tz) return null;
    try { return new Intl.DateTimeFormat("en-US", { timeZone: tz }).resolvedOptions().timeZone; } catch (e) { return null; }
  }
  // Two palettes that never share a hue family, from Okabe & Ito's colour-blind-safe set: hops
  // (lines) in blues, green, purple and greys; event severities (marks, bands) in yellow, orange
  // and vermillion, and taller the more severe, so they differ without colour too.
  const COLORS = ["#0072B2", "#009E73", "#CC79A7", "#56B4E9", "#4D4D4D", "#6A3D9A", "#1B9E9E", "#999999"];
  const SEV = { 1: "minor", 2: "major", 3: "critical" };
  const SEV_COLOR = { 1: "#F0E442", 2: "#E69F00", 3: "#D55E00" };
  const NODATA = "#8c96a8";
  const RANGES = [["15m", 900], ["1h", 3600], ["4h", 14400], ["24h", 86400], ["7d", 604800]];
  const MIN_SPAN_S = 30;

  // ---------- small helpers ----------
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  function sv(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) e.setAttribute(k, v);
    return e;
  }
  // replaceChildren would print "null" for a section left out: drop those first.
  const fill = (node, ...kids) => node.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));
  const pad = (n) => String(n).padStart(2, "0");
  // Wall-clock parts of a time in the view's zone (one formatter per zone, reused).
  const zoneFmts = new Map();
  function wall(us) {
    let f = zoneFmts.get(ZONE);
    if (!f) {
      f = new Intl.DateTimeFormat("en-US", { timeZone: ZONE, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
      zoneFmts.set(ZONE, f);
    }
    const o = {};
    for (const x of f.formatToParts(new Date(us / 1000))) o[x.type] = x.value;
    return { y: o.year, mo: o.month, d: o.day, h: o.hour === "24" ? "00" : o.hour, mi: o.minute, s: o.second };
  }
  // The view's zone's offset from UTC at a time, in seconds (for ticks on round local times).
  function zoneOffsetS(us) {
    const w = wall(us);
    return Math.round((Date.UTC(+w.y, +w.mo - 1, +w.d, +w.h, +w.mi, +w.s) - Math.floor(us / 1e6) * 1000) / 1000);
  }
  function fmtClock(us, secs) {
    const w = wall(us);
    return w.h + ":" + w.mi + (secs ? ":" + w.s : "");
  }
  function fmtDate(us) {
    const w = wall(us);
    return w.y + "-" + w.mo + "-" + w.d;
  }
  const fmtWhen = (us, secs) => fmtDate(us) + " " + fmtClock(us, secs);
  function fmtSpan(s) {
    if (s >= 172800 && s % 86400 === 0) return (s / 86400) + " d";
    if (s >= 3600) return (Math.round(s / 360) / 10) + " h";
    if (s >= 60) return Math.round(s / 60) + " min";
    return s + " s";
  }
  function ago(us) {
    const s = Math.max(0, Date.now() / 1000 - us / 1e6);
    if (s < 90) return Math.round(s) + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 172800) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " days ago";
  }
  const num = (v, d = 1) => (v === null || v === undefined) ? "–" : (v === 0 ? "0" : Math.abs(v) >= 100 ? String(Math.round(v)) : Number(v).toFixed(d));
  const labelClass = (l) => (l === "good" || l === "fair" || l === "poor") ? l : "na";

  // ---------- plain words: the glossary (GET /api/v1/glossary, the list docs/glossary.md shows) ----------
  // Fetched once per sign-in; until it arrives (or without it) the page shows the terms as they are.
  let GLOSSARY = null, glossaryAsked = false;
  async function loadGlossary() {
    if (glossaryAsked) return;
    glossaryAsked = true;
    try {
      const g = (await api("/api/v1/glossary")).body;
      GLOSSARY = { terms: new Map(g.terms.map((t) => [t.term, t])), events: new Map(g.events.map((e) => [e.kind, e])) };
      if (page && page.view) { renderSummary(); renderTables(); }
      if (page && page.tl) drawChart();
    } catch (e) { glossaryAsked = false; }
  }
  const termTitle = (term) => {
    const t = GLOSSARY && GLOSSARY.terms.get(term);
    return t ? `${t.plain}${t.unit ? " (" + t.unit + ")" : ""}: ${t.meaning}` : null;
  };
  const eventWords = (kind) => (GLOSSARY && GLOSSARY.events.get(kind) ? GLOSSARY.events.get(kind).plain : kind);
  const eventMeaning = (kind) => (GLOSSARY && GLOSSARY.events.get(kind) ? GLOSSARY.events.get(kind).meaning : "");
  // "voice" -> "call quality", with the key and the meaning in its tooltip.
  function plainTerm(term) {
    const t = GLOSSARY && GLOSSARY.terms.get(term);
    return t ? el("abbr", { class: "explain", title: `${term}: ${termTitle(term)}`, "data-term": term, text: t.plain }) : String(term);
  }
  // A sentence with its jargon explained: each known term (Apdex, T 500 ms, R 57, |dRTT|,
  // severity-weighted s, RSSI, ...) becomes a tooltip; one-letter terms only next to a number.
  function explained(text) {
    text = String(text);
    if (!GLOSSARY) return text;
    const words = [...GLOSSARY.terms.keys()].filter((k) => k.length > 1 && /[A-Z|]|weighted|jitter|limited/.test(k))
      .sort((a, b) => b.length - a.length).map((k) => k.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    const re = new RegExp(`(${words.join("|")})(?![\\w])|\\b([TR])(?= \\d)|(?<=\\d )(R)\\b`, "g");
    const out = el("span", {});
    let at = 0;
    for (const m of text.matchAll(re)) {
      const term = m[1] || m[2] || m[3];
      out.append(text.slice(at, m.index), el("abbr", { class: "explain", title: termTitle(term), "data-term": term, text: m[0] }));
      at = m.index + m[0].length;
    }
    out.append(text.slice(at));
    return out;
  }

  // ---------- sign-in ----------
  // The API needs a key (helpdesk or admin). It lives in sessionStorage: gone when the tab
  // closes, never in a cookie (so no other page can make the browser send it), sent on each fetch.
  const KEY = "cxpulse.apikey";
  const signin = document.getElementById("signin");
  const keyInput = document.getElementById("apikey");
  const signinMsg = document.getElementById("signin-msg");
  const signout = document.getElementById("signout");
  class NeedKey extends Error {}
  function askForKey(why) {
    sessionStorage.removeItem(KEY);
    signinMsg.textContent = why || "";
    signin.hidden = false;
    signout.hidden = true;
    keyInput.focus();
  }
  signin.addEventListener("submit", (e) => {
    e.preventDefault();
    const k = keyInput.value.trim();
    if (!k) { signinMsg.textContent = "Paste the API key IT gave you."; return; }
    sessionStorage.setItem(KEY, k);
    keyInput.value = "";
    signin.hidden = true;
    signout.hidden = false;
    route();
  });
  signout.addEventListener("click", (e) => { e.preventDefault(); fill(main); askForKey("Signed out."); });

  async function api(path) {
    const t0 = performance.now();
    const key = sessionStorage.getItem(KEY);
    if (!key) { askForKey(""); throw new NeedKey("Sign in with an API key to continue."); }
    const r = await fetch(path, { headers: { Accept: "application/json", Authorization: "Bearer " + key } });
    if (r.status === 401) {
      fill(main);
      askForKey("The key was not accepted (unknown or revoked): sign in again.");
      throw new NeedKey("Sign in with an API key to continue.");
    }
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) throw new Error((body && body.error && body.error.message) || ("HTTP " + r.status));
    const st = r.headers.get("Server-Timing") || "";
    const m = /dur=([\d.]+)/.exec(st);
    return { body, ms: performance.now() - t0, serverMs: m ? Number(m[1]) : null };
  }

  // ---------- search ----------
  const q = document.getElementById("q");
  const results = document.getElementById("results");
  let searchTimer = 0, searchGen = 0, sel = -1;
  q.addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(search, 150); });
  q.addEventListener("keydown", (e) => {
    const items = [...results.children];
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      if (!items.length) return;
      sel = (sel + (e.key === "ArrowDown" ? 1 : -1) + items.length) % items.length;
      items.forEach((li, i) => li.classList.toggle("sel", i === sel));
    } else if (e.key === "Enter") {
      const li = items[sel >= 0 ? sel : 0];
      if (li && li.dataset.id) openAgent(li.dataset.id);
      else search();
    } else if (e.key === "Escape") { results.hidden = true; }
  });
  document.addEventListener("click", (e) => { if (!e.target.closest(".search")) results.hidden = true; });

  async function search() {
    const text = q.value.trim();
    const gen = ++searchGen;
    if (!text) { results.hidden = true; return; }
    let res;
    try { res = await api("/api/v1/agents?limit=20&q=" + encodeURIComponent(text)); }
    catch (e) {
      if (e instanceof NeedKey) { results.hidden = true; return; }
      fill(results, el("li", { class: "err", text: e.message })); results.hidden = false; return;
    }
    if (gen !== searchGen) return;
    sel = -1;
    const agents = res.body.agents;
    fill(results, ...(agents.length ? agents.map((a) => el("li", { "data-id": a.agent_id, class: "result", onclick: () => openAgent(a.agent_id) },
      el("span", {}, el("b", { text: a.display_name || a.user || "?" }), a.display_name && a.user ? " (" + a.user + ")" : "", " on ", a.host || "?"),
      el("span", { class: "sub", text: [a.site, a.agent_id, "seen " + ago(a.last_seen_us)].filter(Boolean).join(" · ") })))
      : [el("li", { class: "empty", text: "No agent matches “" + text + "” (name, login, host, agent id or site)" })]));
    results.hidden = false;
  }
  function openAgent(id) {
    results.hidden = true;
    const until = Math.floor(Date.now() / 1000);
    location.hash = "#/agent/" + encodeURIComponent(id) + "?since=" + (until - 3600) + "&until=" + until;
  }

  // ---------- routing ----------
  const main = document.getElementById("main");
  const foot = document.getElementById("foot");
  function route() {
    if (!sessionStorage.getItem(KEY)) { fill(main); askForKey(""); return; }  // nothing to show without a key
    const h = location.hash || "#/";
    const m = /^#\/agent\/([^?]+)(?:\?(.*))?$/.exec(h);
    if (m) {
      const p = new URLSearchParams(m[2] || "");
      const until = Number(p.get("until")) || Math.floor(Date.now() / 1000);
      const since = Number(p.get("since")) || until - 3600;
      ZONE = knownZone(p.get("tz")) || BROWSER_ZONE;
      agentPage(decodeURIComponent(m[1]), since, until);
    } else {
      ZONE = BROWSER_ZONE;
      fleetPage();
    }
  }
  window.addEventListener("hashchange", route);

  // ---------- agent page ----------
  let page = null; // the agent page's state; replaced on every navigation

  function agentPage(id, since, until) {
    const gen = {};
    page = { gen, id, since, until, zoom: null, tl: null, view: null, scorePts: [], t0: performance.now(), timing: {} };
    const span = until - since;
    const rangeBtns = RANGES.map(([name, s]) => el("button", {
      class: s === span ? "on" : null, "data-range": name,
      onclick: () => { const u = Math.floor(Date.now() / 1000); location.hash = "#/agent/" + encodeURIComponent(id) + "?since=" + (u - s) + "&until=" + u + zoneParam(); },
    }, name));
    fill(main, 
      el("section", { class: "card", id: "summary" },
        el("div", { class: "head" },
          el("div", { class: "who" },
            el("h1", { id: "who", text: id }), el("div", { class: "meta", id: "meta", text: "Loading…" }),
            el("p", { class: "sentence", id: "sentence" }),
            el("div", { id: "where" }),
            el("p", { class: "next", id: "next", hidden: true })),
          el("div", { class: "evid" }, el("h2", { text: "Evidence" }), el("ul", { class: "evidence", id: "evidence" })),
          el("div", { class: "score", id: "score" }, el("div", { class: "num txt-na", text: "…" })))),
      el("section", { class: "card" },
        el("div", { class: "toolbar" }, ...rangeBtns,
          el("span", { class: "range-label", id: "rangelabel" }),
          el("span", { class: "sp" }),
          el("button", { id: "zoomout", onclick: () => zoomBy(2), title: "Zoom out (or use the mouse wheel)" }, "Zoom out"),
          el("button", { id: "zoomreset", onclick: () => setZoom(null), title: "Back to the whole window (or double-click the chart)" }, "Reset zoom"),
          el("button", { id: "zoomapply", hidden: true, onclick: applyZoom, title: "Make the zoomed range the window: summary, tables and ticket follow" }, "Show this range"),
          el("button", { class: "primary", id: "copy", onclick: copyTicket }, "Copy ticket summary")),
        el("div", { class: "ticket", id: "ticketbox", hidden: true },
          el("textarea", { id: "ticket", readonly: true, "aria-label": "Ticket summary" }),
          el("span", { class: "note", id: "copynote" })),
        el("div", { class: "legend", id: "legend" }),
        el("div", { class: "chart", id: "chart", tabindex: "0", onkeydown: chartKeys,
        "aria-label": "Timeline chart. Keys: + zoom in, - zoom out, left and right arrows move, Escape shows the whole window" },
        el("p", { class: "muted", text: "Loading the timeline…" }))),
      el("div", { class: "grid2" },
        el("section", { class: "card", id: "hops" }, el("h2", { text: "Path: per hop" })),
        el("section", { class: "card", id: "apps" }, el("h2", { text: "Apps" }))),
      el("div", { class: "grid2" },
        el("section", { class: "card", id: "events" }, el("h2", { text: "Micro-disruptions" })),
        el("section", { class: "card", id: "context" }, el("h2", { text: "Score components, Wi-Fi, device, voice" }))),
    );
    updateRangeLabel();
    loadAgent(gen);
  }

  async function loadAgent(gen) {
    const p = page;
    loadGlossary();
    const w = chartWidth();
    try {
      const tl = await api(`/api/v1/agents/${encodeURIComponent(p.id)}/timeline?since=${p.since}&until=${p.until}&points=${w}`);
      if (gen !== page.gen) return;
      p.tl = tl.body;
      drawChart();
      performance.mark("cx-chart-ready");
      p.timing.chart = performance.now() - p.t0;
      p.timing.chartServer = tl.serverMs;
      showTiming();
    } catch (e) {
      if (gen !== page.gen || e instanceof NeedKey) return;
      fill(document.getElementById("chart"), el("p", { class: "err", text: "Timeline: " + e.message }));
    }
    try {
      const v = await api(`/api/v1/agents/${encodeURIComponent(p.id)}?since=${p.since}&until=${p.until}&timeline=false&tz=${encodeURIComponent(ZONE)}`);
      if (gen !== page.gen) return;
      p.view = v.body;
      p.scorePts = v.body.score_timeline || [];
      renderSummary();
      renderTables();
      if (p.tl) drawChart();
      performance.mark("cx-summary-ready");
      p.timing.summary = performance.now() - p.t0;
      p.timing.summaryServer = v.serverMs;
      showTiming();
    } catch (e) {
      if (gen !== page.gen || e instanceof NeedKey) return;
      document.getElementById("meta").textContent = "";
      fill(document.getElementById("sentence"), el("span", { class: "err", text: e.message }));
    }
  }

  function showTiming() {
    const t = page.timing;
    const parts = [];
    if (t.chart !== undefined) parts.push(`chart in ${Math.round(t.chart)} ms (server ${num(t.chartServer, 0)} ms)`);
    if (t.summary !== undefined) parts.push(`summary in ${Math.round(t.summary)} ms (server ${num(t.summaryServer, 0)} ms)`);
    foot.textContent = parts.join(" · ") + (parts.length ? " · times in " + ZONE : "");
  }

  function updateRangeLabel() {
    const p = page;
    const r = p.zoom || { since: p.since, until: p.until };
    const lab = document.getElementById("rangelabel");
    if (!lab) return;
    const secs = p.zoom !== null;
    const end = fmtDate(r.since * 1e6) === fmtDate(r.until * 1e6) ? fmtClock(r.until * 1e6, secs) : fmtWhen(r.until * 1e6, secs);
    lab.textContent = `${fmtWhen(r.since * 1e6, secs)} – ${end} ${ZONE} (${fmtSpan(r.until - r.since)}${p.zoom ? ", zoomed" : ""})`;
    document.getElementById("zoomapply").hidden = !p.zoom;
  }

  function renderSummary() {
    const { agent: a, headline: hl } = page.view;
    document.getElementById("who").textContent = `${a.user || "?"} on ${a.host || "?"}`;
    document.getElementById("meta").textContent = [a.site && "site " + a.site, "agent " + a.agent_id, a.os, a.agent_version && "v" + a.agent_version,
      "last seen " + ago(a.last_seen_us)].filter(Boolean).join(" · ");
    const sc = document.getElementById("score");
    const lc = labelClass(hl.label);
    fill(sc, 
      el("div", { class: "num txt-" + lc, text: hl.score === null ? "–" : Math.round(hl.score) }),
      el("div", {}, el("span", { class: "chip " + lc, text: hl.label || "not scored" })),
      hl.limiting ? el("div", { class: "muted" }, explained("limited by"), " ", plainTerm(hl.limiting)) : null,
      hl.score_now !== null && hl.score_now !== undefined && hl.score_now !== hl.score ? el("div", { class: "muted", text: "now " + Math.round(hl.score_now) + " " + (hl.label_now || "") }) : null);
    const noData = !a.targets.length && !(a.apps || []).length && !a.wifi;
    const sentence = noData ? "No samples in this window: the agent was offline or not yet reporting."
      : (hl.sentence || "Nothing abnormal measured in this window.");
    fill(document.getElementById("sentence"), el("b", { text: "What was wrong: " }), sentence);
    const where = document.getElementById("where");
    fill(where);
    if (hl.domain || hl.where) {
      const conf = typeof hl.confidence === "number" && hl.confidence <= 1 ? `, confidence ${Math.round(hl.confidence * 100)}%` : (hl.confidence ? `, confidence ${hl.confidence}` : "");
      const span = hl.fault_start_us ? `, ${fmtClock(hl.fault_start_us)}–${fmtClock(hl.fault_end_us)}` : "";
      where.append(el("p", { class: "where" }, el("b", { text: "Where: " }), String(hl.domain_label || hl.domain || hl.where) + span + conf));
    }
    for (const inc of hl.incidents || []) {
      where.append(el("p", { class: "where" }, el("b", { text: "Incident: " }), `#${inc.id} ${inc.kind === "site" ? "site " : ""}${inc.scope || ""}, ${inc.agents ?? "?"} agents, since ${fmtClock(inc.start_us)}` + (inc.end_us ? `, over at ${fmtClock(inc.end_us)}` : ", open")));
    }
    const others = othersBlock(hl.others);
    if (others) where.append(others);
    const ev = document.getElementById("evidence");
    fill(ev, ...(hl.evidence || []).slice(0, 6).map((x) => el("li", { text: x })));
    document.querySelector("#summary .evid").hidden = !(hl.evidence || []).length && !(hl.faults || []).length;
    const faults = hl.faults || [];
    if (faults.length) {
      ev.append(el("li", { class: "faults" }, el("b", { text: `Degraded (${faults.length}): ` }),
        ...faults.slice(0, 8).map((f, k) => el("a", { href: "#", class: "fault", title: f.evidence || "", onclick: (e) => { e.preventDefault(); setZoom({ since: f.start_us / 1e6 - 300, until: f.end_us / 1e6 + 300 }); } },
          (k ? ", " : "") + `${fmtClock(f.start_us)}–${fmtClock(f.end_us)} ${f.label || f.domain}`))));
    }
    const nx = document.getElementById("next");
    nx.hidden = false;
    fill(nx, el("b", { text: "Next step: " }), hl.next_step);
    document.getElementById("ticket").value = page.view.ticket;
  }

  // "Is it just me?": other desks of the person's site, ISP and platform degraded at the same
  // time, computed once by the view (headline.others: counts only, over the desks this key may see).
  function othersBlock(o) {
    if (!o || !o.text) return null;
    const when = o.basis === "degraded" ? `in the degraded time, ${fmtClock(o.since_us)}–${fmtClock(o.until_us)}`
      : `in the last ${o.minutes} min of the window, nothing being degraded`;
    return el("p", { class: "where others", id: "others" }, el("b", { text: "Others at the same time: " }), o.text,
      el("span", { class: "muted", text: ` (${when})` }));
  }

  // The view's events in its order: by place (Wi-Fi, home/office network, ISP, the platform, DNS,
  // this PC), the most felt place first, and within it the most felt event first (event_groups).
  function eventsByImpact(a) {
    const byId = new Map((a.events || []).map((e) => [e.id, e]));
    const groups = a.event_groups || [];
    if (!groups.length) return (a.events || []).slice().sort((x, y) => y.start_us - x.start_us);
    return groups.flatMap((g) => g.event_ids.map((i) => byId.get(i)).filter(Boolean));
  }
  function eventGroupsBlock(a) {
    const groups = a.event_groups || [];
    if (!groups.length) return null;
    return el("ol", { class: "groups", id: "eventgroups" }, ...groups.map((g) => el("li", { "data-place": g.key, text: g.text })));
  }

  async function copyTicket() {
    const p = page;
    const box = document.getElementById("ticketbox");
    const ta = document.getElementById("ticket");
    const note = document.getElementById("copynote");
    if (!p.view) { note.textContent = "The summary is still loading…"; box.hidden = false; return; }
    ta.value = p.view.ticket;
    box.hidden = false;
    ta.focus();
    ta.select();
    let ok = false;
    try { await navigator.clipboard.writeText(p.view.ticket); ok = true; } catch (e) { ok = false; }
    if (!ok) { try { ok = document.execCommand("copy"); } catch (e) { ok = false; } }
    note.textContent = ok ? "Copied to the clipboard: paste it into the ticket." : "Select the text above and press Ctrl+C.";
    note.className = ok ? "note" : "note err";
  }

  // A row that does something (open a person, zoom to an event) is a keyboard stop too: Tab
  // reaches it, Enter or Space does what a click does, and the focus ring shows where you are.
  function rowKeys(onRow, r) {
    return (e) => {
      if (e.target !== e.currentTarget) return;
      if (e.key === "Enter" || e.key === " " || e.key === "Spacebar") { e.preventDefault(); onRow(r); }
    };
  }
  function table(cols, rows, onRow, rowLabel) {
    return el("table", {},
      el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", { class: c.n ? "n" : null, text: c.t, title: c.title || termTitle(c.t) })))),
      el("tbody", {}, ...rows.map((r) => el("tr", { class: onRow ? "click" : null, onclick: onRow ? () => onRow(r) : null,
        tabindex: onRow ? "0" : null, onkeydown: onRow ? rowKeys(onRow, r) : null, "aria-label": onRow && rowLabel ? rowLabel(r) : null,
        title: onRow && rowLabel ? rowLabel(r) : null },
        ...cols.map((c) => { const v = c.f(r); return el("td", { class: [c.n ? "n" : "", c.cls ? c.cls(r) : "", c.wrap ? "wrap" : ""].join(" ").trim() || null }, v); })))));
  }

  function renderTables() {
    const a = page.view.agent;
    const hops = document.getElementById("hops");
    fill(hops, el("h2", { text: "Path: per hop" }), a.targets.length ? table([
      { t: "hop", f: (t) => t.hop ?? "", n: true },
      { t: "target", f: (t) => t.target },
      { t: "address", f: (t) => t.addresses.join(", ") },
      { t: "loss %", f: (t) => num(t.loss_pct), n: true, cls: (t) => t.loss_pct >= 1 ? "bad" : "" },
      { t: "median", f: (t) => num(t.rtt_median_ms), n: true, title: "RTT median, ms" },
      { t: "p95", f: (t) => num(t.rtt_p95_ms), n: true, title: "RTT 95th percentile, ms" },
      { t: "max", f: (t) => num(t.rtt_max_ms), n: true },
      { t: "jitter", f: (t) => num(t.jitter_ms, 2), n: true, title: "RFC 3550 jitter at window end, ms" },
      { t: "loss s", f: (t) => t.loss_seconds, n: true, title: "seconds with at least one lost sample" },
      { t: "method", f: (t) => t.methods.join(", ") },
    ], a.targets) : el("p", { class: "empty", text: "No RTT samples in this window." }),
    ...(a.paths || []).map((pth) => el("p", { class: "muted", text: `path to ${pth.target}: ` + pth.hops.map((x) => x.address || "*").join(" › ") + (pth.reached ? "" : " (not reached)") + (pth.changes_in_window ? `, ${pth.changes_in_window} changes` : "") })));
    const apps = document.getElementById("apps");
    fill(apps, el("h2", { text: "Apps" }), (a.apps || []).length ? table([
      { t: "app", f: (x) => x.app },
      { t: "avail %", f: (x) => num(x.availability_pct), n: true, cls: (x) => x.availability_pct < 99 ? "bad" : "" },
      { t: "checks", f: (x) => x.checks, n: true },
      { t: "dns", f: (x) => num(x.dns_median_ms), n: true },
      { t: "tcp", f: (x) => num(x.tcp_median_ms), n: true },
      { t: "tls", f: (x) => num(x.tls_median_ms), n: true },
      { t: "ttfb", f: (x) => num(x.ttfb_median_ms), n: true },
      { t: "total", f: (x) => num(x.total_median_ms), n: true, title: "median total time, ms" },
      { t: "errors", f: (x) => Object.entries(x.errors || {}).map(([k, v]) => `${k} ×${v}`).join(", ") || "–", cls: (x) => x.failed ? "bad" : "" },
    ], a.apps) : el("p", { class: "empty", text: "No app checks in this window." }));
    const evs = document.getElementById("events");
    const list = eventsByImpact(a);
    fill(evs, el("h2", { text: `Events by place, the most felt first (${list.length})` }), eventGroupsBlock(a), list.length ? table([
      { t: "when", f: (e) => fmtClock(e.start_us, true) },
      { t: "for", f: (e) => e.end_us === null ? "ongoing" : fmtSpan(Math.max(1, Math.round(e.duration_s))), n: true },
      { t: "what", f: (e) => el("span", { title: e.kind }, el("span", { class: "sev s" + e.severity, title: SEV[e.severity] }), e.what || e.kind) },
      { t: "where", f: (e) => e.place ? `${e.place} (${e.target})` : e.target },
      { t: "evidence", f: (e) => e.evidence, wrap: true },
    ], list.slice(0, 200), (e) => zoomToEvent(e), eventRowLabel) : el("p", { class: "empty", text: "None: no micro-disruptions in this window." }));
    const ctx = document.getElementById("context");
    const kids = [el("h2", { text: "Score components, Wi-Fi, device, voice" })];
    const comps = (page.view.headline.components || []);
    if (comps.length) {
      kids.push(table([
        { t: "component", f: (c) => plainTerm(c.name) },
        { t: "score", f: (c) => c.score === null || c.score === undefined ? "n/a" : Math.round(c.score), n: true, cls: (c) => "txt-" + labelClass(c.label) },
        { t: "why", f: (c) => explained(c.reason || ""), wrap: true },
      ], comps));
    } else {
      kids.push(el("p", { class: "empty", text: "No score components in this view." }));
    }
    const journeys = page.view.headline.journeys || [];
    if (journeys.length) kids.push(table([
      { t: "journey", f: (j) => j.name },
      { t: "met", f: (j) => j.met_pct === null ? "n/a" : num(j.met_pct, 0) + "%", n: true, cls: (j) => j.met_pct !== null && j.met_pct < 95 ? "bad" : "" },
      { t: "missed min", f: (j) => j.missed, n: true },
    ], journeys));
    const w = a.wifi, d = a.device, v = a.voice;
    if (w) kids.push(el("p", { class: "kv" },
      el("span", {}, el("b", { text: "Wi-Fi " }), `${w.ssid || "?"} ${w.band || "?"} GHz ch ${w.channel ?? "?"}`),
      el("span", { class: w.rssi_min_dbm !== null && w.rssi_min_dbm < -75 ? "bad" : "" }, `RSSI median ${w.rssi_median_dbm ?? "–"} dBm, min ${w.rssi_min_dbm ?? "–"}`),
      el("span", {}, `SNR ${w.snr_median_db ?? "–"} dB`), el("span", {}, `roams ${w.roams}, disconnects ${w.disconnects}`)));
    if (d) kids.push(el("p", { class: "kv" },
      el("span", {}, el("b", { text: "Device " }), `CPU ${num(d.cpu_pct_now)}% (max ${num(d.cpu_pct_max)}%)`),
      el("span", {}, `memory ${num(d.mem_pct_now)}%`), el("span", {}, `${d.interface || "?"} (${d.interface_kind || "?"})`),
      d.vpn ? el("span", {}, "VPN " + d.vpn) : null, d.busiest ? el("span", {}, "busiest: " + d.busiest) : null));
    if (v) kids.push(el("p", { class: "kv" },
      el("span", {}, el("b", { text: "Voice path " }), `loss ${num(v.loss_pct)}%`),
      el("span", {}, `RTT ${num(v.rtt_median_ms)} ms`), el("span", {}, `jitter ${num(v.jitter_median_ms)} ms (max ${num(v.jitter_max_ms)})`),
      el("span", {}, `worst 200 ms burst ${num(v.burst_loss_max_pct)}%`)));
    fill(ctx, ...kids);
  }

  // ---------- the chart ----------
  function chartWidth() {
    const c = document.getElementById("chart");
    return Math.max(200, Math.min(2000, Math.round((c ? c.clientWidth : 900) - 72)));
  }
  // An axis from 0 to a round top in 1-2-5 steps (0, 50, 100, 150 ms; never 63, 125, 188):
  // at most ``n`` intervals. Returns [top, ticks].
  function ticks125(v, n) {
    const want = (v > 0 ? v : 1) / (n || 4);
    const e = Math.pow(10, Math.floor(Math.log10(want)));
    const step = [1, 2, 5, 10].map((m) => m * e).find((st) => st >= want * (1 - 1e-9)) || 10 * e;
    const top = Math.ceil(v / step - 1e-9) * step || step;
    const ticks = [];
    for (let k = 0; k * step <= top + step * 1e-9; k++) ticks.push(Number((k * step).toPrecision(12)));
    return [top, ticks];
  }
  function quantile(vals, qq) {
    const v = vals.filter((x) => x !== null).sort((a, b) => a - b);
    return v.length ? v[Math.min(v.length - 1, Math.floor(qq * v.length))] : null;
  }
  const TICKS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

  // "No data" shading: the buckets of the view where no hop has a sample (the agent was silent,
  // or the window reaches past now), hatched and labelled so an empty stretch never reads as "fine".
  function drawNoData(svg, defs, c) {
    const { tl, idx, X, t0, t1, step } = c;
    const pat = sv("pattern", { id: "cxnodata", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
    pat.append(sv("rect", { width: 6, height: 6, fill: NODATA, opacity: 0.08 }), sv("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: NODATA, "stroke-width": 1.5, opacity: 0.45 }));
    defs.append(pat);
    const has = (i) => tl.hops.some((hp) => hp.samples[i] > 0) || (tl.wifi && tl.wifi.rssi_avg_dbm[i] !== null);
    const runs = [];
    let run = null;
    for (let i = 0; i < tl.buckets; i++) {
      const a = Math.max(t0, tl.start_us + i * step), b = Math.min(t1, tl.start_us + (i + 1) * step);
      if (b <= a) continue;
      if (has(i)) { run = null; continue; }
      if (run && run.b === a) run.b = b; else runs.push(run = { a, b });
    }
    // The part of the view after the timeline's last bucket (no bucket at all yet) is no data too.
    const tlEnd = tl.start_us + tl.buckets * step;
    if (tlEnd < t1) { const a = Math.max(t0, tlEnd); if (run && run.b === a) run.b = t1; else runs.push({ a, b: t1 }); }
    const nowUs = Date.now() * 1000;
    const g = sv("g", { class: "nodata-layer" });
    for (const r of runs) {
      const x0 = X(r.a), wd = Math.max(1, X(r.b) - x0);
      const future = r.b >= t1 && r.b > nowUs - 2 * step;
      const why = future ? "no data yet" : "no data: agent not reporting";
      const rect = sv("rect", { x: x0.toFixed(1), y: c.top, width: wd.toFixed(1), height: c.height, fill: "url(#cxnodata)", class: "nodata", "data-since": Math.round(r.a / 1e6), "data-until": Math.round(r.b / 1e6) });
      const title = sv("title"); title.textContent = `${why}: ${fmtClock(r.a, step < 60e6)}–${fmtClock(r.b, step < 60e6)}`;
      rect.append(title);
      g.append(rect);
      if (wd >= 4) {  // a narrow run keeps its label too, right-aligned to the run's end
        const wide = wd >= 140;
        const t = sv("text", { x: (wide ? x0 + wd / 2 : x0 + wd - 3).toFixed(1), y: c.top + c.height - 4, "text-anchor": wide ? "middle" : "end", class: "nodata-label" });
        t.textContent = why;
        g.append(t);
      }
    }
    svg.append(g);
  }

  function drawChart() {
    const p = page;
    const tl = p.tl;
    const box = document.getElementById("chart");
    if (!tl || !box) return;
    const range = p.zoom || { since: p.since, until: p.until };
    const W = box.clientWidth || 900, ML = 58, MR = 14, PW = W - ML - MR;
    const t0 = range.since * 1e6, t1 = range.until * 1e6;
    const X = (t) => ML + (t - t0) / (t1 - t0) * PW;
    const step = tl.step_s * 1e6;
    const tc = (i) => tl.start_us + (i + 0.5) * step;
    const inView = (i) => tc(i) >= t0 - step && tc(i) <= t1 + step;
    const hops = tl.hops;
    const panels = [{ key: "rtt", title: "RTT per hop (ms)", h: 130 }, { key: "jitter", title: "Jitter (ms)", h: 54 }, { key: "loss", title: "Loss (%)", h: 48 }];
    if (tl.wifi) panels.push({ key: "rssi", title: "Wi-Fi RSSI (dBm; dashed: -67 and -75)", h: 58 });
    panels.push({ key: "score", title: "Score", h: 48 });
    const STRIP = 16, GAP = 18, AXIS = 22;
    let y = STRIP + 4;
    for (const pn of panels) { pn.y = y + 14; y = pn.y + pn.h + GAP - 4; }
    const H = y + AXIS - GAP + 4;
    const svg = sv("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": "Timeline chart", id: "timeline-svg" });
    const defs = sv("defs");
    const clip = sv("clipPath", { id: "cxclip" });
    clip.append(sv("rect", { x: ML, y: 0, width: PW, height: H }));
    defs.append(clip);
    svg.append(defs);
    const idx = []; for (let i = 0; i < tl.buckets; i++) if (inView(i)) idx.push(i);

    drawNoData(svg, defs, { tl, idx, X, t0, t1, step, top: STRIP + 4, height: H - AXIS - STRIP - 4 });

    // Events first, under the data: a band over every panel and a mark in the top strip.
    const evG = sv("g", { "clip-path": "url(#cxclip)" });
    for (const e of tl.events) {
      const a = Math.max(e.start_us, t0), b = Math.min(e.end_us === null ? t1 : e.end_us, t1);
      if (b < t0 || a > t1) continue;
      const x0 = X(a), wd = Math.max(2, X(b) - x0);
      evG.append(sv("rect", { x: x0, y: STRIP + 4, width: wd, height: H - AXIS - STRIP - 4, fill: SEV_COLOR[e.severity] || "#999", opacity: 0.12 }));
      const mh = (STRIP - 4) * (e.severity >= 3 ? 1 : e.severity === 2 ? 0.7 : 0.45);
      const mark = sv("rect", { x: x0, y: STRIP - 2 - mh, width: wd, height: mh, rx: 2, fill: SEV_COLOR[e.severity] || "#999", class: "ev sev" + e.severity, "data-kind": e.kind, "data-severity": e.severity });
      const title = sv("title");
      title.textContent = `${eventWords(e.kind)} at ${e.target} · ${fmtClock(e.start_us, true)}` + (e.end_us === null ? " (ongoing)" : `, ${fmtSpan(Math.max(1, Math.round(e.duration_s)))}`) + ` · ${SEV[e.severity]}\n${e.evidence}` + (eventMeaning(e.kind) ? `\n${eventMeaning(e.kind)}` : "");
      mark.append(title);
      mark.addEventListener("click", (ev) => { ev.stopPropagation(); zoomToEvent(e); });
      mark.style.cursor = "pointer";
      evG.append(mark);
    }
    svg.append(evG);

    function yAxis(pn, lo, hi, ticks, fmt) {
      const g = sv("g", { class: "yaxis", "data-panel": pn.key });
      const Y = (v) => pn.y + pn.h - (Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo) * pn.h;
      for (const v of ticks) {
        g.append(sv("line", { x1: ML, x2: ML + PW, y1: Y(v), y2: Y(v), stroke: "#e6e9ee", "stroke-width": 1 }));
        const t = sv("text", { x: ML - 6, y: Y(v) + 4, "text-anchor": "end", class: "ytick", "data-v": v }); t.textContent = fmt(v); g.append(t);
      }
      const tt = sv("text", { x: ML, y: pn.y - 4, class: "ptitle" }); tt.textContent = pn.title; g.append(tt);
      svg.append(g);
      return Y;
    }
    // A gap (null) breaks the line: for RTT it is a lost second, and a line across it would hide
    // the loss. ``bridge`` joins across gaps, for series sampled less often than the buckets
    // (Wi-Fi every 5 s in 1 s buckets). A point alone still shows, as a dot (round caps).
    function linePath(vals, Y, bridge) {
      let d = "", pen = false, n = 0;
      for (const i of idx) {
        const v = vals[i];
        if (v === null || v === undefined) { if (!bridge) pen = false; continue; }
        const x = X(tc(i)).toFixed(1), y = Y(v).toFixed(1);
        d += pen ? `L${x} ${y}` : `M${x} ${y}h0.01`;
        pen = true; n++;
      }
      return [d, n];
    }
    function bandPath(lo, hi, Y) {
      let d = "", seg = [];
      const flush = () => {
        if (seg.length > 1) d += "M" + seg.map((i) => X(tc(i)).toFixed(1) + " " + Y(hi[i]).toFixed(1)).join("L") + "L" + seg.slice().reverse().map((i) => X(tc(i)).toFixed(1) + " " + Y(lo[i]).toFixed(1)).join("L") + "Z";
        seg = [];
      };
      for (const i of idx) { if (lo[i] === null || hi[i] === null) flush(); else seg.push(i); }
      flush();
      return d;
    }
    const data = sv("g", { "clip-path": "url(#cxclip)" });
    for (const pn of panels) {
      if (pn.key === "rtt") {
        const avgs = [], maxs = [];
        for (const hp of hops) for (const i of idx) { if (hp.rtt_avg_ms[i] !== null) avgs.push(hp.rtt_avg_ms[i]); if (hp.rtt_max_ms[i] !== null) maxs.push(hp.rtt_max_ms[i]); }
        const top = Math.max(0, ...maxs), p95 = quantile(avgs, 0.95) || 0;
        // One huge spike must not flatten the day: cap the axis, and say so.
        const [hi, yt] = ticks125(Math.min(top, Math.max(p95 * 4, Math.max(0, ...avgs) * 1.1)) || 1, 4);
        const Y = yAxis(pn, 0, hi, yt, (v) => num(v, v < 10 ? 1 : 0));
        hops.forEach((hp, k) => {
          const c = COLORS[k % COLORS.length];
          data.append(sv("path", { d: bandPath(hp.rtt_min_ms, hp.rtt_max_ms, Y), fill: c, opacity: 0.14, stroke: "none" }));
          const [d, n] = linePath(hp.rtt_avg_ms, Y);
          data.append(sv("path", { d, fill: "none", stroke: c, "stroke-width": 1.5, "stroke-linecap": "round", "stroke-linejoin": "round", class: "series rtt", "data-target": hp.target, "data-n": n }));
        });
        if (top > hi) { const t = sv("text", { x: ML + PW - 4, y: pn.y - 4, "text-anchor": "end" }); t.textContent = `peaks up to ${num(top, 0)} ms (clipped)`; svg.append(t); }
      } else if (pn.key === "jitter") {
        let top = 0; for (const hp of hops) for (const i of idx) if (hp.jitter_ms[i] !== null) top = Math.max(top, hp.jitter_ms[i]);
        const [hi, yt] = ticks125(Math.max(1, top * 1.05), 2);
        const Y = yAxis(pn, 0, hi, yt, (v) => num(v, v < 10 ? 1 : 0));
        hops.forEach((hp, k) => { const [d, n] = linePath(hp.jitter_ms, Y); data.append(sv("path", { d, fill: "none", stroke: COLORS[k % COLORS.length], "stroke-width": 1.2, "stroke-linecap": "round", class: "series jitter", "data-target": hp.target, "data-n": n })); });
      } else if (pn.key === "loss") {
        let top = 0; for (const hp of hops) for (const i of idx) if (hp.loss_pct[i] !== null) top = Math.max(top, hp.loss_pct[i]);
        const [hi, yt] = ticks125(Math.min(100, Math.max(5, top)), 2);
        const Y = yAxis(pn, 0, hi, yt, (v) => num(v, 0));
        const bw = Math.max(1, PW * step / (t1 - t0) / Math.max(1, hops.length));
        hops.forEach((hp, k) => {
          const g = sv("g", { fill: COLORS[k % COLORS.length], class: "series loss", "data-target": hp.target });
          let n = 0;
          for (const i of idx) {
            const v = hp.loss_pct[i];
            if (!v) continue;
            const x = X(tl.start_us + i * step) + k * bw;
            g.append(sv("rect", { x: x.toFixed(1), y: Y(v).toFixed(1), width: bw.toFixed(2), height: (pn.y + pn.h - Y(v)).toFixed(1) }));
            n++;
          }
          g.setAttribute("data-n", n);
          data.append(g);
        });
      } else if (pn.key === "rssi") {
        const Y = yAxis(pn, -95, -30, [-90, -70, -50], (v) => String(v));
        for (const [v, c] of [[-67, "#2e7d32"], [-75, "#c62828"]]) data.append(sv("line", { x1: ML, x2: ML + PW, y1: Y(v), y2: Y(v), stroke: c, "stroke-dasharray": "4 3", "stroke-width": 1, opacity: 0.7 }));
        const [dm] = linePath(tl.wifi.rssi_min_dbm, Y, true);
        data.append(sv("path", { d: dm, fill: "none", stroke: "#7aa6d8", "stroke-width": 1, "stroke-dasharray": "2 2" }));
        const [d, n] = linePath(tl.wifi.rssi_avg_dbm, Y, true);
        data.append(sv("path", { d, fill: "none", stroke: "#1f5fbf", "stroke-width": 1.5, class: "series rssi", "data-n": n }));
      } else if (pn.key === "score") {
        const Y = yAxis(pn, 0, 100, [0, 30, 70, 100], (v) => String(v));
        for (const [a, b, c] of [[0, 30, "#c62828"], [30, 70, "#b26a00"], [70, 100, "#2e7d32"]]) data.append(sv("rect", { x: ML, width: PW, y: Y(b), height: Y(a) - Y(b), fill: c, opacity: 0.06 }));
        const pts = p.scorePts.filter((s) => s.t_us + 60e6 >= t0 && s.t_us <= t1);
        if (!pts.length) {
          const t = sv("text", { x: ML + 8, y: pn.y + pn.h / 2 + 4 }); t.textContent = p.view ? "no score in this view" : "score loads with the summary…"; svg.append(t);
        } else {
          let d = "", prevEnd = null;
          for (const s of pts) {
            const xa = X(s.t_us), xb = X(s.t_us + 60e6), yy = Y(s.score).toFixed(1);
            d += (prevEnd === s.t_us ? "L" : "M") + xa.toFixed(1) + " " + yy + "L" + xb.toFixed(1) + " " + yy;
            prevEnd = s.t_us + 60e6;
          }
          data.append(sv("path", { d, fill: "none", stroke: "#17202f", "stroke-width": 1.6, class: "series score", "data-n": pts.length }));
        }
      }
    }
    svg.append(data);

    // Time axis.
    const span = (t1 - t0) / 1e6;
    const tick = TICKS_S.find((s) => span / s <= Math.max(4, PW / 110)) || 86400;
    const ax = sv("g");
    const secs = tick < 60;
    const multiDay = fmtDate(t0) !== fmtDate(t1 - 1);
    const tzOff = zoneOffsetS(t0);
    let first = Math.ceil((t0 / 1e6 + tzOff) / tick) * tick - tzOff;
    for (let s = first; s * 1e6 <= t1; s += tick) {
      const x = X(s * 1e6);
      ax.append(sv("line", { x1: x, x2: x, y1: STRIP + 4, y2: H - AXIS + 2, stroke: "#eef0f4" }));
      const t = sv("text", { x, y: H - 6, "text-anchor": "middle" });
      const clock = fmtClock(s * 1e6, secs);
      t.textContent = multiDay && clock.startsWith("00:00") ? fmtDate(s * 1e6).slice(5) : clock;
      ax.append(t);
    }
    svg.insertBefore(ax, svg.firstChild.nextSibling);

    // Interaction: hover readout, drag to zoom, wheel to zoom, double-click to reset.
    const overlay = sv("rect", { x: ML, y: STRIP + 4, width: PW, height: H - AXIS - STRIP - 4, fill: "transparent", class: "overlay" });
    overlay.style.cursor = "crosshair";
    const cross = sv("line", { y1: STRIP + 4, y2: H - AXIS, stroke: "#17202f", "stroke-width": 1, opacity: 0, "pointer-events": "none" });
    const selRect = sv("rect", { y: STRIP + 4, height: H - AXIS - STRIP - 4, fill: "#1f5fbf", opacity: 0, "pointer-events": "none", class: "selection" });
    svg.append(cross, selRect, overlay);
    const tip = el("div", { class: "tip", hidden: true });
    const tAt = (clientX) => { const r = svg.getBoundingClientRect(); const x = (clientX - r.left) * (W / r.width); return { x, t: t0 + (Math.min(ML + PW, Math.max(ML, x)) - ML) / PW * (t1 - t0) }; };
    let drag = null;
    overlay.addEventListener("mousemove", (ev) => {
      const { x, t } = tAt(ev.clientX);
      cross.setAttribute("x1", x); cross.setAttribute("x2", x); cross.setAttribute("opacity", 0.35);
      if (drag) {
        const a = Math.min(drag.x, x), b = Math.max(drag.x, x);
        selRect.setAttribute("x", a); selRect.setAttribute("width", b - a); selRect.setAttribute("opacity", 0.15);
      }
      const i = Math.floor((t - tl.start_us) / step);
      const lines = [el("div", {}, el("b", { text: fmtWhen(tl.start_us + i * step, tl.step_s < 60) + (tl.step_s > 1 ? ` (+${fmtSpan(tl.step_s)})` : "") }))];
      hops.forEach((hp, k) => {
        if (i < 0 || i >= tl.buckets || !hp.samples[i]) return;
        lines.push(el("div", {}, el("span", { class: "sw" }), `${hp.target}: ${num(hp.rtt_avg_ms[i])} ms` + (tl.step_s > 1 ? ` (max ${num(hp.rtt_max_ms[i])})` : "") + `, loss ${num(hp.loss_pct[i], 0)}%, jitter ${num(hp.jitter_ms[i])} ms`));
        lines[lines.length - 1].firstChild.style.cssText = `display:inline-block;width:10px;height:3px;margin-right:5px;vertical-align:middle;background:${COLORS[k % COLORS.length]}`;
      });
      if (tl.wifi && i >= 0 && tl.wifi.rssi_avg_dbm[i] !== null) lines.push(el("div", { text: `Wi-Fi RSSI ${num(tl.wifi.rssi_avg_dbm[i], 0)} dBm (min ${tl.wifi.rssi_min_dbm[i]})` }));
      const sp = p.scorePts.find((s) => s.t_us <= t && t < s.t_us + 60e6);
      if (sp) lines.push(el("div", { text: `score ${Math.round(sp.score)} ${sp.label || ""}` + (sp.limiting ? ` (${sp.limiting})` : "") }));
      const evs = tl.events.filter((e) => e.start_us <= t && t <= (e.end_us === null ? t1 : Math.max(e.end_us, e.start_us + 1e6)));
      for (const e of evs.slice(0, 3)) lines.push(el("div", { text: `⚑ ${eventWords(e.kind)} at ${e.target}` }));
      fill(tip, ...lines);
      tip.hidden = false;
      const r = svg.getBoundingClientRect();
      const px = ev.clientX - r.left;
      tip.style.left = (px > r.width - 300 ? px - 300 : px + 14) + "px";
      tip.style.top = (ev.clientY - r.top + 12) + "px";
    });
    overlay.addEventListener("mouseleave", () => { cross.setAttribute("opacity", 0); tip.hidden = true; });
    overlay.addEventListener("mousedown", (ev) => { drag = { x: tAt(ev.clientX).x, t: tAt(ev.clientX).t }; ev.preventDefault(); });
    const endDrag = (ev) => {
      if (!drag) return;
      const end = tAt(ev.clientX);
      const d = drag; drag = null;
      selRect.setAttribute("opacity", 0);
      if (Math.abs(end.x - d.x) >= 6) setZoom({ since: Math.min(d.t, end.t) / 1e6, until: Math.max(d.t, end.t) / 1e6 });
    };
    overlay.addEventListener("mouseup", endDrag);
    svg.addEventListener("mouseleave", () => { if (drag) { drag = null; selRect.setAttribute("opacity", 0); } });
    overlay.addEventListener("dblclick", () => setZoom(null));
    overlay.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const { t } = tAt(ev.clientX);
      zoomBy(ev.deltaY > 0 ? 1.25 : 0.8, t / 1e6);
    }, { passive: false });

    fill(box, svg, tip);
    const legend = document.getElementById("legend");
    fill(legend, 
      ...hops.map((hp, k) => el("span", {}, el("span", { class: "sw " + "c" + k }), `${hp.hop ? "hop " + hp.hop + " " : ""}${hp.target}`)),
      el("span", {}, el("span", { class: "ev s1" }), "minor event"), el("span", {}, el("span", { class: "ev s2" }), "major event"), el("span", {}, el("span", { class: "ev s3" }), "critical event"),
      el("span", {}, el("span", { class: "nd" }), "no data"),
      el("span", { class: "muted", text: `buckets of ${fmtSpan(tl.step_s)} · line: mean, band: min–max · drag to zoom, wheel to zoom, double-click to reset` }));
    legend.querySelectorAll(".sw").forEach((e, k) => { e.style.background = COLORS[k % COLORS.length]; });
    legend.querySelectorAll(".ev").forEach((e, k) => { e.style.background = SEV_COLOR[k + 1]; });
    box.dataset.step = tl.step_s;
    box.dataset.since = range.since;
    box.dataset.until = range.until;
  }

  // What a screen reader says on an event row (and the row's details in one line for the keyboard).
  function eventRowLabel(e) {
    const dur = e.end_us === null ? "ongoing" : "for " + fmtSpan(Math.max(1, Math.round(e.duration_s)));
    const means = eventMeaning(e.kind);
    return `${SEV[e.severity] || ""} event at ${fmtClock(e.start_us, true)}, ${dur}: ${eventWords(e.kind)} at ${e.target}. ${e.evidence || ""}` +
      (means ? ` (${means})` : "") + " Press Enter to zoom the chart to it.";
  }
  // The chart without a mouse: + and - zoom around the middle, the arrows move by a quarter of
  // the view, Escape (or 0) goes back to the whole window.
  function chartKeys(e) {
    if (!page || !page.tl) return;
    const r = page.zoom || { since: page.since, until: page.until };
    const span = r.until - r.since;
    if (e.key === "+" || e.key === "=") zoomBy(0.5);
    else if (e.key === "-" || e.key === "_") zoomBy(2);
    else if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      const d = (e.key === "ArrowLeft" ? -1 : 1) * span / 4;
      const a = Math.min(page.until - span, Math.max(page.since, r.since + d));
      setZoom({ since: a, until: a + span });
    } else if (e.key === "Escape" || e.key === "0") setZoom(null);
    else return;
    e.preventDefault();
  }

  // ---------- zoom ----------
  let zoomTimer = 0;
  function setZoom(r) {
    const p = page;
    if (r) {
      let a = Math.max(p.since, Math.floor(r.since)), b = Math.min(p.until, Math.ceil(r.until));
      if (b - a < MIN_SPAN_S) { const c = (a + b) / 2; a = Math.max(p.since, Math.floor(c - MIN_SPAN_S / 2)); b = Math.min(p.until, a + MIN_SPAN_S); a = Math.max(p.since, b - MIN_SPAN_S); }
      r = (a <= p.since && b >= p.until) ? null : { since: a, until: b };
    }
    p.zoom = r;
    updateRangeLabel();
    drawChart(); // at once, with the buckets we have; finer ones follow
    clearTimeout(zoomTimer);
    zoomTimer = setTimeout(() => refetchZoom(p.gen), 180);
  }
  function zoomBy(f, centerS) {
    const p = page;
    const r = p.zoom || { since: p.since, until: p.until };
    const c = centerS === undefined ? (r.since + r.until) / 2 : centerS;
    const span = Math.max(MIN_SPAN_S, (r.until - r.since) * f);
    const frac = (c - r.since) / (r.until - r.since);
    let a = c - span * frac, b = a + span;
    if (a < p.since) { b += p.since - a; a = p.since; }
    if (b > p.until) { a -= b - p.until; b = p.until; }
    setZoom({ since: Math.max(p.since, a), until: b });
  }
  function zoomToEvent(e) {
    const end = e.end_us === null ? page.until * 1e6 : e.end_us;
    const dur = Math.max(1, (end - e.start_us) / 1e6);
    const padS = Math.max(30, dur);
    setZoom({ since: e.start_us / 1e6 - padS, until: end / 1e6 + padS });
    document.getElementById("chart").scrollIntoView({ block: "nearest" });
  }
  async function refetchZoom(gen) {
    const p = page;
    if (gen !== p.gen) return;
    const r = p.zoom || { since: p.since, until: p.until };
    try {
      const tl = await api(`/api/v1/agents/${encodeURIComponent(p.id)}/timeline?since=${Math.floor(r.since)}&until=${Math.ceil(r.until)}&points=${chartWidth()}`);
      const now = p.zoom || { since: p.since, until: p.until };
      if (gen !== page.gen || now.since !== r.since || now.until !== r.until) return;
      p.tl = tl.body;
      drawChart();
      performance.mark("cx-zoom-ready");
    } catch (e) { /* the coarse chart stays; the next zoom tries again */ }
  }
  // A view opened in another zone than the browser's stays in it when the range changes.
  const zoneParam = () => ZONE === BROWSER_ZONE ? "" : "&tz=" + encodeURIComponent(ZONE);
  function applyZoom() {
    const p = page;
    if (!p.zoom) return;
    location.hash = "#/agent/" + encodeURIComponent(p.id) + "?since=" + Math.floor(p.zoom.since) + "&until=" + Math.ceil(p.zoom.until) + zoneParam();
  }
  let resizeTimer = 0;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => { if (page && page.tl && document.getElementById("chart")) drawChart(); }, 150); });

  // ---------- fleet page ----------
  async function fleetPage() {
    page = null;
    const t0 = performance.now();
    fill(main, el("p", { class: "muted", text: "Loading the fleet…" }));
    let f;
    try { f = await api("/api/v1/fleet?window=15m&limit=25"); }
    catch (e) { if (!(e instanceof NeedKey)) fill(main, el("p", { class: "err", text: "Fleet: " + e.message })); return; }
    if (page !== null) return; // navigated away meanwhile
    const s = f.body;
    const open = s.incidents.open;
    fill(main, 
      el("section", { class: "card", id: "incidents" }, el("h2", { text: `Open incidents (${open.length})` }),
        open.length ? table([
          { t: "since", f: (i) => fmtClock(i.start_us) },
          { t: "scope", f: (i) => i.scope_text || i.scope || "" },
          { t: "agents", f: (i) => Array.isArray(i.agents) ? i.agents.length : (i.agents ?? ""), n: true },
          { t: "what", f: (i) => i.evidence || i.summary || "", wrap: true },
        ], open) : el("p", { class: "empty", text: "No open platform or site incidents." })),
      el("section", { class: "card", id: "worst" },
        el("h2", { text: `Worst agents now (last ${fmtSpan(s.window.seconds)}; ${s.agents_active} of ${s.agents_total} agents reporting)` }),
        s.worst.length ? table([
          { t: "score", f: (a) => a.score === null ? "–" : Math.round(a.score), n: true, cls: (a) => "txt-" + labelClass(a.label) },
          { t: "", f: (a) => el("span", { class: "chip " + labelClass(a.label), text: a.label }) },
          { t: "user", f: (a) => a.user },
          { t: "host", f: (a) => a.host },
          { t: "site", f: (a) => a.site },
          { t: "where", f: (a) => a.score !== null && a.score >= 70 ? "" : (a.fault_label || a.fault_domain || a.limiting || "") },
          { t: "what", f: (a) => a.sentence || "", wrap: true },
          { t: "events", f: (a) => a.events, n: true },
          { t: "loss %", f: (a) => num(a.loss_pct_max), n: true, cls: (a) => a.loss_pct_max >= 1 ? "bad" : "" },
        ], s.worst, (a) => openAgent(a.agent_id)) : el("p", { class: "empty", text: "No agent reported in this window." }),
        s.score_available ? null : el("p", { class: "muted", text: "No experience scores in the lookup yet: ranked by time inside micro-disruptions and loss." })),
      el("div", { class: "grid2" },
        el("section", { class: "card", id: "sites" }, el("h2", { text: "By site" }), s.sites.length ? table([
          { t: "site", f: (x) => x.site },
          { t: "agents", f: (x) => x.agents, n: true },
          { t: "poor", f: (x) => x.labels.poor, n: true, cls: (x) => x.labels.poor ? "bad" : "" },
          { t: "fair", f: (x) => x.labels.fair, n: true },
          { t: "good", f: (x) => x.labels.good, n: true },
          { t: "median score", f: (x) => x.score_median === null ? "–" : Math.round(x.score_median), n: true },
          { t: "events", f: (x) => x.events, n: true },
        ], s.sites) : el("p", { class: "empty", text: "No sites." })),
        el("section", { class: "card", id: "appsfleet" }, el("h2", { text: "By app" }), s.apps.length ? table([
          { t: "app", f: (x) => x.app },
          { t: "agents", f: (x) => x.agents, n: true },
          { t: "avail %", f: (x) => num(x.availability_pct), n: true, cls: (x) => x.availability_pct < 99 ? "bad" : "" },
          { t: "median total ms", f: (x) => num(x.total_median_ms), n: true },
          { t: "failing", f: (x) => x.agents_failing.length, n: true },
        ], s.apps) : el("p", { class: "empty", text: "No app checks." }))),
      s.silent.length ? el("section", { class: "card", id: "silent" }, el("h2", { text: `Silent for more than ${fmtSpan(s.window.seconds)} (seen in the last day)` }),
        table([{ t: "user", f: (a) => a.user }, { t: "host", f: (a) => a.host }, { t: "site", f: (a) => a.site }, { t: "last seen", f: (a) => ago(a.last_seen_us) }], s.silent, (a) => openAgent(a.agent_id))) : null,
    );
    foot.textContent = `fleet in ${Math.round(performance.now() - t0)} ms (server ${num(f.serverMs, 0)} ms) · times in ${ZONE}`;
  }

  if (sessionStorage.getItem(KEY)) signout.hidden = false;
  route();
})();
