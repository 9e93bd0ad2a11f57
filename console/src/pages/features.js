// Features: one view's schema, freshness and per-feature statistics with
// histograms, its lineage and its duplicates (the list of views, searched
// across teams, is feature_search.js).
import { useState } from "preact/hooks";
import { get, enc } from "../api.js";
import { html, fmt, seconds, useLoad, Loading, Table, Chart, list } from "../ui.js";
import { Lineage, ValueDuplicates } from "./feature_lineage.js";

function Histogram({ feature }) {
  const hist = feature.histogram;
  if (!hist || !hist.counts) return html`<p class="muted">No histogram for ${feature.name} (not numeric, or no values yet).</p>`;
  const edges = hist.edges;
  const xs = hist.counts.map((_, i) => (edges[i] + edges[i + 1]) / 2);
  const rows = hist.counts.map((c, i) => ({ lo: edges[i], hi: edges[i + 1], count: c }));
  return html`<div class="histogram">
    <${Chart} title=${`Histogram of ${feature.name}`} xs=${xs} series=${[{ label: "values", values: hist.counts }]}
      bars=${true} xLabel=${feature.name} yLabel="count" />
    <${Table} caption=${`Bins of ${feature.name} (below the first: ${hist.below || 0}, above the last: ${hist.above || 0})`}
      rows=${rows} columns=${[
        { key: "lo", label: "From", num: true, value: (r) => r.lo },
        { key: "hi", label: "To", num: true, value: (r) => r.hi },
        { key: "count", label: "Count", num: true, value: (r) => r.count },
      ]} />
  </div>`;
}

export function FeatureView({ name }) {
  const state = useLoad(() => get("/v1/features/" + enc(name)), [name]);
  const [picked, setPicked] = useState(null);
  return html`<p><a href="#/features">← Feature views</a></p><${Loading} state=${state}>${(v) => {
    const q = v.quality;
    const feature = list(q.features).find((f) => f.name === picked) || list(q.features).find((f) => f.histogram) || q.features[0];
    return html`<h2>View ${v.name} <small>version ${v.version}</small></h2>
      ${v.description ? html`<p>${v.description}</p>` : null}
      <dl class="kv">
        <dt>Entity</dt><dd>${v.entity} (join key ${v.join_key})</dd>
        <dt>Owner</dt><dd>${fmt(v.owner)}</dd>
        <dt>Tags</dt><dd>${list(v.tags).map((t) => html`<span class="tag">${t}</span>`)}</dd>
        <dt>TTL</dt><dd>${v.ttl ? seconds(v.ttl) : "none"}</dd>
        <dt>Rows / entities</dt><dd>${fmt(q.rows)} / ≈${fmt(q.entities)}</dd>
        <dt>Ingests</dt><dd>${fmt(q.ingests)} (first ${fmt(q.first_ingest)}, last ${fmt(q.last_ingest)})</dd>
        <dt>Newest event</dt><dd>${fmt(q.last_event)}</dd>
        <dt>Freshness</dt><dd>${seconds(q.freshness_seconds)} old${q.update_interval_seconds
          ? `, updated every ${seconds(q.update_interval_seconds)} on average` : ""}</dd>
        <dt>Missing</dt><dd>${fmt(q.missing_ratio * 100)} % of values</dd>
        <dt>Read by</dt><dd>${list(q.consumers).join(", ") || "no registered model"}</dd>
      </dl>
      ${list(q.violations).length ? html`<div class="banner" role="alert">Expectations not met:
        <ul>${q.violations.map((x) => html`<li>${x}</li>`)}</ul></div>` : null}
      <${Lineage} view=${v.name} />
      <${ValueDuplicates} view=${v.name} />
      <${Table} caption="Schema and statistics (pick a feature for its histogram)" rows=${list(q.features)}
        rowKey=${(f) => f.name} columns=${[
          { key: "name", label: "Feature", render: (f) => html`<button class="link" aria-pressed=${f === feature}
            onClick=${() => setPicked(f.name)}>${f.name}</button>` },
          { key: "type", label: "Type", value: (f) => f.type },
          { key: "values", label: "Values", num: true, value: (f) => f.values },
          { key: "nulls", label: "Nulls", num: true, value: (f) => f.nulls },
          { key: "missing", label: "Missing %", num: true, value: (f) => f.missing_ratio * 100 },
          { key: "mean", label: "Mean", num: true, value: (f) => f.mean },
          { key: "std", label: "Std", num: true, value: (f) => (typeof f.variance === "number" ? Math.sqrt(f.variance) : null) },
          { key: "min", label: "Min", num: true, value: (f) => f.min },
          { key: "max", label: "Max", num: true, value: (f) => f.max },
          { key: "distinct", label: "Distinct ≈", num: true, value: (f) => f.distinct },
        ]} />
      ${feature ? html`<${Histogram} feature=${feature} />` : null}`;
  }}<//>`;
}
