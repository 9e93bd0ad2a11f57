// Experiments (like GrowthBook): the list with status; one experiment's
// variant table with the sample-ratio banner, its cumulative lift with the
// interval over time, traffic per day, a bandit's allocation over time
// (server-computed from hourly counters: GET /v1/experiments/{name}/timeline),
// and Stop / Declare winner (need the token).
import { useState } from "preact/hooks";
import { get, post, enc, hasToken } from "../api.js";
import { html, fmt, day, useLoad, Loading, Table, Chart, SeriesChart, list } from "../ui.js";

const WINDOWS = ["7d", "30d", "90d", "365d"];

export function ExperimentList() {
  const state = useLoad(() => get("/v1/experiments"), []);
  return html`<h2>Experiments</h2><${Loading} state=${state}>${(data) => list(data.experiments).length === 0
    ? html`<p>No experiment in this home.</p>`
    : html`<${Table} rows=${data.experiments} rowKey=${(e) => e.name} columns=${[
      { key: "name", label: "Experiment", render: (e) => html`<a href=${"#/experiments/" + enc(e.name)}>${e.name}</a>` },
      { key: "kind", label: "Kind", value: (e) => e.kind }, { key: "status", label: "Status", value: (e) => e.status },
      { key: "unit", label: "Unit", value: (e) => e.unit }, { key: "metric", label: "Metric", value: (e) => e.metric },
      { key: "variants", label: "Variants", num: true, value: (e) => e.variants },
    ]} />`}<//>`;
}

// Stop (every unit then gets the declared winner, else the control) or
// declare a winner (stops too, every unit gets it).
function Actions({ r, onDone }) {
  const [winner, setWinner] = useState(r.variants[0].name);
  const [result, setResult] = useState(null);
  const [busy, setBusy] = useState(false);
  const act = async (body) => {
    setBusy(true);
    const res = await post(`/v1/experiments/${enc(r.name)}:stop`, body);
    setBusy(false);
    setResult(res);
    if (res.ok) onDone();
  };
  return html`<section class="actions"><h3>Stop or declare a winner</h3>
    ${hasToken() ? null : html`<p class="muted">Type the server's token at the top: without it the server refuses.</p>`}
    <form onSubmit=${(e) => e.preventDefault()}>
      <button id="stop" disabled=${busy} onClick=${() => act({})}>Stop</button>
      <label>Winner <select name="winner" value=${winner} onChange=${(e) => setWinner(e.target.value)}>
        ${r.variants.map((v) => html`<option value=${v.name}>${v.name}</option>`)}</select></label>
      <button id="declare" disabled=${busy} onClick=${() => act({ winner })}>Declare winner</button></form>
    ${result ? (result.ok
      ? html`<p class="ok" role="status">${r.name} is ${result.data.status}: every unit now gets ${result.data.winner}.</p>`
      : html`<p class="error" role="alert"><strong>${result.status} ${result.error.code}</strong>: ${result.error.message}</p>`)
      : null}
  </section>`;
}

function Variants({ r }) {
  return html`<${Table} caption="Variants" className="variants" rows=${r.variants} rowKey=${(v) => v.name} columns=${[
      { key: "name", label: "Variant", value: (v) => v.name + (v.control ? " (control)" : "") },
      { key: "model", label: "Model", value: (v) => v.model }, { key: "weight", label: "Weight", num: true, value: (v) => v.weight },
      { key: "units", label: "Units", num: true, value: (v) => v.units },
      { key: "mean", label: "Mean", num: true, value: (v) => v.mean },
      { key: "ci", label: "95 % CI", value: (v) => v.ci },
      { key: "lift", label: "Lift %", num: true, value: (v) => (typeof v.lift === "number" ? v.lift * 100 : null) },
      { key: "p", label: "p-value", num: true, value: (v) => v.p_value },
      { key: "beat", label: "P(beat control)", num: true, value: (v) => v.prob_beat_control },
      { key: "loss", label: "Expected loss", num: true, value: (v) => v.expected_loss },
    ]} />
    <${Chart} title="Mean by variant (table above)" bars=${true} xs=${r.variants.map((_, i) => i + 1)}
      series=${[{ label: "mean", values: r.variants.map((v) => v.mean) }]} xLabel="variant (table order)" yLabel="mean" />`;
}

const pct = (xs) => list(xs).map((x) => (typeof x === "number" ? x * 100 : null));

function Timeline({ name, bandit }) {
  const [win, setWin] = useState("30d");
  const state = useLoad(() => get(`/v1/experiments/${enc(name)}/timeline?window=${enc(win)}&buckets=60`), [name, win]);
  return html`<section class="timeline"><h3>Over time</h3>
    <form class="filters" onSubmit=${(e) => e.preventDefault()}>
      <label>Window <select name="timeline-window" value=${win} onChange=${(e) => setWin(e.target.value)}>
        ${WINDOWS.map((w) => html`<option value=${w}>${w}</option>`)}</select></label></form>
    <${Loading} state=${state}>${(tl) => {
      const t = list(tl.slices.t);
      const vs = list(tl.slices.variants);
      // Each variant in its colour of the other charts; its interval dashed.
      const lift = vs.flatMap((v, i) => (i === 0 ? [] : [{ label: `${v.name} lift %`, values: pct(v.lift), color: i },
        { label: `${v.name} CI low`, values: pct(v.lift_lo), color: i, dash: true },
        { label: `${v.name} CI high`, values: pct(v.lift_hi), color: i, dash: true }]));
      const days = list(tl.days.day).map((d) => Date.parse(d + "T12:00:00Z") / 1000);
      return html`<p class="muted">${tl.from} .. ${tl.to}, slices of ${fmt(tl.slice_seconds / 3600)} h</p>
        <div class="columns charts">
          <div>${lift.some((sr) => sr.values.some((x) => x !== null))
            ? html`<${SeriesChart} title="Cumulative lift over the control, with its 95 % interval (%)" t=${t}
                yLabel="lift %" series=${lift} />`
            : html`<p class="muted">No lift yet: it needs units in every variant and a control mean other than 0.</p>`}</div>
          <div><${SeriesChart} title="Traffic per day: new units" t=${days} yLabel="units" when=${day}
            series=${list(tl.days.variants).map((v) => ({ label: v.name, values: list(v.units) }))} /></div>
          ${bandit ? html`<div><${SeriesChart} title="Bandit allocation: share of new units per slice" t=${t} yLabel="share"
            series=${vs.map((v) => ({ label: v.name, values: list(v.share) }))} /></div>` : null}
        </div>`;
    }}<//></section>`;
}

export function ExperimentView({ name }) {
  const [tick, setTick] = useState(0);
  const state = useLoad(() => get("/v1/experiments/" + enc(name)), [name, tick]);
  return html`<p><a href="#/experiments">← Experiments</a></p><${Loading} state=${state}>${(doc) => {
    const r = { ...doc, variants: list(doc.variants) };
    return html`
    <h2>Experiment ${r.name} <small class="status">${r.kind}, ${r.status}${r.winner ? ", winner " + r.winner : ""}</small></h2>
    ${typeof r.srm_p_value === "number" && r.srm_p_value < 0.001 ? html`<div class="banner srm" role="alert">Sample-ratio
      mismatch (p = ${fmt(r.srm_p_value)}): the split is not what was asked; do not trust the results.</div>` : null}
    ${r.status === "stopped" ? html`<div class="banner">Stopped ${fmt(r.stopped_at)}: every unit gets ${r.winner}.</div>` : null}
    <p class="muted">Unit ${r.unit}, metric ${r.metric} (${r.metric_type}); started ${fmt(r.started_at)}.</p>
    <${Variants} r=${r} />
    <${Timeline} name=${r.name} bandit=${r.kind !== "ab"} />
    <${Actions} r=${r} onDone=${() => setTick((t) => t + 1)} />`;
  }}<//>`;
}
