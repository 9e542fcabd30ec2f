// ztp dashboard: one fetch of /api/devices, then live updates over server-sent events (/api/events):
// `devices` (statuses that changed) and `pools` (pool use, when it changed).
"use strict";
const ztp = (() => {
  const devices = new Map();
  let states = [], counts = {}, now = Date.now() / 1000, skew = 0;

  const el = (tag, attrs = {}, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
    return e;
  };
  const age = (t) => { const s = Math.max(0, t); return s < 60 ? `${Math.floor(s)} s` : s < 3600 ? `${Math.floor(s / 60)} min` : `${Math.floor(s / 3600)} h`; };
  const clock = (t) => new Date(t * 1000).toLocaleTimeString();
  const serverNow = () => Date.now() / 1000 + skew;

  function drawStages() {
    const box = document.getElementById("stages");
    box.replaceChildren(...states.map((s) => el("div", { class: `stage state-${s}`, id: `count-${s}` },
      el("b", {}, counts[s] || 0), s)));
  }
  function drawPools(pools) {
    const box = document.getElementById("pools");
    box.replaceChildren(...pools.map((p) => el("div", { class: "pool", "data-subnet": p.subnet, "data-used": p.used }, `${p.subnet} `,
      el("span", { class: "bar", title: `${p.used}/${p.size}` },
        el("span", { style: `width:${p.size ? (100 * p.used / p.size).toFixed(1) : 0}%` })),
      ` ${p.used}/${p.size}`)));
  }
  function drawTable() {
    const rows = [...devices.values()].sort((a, b) => a.key.localeCompare(b.key)).map((d) => {
      const state = el("td", { class: `state state-${d.state}` }, d.state);
      if (d.state === "failed") state.append(el("div", { class: "reason" }, `at ${d.failed_stage}: ${d.reason}`));
      if (d.miscabled) state.append(el("div", { class: "miscabled" }, `miscabled: expected ${d.miscabled.expected}, on ${d.miscabled.actual}`));
      return el("tr", { id: `device-${d.key}`, "data-state": d.state },
        el("td", {}, el("a", { href: `/device/${encodeURIComponent(d.key)}` }, d.key)),
        el("td", {}, d.mac || "-"), el("td", {}, d.ip || "-"), state,
        el("td", {}, (d.last_text === d.reason ? d.last_event : d.last_text) || d.last_event || "-"),
        el("td", { class: "since", "data-since": d.since }, age(serverNow() - d.since)));
    });
    document.querySelector("#devices tbody").replaceChildren(...rows);
  }
  function live(on) {
    const b = document.getElementById("live");
    b.textContent = on ? "live" : "reconnecting…";
    b.className = on ? "live" : "live off";
  }
  function stream(onUpdate, onPools) {
    const source = new EventSource("/api/events");
    source.onopen = () => live(true);
    source.onerror = () => live(false);
    source.addEventListener("devices", (m) => onUpdate(JSON.parse(m.data)));
    if (onPools) source.addEventListener("pools", (m) => onPools(JSON.parse(m.data).pools));
    return source;
  }

  async function dashboard() {
    const data = await (await fetch("/api/devices")).json();
    skew = data.now - Date.now() / 1000;
    states = data.states; counts = data.counts;
    for (const d of data.devices) devices.set(d.key, d);
    drawStages(); drawPools(data.pools); drawTable();
    document.getElementById("waiting").textContent = data.waiting.length ?
      `not heard from yet: ${data.waiting.join(", ")}` : "";
    stream((u) => {
      counts = u.counts;
      for (const d of u.devices) devices.set(d.key, d);
      drawStages(); drawTable();
    }, drawPools);
    setInterval(() => document.querySelectorAll("td.since").forEach((td) => {
      td.textContent = age(serverNow() - Number(td.dataset.since));
    }), 1000);
  }

  async function device(key) {
    document.getElementById("key").textContent = key;
    const show = (d) => {
      const parts = [el("span", { class: `state state-${d.state}`, id: "state" }, d.state || "not heard from")];
      if (d.ip) parts.push(` ${d.ip}`);
      if (d.mac) parts.push(` ${d.mac}`);
      if (d.reason) parts.push(el("div", { class: "reason" }, d.reason));
      document.getElementById("summary").replaceChildren(...parts);
    };
    const addEvents = (events) => {
      const body = document.querySelector("#timeline tbody");
      for (const e of events) body.append(el("tr", { "data-kind": e.kind }, el("td", {}, clock(e.at)), el("td", {}, e.kind), el("td", {}, e.text)));
    };
    const r = await fetch(`/api/devices/${encodeURIComponent(key)}`);
    if (r.ok) show(await r.json());
    const t = await fetch(`/api/devices/${encodeURIComponent(key)}/timeline`);
    if (t.ok) addEvents((await t.json()).events);
    stream((u) => {
      for (const d of u.devices) if (d.key === key) show(d);
      addEvents(u.events.filter((e) => e.key === key));
    });
  }
  return { dashboard, device };
})();
