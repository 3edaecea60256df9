"use strict";
// The review page: session list, timeline, one selected boundary with its audio, spectrogram
// and words; every decision is POSTed at once (in order) and the server writes it to disk.
const LANES = ["proposed", "predicted", "annotated", "verified"];
const COLORS = { proposed: "#e67e00", predicted: "#8e44ad", annotated: "#2471a3", verified: "#1e8449" };
const SPAN = 10; // seconds either side of the boundary to hear and see
const W = 1000, X0 = 90; // timeline coordinates (viewBox)
const $ = (id) => document.getElementById(id);
let state, names, sessions = [], cur = 0, sel = 0, span = { start: 0, end: 0 };
let sortKey = "index", sortDir = 1, chain = Promise.resolve(), pending = 0, dragging = false;

const fmt = (v) => (v === undefined ? "—" : v === null ? "absent" : v.toFixed(2));
const clamp = (t, s) => Math.min(Math.max(t, 0), s.duration);

function opinion(s, kind, name) { // undefined: nobody said; null: absent
  const m = kind === "verified" ? s.decided : s[kind];
  if (!(name in m)) return undefined;
  return kind === "proposed" ? m[name].time_s : m[name];
}
function current(s, name) {
  for (const k of ["verified", state.kind, "annotated"]) {
    const v = opinion(s, k, name);
    if (v !== undefined) return v;
  }
  return undefined;
}
function anchor(s, name) { // where to listen when the current value is absent or unknown
  const c = current(s, name);
  if (typeof c === "number") return c;
  const any = LANES.map((k) => opinion(s, k, name)).find((v) => typeof v === "number");
  return any === undefined ? Math.min(SPAN, s.duration / 2) : any;
}
function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function getJSON(url) {
  const r = await fetch(url);
  const data = await r.json();
  if (!r.ok) throw new Error(data.error);
  return data;
}

async function start() {
  state = await getJSON("/api/state");
  names = state.boundaries;
  sessions = state.sessions;
  $("rater").textContent = state.rater;
  $("source").textContent = `${state.kind}: ${state.source} → ${state.output}`;
  $("note").textContent = state.note;
  const hash = new URLSearchParams(location.hash.slice(1));
  sel = Math.min(Number(hash.get("b")) || 0, names.length - 1);
  await selectSession(Math.min(Number(hash.get("s")) || 0, sessions.length - 1));
}

function renderList() {
  const rows = [...sessions].sort((a, b) => {
    const va = a[sortKey] ?? -1, vb = b[sortKey] ?? -1;
    return (va > vb ? 1 : va < vb ? -1 : a.index - b.index) * sortDir;
  });
  $("sessions").tBodies[0].innerHTML = rows.map((s) =>
    `<tr data-i="${s.index}" class="${s.index === cur ? "on" : ""}"><td>${s.index + 1}</td>` +
    `<td>${s.name}</td><td>${s.disagreement === null ? "—" : s.disagreement.toFixed(1)}</td>` +
    `<td>${s.done}/${names.length}</td></tr>`).join("");
}

async function selectSession(i) {
  cur = i;
  const s = sessions[i];
  if (!s.words) Object.assign(s, await getJSON(`/api/sessions/${i}`));
  $("title").textContent = `${s.name} (line ${s.line}, ${s.duration.toFixed(1)} s)`;
  renderList();
  selectBoundary(sel);
}

function selectBoundary(j) {
  sel = Math.max(0, Math.min(j, names.length - 1));
  history.replaceState(null, "", `#s=${cur}&b=${sel}`);
  loadSpan(anchor(sessions[cur], names[sel]));
  render();
}

function loadSpan(center) {
  const s = sessions[cur];
  span = { start: Math.max(0, center - SPAN), end: Math.min(s.duration, center + SPAN) };
  const q = `start=${span.start.toFixed(3)}&end=${span.end.toFixed(3)}`;
  $("audio").src = `/api/sessions/${cur}/audio.wav?${q}`;
  $("spectrogram").src = `/api/sessions/${cur}/spectrogram.png?${q}`;
}

function render() {
  const s = sessions[cur], name = names[sel], c = current(s, name);
  $("selected").textContent = name;
  $("current").textContent = fmt(c);
  $("time").value = typeof c === "number" ? c.toFixed(2) : "";
  $("boundaries").tBodies[0].innerHTML = names.map((n, j) =>
    `<tr data-b="${j}" class="${j === sel ? "on" : ""}"><td>${n}</td>` +
    LANES.map((k) => `<td class="${k}-value">${fmt(opinion(s, k, n))}</td>`).join("") + "</tr>").join("");
  const p = s.proposed[name];
  $("evidence").textContent = p && p.evidence
    ? `proposed from: “${p.evidence}” (confidence ${p.confidence ?? "?"})` : "";
  const inSpan = typeof c === "number" && c >= span.start && c <= span.end;
  $("mark").style.display = inSpan ? "" : "none";
  if (inSpan) $("mark").style.left = `${(100 * (c - span.start)) / (span.end - span.start)}%`;
  renderWords(s, c);
  drawTimeline(s, c);
}

function renderWords(s, c) {
  let html = "", speaker;
  for (const w of s.words.filter((w) => w.end >= span.start && w.start <= span.end)) {
    if (w.speaker !== speaker) html += `<span class="speaker">${(speaker = w.speaker) ?? "?"}:</span> `;
    const after = typeof c === "number" && w.start >= c ? "after" : "";
    html += `<span class="${after}" title="${w.start.toFixed(2)} s">${escape(w.word)}</span> `;
  }
  $("words").innerHTML = html || "<i>no transcript words here</i>";
}
const escape = (t) => t.replace(/[&<>"]/g, (ch) => `&#${ch.charCodeAt(0)};`);

const tx = (s, t) => X0 + (t / s.duration) * (W - X0 - 10);
function drawTimeline(s, c) {
  const step = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600].find((t) => s.duration / t <= 12) || 1200;
  let h = `<rect x="${tx(s, span.start)}" width="${tx(s, span.end) - tx(s, span.start)}" y="0" ` +
    `height="142" fill="#e8f0ff"><title>the span you hear and see</title></rect>`;
  for (let t = 0; t <= s.duration; t += step) {
    h += `<text x="${tx(s, t)}" y="158" font-size="12" text-anchor="middle" fill="#666">${t} s</text>`;
  }
  LANES.forEach((k, i) => {
    const y = 8 + i * 34;
    h += `<text x="4" y="${y + 21}" fill="${COLORS[k]}" font-size="14">${k}</text>`;
    h += `<line x1="${X0}" x2="${W - 10}" y1="${y + 16}" y2="${y + 16}" stroke="#ddd"/>`;
    names.forEach((n, j) => {
      const v = opinion(s, k, n);
      if (typeof v !== "number") return;
      h += `<line data-b="${j}" x1="${tx(s, v)}" x2="${tx(s, v)}" y1="${y}" y2="${y + 30}" ` +
        `stroke="${COLORS[k]}" stroke-width="${j === sel ? 5 : 2}"><title>${n} ${k} ${fmt(v)}</title></line>`;
    });
  });
  if (typeof c === "number") {
    const x = tx(s, c);
    h += `<line id="cursor" x1="${x}" x2="${x}" y1="0" y2="142" stroke="#000" stroke-dasharray="4 3"/>`;
    h += `<rect id="handle" x="${x - 8}" y="0" width="16" height="142" fill="transparent" style="cursor:ew-resize"/>`;
  }
  $("timeline").innerHTML = h;
}

function decide(action, value) {
  const s = sessions[cur], name = names[sel], index = cur;
  if (action === "accept" && current(s, name) === undefined) {
    return status(`${name} has no value to accept: move it or mark it absent`, true);
  }
  if (action === "move") value = Math.round(clamp(value, s) * 1000) / 1000;
  s.decided[name] = action === "move" ? value : action === "absent" ? null : current(s, name);
  render();
  pending += 1;
  chain = chain.then(async () => {
    try {
      const r = await fetch(`/api/sessions/${index}/decide`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ boundary: name, action, value }),
      });
      const data = await r.json();
      if (!r.ok) throw new Error(data.error);
      if (pending === 1) Object.assign(sessions[index], data);
      status(`saved ${name} ${action} ${new Date().toLocaleTimeString()}`);
    } catch (e) {
      status(`not saved: ${e.message}`, true);
      Object.assign(sessions[index], await getJSON(`/api/sessions/${index}`));
    }
    pending -= 1;
    renderList();
    if (index === cur) render();
  });
  if (action !== "move") selectBoundary(sel + 1);
  else if (Math.abs(value - (span.start + span.end) / 2) > SPAN - 2) loadSpan(value);
}

function move(delta) {
  const s = sessions[cur], c = current(s, names[sel]);
  decide("move", (typeof c === "number" ? c : anchor(s, names[sel])) + delta);
}

function togglePlay() {
  const audio = $("audio");
  if (audio.paused) audio.play().catch((e) => status(`cannot play: ${e.message}`, true));
  else audio.pause();
}

document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT") {
    if (e.key === "Enter") { decide("move", Number($("time").value)); e.target.blur(); }
    return;
  }
  const step = e.shiftKey ? 5 : 0.5;
  const keys = {
    Enter: () => decide("accept"), a: () => decide("accept"), x: () => decide("absent"),
    ArrowLeft: () => move(-step), ArrowRight: () => move(step),
    Tab: () => selectBoundary(sel + (e.shiftKey ? -1 : 1)),
    j: () => selectBoundary(sel + 1), k: () => selectBoundary(sel - 1), " ": togglePlay,
    n: () => selectSession(Math.min(cur + 1, sessions.length - 1)),
    p: () => selectSession(Math.max(cur - 1, 0)),
  };
  const action = keys[e.key];
  if (!action || e.ctrlKey || e.metaKey || e.altKey) return;
  e.preventDefault();
  action();
});

const click = (id, f) => $(id).addEventListener("click", (e) => { e.currentTarget.blur(); f(); });
click("accept", () => decide("accept"));
click("absent", () => decide("absent"));
click("left", () => move(-0.5));
click("right", () => move(0.5));
click("set", () => decide("move", Number($("time").value)));
click("play", togglePlay);
$("audio").addEventListener("focus", (e) => e.target.blur()); // keep space for the page

$("sessions").addEventListener("click", (e) => {
  const th = e.target.closest("th"), tr = e.target.closest("tbody tr");
  if (th) {
    sortDir = sortKey === th.dataset.key ? -sortDir : th.dataset.key === "disagreement" ? -1 : 1;
    sortKey = th.dataset.key;
    renderList();
  } else if (tr) selectSession(Number(tr.dataset.i));
});
$("boundaries").addEventListener("click", (e) => {
  const tr = e.target.closest("tbody tr");
  if (tr) selectBoundary(Number(tr.dataset.b));
});

const timeAt = (e) => {
  const r = $("timeline").getBoundingClientRect(), s = sessions[cur];
  return clamp((((e.clientX - r.left) / r.width) * W - X0) / (W - X0 - 10) * s.duration, s);
};
$("timeline").addEventListener("mousedown", (e) => {
  if (e.target.id === "handle") { dragging = true; e.preventDefault(); }
  else if (e.target.dataset.b) selectBoundary(Number(e.target.dataset.b));
});
window.addEventListener("mousemove", (e) => {
  if (!dragging) return;
  const x = tx(sessions[cur], timeAt(e));
  $("cursor").setAttribute("x1", x);
  $("cursor").setAttribute("x2", x);
  $("handle").setAttribute("x", x - 8);
  $("current").textContent = timeAt(e).toFixed(2);
});
window.addEventListener("mouseup", (e) => {
  if (!dragging) return;
  dragging = false;
  decide("move", timeAt(e));
});

start().catch((e) => status(`cannot load: ${e.message}`, true));
