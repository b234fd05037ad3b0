// sluice console: polls /console/data once a second, keeps at most 300 samples
// (5 minutes), and drives the admin API for the controls. Plain JS and SVG.
"use strict";
(function () {
  const KEEP = 300, WINDOW_MS = 300 * 1000, SVGNS = "http://www.w3.org/2000/svg";
  let seq = 0, samples = [], pending = null, polling = false;
  const $ = (id) => document.getElementById(id);
  const tbody = document.querySelector("#analyzers tbody");
  const rows = new Map(); // analyzer name -> {tr, cells}

  function fmt(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en");
    return v.toFixed(digits === undefined ? 1 : digits);
  }
  const pct = (v) => (v * 100).toFixed(1) + " %";

  function setStatus(text, isError) {
    const s = $("status");
    s.textContent = text;
    s.className = isError ? "error" : "";
  }

  // ---- admin API -------------------------------------------------------
  async function api(method, path, body) {
    const headers = { "Content-Type": "application/json" };
    const tok = sessionStorage.getItem("sluice-admin-token");
    if (tok) headers["Authorization"] = "Bearer " + tok;
    const res = await fetch(path, { method, headers, body: body === undefined ? "{}" : JSON.stringify(body), credentials: "same-origin" });
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    return { res, data };
  }

  // act runs one control: confirm if destructive, call the API, report.
  async function act(label, method, path, body, destructive) {
    if (destructive && !window.confirm(label + "?")) {
      setStatus(label + ": cancelled");
      return;
    }
    setStatus(label + ": …");
    let r;
    try {
      r = await api(method, path, body);
    } catch (e) {
      setStatus(label + ": error: " + e.message, true);
      return;
    }
    if (r.res.status === 401) {
      const had = sessionStorage.getItem("sluice-admin-token") !== null;
      sessionStorage.removeItem("sluice-admin-token");
      pending = { label, method, path, body };
      $("token-form").hidden = false;
      $("token").focus();
      const why = (r.data && r.data.error) || "unauthorized";
      setStatus(label + ": error: 401 " + why + (had ? " (the token was refused; enter it again)" : " (enter the admin token)"), true);
      return;
    }
    if (!r.res.ok) {
      setStatus(label + ": error: " + r.res.status + " " + ((r.data && r.data.error) || r.res.statusText), true);
      return;
    }
    let detail = "";
    if (r.data && r.data.state) detail = " (state " + r.data.state + ")";
    setStatus(label + ": ok " + r.res.status + detail);
    poll();
  }

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = $("token").value.trim();
    if (!v) return;
    sessionStorage.setItem("sluice-admin-token", v);
    $("token").value = "";
    $("token-form").hidden = true;
    if (pending) {
      const p = pending;
      pending = null;
      act(p.label, p.method, p.path, p.body, false); // confirmed already
    }
  });

  $("add-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const body = { url: f.url.value.trim(), weight: Number(f.weight.value) };
    if (f.name.value.trim()) body.name = f.name.value.trim();
    act("add " + (body.name || body.url), "POST", "/admin/analyzers", body, false);
  });

  const enc = encodeURIComponent;

  function makeRow(name) {
    const tr = document.createElement("tr");
    tr.dataset.name = name;
    const cells = {};
    for (const k of ["name", "state", "weight", "effective", "limiting", "share10", "shareAll", "rate", "queue", "inflight", "retries", "drops", "failures", "controls"]) {
      const td = document.createElement(k === "name" ? "th" : "td");
      if (k === "name") td.scope = "row";
      td.className = k;
      tr.appendChild(td);
      cells[k] = td;
    }
    const drain = document.createElement("button");
    drain.type = "button";
    drain.className = "drain";
    drain.addEventListener("click", () => {
      if (drain.dataset.drained === "1") act("undrain " + name, "POST", "/admin/analyzers/" + enc(name) + "/undrain", undefined, false);
      else act("drain " + name, "POST", "/admin/analyzers/" + enc(name) + "/drain", undefined, true);
    });
    const wid = "w-" + rows.size + "-" + name.replace(/[^A-Za-z0-9_-]/g, "_");
    const wl = document.createElement("label");
    wl.htmlFor = wid;
    wl.textContent = "weight of " + name;
    wl.className = "visually-hidden";
    const w = document.createElement("input");
    w.id = wid;
    w.type = "number"; w.step = "any"; w.min = "0";
    w.className = "weight";
    const set = document.createElement("button");
    set.type = "button"; set.className = "set-weight"; set.textContent = "set";
    set.setAttribute("aria-label", "set weight of " + name);
    set.addEventListener("click", () => {
      const v = Number(w.value);
      if (!(v > 0)) { setStatus("weight " + name + ": error: enter a positive number", true); return; }
      act("weight " + name + " = " + v, "POST", "/admin/analyzers/" + enc(name) + "/weight", { value: v }, false);
    });
    const rm = document.createElement("button");
    rm.type = "button"; rm.className = "remove"; rm.textContent = "remove";
    rm.setAttribute("aria-label", "remove " + name);
    rm.addEventListener("click", () => act("remove " + name, "DELETE", "/admin/analyzers/" + enc(name), undefined, true));
    cells.controls.append(drain, " ", wl, " ", w, " ", set, " ", rm);
    tbody.appendChild(tr);
    const row = { tr, cells, drain, weight: w };
    rows.set(name, row);
    return row;
  }

  function renderTable(s) {
    const seen = new Set();
    for (const a of s.analyzers) {
      seen.add(a.name);
      const r = rows.get(a.name) || makeRow(a.name);
      const c = r.cells;
      c.name.textContent = a.name;
      const u = document.createElement("span"); u.className = "url"; u.textContent = a.url; c.name.appendChild(u);
      const label = a.state === "unknown" ? "unknown/down" : a.state.replace("_", " ");
      c.state.replaceChildren();
      const st = document.createElement("span"); st.className = "st st-" + a.state; st.textContent = label; c.state.appendChild(st);
      r.tr.dataset.state = a.state;
      if (a.reason) { const re = document.createElement("span"); re.className = "reason"; re.textContent = a.reason; c.state.appendChild(re); }
      c.weight.textContent = fmt(a.weight, 3);
      c.effective.textContent = fmt(a.effective_weight, 3);
      c.limiting.textContent = a.limiting ? "yes" : "–";
      r.tr.dataset.limiting = a.limiting ? "1" : "0";
      c.share10.textContent = pct(a.share_10s);
      c.shareAll.textContent = pct(a.share_all);
      c.rate.textContent = fmt(a.delivered_per_s);
      c.queue.textContent = a.queued;
      c.inflight.textContent = a.in_flight;
      c.retries.textContent = a.retries;
      c.drops.textContent = a.dropped;
      const f = Object.entries(a.failures || {}).filter(([, n]) => n > 0).map(([k, n]) => k + " " + n);
      c.failures.textContent = f.length ? f.join(", ") : "–";
      const drained = a.state === "drained";
      r.drain.dataset.drained = drained ? "1" : "0";
      r.drain.textContent = drained ? "undrain" : "drain";
      r.drain.setAttribute("aria-label", (drained ? "undrain " : "drain ") + a.name);
      if (document.activeElement !== r.weight && r.weight.value === "") r.weight.placeholder = String(a.weight);
    }
    for (const [name, r] of rows) {
      if (!seen.has(name)) { r.tr.remove(); rows.delete(name); }
    }
  }

  function renderTotals(s) {
    $("t-accepted").textContent = fmt(s.accepted_per_s);
    $("t-503").textContent = fmt(s.r503_per_s);
    $("t-429").textContent = fmt(s.r429_per_s);
    $("t-dropped").textContent = String(s.dropped);
    $("t-latency").textContent = (s.p50_ms === null ? "–" : fmt(s.p50_ms, 3)) + " / " + (s.p99_ms === null ? "–" : fmt(s.p99_ms, 3)) + " ms";
  }

  // ---- charts ----------------------------------------------------------
  function el(name, attrs, parent) {
    const e = document.createElementNS(SVGNS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function color(i, n) { return "hsl(" + Math.round((i * 360) / Math.max(n, 1) + 210) % 360 + ", 70%, 50%)"; }
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  // chart draws series [{name, color, dash, pts: [[tMs, value|null], ...]}].
  function chart(svg, legend, series, yfmt, fixedMax) {
    const W = svg.clientWidth || 400, H = svg.clientHeight || 200, L = 44, R = 8, T = 8, B = 20;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.replaceChildren();
    const now = samples.length ? samples[samples.length - 1].t : Date.now(), t0 = now - WINDOW_MS;
    let max = 0;
    for (const s of series) for (const [, v] of s.pts) if (v !== null && v > max) max = v;
    max = fixedMax || niceMax(max * 1.05);
    const x = (t) => L + ((t - t0) / WINDOW_MS) * (W - L - R);
    const y = (v) => T + (1 - v / max) * (H - T - B);
    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4;
      el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }, svg);
      el("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" }, svg).textContent = yfmt(v);
    }
    for (let m = 0; m <= 5; m++) {
      const t = now - m * 60000;
      el("text", { x: x(t), y: H - 5, "text-anchor": m === 0 ? "end" : "middle" }, svg).textContent = m === 0 ? "now" : "−" + m + " min";
    }
    for (const s of series) {
      let d = "", pen = false;
      for (const [t, v] of s.pts) {
        if (v === null || v === undefined || t < t0) { pen = false; continue; }
        d += (pen ? "L" : "M") + x(t).toFixed(1) + " " + y(Math.min(v, max)).toFixed(1);
        pen = true;
      }
      const attrs = { d: d || "M0 0", class: "series", stroke: s.color };
      if (s.dash) attrs["stroke-dasharray"] = "4 3";
      el("path", attrs, svg);
    }
    if (legend) {
      legend.replaceChildren();
      for (const s of series) {
        if (s.noLegend) continue;
        const li = document.createElement("li");
        const sw = document.createElement("span"); sw.className = "sw"; sw.style.backgroundColor = s.color;
        li.append(sw, s.name);
        legend.appendChild(li);
      }
    }
  }

  function renderCharts() {
    const pts = (f) => samples.map((s) => [s.t, f(s)]);
    chart($("chart-rate"), $("legend-rate"), [
      { name: "accepted/s", color: "hsl(210, 70%, 50%)", pts: pts((s) => s.accepted_per_s) },
      { name: "503/s", color: "hsl(0, 75%, 52%)", pts: pts((s) => s.r503_per_s) },
    ], (v) => fmt(v, v < 10 ? 1 : 0));
    const names = samples.length ? samples[samples.length - 1].analyzers.map((a) => a.name) : [];
    const share = [];
    names.forEach((n, i) => {
      const c = color(i, names.length);
      const get = (f) => pts((s) => { const a = s.analyzers.find((x) => x.name === n); return a ? f(a) : null; });
      share.push({ name: n, color: c, pts: get((a) => a.share_10s) });
      share.push({ name: n + " weight", color: c, dash: true, noLegend: true, pts: get((a) => a.weight_share) });
    });
    chart($("chart-share"), $("legend-share"), share, (v) => Math.round(v * 100) + " %", 1);
    chart($("chart-latency"), $("legend-latency"), [
      { name: "p50", color: "hsl(150, 60%, 40%)", pts: pts((s) => s.p50_ms) },
      { name: "p99", color: "hsl(30, 85%, 50%)", pts: pts((s) => s.p99_ms) },
    ], (v) => fmt(v, v < 1 ? 2 : 1));
  }

  // ---- polling ---------------------------------------------------------
  async function poll() {
    if (polling) return;
    polling = true;
    try {
      const res = await fetch("/console/data?since=" + seq, { cache: "no-store" });
      if (!res.ok) throw new Error("HTTP " + res.status);
      const d = await res.json();
      if (d.seq < seq) samples = []; // the distributor restarted
      seq = d.seq;
      samples = samples.concat(d.samples);
      if (samples.length > KEEP) samples = samples.slice(samples.length - KEEP);
      const last = samples[samples.length - 1];
      if (last) {
        renderTotals(last);
        renderTable(last);
        renderCharts();
      }
      $("conn").textContent = "live · " + new Date(last ? last.t : Date.now()).toLocaleTimeString();
      $("conn").className = "muted";
    } catch (e) {
      $("conn").textContent = "distributor unreachable: " + e.message;
      $("conn").className = "error";
    } finally {
      polling = false;
    }
  }
  poll();
  setInterval(poll, 1000);
})();
