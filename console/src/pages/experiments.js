// Experiments: the list with status, and one experiment's variant table.
import { get, enc } from "../api.js";
import { html, fmt, useLoad, Loading, Table, Chart, list } from "../ui.js";

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

export function ExperimentView({ name }) {
  const state = useLoad(() => get("/v1/experiments/" + enc(name)), [name]);
  return html`<p><a href="#/experiments">← Experiments</a></p><${Loading} state=${state}>${(doc) => { const r = { ...doc, variants: list(doc.variants) }; return html`
    <h2>Experiment ${r.name} <small>${r.kind}, ${r.status}${r.winner ? ", winner " + r.winner : ""}</small></h2>
    ${typeof r.srm_p_value === "number" && r.srm_p_value < 0.001 ? html`<div class="banner" role="alert">Sample-ratio
      mismatch (p = ${fmt(r.srm_p_value)}): the split is not what was asked; do not trust the results.</div>` : null}
    <p class="muted">Unit ${r.unit}, metric ${r.metric} (${r.metric_type}); started ${fmt(r.started_at)}.</p>
    <${Table} caption="Variants" rows=${r.variants} rowKey=${(v) => v.name} columns=${[
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
      series=${[{ label: "mean", values: r.variants.map((v) => v.mean) }]} xLabel="variant (table order)" yLabel="mean" />`; }}<//>`;
}
