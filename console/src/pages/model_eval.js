// The model page's holdout evaluation (ROC and PR curves, confusion matrix,
// residuals, feature importance: the record stored at registration, at most
// ~200 points a curve), the alias history on a timeline, and two versions
// compared side by side with their curves overlaid. Curves are SVG drawn
// here (two versions' curves have different x values, which uPlot's shared
// x axis cannot hold); every chart has its table.
import { useState } from "preact/hooks";
import { get, enc } from "../api.js";
import { html, fmt, useLoad, Loading, Table, Chart, list } from "../ui.js";

const PALETTE = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1"];
const W = 360, H = 300, PAD = { l: 44, r: 12, t: 10, b: 40 };
const TICKS = [0, 0.25, 0.5, 0.75, 1];

const px = (x) => PAD.l + x * (W - PAD.l - PAD.r);
const py = (y) => H - PAD.b - y * (H - PAD.t - PAD.b);

// Curves on the unit square: series [{ label, xs, ys }]; diagonal draws the
// chance line (ROC).
function Curves({ title, series, xLabel, yLabel, diagonal }) {
  const drawn = series.filter((s) => s.xs && s.xs.length);
  return html`<figure class="chart curves"><figcaption>${title}</figcaption>
    <svg viewBox=${`0 0 ${W} ${H}`} width=${W} height=${H} role="img" aria-label=${title}>
      ${TICKS.map((t) => html`<line class="grid" x1=${px(t)} x2=${px(t)} y1=${py(0)} y2=${py(1)} />
        <line class="grid" x1=${px(0)} x2=${px(1)} y1=${py(t)} y2=${py(t)} />
        <text x=${px(t)} y=${py(0) + 14} text-anchor="middle">${t}</text>
        <text x=${px(0) - 6} y=${py(t) + 4} text-anchor="end">${t}</text>`)}
      ${diagonal ? html`<line class="chance" x1=${px(0)} y1=${py(0)} x2=${px(1)} y2=${py(1)} />` : null}
      ${drawn.map((s, i) => html`<polyline fill="none" stroke=${PALETTE[i % PALETTE.length]} stroke-width="2"
        points=${s.xs.map((x, k) => `${px(x).toFixed(1)},${py(s.ys[k]).toFixed(1)}`).join(" ")} />`)}
      <text x=${(px(0) + px(1)) / 2} y=${H - 6} text-anchor="middle">${xLabel}</text>
      <text transform=${`translate(12 ${(py(0) + py(1)) / 2}) rotate(-90)`} text-anchor="middle">${yLabel}</text>
    </svg>
    <div class="legend">${drawn.map((s, i) => html`<span><i class="swatch" style=${{ background: PALETTE[i % PALETTE.length] }}></i>
      ${s.label}</span>`)}</div>
    ${drawn.map((s) => html`<details><summary>${s.label}: ${s.xs.length} points (table)</summary>
      <${Table} caption=${`${title}, ${s.label}`} rows=${s.xs.map((x, k) => ({ x, y: s.ys[k], t: (s.ts || [])[k] }))}
        columns=${[{ key: "x", label: xLabel, num: true, value: (r) => r.x },
                   { key: "y", label: yLabel, num: true, value: (r) => r.y },
                   { key: "t", label: "threshold", num: true, value: (r) => r.t }]} /></details>`)}
  </figure>`;
}

const roc = (label, ev) => ev && ev.roc && { label: `${label} (AUC ${fmt(ev.roc.auc)})`, xs: ev.roc.fpr, ys: ev.roc.tpr,
  ts: ev.roc.threshold };
const pr = (label, ev) => ev && ev.pr && { label: `${label} (AP ${fmt(ev.pr.average_precision)})`, xs: ev.pr.recall,
  ys: ev.pr.precision, ts: ev.pr.threshold };

function CurvePair({ evs }) {
  const rocs = evs.map(([label, ev]) => roc(label, ev)).filter(Boolean);
  if (rocs.length === 0) return null;
  return html`<div class="columns charts">
    <${Curves} title="ROC curve (holdout)" series=${rocs} xLabel="false positive rate" yLabel="true positive rate"
      diagonal=${true} />
    <${Curves} title="Precision-recall curve (holdout)" series=${evs.map(([label, ev]) => pr(label, ev)).filter(Boolean)}
      xLabel="recall" yLabel="precision" /></div>`;
}

// Rows: true class; columns: predicted. Cells shaded by their share of the row.
function Confusion({ ev, title }) {
  const c = ev && ev.confusion;
  if (!c) return null;
  const rows = c.matrix.map((counts, i) => ({ label: c.labels[i], counts, total: counts.reduce((a, b) => a + b, 0) }));
  return html`<div class="table-wrap"><table class="confusion"><caption>${title || "Confusion matrix"}${ev.threshold
      ? ` (threshold ${ev.threshold})` : ""}: rows are the true class, columns the predicted</caption>
    <thead><tr><th scope="col">true ↓ predicted →</th>${c.labels.map((l) => html`<th scope="col" class="num">${l}</th>`)}</tr></thead>
    <tbody>${rows.map((r, i) => html`<tr><th scope="row">${r.label}</th>${r.counts.map((n, j) => html`<td
      class=${"num" + (i === j ? " diag" : "")} style=${{ background: `rgba(43, 108, 176, ${r.total ? (0.6 * n) / r.total : 0})` }}>
      ${n}</td>`)}</tr>`)}</tbody></table></div>`;
}

function Residuals({ ev, label }) {
  const r = ev && ev.residuals;
  if (!r) return null;
  const xs = r.counts.map((_, i) => (r.edges[i] + r.edges[i + 1]) / 2);
  return html`<div><${Chart} title=${`Residuals (truth − prediction)${label ? ", " + label : ""}: mean ${fmt(r.mean)}, std ${fmt(r.std)}`}
      xs=${xs} series=${[{ label: "rows", values: r.counts }]} bars=${true} xLabel="residual" yLabel="rows" />
    <details><summary>Residual bins (table)</summary><${Table} caption="Residual bins" rows=${r.counts.map((n, i) => ({ i, n }))}
      columns=${[{ key: "lo", label: "From", num: true, value: (b) => r.edges[b.i] },
                 { key: "hi", label: "To", num: true, value: (b) => r.edges[b.i + 1] },
                 { key: "n", label: "Rows", num: true, value: (b) => b.n }]} /></details></div>`;
}

// Horizontal bars of split gain, as a share of the largest (a table with bars).
function Importance({ ev, title }) {
  const imp = list(ev && ev.importance);
  if (imp.length === 0) return null;
  const top = imp[0].gain || 1;
  return html`<div class="table-wrap"><table class="importance"><caption>${title || "Feature importance"} (split gain,
    top ${imp.length} of ${ev.features})</caption>
    <thead><tr><th scope="col">Feature</th><th scope="col" class="num">Gain</th><th scope="col">Relative</th></tr></thead>
    <tbody>${imp.map((f) => html`<tr><td>${f.feature}</td><td class="num">${fmt(f.gain)}</td>
      <td class="bar-cell"><span class="bar" style=${{ width: `${Math.max(1, (100 * f.gain) / top)}%` }}></span></td></tr>`)}
    </tbody></table></div>`;
}

// One version's stored holdout evaluation, or the note saying it has none.
export function Evaluation({ name, version }) {
  const state = useLoad(() => get(`/v1/registry/models/${enc(name)}/versions/${enc(version)}/evaluation`), [name, version]);
  return html`<section class="evaluation"><h3>Holdout evaluation</h3><${Loading} state=${state}>${(doc) => {
    const ev = doc.evaluation;
    if (!ev) return html`<p class="muted note">${doc.note}</p>`;
    return html`<p class="muted">${ev.task}, ${fmt(ev.rows)} holdout rows${ev.holdout
      ? html`, content hash <code>${ev.holdout.content_hash}</code>` : null}</p>
      <${CurvePair} evs=${[[version, ev]]} />
      <div class="columns"><${Confusion} ev=${ev} /><${Residuals} ev=${ev} /><${Importance} ev=${ev} /></div>`;
  }}<//></section>`;
}

// The alias history as lanes: one per alias, a segment per version it held
// (from its move to the next, or now). Policy changes and requests are left
// to the table below it.
export function AliasTimeline({ history }) {
  const moves = list(history).filter((h) => !h.kind && h.alias && h.at);
  if (moves.length === 0) return null;
  const t = (h) => Date.parse(h.at);
  const t0 = t(moves[0]), now = Math.max(Date.now(), t(moves[moves.length - 1]) + 1);
  const span = now - t0 || 1;
  const aliases = [...new Set(moves.map((h) => h.alias))].sort();
  const lanes = aliases.map((alias) => {
    const mine = moves.filter((h) => h.alias === alias);
    return { alias, segments: mine.map((h, i) => ({ version: h.to, from: t(h), to: i + 1 < mine.length ? t(mine[i + 1]) : now,
                                                     why: h.why, who: h.who })) };
  });
  const pct = (x) => `${((x - t0) / span) * 100}%`;
  return html`<section class="timeline"><h3>Aliases over time <small>${moves[0].at.slice(0, 19).replace("T", " ")} → now</small></h3>
    ${lanes.map((lane) => html`<div class="gantt-row"><span class="gantt-label">${lane.alias}</span>
      <span class="gantt-track">${lane.segments.map((s, i) => html`<span class=${"gantt-bar alias-bar c" + (i % 4)}
        title=${`${lane.alias} → ${s.version} (${s.why} by ${s.who})`}
        style=${{ left: pct(s.from), width: `${Math.max(((s.to - s.from) / span) * 100, 0.8)}%` }}>${s.version}</span>`)}
      </span></div>`)}</section>`;
}

function Diff({ title, section, versions, onlyDiffer }) {
  const names = Object.keys(section || {}).sort();
  const rows = names.map((k) => ({ k, a: section[k][0], b: section[k][1] }))
    .map((r) => ({ ...r, differs: JSON.stringify(r.a) !== JSON.stringify(r.b) }))
    .filter((r) => !onlyDiffer || r.differs);
  const delta = (r) => (typeof r.a === "number" && typeof r.b === "number" ? r.b - r.a : null);
  return html`<${Table} caption=${`${title} (${rows.length})`} rows=${rows} rowKey=${(r) => r.k} columns=${[
    { key: "k", label: "Name", render: (r) => html`<span class=${r.differs ? "differs" : ""}>${r.k}</span>` },
    { key: "a", label: versions[0], num: true, value: (r) => r.a },
    { key: "b", label: versions[1], num: true, value: (r) => r.b },
    { key: "d", label: "b − a", num: true, value: delta },
  ]} />`;
}

function SchemaDiff({ schema, versions }) {
  const rows = [...list(schema.added).map((c) => ({ name: c.name, change: "added", detail: c.type })),
    ...list(schema.removed).map((c) => ({ name: c.name, change: "removed", detail: c.type })),
    ...list(schema.changed).map((c) => ({ name: c.name, change: "type changed", detail: `${c.from} → ${c.to}` }))];
  if (rows.length === 0) return html`<p class="schema-same">Input schema: ${versions[1]} takes the same inputs as ${versions[0]}.</p>`;
  return html`<${Table} caption=${`Input schema: ${versions[1]} against ${versions[0]}`} className="schema-diff" rows=${rows}
    columns=${[{ key: "name", label: "Input", value: (r) => r.name }, { key: "change", label: "Change", value: (r) => r.change },
               { key: "detail", label: "Type", value: (r) => r.detail }]} />`;
}

// Two versions side by side: pickers, metrics and hyperparameters (those
// that differ by default), the schema diff and both holdout evaluations.
export function ModelCompare({ name, a, b }) {
  const model = useLoad(() => get("/v1/registry/models/" + enc(name)), [name]);
  const [onlyDiffer, setOnlyDiffer] = useState(true);
  return html`<p><a href=${"#/models/" + enc(name)}>← Model ${name}</a></p><${Loading} state=${model}>${(doc) => {
    const versions = list(doc.versions).map((v) => v.version);
    const va = a || versions[versions.length - 2] || versions[0], vb = b || versions[versions.length - 1];
    const go = (x, y) => { location.hash = `#/models/${enc(name)}/compare?a=${enc(x)}&b=${enc(y)}`; };
    return html`<h2>Compare versions of ${name}</h2>
      <form class="filters" onSubmit=${(e) => e.preventDefault()}>
        <label>Version a <select name="a" value=${va} onChange=${(e) => go(e.target.value, vb)}>
          ${versions.map((v) => html`<option value=${v}>${v}</option>`)}</select></label>
        <label>Version b <select name="b" value=${vb} onChange=${(e) => go(va, e.target.value)}>
          ${versions.map((v) => html`<option value=${v}>${v}</option>`)}</select></label>
        <label class="inline"><input type="checkbox" checked=${onlyDiffer} onChange=${(e) => setOnlyDiffer(e.target.checked)} />
          only hyperparameters that differ</label></form>
      <${CompareBody} name=${name} a=${va} b=${vb} onlyDiffer=${onlyDiffer} />`;
  }}<//>`;
}

function CompareBody({ name, a, b, onlyDiffer }) {
  const state = useLoad(() => get(`/v1/registry/models/${enc(name)}/compare?a=${enc(a)}&b=${enc(b)}`), [name, a, b]);
  return html`<${Loading} state=${state}>${(cmp) => {
    const [ea, eb] = cmp.evaluations;
    const evs = [[cmp.versions[0], ea], [cmp.versions[1], eb]];
    const missing = evs.filter(([, ev]) => !ev).map(([v]) => v);
    return html`<div class="columns compare">
        <${Diff} title="Metrics" section=${cmp.metrics} versions=${cmp.versions} />
        <${Diff} title="Hyperparameters" section=${cmp.params} versions=${cmp.versions} onlyDiffer=${onlyDiffer} /></div>
      <${SchemaDiff} schema=${cmp.schema} versions=${cmp.versions} />
      ${missing.length ? html`<p class="muted note">${`No holdout evaluation stored with ${missing.join(" and ")} `
        + "(registered without a holdout, or before versions kept one)."}</p>` : null}
      <${CurvePair} evs=${evs} />
      <div class="columns">${evs.map(([v, ev]) => html`<${Confusion} ev=${ev} title=${`Confusion matrix of ${v}`} />`)}</div>
      <div class="columns">${evs.map(([v, ev]) => html`<${Residuals} ev=${ev} label=${v} />`)}</div>
      <div class="columns">${evs.map(([v, ev]) => html`<${Importance} ev=${ev} title=${`Feature importance of ${v}`} />`)}</div>`;
  }}<//>`;
}
