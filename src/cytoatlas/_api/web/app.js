// cytoatlas results page: talks only to this server's /api/v1 (no CDN), draws with the bundled plotly.js.
"use strict";

const API = "/api/v1";
const $ = (id) => document.getElementById(id);
const VIEWS = ["heatmap", "signature", "validation", "gene", "cells", "compare"];
const COLORS = ["#2f5fb3", "#d1495b", "#00798c", "#edae49", "#66a182", "#8d6a9f", "#e07a5f", "#3d405b"];
const PLOT_CONFIG = { responsive: true, displaylogo: false };
const DIVERGING = [[0, "#2166ac"], [0.25, "#92c5de"], [0.5, "#f7f7f7"], [0.75, "#f4a582"], [1, "#b2182b"]];

const state = { view: "heatmap", atlas: "", level: "", set: "", value: "z", top: "60", order: "cluster",
                signature: "", gene: "",
                target: "", targetGene: "", signatureLevel: "current", cellsSignature: "",
                analysis: "", by: "", contrast: "", compareCellType: "", compareSignature: "" };
let atlases = [];
let levels = [];
let renderCount = 0;

// ---- API ------------------------------------------------------------------------------------------------------
async function get(path, params = {}) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "") continue;
    for (const item of Array.isArray(v) ? v : [v]) qs.append(k, item);
  }
  const url = API + path + (qs.toString() ? "?" + qs : "");
  const response = await fetch(url, { credentials: "same-origin" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(typeof body.detail === "string" ? body.detail : `${response.status} ${url}`);
    error.status = response.status;
    throw error;
  }
  return body;
}
const enc = encodeURIComponent;

async function all(path, params = {}) {  // every page of a table
  let rows = [];
  let offset = 0;
  for (;;) {
    const page = await get(path, { ...params, limit: 50000, offset });
    rows = rows.concat(page.rows);
    if (page.next_offset === null) return rows;
    offset = page.next_offset;
  }
}

// ---- state in the address bar -----------------------------------------------------------------------------------
function readHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  for (const k of Object.keys(state)) if (h.has(k)) state[k] = h.get(k);
  if (!VIEWS.includes(state.view)) state.view = "heatmap";
}
function writeHash() {
  const h = new URLSearchParams();
  for (const [k, v] of Object.entries(state)) if (v) h.set(k, v);
  history.replaceState(null, "", "#" + h);
}

function status(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function fill(select, values, current, label = (v) => v) {
  select.replaceChildren(...values.map((v) => new Option(label(v), v)));
  const value = values.includes(current) ? current : (values[0] ?? "");
  select.value = value;
  return value;
}

// ---- pickers ----------------------------------------------------------------------------------------------------
async function chooseAtlas() {
  state.atlas = fill($("atlas"), atlases.map((a) => a.atlas), state.atlas);
  levels = (await get(`/atlases/${enc(state.atlas)}/levels`)).rows;
  chooseLevel();
}
function chooseLevel() {
  state.level = fill($("level"), levels.map((l) => l.level), state.level);
  const level = levels.find((l) => l.level === state.level);
  state.set = fill($("set"), level ? level.signature_sets : [], state.set);
}

// ---- big scatters ---------------------------------------------------------------------------------------------------
// The server sends the strongest MAX_SVG_POINTS points of a big scatter and counts the others in a grid (nothing
// sent or drawn beyond what a screen shows); the points are drawn with WebGL (plotly's scattergl) where the browser
// has a GPU for it, else as SVG, and the grid as a canvas image under them. A software WebGL (SwiftShader in headless
// Chromium, llvmpipe) counts as none: plotly's WebGL traces can come out blank there.
const HAS_WEBGL = (() => {
  try {
    const gl = document.createElement("canvas").getContext("webgl");
    if (!gl) return false;
    const info = gl.getExtension("WEBGL_debug_renderer_info");
    const renderer = String(info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER));
    return !/swiftshader|llvmpipe|softpipe|software|basic render/i.test(renderer);
  } catch (error) {
    return false;
  }
})();
const MAX_SVG_POINTS = 2000;

// a grid of counts ([ix, iy, n, n significant] over x0..x0 + bins * w, 0..bins * h) as a PNG data URL in the plot's
// data coordinates: each cell a rectangle, red where most of its rows are significant, darker where it holds more
function densityImage(density, gridX, gridY, xRange, yRange, width = 1200, height = 460) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  const sx = width / (xRange[1] - xRange[0]);
  const sy = height / (yRange[1] - yRange[0]);
  const w = (gridX[1] - gridX[0]) / density.bins || 1;
  const h = (gridY[1] - gridY[0]) / density.bins || 1;
  const most = density.cells.reduce((m, c) => Math.max(m, c[2]), 1);
  for (const [ix, iy, n, significant] of density.cells) {
    const left = (gridX[0] + ix * w - xRange[0]) * sx;
    const top = height - (gridY[0] + (iy + 1) * h - yRange[0]) * sy;
    ctx.globalAlpha = 0.3 + 0.7 * Math.log1p(n) / Math.log1p(most);
    ctx.fillStyle = 2 * significant > n ? "#d1495b" : "#9aa7bd";
    ctx.fillRect(left, top, Math.max(w * sx, 2), Math.max(h * sy, 2));
  }
  return { source: canvas.toDataURL("image/png"), xref: "x", yref: "y", x: xRange[0], y: yRange[1],
           sizex: xRange[1] - xRange[0], sizey: yRange[1] - yRange[0], sizing: "stretch", layer: "below" };
}

// ---- ordering -----------------------------------------------------------------------------------------------------
// labels in natural order: "L4_2" before "L4_10" (digits compared as numbers), ties broken by plain text order
const naturalCompare = (a, b) => String(a).localeCompare(String(b), undefined, { numeric: true })
  || (a < b ? -1 : a > b ? 1 : 0);
const MAX_CLUSTERED = 400;  // average linkage is O(n^3) here: above this, order by the first principal component

function distance(u, v) {  // root mean squared difference over the entries both have
  let sum = 0;
  let n = 0;
  for (let k = 0; k < u.length; k++) {
    const d = u[k] - v[k];
    if (Number.isFinite(d)) { sum += d * d; n++; }
  }
  return n ? Math.sqrt(sum / n) : Infinity;
}

function projectionOrder(vectors) {  // by the score on the first principal component (power iteration)
  const n = vectors.length;
  const m = vectors[0]?.length ?? 0;
  const clean = vectors.map((v) => v.map((x) => (Number.isFinite(x) ? x : 0)));
  const mean = Array.from({ length: m }, (_, k) => clean.reduce((s, v) => s + v[k], 0) / n);
  const centred = clean.map((v) => v.map((x, k) => x - mean[k]));
  let w = Array.from({ length: m }, (_, k) => 1 / Math.sqrt(m) + 1e-3 * k);
  for (let it = 0; it < 50; it++) {
    const scores = centred.map((v) => v.reduce((s, x, k) => s + x * w[k], 0));
    const next = Array.from({ length: m }, (_, k) => centred.reduce((s, v, i) => s + v[k] * scores[i], 0));
    const norm = Math.hypot(...next) || 1;
    w = next.map((x) => x / norm);
  }
  const scores = centred.map((v) => v.reduce((s, x, k) => s + x * w[k], 0));
  return [...scores.keys()].sort((a, b) => scores[a] - scores[b] || a - b);
}

// the leaf order of an average-linkage (UPGMA) clustering of the vectors; merges the closest pair each step
function clusterOrder(vectors) {
  const n = vectors.length;
  if (n <= 2) return [...Array(n).keys()];
  if (n > MAX_CLUSTERED) return projectionOrder(vectors);
  const d = vectors.map((u) => vectors.map((v) => distance(u, v)));
  const far = Math.max(1, ...d.flat().filter(Number.isFinite)) * 2;
  for (const row of d) for (let j = 0; j < n; j++) if (!Number.isFinite(row[j])) row[j] = far;
  let clusters = [...Array(n).keys()].map((i) => ({ id: i, size: 1, leaves: [i] }));
  while (clusters.length > 1) {
    let best = [0, 1];
    let bestD = Infinity;
    for (let a = 0; a < clusters.length; a++) {
      for (let b = a + 1; b < clusters.length; b++) {
        const x = d[clusters[a].id][clusters[b].id];
        if (x < bestD) { bestD = x; best = [a, b]; }
      }
    }
    const [a, b] = best;
    const A = clusters[a];
    const B = clusters[b];
    for (const C of clusters) {  // the merged cluster's distances: size-weighted means, stored at A's id
      if (C === A || C === B) continue;
      const x = (A.size * d[A.id][C.id] + B.size * d[B.id][C.id]) / (A.size + B.size);
      d[A.id][C.id] = x;
      d[C.id][A.id] = x;
    }
    clusters[a] = { id: A.id, size: A.size + B.size, leaves: A.leaves.concat(B.leaves) };
    clusters.splice(b, 1);
  }
  return clusters[0].leaves;
}

// the order of a heatmap's rows and columns: clustered, or labels in natural order
function heatmapOrder(rows, columns, values, how) {
  if (how !== "cluster") {
    const byName = (labels) => [...labels.keys()].sort((a, b) => naturalCompare(labels[a], labels[b]));
    return { rows: byName(rows), columns: byName(columns) };
  }
  const transposed = columns.map((_, j) => values.map((row) => row[j] ?? NaN));
  return { rows: clusterOrder(values.map((row) => row.map((v) => v ?? NaN))), columns: clusterOrder(transposed) };
}

// ---- views ------------------------------------------------------------------------------------------------------
async function render() {
  const token = ++renderCount;
  writeHash();
  for (const v of VIEWS) {
    $("view-" + v).hidden = v !== state.view;
    document.querySelector(`nav button[data-view="${v}"]`).classList.toggle("active", v === state.view);
  }
  try {
    await { heatmap: drawHeatmap, signature: drawSignature, validation: drawValidation, gene: drawGene,
            cells: drawCells, compare: drawCompare }[state.view](token);
  } catch (error) {
    if (token === renderCount) status(error.message, true);
  }
}
const stale = (token) => token !== renderCount;

async function drawHeatmap(token) {
  const div = $("heatmap");
  if (!state.set) {
    Plotly.purge(div);
    status(`${state.atlas} ${state.level}: no activity in the store`, true);
    return;
  }
  const m = await get(`/activity/${enc(state.atlas)}/${enc(state.level)}/${enc(state.set)}/matrix`,
                      { value: state.value, top: state.top });
  if (stale(token)) return;
  const centred = ["z", "beta", "z_ci_low", "z_ci_high"].includes(state.value);
  const order = heatmapOrder(m.rows, m.columns, m.values, state.order);
  const z = order.rows.map((i) => order.columns.map((j) => m.values[i][j]));
  const x = order.columns.map((j) => m.columns[j]);
  const y = order.rows.map((i) => m.rows[i]);
  const trace = { type: "heatmap", z, x, y, colorscale: centred ? DIVERGING : "Viridis",
                  reversescale: state.value === "pvalue", zmid: centred ? 0 : undefined,
                  colorbar: { title: { text: state.value } },
                  hovertemplate: "%{y}<br>%{x}<br>" + state.value + " = %{z:.3g}<extra></extra>" };
  const layout = { margin: { l: 160, r: 20, t: 30, b: 120 }, height: Math.max(420, 22 * m.rows.length + 200),
                   xaxis: { tickangle: -60, automargin: true }, yaxis: { automargin: true, autorange: "reversed" },
                   title: { text: `${m.atlas} · ${m.level} · ${m.signature_set}`, font: { size: 14 } } };
  await Plotly.react(div, [trace], layout, PLOT_CONFIG);
  div.dataset.drawn = `${m.atlas}|${m.level}|${m.signature_set}`;
  div.dataset.order = state.order;
  if (!div.dataset.clicks) {
    div.dataset.clicks = "1";
    div.on("plotly_click", (ev) => {
      state.signature = ev.points[0].x;
      state.view = "signature";
      render();
    });
  }
  status(`${m.atlas} · ${m.level} · ${m.signature_set}: ${m.rows.length} cell types × ${m.n_signatures} signatures` +
         (m.columns.length < m.n_signatures ? ` (the ${m.columns.length} most variable shown)` : ""));
}

async function signatureNames() {
  return (await all(`/signature-sets/${enc(state.set)}/signatures`)).map((r) => r.signature);
}

function intervals(rows, name, color) {
  // the bootstrap interval as a segment per row (it need not contain z, so not as error bars around it)
  const x = [];
  const y = [];
  for (const r of rows) {
    if (r.z_ci_low === null || r.z_ci_high === null) continue;
    x.push(r.cell_type, r.cell_type, null);
    y.push(r.z_ci_low, r.z_ci_high, null);
  }
  return { type: "scatter", mode: "lines", x, y, name: name + " 95 % CI", legendgroup: name, offsetgroup: name,
           showlegend: false,
           line: { color, width: 2 }, opacity: 0.45, hoverinfo: "skip" };
}

async function drawSignature(token) {
  if (!state.set) return;
  const names = await signatureNames();
  if (stale(token)) return;
  state.signature = fill($("signature"), names, state.signature);
  $("signature-level").value = state.signatureLevel;
  writeHash();
  const rows = await all(`/signatures/${enc(state.set)}/${enc(state.signature)}`);
  if (stale(token)) return;
  const shown = state.signatureLevel === "all" ? rows : rows.filter((r) => r.level === state.level);
  const groups = [...new Set(shown.map((r) => `${r.atlas} · ${r.level}`))];
  const traces = groups.flatMap((g, i) => {
    const part = shown.filter((r) => `${r.atlas} · ${r.level}` === g);
    const color = COLORS[i % COLORS.length];
    return [intervals(part, g, color),
            { type: "scatter", mode: "markers", name: g, legendgroup: g, offsetgroup: g, x: part.map((r) => r.cell_type),
              y: part.map((r) => r.z), marker: { size: 9, color },
              customdata: part.map((r) => [r.pvalue, r.n_cells, r.z_ci_low ?? NaN, r.z_ci_high ?? NaN]),
              hovertemplate: "%{x}<br>z = %{y:.3g} (CI %{customdata[2]:.3g} to %{customdata[3]:.3g})<br>" +
                             "p = %{customdata[0]:.2g}, %{customdata[1]} cells<extra>" + g + "</extra>" }];
  });
  const layout = { margin: { l: 60, r: 20, t: 40, b: 140 }, height: 480, xaxis: { tickangle: -45, automargin: true },
                   scattermode: "group", scattergap: 0.6,
                   yaxis: { title: { text: "activity z (95 % bootstrap CI)" }, zeroline: true },
                   title: { text: `${state.signature} (${state.set}) across atlases`, font: { size: 14 } } };
  await Plotly.react($("signature-plot"), traces, layout, PLOT_CONFIG);
  $("signature-plot").dataset.drawn = `${state.set}|${state.signature}`;
  const table = $("signature-table");
  const head = ["atlas", "level", "cell type", "z", "CI low", "CI high", "p", "cells"];
  const fmt = (v) => (v === null || v === undefined ? "–" : typeof v === "number" ? +v.toPrecision(3) : v);
  table.replaceChildren(
    Object.assign(document.createElement("thead"), { innerHTML: "<tr>" + head.map((h) => `<th>${h}</th>`).join("") + "</tr>" }),
    ...[document.createElement("tbody")].map((body) => {
      for (const r of shown) {
        const tr = body.insertRow();
        for (const v of [r.atlas, r.level, r.cell_type, r.z, r.z_ci_low, r.z_ci_high, r.pvalue, r.n_cells]) {
          tr.insertCell().textContent = fmt(v);
        }
      }
      return body;
    }));
  status(`${state.signature}: ${rows.length} cell-type rows in ${new Set(rows.map((r) => r.atlas)).size} atlas(es)`);
}

async function drawValidation(token) {
  if (!state.set) return;
  const names = await signatureNames();
  if (stale(token)) return;
  let note = "";
  let rows = [];
  try {
    const rho = await all("/validation/rho", { atlas: state.atlas, level: state.level, signature_set: state.set });
    if (stale(token)) return;
    const rep = rho.filter((r) => r.representative);
    rows = (rep.length ? rep : rho).filter((r) => r.rho !== null).sort((a, b) => b.rho - a.rho);
    const trace = { type: "bar", x: rows.map((r) => r.target), y: rows.map((r) => r.rho),
                    marker: { color: rows.map((r) => (r.fdr !== null && r.fdr < 0.05 ? "#2f5fb3" : "#9aa7bd")) },
                    error_y: { type: "data", symmetric: false, thickness: 1,
                               array: rows.map((r) => Math.max(0, (r.rho_ci_high ?? r.rho) - r.rho)),
                               arrayminus: rows.map((r) => Math.max(0, r.rho - (r.rho_ci_low ?? r.rho))) },
                    customdata: rows.map((r) => [r.gene, r.n_samples, r.fdr]),
                    hovertemplate: "%{x} (gene %{customdata[0]})<br>rho = %{y:.3f}<br>n = %{customdata[1]}, " +
                                   "FDR = %{customdata[2]:.2g}<extra></extra>" };
    $("rho-plot").hidden = false;
    await Plotly.react($("rho-plot"), [trace], {
      margin: { l: 60, r: 20, t: 40, b: 120 }, height: 380, xaxis: { tickangle: -60, automargin: true },
      yaxis: { title: { text: "Spearman rho (activity vs expression)" }, range: [-1, 1] },
      title: { text: `Validation: ${state.atlas} · ${state.level} · ${state.set} (dark: FDR < 0.05)`, font: { size: 14 } },
    }, PLOT_CONFIG);
    const div = $("rho-plot");
    if (!div.dataset.clicks) {
      div.dataset.clicks = "1";
      div.on("plotly_click", (ev) => { state.target = ev.points[0].x; state.targetGene = ""; render(); });
    }
    $("rho-plot").dataset.drawn = `${state.atlas}|${state.level}|${state.set}`;
    note = `${rows.length} targets with a rho; click a bar for its scatter.`;
  } catch (error) {
    if (error.status !== 404) throw error;
    Plotly.purge($("rho-plot"));
    $("rho-plot").hidden = true;
    note = error.message;
  }
  $("validation-note").textContent = note;
  if (!names.includes(state.target) && rows.length) state.target = rows[0].target;
  state.target = fill($("target"), names, state.target);
  $("target-gene").value = state.targetGene;
  writeHash();
  try {
    const points = await all(`/validation/scatter/${enc(state.atlas)}/${enc(state.level)}/${enc(state.set)}/${enc(state.target)}`,
                             { gene: state.targetGene || undefined });
    if (stale(token)) return;
    const types = [...new Set(points.map((p) => p.cell_type))];
    const traces = types.map((t, i) => {
      const part = points.filter((p) => p.cell_type === t);
      return { type: points.length > 5000 ? "scattergl" : "scatter", mode: "markers", name: t, x: part.map((p) => p.expression), y: part.map((p) => p.activity),
               text: part.map((p) => p.sample), marker: { size: 7, opacity: 0.8, color: COLORS[i % COLORS.length] },
               hovertemplate: "%{text} · " + t + "<br>expression %{x:.3g}<br>activity %{y:.3g}<extra></extra>" };
    });
    $("scatter-plot").hidden = false;
    await Plotly.react($("scatter-plot"), traces, {
      margin: { l: 60, r: 20, t: 40, b: 50 }, height: 420,
      xaxis: { title: { text: `${state.targetGene || "gene"} expression (log1p CPM)` } },
      yaxis: { title: { text: `${state.target} activity (z)` } },
      title: { text: `${state.target}: per sample × cell type`, font: { size: 14 } },
    }, PLOT_CONFIG);
    $("scatter-plot").dataset.drawn = `${state.atlas}|${state.level}|${state.set}|${state.target}`;
    status(`${state.target}: ${points.length} sample × cell type points`);
  } catch (error) {
    if (error.status !== 404) throw error;
    Plotly.purge($("scatter-plot"));
    $("scatter-plot").hidden = true;
    status(error.message, true);
  }
}

async function drawGene(token) {
  if (!state.gene) {
    status("Search a gene to see its expression.");
    return;
  }
  const path = `/expression/${enc(state.atlas)}/${enc(state.level)}`;
  const types = await all(path, { gene: state.gene });
  let samples = [];
  try {
    samples = await all(path, { gene: state.gene, by: "sample" });
  } catch (error) {
    if (error.status !== 404) throw error;
  }
  if (stale(token)) return;
  const traces = [{ type: "box", name: "samples", x: samples.map((r) => r.cell_type), y: samples.map((r) => r.value),
                    boxpoints: "all", jitter: 0.4, pointpos: 0, marker: { size: 4, color: "#9aa7bd" },
                    line: { color: "#5b6475" }, text: samples.map((r) => r.sample) },
                  { type: "scatter", mode: "markers", name: "cell-type pseudobulk", x: types.map((r) => r.cell_type),
                    y: types.map((r) => r.value), marker: { size: 11, symbol: "diamond", color: "#d1495b" } }];
  await Plotly.react($("gene-plot"), traces, {
    margin: { l: 60, r: 20, t: 40, b: 140 }, height: 480, xaxis: { tickangle: -45, automargin: true },
    yaxis: { title: { text: "log1p CPM" } }, boxmode: "overlay",
    title: { text: `${state.gene} in ${state.atlas} · ${state.level}`, font: { size: 14 } },
  }, PLOT_CONFIG);
  $("gene-plot").dataset.drawn = `${state.atlas}|${state.level}|${state.gene}`;
  status(`${state.gene}: ${types.length} cell types, ${samples.length} sample × cell type rows`);
}

// ---- search -----------------------------------------------------------------------------------------------------
let searchTimer = null;
let hits = [];
function onSearchInput() {
  clearTimeout(searchTimer);
  const q = $("search").value.trim();
  if (!q) return;
  searchTimer = setTimeout(async () => {
    try {
      hits = (await get("/search", { q, limit: 30 })).rows;
      $("search-hits").replaceChildren(...hits.map((h) => {
        const o = new Option(h.kind === "gene" ? `gene · ${h.atlases.join(", ")}` : `signature · ${h.signature_set}`, h.name);
        o.value = h.name;
        return o;
      }));
    } catch (error) {
      status(error.message, true);
    }
  }, 200);
}
async function onSearchSubmit(event) {
  event.preventDefault();
  const q = $("search").value.trim();
  if (!q) return;
  // a name that is both a gene and a signature (IFNG) opens the signature; the gene is in the suggestions
  const exact = (list) => {
    const same = list.filter((h) => h.name.toLowerCase() === q.toLowerCase());
    return same.find((h) => h.kind !== "gene") || same[0];
  };
  let hit = exact(hits);
  if (!hit) {
    const found = (await get("/search", { q, limit: 30 })).rows;
    hit = exact(found) || found[0];
  }
  if (!hit) {
    status(`nothing matches "${q}"`, true);
    return;
  }
  if (hit.kind === "gene") {
    state.gene = hit.name;
    state.view = "gene";
  } else {
    const level = levels.find((l) => l.level === state.level);
    if (level && level.signature_sets.includes(hit.signature_set)) {
      state.set = hit.signature_set;
      $("set").value = state.set;
    }
    state.signature = hit.name;
    state.view = "signature";
  }
  render();
}

// ---- per-cell activity: the embedding subsample coloured by z, and each label's cells summarised ---------------
// SVG markers, not scattergl: WebGL fails in headless and software-GL browsers (plotly then draws nothing), and
// the subsample is at most 50 k cells, which SVG draws in seconds
async function drawCells(token) {
  const sets = (await get("/cells")).rows.filter((r) => r.atlas === state.atlas);
  if (stale(token)) return;
  const entry = sets.find((r) => r.signature_set === state.set) ?? sets[0];
  if (!entry) {
    status(`No per-cell results for ${state.atlas}: run \`cytoatlas cells\`, then \`cytoatlas index\`.`, true);
    return;
  }
  const summary = await all(`/cells/${enc(entry.atlas)}/${enc(entry.signature_set)}/summary`, { level: state.level });
  if (stale(token)) return;
  const names = entry.embedding_signatures.length ? entry.embedding_signatures
    : [...new Set(summary.map((r) => r.signature))].sort();
  state.cellsSignature = fill($("cells-signature"), names, state.cellsSignature);
  writeHash();
  const sig = state.cellsSignature;
  if (entry.kinds.includes("embedding")) {
    const points = await all(`/cells/${enc(entry.atlas)}/${enc(entry.signature_set)}/embedding`, { signature: sig });
    if (stale(token)) return;
    const lim = Math.max(2, ...points.map((p) => Math.abs(p.z)).filter(Number.isFinite).sort((a, b) => a - b)
      .slice(Math.floor(points.length * 0.99)));
    await Plotly.react($("cells-embedding"), [{
      type: "scatter", mode: "markers", x: points.map((p) => p.x), y: points.map((p) => p.y),
      text: points.map((p) => `${p.cell} (${p.label ?? ""})`), customdata: points.map((p) => p.z),
      hovertemplate: "%{text}<br>z = %{customdata:.3g}<extra></extra>",
      marker: { size: 3, color: points.map((p) => p.z), colorscale: DIVERGING, cmin: -lim, cmax: lim,
                colorbar: { title: { text: "z" } } } }],
      { margin: { l: 40, r: 20, t: 40, b: 40 }, height: 520, xaxis: { showticklabels: false },
        yaxis: { showticklabels: false, scaleanchor: "x" },
        title: { text: `${sig} activity of ${points.length.toLocaleString()} cells (${entry.signature_set})`,
                 font: { size: 14 } } }, PLOT_CONFIG);
    $("cells-embedding").dataset.drawn = `${entry.signature_set}|${sig}|${points.length}`;
  } else {
    Plotly.purge($("cells-embedding"));
  }
  const rows = summary.filter((r) => r.signature === sig);
  await Plotly.react($("cells-summary"), [{
    type: "box", name: sig, x: rows.map((r) => r.label), q1: rows.map((r) => r.q25), median: rows.map((r) => r.q50),
    q3: rows.map((r) => r.q75), lowerfence: rows.map((r) => r.q05), upperfence: rows.map((r) => r.q95),
    mean: rows.map((r) => r.mean), marker: { color: COLORS[0] } }],
    { margin: { l: 60, r: 20, t: 40, b: 140 }, height: 420, xaxis: { tickangle: -45, automargin: true },
      yaxis: { title: { text: "per-cell z (5-25-50-75-95 %, mean)" }, zeroline: true },
      title: { text: `${sig} per ${state.level} label`, font: { size: 14 } } }, PLOT_CONFIG);
  status(`${sig}: ${rows.length} labels at ${state.level}; ` +
         `${rows.reduce((n, r) => n + r.n_cells, 0).toLocaleString()} cells`);
}

// ---- comparisons: pick a contrast, its volcano, and a point's effect in every atlas (forest) -------------------
let contrasts = [];
let volcano = { key: "", plot: null };  // the drawn comparison's volcano (the server's), kept for clicks
const SIGNIFICANT = 0.05;
const contrastKey = (c) => [c.analysis, c.by, c.contrast, c.atlas, c.level, c.signature_set].join("\u0001");
const contrastLabel = (c) => `${c.atlas} · ${c.level} · ${c.signature_set} — ${c.contrast} (${c.by}, ${c.analysis})`;

function currentContrast() {
  // the state's comparison, else one of the header's atlas / level / set, else of its atlas, else the first;
  // a differential one (a contrast of groups) before a covariate scan
  const want = contrastKey({ analysis: state.analysis, by: state.by, contrast: state.contrast, atlas: state.atlas,
                             level: state.level, signature_set: state.set });
  const find = (ok) => contrasts.find((c) => ok(c) && c.analysis === "differential") ?? contrasts.find(ok);
  return contrasts.find((c) => contrastKey(c) === want)
    ?? find((c) => c.atlas === state.atlas && c.level === state.level && c.signature_set === state.set)
    ?? find((c) => c.atlas === state.atlas) ?? find(() => true);
}

async function useContrast(c) {
  // the header follows the comparison (when the store has that atlas, level and set)
  Object.assign(state, { analysis: c.analysis, by: c.by, contrast: c.contrast });
  if (c.atlas !== state.atlas && atlases.some((a) => a.atlas === c.atlas)) {
    Object.assign(state, { atlas: c.atlas, level: c.level, set: c.signature_set });
    await chooseAtlas();
  } else if (c.level !== state.level || c.signature_set !== state.set) {
    Object.assign(state, { level: c.level, set: c.signature_set });
    chooseLevel();
  }
  Object.assign(state, { atlas: c.atlas, level: c.level, set: c.signature_set });
}

async function drawCompare(token) {
  try {
    contrasts = await all("/compare/contrasts");
  } catch (error) {
    if (error.status !== 404) throw error;
    contrasts = [];
  }
  if (stale(token)) return;
  if (!contrasts.length) {
    Plotly.purge($("compare-volcano"));
    Plotly.purge($("compare-forest"));
    $("compare-contrast").replaceChildren();
    status("No comparisons in the store: run `cytoatlas compare`, then `cytoatlas index`.", true);
    return;
  }
  const c = currentContrast();
  const select = $("compare-contrast");
  select.replaceChildren(...contrasts.map((x) => new Option(contrastLabel(x), contrastKey(x))));
  select.value = contrastKey(c);
  await useContrast(c);
  if (stale(token)) return;
  writeHash();
  const key = contrastKey(c);
  const where = { atlas: c.atlas, level: c.level, signature_set: c.signature_set, by: c.by, contrast: c.contrast };
  if (volcano.key !== key) {
    // the strongest points and a grid of counts of the others, not every row (80 k for a SecAct level)
    const plot = c.n_rows ? await get("/compare/volcano", { analysis: c.analysis, ...where, top: MAX_SVG_POINTS })
      : { n_rows: 0, n_drawable: 0, n_significant: 0, x_range: [0, 0], y_range: [0, 0], points: [],
          density: { bins: 1, n: 0, cells: [] } };
    if (stale(token)) return;
    volcano = { key, plot };
  }
  const plot = volcano.plot;
  const shown = plot.points;
  const y = (r) => -Math.log10(Math.max(r.pvalue, 1e-300));
  const significant = (r) => r.fdr !== null && r.fdr < SIGNIFICANT;
  const byFdr = (a, b) => (a.fdr ?? 2) - (b.fdr ?? 2) || a.pvalue - b.pvalue;
  // the point to open: the one clicked (in the state; asked for when it is not among the points), else the
  // smallest FDR
  const isPicked = (r) => r.cell_type === state.compareCellType && r.signature === state.compareSignature;
  let picked = shown.find(isPicked);
  if (!picked && state.compareCellType && state.compareSignature && plot.n_drawable > shown.length) {
    const one = await all(`/compare/${c.analysis}`, { ...where, cell_type: state.compareCellType,
                                                      signature: state.compareSignature }).catch(() => []);
    if (stale(token)) return;
    picked = one.find((r) => isPicked(r) && r.pvalue !== null && r.effect !== null);
  }
  picked = picked ?? [...shown].sort(byFdr)[0];
  const top = new Set([...shown].filter(significant).sort(byFdr).slice(0, 8));
  top.delete(picked);  // it has an arrow of its own
  const strongest = shown;
  // cross-talk beside the hit: correlated signatures also significant here ("also: IL27 (r 0.62), ..."), else
  // the correlated ones (compare's cross-talk columns; empty for comparisons written before them)
  const crosstalk = (r) => (r.also_significant ? `<br>also: ${r.also_significant}`
    : r.correlated ? `<br>correlated: ${r.correlated}` : "");
  const trace = (part, name, color) => ({
    type: HAS_WEBGL ? "scattergl" : "scatter", mode: "markers", name, x: part.map((r) => r.effect), y: part.map(y),
    customdata: part.map((r) => [r.cell_type, r.signature, r.fdr ?? NaN, r.pvalue, r.cl_name ?? "",
                                 crosstalk(r)]),
    hovertemplate: "%{customdata[1]} in %{customdata[0]}<br>effect = %{x:.3g}<br>p = %{customdata[3]:.2g}, " +
                   "FDR = %{customdata[2]:.2g}%{customdata[5]}<extra></extra>",
    marker: { size: 8, color, opacity: 0.85, line: { width: 0 } } });
  const traces = [trace(strongest.filter((r) => !significant(r)), `FDR ≥ ${SIGNIFICANT} or none`, "#9aa7bd"),
                  trace(strongest.filter(significant), `FDR < ${SIGNIFICANT}`, "#d1495b")];
  // extremes by a loop: spreading 80 k arguments into Math.max can overflow the stack
  const extreme = (values, pick, start) => values.reduce((m, v) => (Number.isFinite(v) ? pick(m, v) : m), start);
  const effects = [...shown.map((r) => r.effect), ...plot.x_range];  // the server's range covers every row
  const [lo, hi] = [extreme(effects, Math.min, 0), extreme(effects, Math.max, 0)];
  const xPad = 0.05 * (hi - lo || 1);
  const xRange = [lo - xPad, hi + xPad];
  const yRange = [0, 1.12 * extreme([...shown.map(y), plot.y_range[1]], Math.max, 1)];  // room for labels
  const images = plot.density.n ? [densityImage(plot.density, plot.x_range, plot.y_range, xRange, yRange)] : [];
  const xTitle = c.analysis === "association" ? `slope of activity z per unit of ${c.by}`
    : `effect: mean activity z difference (${c.contrast})`;
  const div = $("compare-volcano");
  // labels as annotations, not trace text: Plotly.react does not draw text added to a trace that had none
  const labels = [...top].map((r) => ({ x: r.effect, y: y(r), text: `${r.signature} (${r.cell_type})`,
                                        showarrow: false, yshift: 11, font: { size: 10, color: "#3d405b" } }));
  if (picked) {
    labels.push({ x: picked.effect, y: y(picked), text: `${picked.signature} (${picked.cell_type})`,
                  showarrow: true, arrowhead: 2, ax: 40, ay: -36, bgcolor: "#ffffff", bordercolor: COLORS[0],
                  font: { size: 11 } });
  }
  await Plotly.react(div, traces, {
    margin: { l: 60, r: 20, t: 40, b: 50 }, height: 460, hovermode: "closest", annotations: labels, images,
    xaxis: { title: { text: xTitle }, zeroline: true, range: xRange },
    yaxis: { title: { text: "-log10 p" }, range: yRange },
    title: { text: `${c.contrast} · ${c.atlas} · ${c.level} · ${c.signature_set} (${c.test ?? "not tested"})`,
             font: { size: 14 } } }, PLOT_CONFIG);
  div.dataset.drawn = `${c.analysis}|${c.atlas}|${c.level}|${c.signature_set}|${c.contrast}`;
  Object.assign(div.dataset, { renderer: HAS_WEBGL ? "webgl" : "canvas", points: String(plot.n_drawable),
                               svgPoints: String(strongest.length), rasterPoints: String(plot.density.n) });
  if (!div.dataset.clicks) {
    div.dataset.clicks = "1";
    div.on("plotly_click", (ev) => {
      const [cellType, signature] = ev.points[0].customdata;
      Object.assign(state, { compareCellType: cellType, compareSignature: signature });
      render();
    });
  }
  let note = "";
  if (c.n_untestable) {
    const untestable = await all("/compare/untestable", { atlas: c.atlas, level: c.level,
      signature_set: c.signature_set, analysis: c.analysis, by: c.by, contrast: c.contrast });
    if (stale(token)) return;
    note = "Not testable: " + untestable.map((u) => `${u.cell_type} (${u.reason})`).join("; ") + ".";
  }
  $("compare-note").textContent = note;
  status(`${c.contrast} in ${c.atlas} · ${c.level} · ${c.signature_set}: ${plot.n_rows} cell type × signature ` +
         `rows, ${plot.n_significant} with FDR < ${SIGNIFICANT}` +
         (plot.n_rows > plot.n_drawable ? `, ${plot.n_rows - plot.n_drawable} without a p-value (not drawn)` : "") +
         (plot.density.n ? `; the ${shown.length} strongest drawn as points, the other ${plot.density.n} as ` +
                           "their density" : "") +
         (c.n_untestable ? `; ${c.n_untestable} cell type(s) untestable` : ""));
  if (!picked) {
    Plotly.purge($("compare-forest"));
    return;
  }
  Object.assign(state, { compareCellType: picked.cell_type, compareSignature: picked.signature });
  writeHash();
  await drawForest(token, c, picked);
}

async function drawForest(token, c, picked) {
  // the pooled (meta-analysis) row at the finest Cell Ontology term the atlases share that holds this atlas'
  // label, and every atlas' labels pooled into it (the meta row's labels: "atlas: label+label; atlas: label")
  const where = { level: c.level, signature_set: c.signature_set, by: c.by, contrast: c.contrast,
                  signature: picked.signature };
  let rows = [picked];
  let pooled = null;
  const pooledLabels = (m) => new Set(m.labels.split("; ").flatMap((part) => {
    const at = part.indexOf(": ");
    return at < 0 ? [] : part.slice(at + 2).split("+").map((label) => `${part.slice(0, at)}\t${label}`);
  }));
  if (picked.cl_name) {
    // a comparison of one atlas (or a signature no other atlas has) has no meta rows: the filter then names
    // nothing and the API answers 404; the forest shows the atlas' own row
    const meta = await all("/compare/meta", { ...where, analysis: c.analysis, resolution: "fine" }).catch(() => []);
    if (stale(token)) return;
    pooled = meta.find((m) => pooledLabels(m).has(`${picked.atlas}\t${picked.cell_type}`)) ?? null;
    if (pooled) {
      const members = pooledLabels(pooled);
      const all_rows = await all(`/compare/${c.analysis}`, where);
      if (stale(token)) return;
      rows = all_rows.filter((r) => members.has(`${r.atlas}\t${r.cell_type}`));
    }
  }
  const label = (r) => `${r.atlas} · ${r.cell_type}`;
  const ci = (r, side) => (r[side] === null || r.effect === null ? 0 : Math.abs(r[side] - r.effect));
  const traces = [{
    type: "scatter", mode: "markers", name: "per atlas", x: rows.map((r) => r.effect), y: rows.map(label),
    error_x: { type: "data", symmetric: false, array: rows.map((r) => ci(r, "ci_high")),
               arrayminus: rows.map((r) => ci(r, "ci_low")), thickness: 1.5 },
    customdata: rows.map((r) => [r.atlas, r.pvalue, r.fdr ?? NaN, r.n_group ?? r.n, r.n_reference ?? NaN]),
    hovertemplate: "%{y}<br>effect = %{x:.3g}<br>p = %{customdata[1]:.2g}, FDR = %{customdata[2]:.2g}" +
                   "<extra></extra>",
    marker: { size: 10, symbol: "square", color: COLORS[0] } }];
  const name = pooled ? `pooled (DL, ${pooled.n_atlases} atlases)` : "";
  if (pooled) {
    traces.push({ type: "scatter", mode: "markers", name: "pooled", x: [pooled.effect], y: [name],
                  error_x: { type: "data", symmetric: false, array: [ci(pooled, "ci_high")],
                             arrayminus: [ci(pooled, "ci_low")], thickness: 2 },
                  customdata: [[pooled.pvalue, pooled.fdr ?? NaN, pooled.atlases]],
                  hovertemplate: "pooled over %{customdata[2]}<br>effect = %{x:.3g}<br>p = %{customdata[0]:.2g}, " +
                                 "FDR = %{customdata[1]:.2g}<extra></extra>",
                  marker: { size: 16, symbol: "diamond", color: COLORS[1] } });
  }
  const fmt = (v, d = 3) => (v === null || v === undefined ? "–" : +v.toPrecision(d));
  const what = pooled ? `${picked.signature} in ${pooled.cl_name}` : `${picked.signature} in ${picked.cell_type}`;
  const heterogeneity = pooled ? ` · τ² = ${fmt(pooled.tau2)}, I² = ${fmt(pooled.i2)} %`
    : " · no pooled estimate (one atlas)";
  await Plotly.react($("compare-forest"), traces, {
    margin: { l: 60, r: 20, t: 60, b: 50 }, height: Math.max(360, 48 * (rows.length + (pooled ? 1 : 0)) + 140),
    showlegend: false, xaxis: { title: { text: "effect (95 % CI)" }, zeroline: true },
    yaxis: { automargin: true, autorange: "reversed", type: "category" },
    title: { text: `${what} · ${c.contrast}${heterogeneity}`, font: { size: 14 } } }, PLOT_CONFIG);
  $("compare-forest").dataset.drawn = `${c.analysis}|${c.level}|${c.signature_set}|${c.contrast}|` +
    `${pooled ? pooled.cl_name : picked.cell_type}|${picked.signature}`;
}

// ---- wiring -----------------------------------------------------------------------------------------------------
async function main() {
  readHash();
  $("value").value = state.value;
  $("top").value = state.top;
  $("order").value = state.order;
  try {
    atlases = (await get("/atlases")).rows;
    if (atlases.length) {
      await chooseAtlas();
    } else {  // a store of comparisons alone still has its Compare tab
      const found = await get("/compare/contrasts", { limit: 1 }).catch(() => ({ total: 0 }));
      if (!found.total) {
        status("The store holds no atlas yet: run `cytoatlas index`.", true);
        return;
      }
      state.view = "compare";
    }
  } catch (error) {
    status(error.message, true);
    return;
  }
  $("atlas").addEventListener("change", async () => { state.atlas = $("atlas").value; await chooseAtlas(); render(); });
  $("level").addEventListener("change", () => { state.level = $("level").value; chooseLevel(); render(); });
  $("set").addEventListener("change", () => { state.set = $("set").value; render(); });
  $("value").addEventListener("change", () => { state.value = $("value").value; render(); });
  $("top").addEventListener("change", () => { state.top = $("top").value; render(); });
  $("order").addEventListener("change", () => { state.order = $("order").value; render(); });
  $("signature").addEventListener("change", () => { state.signature = $("signature").value; render(); });
  $("signature-level").addEventListener("change", () => { state.signatureLevel = $("signature-level").value; render(); });
  $("target").addEventListener("change", () => { state.target = $("target").value; state.targetGene = ""; render(); });
  $("target-gene").addEventListener("change", () => { state.targetGene = $("target-gene").value.trim(); render(); });
  $("cells-signature").addEventListener("change", () => { state.cellsSignature = $("cells-signature").value; render(); });
  $("compare-contrast").addEventListener("change", async () => {
    const c = contrasts.find((x) => contrastKey(x) === $("compare-contrast").value);
    if (c) {
      Object.assign(state, { compareCellType: "", compareSignature: "" });
      await useContrast(c);
    }
    render();
  });
  $("search").addEventListener("input", onSearchInput);
  $("search-form").addEventListener("submit", (e) => onSearchSubmit(e).catch((err) => status(err.message, true)));
  for (const b of document.querySelectorAll("nav button")) {
    b.addEventListener("click", () => { state.view = b.dataset.view; render(); });
  }
  render();
}

main();
