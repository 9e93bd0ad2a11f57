// Runs, continued: group-by with mean ± std (aggregated on the server,
// /v1/runs:groups), the compare page's parallel coordinates and
// param-vs-metric scatter, and tuning studies (best score by trial).
import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import { get, enc } from "../api.js";
import { html, fmt, useLoad, Loading, Table, list } from "../ui.js";

const PALETTE = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#2c7a7b", "#975a16", "#4a5568"];
const num = (v) => typeof v === "number" && Number.isFinite(v);

function qs(params) {
  const parts = Object.entries(params).filter(([, v]) => v !== "" && v !== undefined && v !== null)
    .map(([k, v]) => `${enc(k)}=${enc(v)}`);
  return parts.length ? "?" + parts.join("&") : "";
}

// Mean ± std per group as dots with whiskers (SVG): one row per group.
function MeanStd({ groups, metric }) {
  const rows = groups.filter((g) => g.metrics && g.metrics[metric]);
  if (rows.length === 0) return null;
  const lo = Math.min(...rows.map((g) => g.metrics[metric].mean - g.metrics[metric].std));
  const hi = Math.max(...rows.map((g) => g.metrics[metric].mean + g.metrics[metric].std));
  const span = hi - lo || 1;
  const W = 520, L = 150, R = 20, H = 22 * rows.length + 30;
  const x = (v) => L + ((v - lo) / span) * (W - L - R);
  return html`<figure class="chart meanstd"><figcaption>${metric}: mean ± std by group</figcaption>
    <svg width=${W} height=${H} role="img" aria-label=${`${metric} mean and standard deviation by group`}>
      ${rows.map((g, i) => {
        const s = g.metrics[metric], y = 16 + i * 22;
        return html`<g key=${g.label}><text x=${L - 8} y=${y + 4} text-anchor="end">${g.label}</text>
          <line class="whisker" x1=${x(s.mean - s.std)} x2=${x(s.mean + s.std)} y1=${y} y2=${y} />
          <circle cx=${x(s.mean)} cy=${y} r="4" /></g>`;
      })}
      <text x=${L} y=${H - 4}>${fmt(lo)}</text><text x=${W - R} y=${H - 4} text-anchor="end">${fmt(hi)}</text>
    </svg></figure>`;
}

// Group-by on the runs list: any parameter (or model, kind) of the filters'
// runs, every metric's mean ± std per group, computed on the server.
export function GroupBy({ filters, columns }) {
  const params = columns.filter((c) => c.startsWith("params."));
  const metrics = columns.filter((c) => c.startsWith("metrics.")).map((c) => c.slice(8)).slice(0, 8);
  const [by, setBy] = useState("");
  const state = useLoad(() => (by ? get("/v1/runs:groups" + qs({ by, model: filters.model, kind: filters.kind,
    metrics: metrics.join(",") })) : Promise.resolve({ ok: true, data: null })), [by, filters.model, filters.kind, metrics.join(",")]);
  return html`<details class="group-by" open=${by !== ""}><summary>Group by a parameter (mean ± std of every metric)</summary>
    <label>Group by <select name="group-by" value=${by} onChange=${(e) => setBy(e.target.value)}>
      <option value="">—</option>
      ${[...params, "model", "kind"].map((c) => html`<option value=${c}>${c.replace(/^params\./, "param ")}</option>`)}
    </select></label>
    ${by ? html`<${Loading} state=${state}>${(d) => d && html`
      <p class="muted">${d.runs} runs in ${list(d.groups).length} groups${d.without ? `, ${d.without} without ${by}` : ""}${
        d.left_out ? `, ${d.left_out} in smaller groups left out` : ""}; numbers grouped at 3 significant digits</p>
      <${Table} caption=${`Runs by ${by}`} className="groups" rows=${list(d.groups)} rowKey=${(g) => g.label} columns=${[
        { key: "label", label: by, value: (g) => g.label },
        { key: "count", label: "Runs", num: true, value: (g) => g.count },
        ...list(d.metrics).map((m) => ({ key: m, label: `${m} mean ± std`, num: true,
          value: (g) => (g.metrics && g.metrics[m] ? `${fmt(g.metrics[m].mean)} ± ${fmt(g.metrics[m].std)} (n ${g.metrics[m].n})` : null) })),
      ]} />
      ${list(d.metrics).slice(0, 2).map((m) => html`<${MeanStd} groups=${list(d.groups)} metric=${m} />`)}`}<//>` : null}
  </details>`;
}

// An axis of the parallel coordinates: numbers on a linear scale,
// anything else spread over its distinct values.
function axisOf(name, values) {
  const nums = values.filter(num);
  if (nums.length === values.filter((v) => v !== null && v !== undefined).length && nums.length > 0) {
    const lo = Math.min(...nums), hi = Math.max(...nums);
    return { name, pos: (v) => (num(v) ? (hi === lo ? 0.5 : (v - lo) / (hi - lo)) : null), lo: fmt(lo), hi: fmt(hi) };
  }
  const cats = [...new Set(values.filter((v) => v !== null && v !== undefined).map(String))].sort();
  return { name, pos: (v) => (v === null || v === undefined ? null : cats.length === 1 ? 0.5 : cats.indexOf(String(v)) / (cats.length - 1)),
           lo: cats[0], hi: cats[cats.length - 1] };
}

// Parallel coordinates (SVG): one axis per parameter that differs and per
// metric, one line per run.
export function ParallelCoords({ d, differ }) {
  const axes = [
    ...Object.keys(d.params).sort().filter((k) => differ.has("params." + k)).map((k) => axisOf(k, d.params[k])),
    ...Object.keys(d.metrics).sort().filter((k) => k !== "rows" && d.metrics[k].some(num)).map((k) => axisOf(k, d.metrics[k])),
  ].slice(0, 12);
  if (axes.length < 2) return html`<p class="muted">Parallel coordinates need two parameters or metrics that vary.</p>`;
  const values = (name, i) => (name in d.params && differ.has("params." + name) ? d.params[name][i] : d.metrics[name][i]);
  const W = Math.max(480, 110 * axes.length), H = 280, T = 44, B = 40;
  const x = (j) => 50 + (j * (W - 100)) / (axes.length - 1);
  const y = (p) => T + (1 - p) * (H - T - B);
  return html`<figure class="chart parallel"><figcaption>Parallel coordinates: ${d.runs.length} runs</figcaption>
    <svg width=${W} height=${H} role="img" aria-label="parallel coordinates of the compared runs">
      ${axes.map((a, j) => html`<g key=${a.name}><line class="axis" x1=${x(j)} x2=${x(j)} y1=${T} y2=${H - B} />
        <text x=${x(j)} y=${T - 24} text-anchor="middle" class="axis-name">${a.name}</text>
        <text x=${x(j)} y=${T - 8} text-anchor="middle">${a.hi}</text>
        <text x=${x(j)} y=${H - B + 14} text-anchor="middle">${a.lo}</text></g>`)}
      ${d.runs.map((r, i) => {
        const pts = axes.map((a, j) => [x(j), a.pos(values(a.name, i))]).filter((p) => p[1] !== null);
        return html`<polyline class="run-line" key=${r.id} stroke=${PALETTE[i % PALETTE.length]}
          points=${pts.map((p) => `${p[0]},${y(p[1])}`).join(" ")}><title>${r.id}</title></polyline>`;
      })}
    </svg>
    <div class="legend">${d.runs.map((r, i) => html`<span><span class="swatch" style=${{ background: PALETTE[i % PALETTE.length] }}></span>${r.id}</span>`)}</div>
  </figure>`;
}

// A scale's range with 5 % room on each side, so no point sits on the frame.
function padded(u, min, max) {
  const room = (max - min) * 0.05 || Math.abs(min) * 0.05 || 1;
  return [min - room, max + room];
}

// A scatter (uPlot, points only) of one parameter against one metric.
function Scatter({ title, points, xLabel, yLabel }) {
  const ref = useRef(null);
  useEffect(() => {
    const el = ref.current;
    if (!el || points.length === 0) return undefined;
    const sorted = points.slice().sort((a, b) => a[0] - b[0]);
    const plot = new uPlot({
      width: Math.max(320, Math.min(el.clientWidth || 640, 720)), height: 240, legend: { show: false },
      scales: { x: { time: false, range: padded }, y: { range: padded } }, axes: [{ label: xLabel }, { label: yLabel }],
      series: [{}, { label: yLabel, stroke: PALETTE[0], paths: () => null, points: { show: true, size: 7, fill: PALETTE[0] } }],
    }, [sorted.map((p) => p[0]), sorted.map((p) => p[1])], el);
    return () => plot.destroy();
  }, [JSON.stringify(points), xLabel, yLabel]);
  return html`<figure class="chart scatter"><figcaption>${title}</figcaption><div ref=${ref} class="chart-box"></div></figure>`;
}

// Param-vs-metric scatter over runs (a list of run records), with its table.
export function ParamScatter({ runs }) {
  const params = [...new Set(runs.flatMap((r) => Object.keys(r.params || {}).filter((k) => num(r.params[k]))))].sort();
  const metrics = [...new Set(runs.flatMap((r) => Object.keys(r.metrics || {}).filter((k) => num(r.metrics[k]) && k !== "rows")))].sort();
  const [p, setP] = useState(params[0] || "");
  const [m, setM] = useState(metrics[0] || "");
  if (!params.length || !metrics.length) return null;
  const px = params.includes(p) ? p : params[0], my = metrics.includes(m) ? m : metrics[0];
  const rows = runs.filter((r) => num((r.params || {})[px]) && num((r.metrics || {})[my]));
  return html`<section class="param-scatter"><h3>Parameter against metric</h3>
    <form class="filters" onSubmit=${(e) => e.preventDefault()}>
      <label>Parameter <select name="scatter-param" value=${px} onChange=${(e) => setP(e.target.value)}>
        ${params.map((k) => html`<option value=${k}>${k}</option>`)}</select></label>
      <label>Metric <select name="scatter-metric" value=${my} onChange=${(e) => setM(e.target.value)}>
        ${metrics.map((k) => html`<option value=${k}>${k}</option>`)}</select></label></form>
    <${Scatter} title=${`${my} against ${px} (${rows.length} runs)`} xLabel=${px} yLabel=${my}
      points=${rows.map((r) => [r.params[px], r.metrics[my]])} />
    <details><summary>The scatter's table</summary><${Table} caption=${`${my} against ${px}`} rows=${rows} rowKey=${(r) => r.id}
      columns=${[{ key: "id", label: "Run", render: (r) => html`<a href=${"#/runs/" + enc(r.id)}>${r.id}</a>` },
                 { key: "x", label: px, num: true, value: (r) => r.params[px] },
                 { key: "y", label: my, num: true, value: (r) => r.metrics[my] }]} /></details>
  </section>`;
}

export function StudyList() {
  const [offset, setOffset] = useState(0);
  const state = useLoad(() => get(`/v1/studies?limit=50&offset=${offset}`), [offset]);
  return html`<p><a href="#/runs">← Runs</a></p><h2>Tuning studies</h2>
    <p class="muted">Each tune or AutoML search: its trials share a study.</p>
    <${Loading} state=${state}>${(d) => html`<${Table} caption=${`${d.total} studies`} rows=${list(d.studies)}
      rowKey=${(s) => s.study} className="studies" columns=${[
        { key: "study", label: "Study", render: (s) => html`<a href=${"#/runs/studies/" + enc(s.study)}>${s.study}</a>` },
        { key: "model", label: "Model", value: (s) => s.model },
        { key: "trials", label: "Trials", num: true, value: (s) => s.trials },
        { key: "metric", label: "Metric", value: (s) => s.metric },
        { key: "best", label: "Best", num: true, value: (s) => s.best },
        { key: "at", label: "Last trial", value: (s) => (s.at || "").replace("T", " ").slice(0, 19) },
      ]} />
      <nav class="pager"><button disabled=${offset === 0} onClick=${() => setOffset(Math.max(0, offset - 50))}>← Newer</button>
        <button disabled=${offset + 50 >= d.total} onClick=${() => setOffset(offset + 50)}>Older →</button></nav>`}<//>`;
}

// Best score so far (line) and each trial's score (points) by trial.
function Progress({ trials, metric }) {
  const ref = useRef(null);
  useEffect(() => {
    const el = ref.current;
    if (!el || trials.length === 0) return undefined;
    const plot = new uPlot({
      width: Math.max(320, Math.min(el.clientWidth || 720, 960)), height: 260,
      scales: { x: { time: false } }, axes: [{ label: "trial" }, { label: metric }],
      series: [{ label: "trial" },
        { label: "best so far", stroke: PALETTE[0], width: 2, points: { show: false } },
        { label: "trial score", stroke: PALETTE[1], paths: () => null, points: { show: true, size: 6, fill: PALETTE[1] } }],
    }, [trials.map((t) => t.n), trials.map((t) => t.best ?? null), trials.map((t) => t.score ?? null)], el);
    return () => plot.destroy();
  }, [trials.length, metric]);
  return html`<figure class="chart study-progress"><figcaption>${metric}: best so far by trial</figcaption>
    <div ref=${ref} class="chart-box"></div></figure>`;
}

export function StudyView({ id }) {
  const state = useLoad(() => get("/v1/studies/" + enc(id)), [id]);
  return html`<p><a href="#/runs/studies">← Studies</a></p><${Loading} state=${state}>${(s) => html`
    <h2>Study ${s.study} <small>${s.model}</small></h2>
    <dl class="kv"><dt>Trials</dt><dd>${s.total}${s.total > s.trials.length ? ` (the first ${s.trials.length} shown)` : ""}</dd>
      <dt>Metric</dt><dd>${s.metric} (${s.higher_is_better ? "higher" : "lower"} is better)</dd>
      <dt>Best</dt><dd>${s.best ? html`${fmt(s.best.score)} at trial ${s.best.n}${s.best.family ? ` (${s.best.family})` : ""}: <a
        href=${"#/runs/" + enc(s.best.id)}>${s.best.id}</a>` : "–"}</dd></dl>
    <${Progress} trials=${list(s.trials)} metric=${s.metric} />
    <${Table} caption="Trials in the order they ran" className="trials" rows=${list(s.trials)} rowKey=${(t) => t.id} columns=${[
      { key: "n", label: "#", num: true, value: (t) => t.n },
      { key: "id", label: "Run", render: (t) => html`<a href=${"#/runs/" + enc(t.id)}>${t.id}</a>` },
      { key: "family", label: "Family", value: (t) => t.family },
      { key: "score", label: s.metric, num: true, value: (t) => t.score },
      { key: "best", label: "Best so far", num: true, value: (t) => t.best },
      { key: "seconds", label: "Seconds", num: true, value: (t) => t.seconds },
      { key: "params", label: "Parameters", value: (t) => Object.entries(t.params || {}).map(([k, v]) => `${k}=${fmt(v)}`).join(", ") },
    ]} />`}<//>`;
}
