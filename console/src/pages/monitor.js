// Monitoring (like Evidently): per hosted model version, volume, errors and
// p50 / p99 latency over the window, and the drift table sorted by PSI with
// reference-vs-live histograms per feature and for the output. The server
// aggregates (GET /v1/monitor/{model}): the page never receives raw rows.
import { useState } from "preact/hooks";
import { get, enc } from "../api.js";
import { html, fmt, useLoad, Loading, Table, Chart, SeriesChart, list } from "../ui.js";

const WINDOWS = ["15m", "1h", "6h", "24h", "7d"];

export function MonitorList() {
  const state = useLoad(() => get("/v1/registry/models"), []);
  return html`<h2>Monitoring</h2><p class="muted">Pick a model: its hosted versions' traffic, latency, errors and drift.</p>
    <${Loading} state=${state}>${(data) => html`<${Table} caption="Models" rows=${list(data.models)}
      rowKey=${(m) => m.name} columns=${[
        { key: "name", label: "Model", render: (m) => html`<a href=${"#/monitor/" + enc(m.name)}>${m.name}</a>` },
        { key: "aliases", label: "Aliases", value: (m) => Object.keys(m.aliases || {}).sort()
          .map((a) => `${a} → ${m.aliases[a]}`).join(", ") || "–" },
      ]} />`}<//>`;
}

function Histogram({ name, d }) {
  const h = d && d.histogram;
  if (!h) return html`<p class="muted">No reference histogram for ${name}.</p>`;
  const ref = list(h.reference), live = list(h.live);
  const refN = ref.reduce((a, b) => a + b, 0) || 1, liveN = live.reduce((a, b) => a + b, 0) || 1;
  const edges = list(h.edges);
  const bins = ref.map((_, i) => ({
    bin: i + 1,
    range: `${i === 0 ? "−∞" : fmt(edges[i - 1])} .. ${i < edges.length ? fmt(edges[i]) : "+∞"}`,
    ref: ref[i] / refN, live: (live[i] || 0) / liveN,
  }));
  return html`<${Chart} title=${`${name}: reference vs live (share per bin)`} xs=${bins.map((b) => b.bin)} bars=${true}
      series=${[{ label: "reference", values: bins.map((b) => b.ref) }, { label: "live", values: bins.map((b) => b.live) }]}
      xLabel="bin" yLabel="share" />
    <${Table} caption=${`${name}: bins`} rows=${bins} className="histogram" columns=${[
      { key: "bin", label: "Bin", num: true, value: (b) => b.bin },
      { key: "range", label: "Range", value: (b) => b.range },
      { key: "ref", label: "Reference share", num: true, value: (b) => b.ref },
      { key: "live", label: "Live share", num: true, value: (b) => b.live },
    ]} />`;
}

function DriftState(d) {
  if (!d) return "–";
  if (d.status) return d.status;
  return d.drifted ? "DRIFT" : "stable";
}

function VersionPanel({ v }) {
  const features = list(v.drift.features);
  const [picked, setPicked] = useState(features.length ? features[0].feature : "(output)");
  const s = v.series;
  const t = list(s.t);
  const rows = [{ feature: "(output)", ...(v.drift.output || {}) }, ...features];
  const shown = rows.find((r) => r.feature === picked) || rows[0];
  return html`<section class="version-panel"><h3>Version ${v.version} <small>${v.role}</small></h3>
    ${v.error ? html`<p class="banner">${v.error}</p>` : null}
    <dl class="kv"><dt>Predictions</dt><dd>${fmt(v.volume)}</dd><dt>Errors</dt><dd>${fmt(v.errors)}
      (${v.volume ? fmt(v.errors / v.volume) : "–"})</dd>
      <dt>Latency p50 / p99</dt><dd>${fmt(v.latency_ms.p50)} / ${fmt(v.latency_ms.p99)} ms</dd>
      <dt>Outcomes joined</dt><dd>${fmt(v.outcomes)}</dd>
      ${v.metrics ? Object.keys(v.metrics).sort().map((k) => html`<dt>${k} (online)</dt><dd>${fmt(v.metrics[k])}</dd>`) : null}
      <dt>Drift</dt><dd>max PSI ${fmt(v.drift.psi_max)} over ${fmt(v.drift.samples)} sampled inputs; drifted:
        ${list(v.drift.drifted).join(", ") || "none"}</dd></dl>
    <div class="columns charts">
      <div><${SeriesChart} title="Volume and errors" t=${t} yLabel="per slice"
        series=${[{ label: "predictions", values: list(s.volume) }, { label: "errors", values: list(s.errors) }]} /></div>
      <div><${SeriesChart} title="Latency (ms)" t=${t} yLabel="ms"
        series=${[{ label: "p50", values: list(s.p50_ms) }, { label: "p99", values: list(s.p99_ms) }]} /></div>
    </div>
    <${Table} caption="Drift, most drifted first (pick a row for its histogram)" rows=${rows} rowKey=${(r) => r.feature}
      className="drift" columns=${[
        { key: "feature", label: "Feature", render: (r) => html`<button class="link" aria-pressed=${r.feature === shown.feature}
          onClick=${() => setPicked(r.feature)}>${r.feature}</button>` },
        { key: "psi", label: "PSI", num: true, value: (r) => r.psi },
        { key: "ks", label: "KS", num: true, value: (r) => r.ks },
        { key: "p", label: "KS p-value", num: true, value: (r) => r.ks_p_value },
        { key: "samples", label: "Samples", num: true, value: (r) => r.samples },
        { key: "state", label: "State", render: (r) => html`<span class=${r.drifted ? "tag drift" : "tag"}>${DriftState(r)}</span>` },
      ]} />
    <${Histogram} name=${shown.feature} d=${shown} />
  </section>`;
}

export function MonitorView({ name }) {
  const [win, setWin] = useState("1h");
  const state = useLoad(() => get(`/v1/monitor/${enc(name)}?window=${enc(win)}&buckets=60`), [name, win]);
  return html`<p><a href="#/monitor">← Monitoring</a></p><h2>Monitoring ${name}</h2>
    <form class="filters" onSubmit=${(e) => e.preventDefault()}>
      <label>Window <select name="window" value=${win} onChange=${(e) => setWin(e.target.value)}>
        ${WINDOWS.map((w) => html`<option value=${w}>${w}</option>`)}</select></label></form>
    <${Loading} state=${state}>${(m) => html`<p class="muted">${m.from} .. ${m.to}, slices of ${fmt(m.bucket_seconds)} s
        ${m.truncated ? ` (drift and online metrics from ${m.sampled_from} on)` : ""}</p>
      ${list(m.versions).length === 0 ? html`<p>No predictions in the window.</p>`
        : list(m.versions).map((v) => html`<${VersionPanel} key=${v.version + v.role} v=${v} />`)}`}<//>`;
}
