// segstream label: the page. Masks are edited as class ids, one byte a pixel, and drawn
// pixel by pixel (never through the canvas's anti-aliased paths), so that a saved mask holds
// only the ids painted.
"use strict";

const UNDO_LIMIT = 40;
const $ = (id) => document.getElementById(id);

const state = {
  queue: [], classes: [], current: null, item: null,
  width: 0, height: 0, ids: null, offered: null,
  undo: [], redo: [], tool: "brush", cls: 1, polygon: [], stroke: null, zoom: 1,
};

// The server takes changes only with the token it wrote into this page: another site's page
// can neither read it nor send the header without a preflight the server never grants.
const TOKEN = document.querySelector('meta[name="segstream-token"]').content;

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}), "X-Segstream-Token": TOKEN };
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function showError(error) { $("status").textContent = "error: " + error.message; }

// ---- queue ----

function renderQueue() {
  const list = $("queue");
  list.replaceChildren();
  for (const item of state.queue) {
    const li = document.createElement("li");
    li.className = item.status + (item.id === state.current ? " current" : "");
    li.dataset.id = item.id;
    const tag = item.status === "saved" ? " ✓" : item.carried_from ? " ↪" : "";
    li.textContent = item.name + tag;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = item.score.toFixed(3);
    li.append(score);
    li.title = `rank ${item.rank} · uncertainty ${item.scores.uncertainty.toFixed(3)} · ` +
      `mirror ${item.scores.flip.toFixed(3)} · flicker ${item.scores.flicker.toFixed(3)}`;
    li.addEventListener("click", () => open(item.id).catch(showError));
    list.append(li);
  }
  const done = state.queue.filter((i) => i.status !== "pending").length;
  $("progress").textContent = `${done} of ${state.queue.length} done`;
}

function applyQueue(queue) {
  state.queue = queue.items;
  state.classes = queue.classes;
  state.item = state.queue.find((i) => i.id === state.current) || null;
  renderQueue();
}

async function refresh() {
  applyQueue(await (await api("/api/queue")).json());
}

// ---- one frame ----

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("cannot load " + url));
    image.src = url;
  });
}

async function open(id) {
  const base = `/api/items/${id}`;
  const [picture, mask, heat] = await Promise.all([
    loadImage(`${base}/image.png`),
    api(`${base}/mask`).then((r) => r.arrayBuffer()),
    loadImage(`${base}/uncertainty.png`),
  ]);
  state.current = id;
  state.item = state.queue.find((i) => i.id === id);
  state.width = picture.naturalWidth;
  state.height = picture.naturalHeight;
  state.offered = new Uint8Array(mask);
  state.ids = state.offered.slice();
  state.undo = [];
  state.redo = [];
  state.polygon = [];
  const fit = Math.min(1, ($("stage").clientWidth - 4) / state.width);
  state.zoom = fit > 0 ? fit : 1;
  for (const canvas of document.querySelectorAll("#stage canvas")) {
    canvas.width = state.width;
    canvas.height = state.height;
    canvas.style.width = `${state.width * state.zoom}px`;
    canvas.style.height = `${state.height * state.zoom}px`;
  }
  $("picture").getContext("2d").drawImage(picture, 0, 0);
  $("heatmap").getContext("2d").drawImage(heat, 0, 0);
  drawOverlay(0, 0, state.width, state.height);
  drawGuide();
  renderQueue();
  showStatus();
}

function showStatus(extra) {
  const item = state.item;
  if (!item) { $("status").textContent = "nothing open"; return; }
  const from = item.carried_from ? `carried from ${item.carried_from}` : "the model's";
  $("status").textContent = `${item.name} · rank ${item.rank} · score ${item.score.toFixed(3)} ` +
    `(uncertainty ${item.scores.uncertainty.toFixed(3)}, mirror ${item.scores.flip.toFixed(3)}, ` +
    `flicker ${item.scores.flicker.toFixed(3)}) · mask: ${from} · ${item.status}` +
    (extra ? ` · ${extra}` : "");
}

// ---- drawing ----

function classColor(id) {
  const found = state.classes[id];
  return found ? found.color : [255, 0, 255];
}

// Redraws the overlay's rectangle [x0, x1) × [y0, y1) from the class ids.
function drawOverlay(x0, y0, x1, y1) {
  x0 = Math.max(0, Math.floor(x0)); y0 = Math.max(0, Math.floor(y0));
  x1 = Math.min(state.width, Math.ceil(x1)); y1 = Math.min(state.height, Math.ceil(y1));
  if (x1 <= x0 || y1 <= y0) return;
  const context = $("overlay").getContext("2d");
  const image = context.createImageData(x1 - x0, y1 - y0);
  const binary = state.classes.length === 2;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const id = state.ids[y * state.width + x];
      const o = ((y - y0) * (x1 - x0) + (x - x0)) * 4;
      if (binary && id === 0) continue;
      const [r, g, b] = classColor(id);
      image.data[o] = r; image.data[o + 1] = g; image.data[o + 2] = b; image.data[o + 3] = 255;
    }
  }
  context.putImageData(image, x0, y0);
}

// The polygon being drawn, on the guide canvas.
function drawGuide() {
  const context = $("guide").getContext("2d");
  context.clearRect(0, 0, state.width, state.height);
  if (state.polygon.length === 0) return;
  context.strokeStyle = "#fff";
  context.lineWidth = 1 / state.zoom;
  context.beginPath();
  state.polygon.forEach(([x, y], i) => (i ? context.lineTo(x, y) : context.moveTo(x, y)));
  context.stroke();
}

function snapshot() {
  state.undo.push(state.ids.slice());
  if (state.undo.length > UNDO_LIMIT) state.undo.shift();
  state.redo = [];
}

function restore(from, to) {
  if (from.length === 0) return;
  to.push(state.ids);
  state.ids = from.pop();
  drawOverlay(0, 0, state.width, state.height);
}

// Sets every pixel whose centre lies within size/2 of (cx, cy), and the pixel under it.
function stamp(cx, cy, id) {
  const radius = Number($("size").value) / 2;
  const x0 = Math.max(0, Math.floor(cx - radius)), x1 = Math.min(state.width - 1, Math.floor(cx + radius));
  const y0 = Math.max(0, Math.floor(cy - radius)), y1 = Math.min(state.height - 1, Math.floor(cy + radius));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const dx = x + 0.5 - cx, dy = y + 0.5 - cy;
      if (dx * dx + dy * dy <= radius * radius) state.ids[y * state.width + x] = id;
    }
  }
  const px = Math.floor(cx), py = Math.floor(cy);
  if (px >= 0 && py >= 0 && px < state.width && py < state.height) state.ids[py * state.width + px] = id;
  drawOverlay(x0, y0, x1 + 1, y1 + 1);
}

// Stamps along the segment from a to b, at most half a pixel apart.
function line([ax, ay], [bx, by], id) {
  const steps = Math.max(1, Math.ceil(2 * Math.hypot(bx - ax, by - ay)));
  for (let k = 1; k <= steps; k++) stamp(ax + ((bx - ax) * k) / steps, ay + ((by - ay) * k) / steps, id);
}

// 4-connected flood fill of the region of (x, y)'s class.
function fill(x, y, id) {
  const w = state.width, ids = state.ids, from = ids[y * w + x];
  if (from === id) return;
  const stack = [y * w + x];
  while (stack.length) {
    const i = stack.pop();
    if (ids[i] !== from) continue;
    ids[i] = id;
    const px = i % w;
    if (px > 0) stack.push(i - 1);
    if (px < w - 1) stack.push(i + 1);
    if (i >= w) stack.push(i - w);
    if (i + w < ids.length) stack.push(i + w);
  }
  drawOverlay(0, 0, state.width, state.height);
}

// Fills the polygon's inside (even-odd rule at pixel centres) with id.
function fillPolygon(points, id) {
  if (points.length < 3) return;
  let top = Infinity, bottom = -Infinity;
  for (const [, y] of points) { top = Math.min(top, y); bottom = Math.max(bottom, y); }
  for (let y = Math.max(0, Math.floor(top)); y <= Math.min(state.height - 1, Math.ceil(bottom)); y++) {
    const cy = y + 0.5, crossings = [];
    points.forEach(([ax, ay], i) => {
      const [bx, by] = points[(i + 1) % points.length];
      if ((ay <= cy) !== (by <= cy)) crossings.push(ax + ((cy - ay) * (bx - ax)) / (by - ay));
    });
    crossings.sort((a, b) => a - b);
    for (let k = 0; k + 1 < crossings.length; k += 2) {
      const from = Math.max(0, Math.ceil(crossings[k] - 0.5));
      const to = Math.min(state.width - 1, Math.floor(crossings[k + 1] - 0.5));
      for (let x = from; x <= to; x++) state.ids[y * state.width + x] = id;
    }
  }
  drawOverlay(0, 0, state.width, state.height);
}

function closePolygon() {
  if (state.polygon.length >= 3) {
    snapshot();
    fillPolygon(state.polygon, state.cls);
  }
  state.polygon = [];
  drawGuide();
}

// Pointer position in image pixels.
function position(event) {
  const rect = $("guide").getBoundingClientRect();
  return [
    ((event.clientX - rect.left) * state.width) / rect.width,
    ((event.clientY - rect.top) * state.height) / rect.height,
  ];
}

function paintClass() { return state.tool === "eraser" ? 0 : state.cls; }

function pointerDown(event) {
  if (!state.ids || event.button !== 0) return;
  const p = position(event);
  if (state.tool === "brush" || state.tool === "eraser") {
    snapshot();
    stamp(p[0], p[1], paintClass());
    state.stroke = p;
    $("guide").setPointerCapture(event.pointerId);
  } else if (state.tool === "fill") {
    const x = Math.floor(p[0]), y = Math.floor(p[1]);
    if (x < 0 || y < 0 || x >= state.width || y >= state.height) return;
    snapshot();
    fill(x, y, state.cls);
  } else if (state.tool === "polygon") {
    state.polygon.push(p);
    drawGuide();
  }
}

function pointerMove(event) {
  if (!state.ids) return;
  const p = position(event);
  if (state.stroke) {
    line(state.stroke, p, paintClass());
    state.stroke = p;
  }
  showStatus(`x ${Math.floor(p[0])} y ${Math.floor(p[1])}`);
}

function pointerUp() { state.stroke = null; }

// ---- tools and classes ----

function selectTool(tool) {
  if (state.tool === "polygon" && tool !== "polygon") { state.polygon = []; drawGuide(); }
  state.tool = tool;
  for (const button of document.querySelectorAll("#tools button")) {
    button.classList.toggle("active", button.dataset.tool === tool);
  }
}

function selectClass(id) {
  if (id < 0 || id >= state.classes.length) return;
  state.cls = id;
  for (const button of document.querySelectorAll("#classes button")) {
    button.classList.toggle("active", Number(button.dataset.id) === id);
  }
}

function renderClasses() {
  const box = $("classes");
  box.replaceChildren();
  for (const cls of state.classes) {
    const button = document.createElement("button");
    button.dataset.id = cls.id;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${cls.color.join(",")})`;
    button.append(swatch, `${cls.id} ${cls.name}`);
    button.addEventListener("click", () => selectClass(cls.id));
    box.append(button);
  }
  selectClass(Math.min(1, state.classes.length - 1));
}

// ---- decisions ----

function nextPending() {
  const pending = state.queue.filter((i) => i.status === "pending");
  return pending.find((i) => i.id !== state.current) || pending[0] || null;
}

async function decide(action) {
  if (state.current === null) return;
  const query = `split=${$("test").checked ? "test" : "train"}&carry=${$("carry").checked ? 1 : 0}`;
  const options = { method: "POST" };
  if (action === "save") {
    options.body = state.ids;
    options.headers = { "Content-Type": "application/octet-stream" };
  }
  const response = await api(`/api/items/${state.current}/${action}?${query}`, options);
  applyQueue(await response.json());
  $("test").checked = false;
  const next = nextPending();
  if (next) await open(next.id);
  else showStatus("the queue is done: Finish, or stop with Ctrl-C");
}

async function finish() {
  await api("/api/finish", { method: "POST" });
  document.body.replaceChildren(
    Object.assign(document.createElement("p"), {
      textContent: "Finished: the masks are saved. You can close this page.",
    }),
  );
}

// ---- keys and wiring ----

function onKey(event) {
  if (event.target.tagName === "INPUT" && event.target.type === "number") return;
  const key = event.key.toLowerCase();
  const control = event.ctrlKey || event.metaKey;
  const run = (promise) => promise.catch(showError);
  if (control && key === "z" && !event.shiftKey) restore(state.undo, state.redo);
  else if ((control && key === "z" && event.shiftKey) || (control && key === "y")) restore(state.redo, state.undo);
  else if (control) return;
  else if (key === "b") selectTool("brush");
  else if (key === "e") selectTool("eraser");
  else if (key === "f") selectTool("fill");
  else if (key === "p") selectTool("polygon");
  else if (key === "enter") closePolygon();
  else if (key === "escape") { state.polygon = []; drawGuide(); }
  else if (key === "[") $("size").value = Math.max(1, Number($("size").value) - 1);
  else if (key === "]") $("size").value = Number($("size").value) + 1;
  else if (/^[0-9]$/.test(key)) selectClass(Number(key));
  else if (key === "h") { $("heat").checked = !$("heat").checked; showHeat(); }
  else if (key === "t") $("test").checked = !$("test").checked;
  else if (key === "c") $("carry").checked = !$("carry").checked;
  else if (key === "a") run(decide("accept"));
  else if (key === "s") run(decide("save"));
  else if (key === "n") run(decide("skip"));
  else return;
  event.preventDefault();
}

function showHeat() { $("heatmap").style.display = $("heat").checked ? "" : "none"; }
function showOpacity() { $("overlay").style.opacity = Number($("opacity").value) / 100; }

async function start() {
  for (const button of document.querySelectorAll("#tools button")) {
    button.addEventListener("click", () => selectTool(button.dataset.tool));
  }
  const guide = $("guide");
  guide.addEventListener("pointerdown", pointerDown);
  guide.addEventListener("pointermove", pointerMove);
  guide.addEventListener("pointerup", pointerUp);
  guide.addEventListener("pointercancel", pointerUp);
  guide.addEventListener("dblclick", closePolygon);
  $("undo").addEventListener("click", () => restore(state.undo, state.redo));
  $("redo").addEventListener("click", () => restore(state.redo, state.undo));
  $("heat").addEventListener("change", showHeat);
  $("opacity").addEventListener("input", showOpacity);
  for (const action of ["accept", "save", "skip"]) {
    $(action).addEventListener("click", () => decide(action).catch(showError));
  }
  $("finish").addEventListener("click", () => finish().catch(showError));
  document.addEventListener("keydown", onKey);
  showHeat();
  showOpacity();
  selectTool("brush");
  const queue = await (await api("/api/queue")).json();
  $("input").textContent = queue.input;
  applyQueue(queue);
  renderClasses();
  const first = nextPending();
  if (first) await open(first.id);
  document.body.dataset.ready = "true";
}

start().catch(showError);
