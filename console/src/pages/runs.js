// Runs: a page of runs from the server (sorted and filtered there), any
// metric or parameter as a column; one run; two or more compared.
import { useState } from "preact/hooks";
import { get, enc } from "../api.js";
import { html, fmt, useLoad, Loading, Table, Chart, KV } from "../ui.js";
import { GroupBy, ParallelCoords, ParamScatter } from "./runs_more.js";

const PAGE_SIZES = [25, 50, 100, 250];

function query(params) {
  const parts = Object.entries(params).filter(([, v]) => v !== "" && v !== undefined && v !== null)
    .map(([k, v]) => `${enc(k)}=${enc(v)}`);
  return parts.length ? "?" + parts.join("&") : "";
}

function cell(r, key) {
  const [section, ...rest] = key.split(".");
  const name = rest.join(".");
  if ((section === "metrics" || section === "params") && name) return r[section] ? r[section][name] : undefined;
  return r[key];
}

function MetricByTrial({ runs, metric }) {
  const ordered = runs.filter((r) => typeof cell(r, metric) === "number").slice().sort((a, b) => (a.at < b.at ? -1 : 1));
  if (ordered.length < 2) return null;
  const xs = ordered.map((_, i) => i + 1);
  return html`<details open><summary>${metric} by run, oldest first (this page)</summary>
    <${Chart} title=${`${metric} by run`} xs=${xs} series=${[{ label: metric, values: ordered.map((r) => cell(r, metric)) }]}
      xLabel="run (time order)" yLabel=${metric} />
    <${Table} caption=${`${metric} by run`} rows=${ordered} columns=${[
      { key: "i", label: "#", num: true, render: (r) => ordered.indexOf(r) + 1 },
      { key: "id", label: "Run", render: (r) => html`<a href=${"#/runs/" + enc(r.id)}>${r.id}</a>` },
      { key: "v", label: metric, num: true, value: (r) => cell(r, metric) },
    ]} /></details>`;
}

export function RunList() {
  const [filters, setFilters] = useState({ model: "", kind: "", sort: "", order: "", limit: 50, offset: 0 });
  const [selected, setSelected] = useState([]);
  const state = useLoad(() => get("/v1/runs" + query(filters)), [JSON.stringify(filters)]);
  const set = (patch) => setFilters({ ...filters, offset: 0, ...patch });
  const toggle = (id) => setSelected(selected.includes(id) ? selected.filter((x) => x !== id) : [...selected, id]);
  const onHeader = (c) => {
    const desc = filters.sort === c.key ? filters.order !== "desc" : true;
    set({ sort: c.key, order: desc ? "desc" : "asc" });
  };
  return html`<h2>Runs</h2>
    <form class="filters" onSubmit=${(e) => e.preventDefault()}>
      <label>Model <input name="model" value=${filters.model} onChange=${(e) => set({ model: e.target.value.trim() })} /></label>
      <label>Kind <select name="kind" value=${filters.kind} onChange=${(e) => set({ kind: e.target.value })}>
        ${["", "fit", "trial", "evaluate", "train"].map((k) => html`<option value=${k}>${k || "any"}</option>`)}</select></label>
      <label>Per page <select value=${filters.limit} onChange=${(e) => set({ limit: Number(e.target.value) })}>
        ${PAGE_SIZES.map((n) => html`<option value=${n}>${n}</option>`)}</select></label>
      <a class=${"button" + (selected.length < 2 ? " disabled" : "")} aria-disabled=${selected.length < 2}
        href=${selected.length >= 2 ? "#/runs/compare?ids=" + selected.map(enc).join(",") : undefined}>
        Compare ${selected.length} selected</a>
      <a href="#/runs/studies">Tuning studies →</a>
    </form>
    <${Loading} state=${state}>${(data) => {
      const base = [
        { key: "pick", label: "", sortable: false, render: (r) => html`<input type="checkbox" aria-label=${"select " + r.id}
          checked=${selected.includes(r.id)} onChange=${() => toggle(r.id)} />` },
        { key: "id", label: "Run", render: (r) => html`<a href=${"#/runs/" + enc(r.id)}>${r.id}</a>` },
        { key: "at", label: "At", value: (r) => (r.at || "").replace("T", " ").slice(0, 19) },
        { key: "kind", label: "Kind", value: (r) => r.kind },
        { key: "model", label: "Model", value: (r) => r.model },
        { key: "seconds", label: "Seconds", num: true, value: (r) => r.seconds },
      ];
      const extra = data.columns.map((c) => ({ key: c, label: c.replace(/^metrics\./, "").replace(/^params\./, "param "),
                                               num: true, value: (r) => cell(r, c) }));
      const sort = { key: filters.sort || "at", desc: filters.sort ? filters.order === "desc" : true };
      const first = data.offset + (data.runs.length ? 1 : 0);
      const metric = (filters.sort || "").startsWith("metrics.") ? filters.sort
        : data.columns.find((c) => c.startsWith("metrics.") && c !== "metrics.rows");
      return html`<p class="muted">Runs ${first}–${data.offset + data.runs.length}${data.total !== undefined
          ? ` of ${data.total}` : ""}</p>
        <${Table} rows=${data.runs} rowKey=${(r) => r.id} columns=${[...base, ...extra]} onHeader=${onHeader}
          sort=${sort} className="runs" />
        <nav class="pager">
          <button disabled=${data.offset === 0}
            onClick=${() => setFilters({ ...filters, offset: Math.max(0, data.offset - data.limit) })}>← Newer</button>
          <button disabled=${data.next_offset === undefined}
            onClick=${() => setFilters({ ...filters, offset: data.next_offset })}>Older →</button>
        </nav>
        ${metric ? html`<${MetricByTrial} runs=${data.runs} metric=${metric} />` : null}
        <${GroupBy} filters=${filters} columns=${data.columns} />
        <${ParamScatter} runs=${data.runs} />`;
    }}<//>`;
}

export function RunView({ id }) {
  const state = useLoad(() => get("/v1/runs/" + enc(id)), [id]);
  return html`<p><a href="#/runs">← Runs</a></p><${Loading} state=${state}>${(r) => html`
    <h2>Run ${r.id}</h2>
    <dl class="kv"><dt>Kind</dt><dd>${r.kind}</dd><dt>Model</dt><dd>${fmt(r.model)}</dd>
      <dt>At</dt><dd>${r.at}</dd><dt>Seconds</dt><dd>${fmt(r.seconds)}</dd>
      ${r.study ? html`<dt>Study</dt><dd><a href=${"#/runs/studies/" + enc(r.study)}>${r.study}</a></dd>` : null}
      ${r.job ? html`<dt>Training job</dt><dd><a href=${"#/train/" + enc(r.job)}>${r.job}</a></dd>` : null}</dl>
    <${KV} title="Parameters" data=${r.params} />
    <${KV} title="Metrics" data=${r.metrics} />
    <${KV} title="Data" data=${r.data && { rows: r.data.rows, content_hash: r.data.content_hash, views: r.data.views,
      time_range: r.data.time_range, refs: r.data.refs, columns: r.data.columns && r.data.columns.length }} />`}<//>`;
}

export function RunCompare({ ids }) {
  const state = useLoad(() => get("/v1/runs:compare?ids=" + ids.map(enc).join(",")), [ids.join(",")]);
  const [all, setAll] = useState(false);
  return html`<p><a href="#/runs">← Runs</a></p><h2>Compare ${ids.length} runs</h2>
    <${Loading} state=${state}>${(d) => {
      const differ = new Set(d.differ);
      const runCols = d.runs.map((r, i) => ({ key: r.id, label: r.id, num: true, value: (row) => row.values[i] }));
      const section = (name) => Object.keys(d[name]).sort()
        .filter((k) => all || name === "metrics" || differ.has(name + "." + k))
        .map((k) => ({ name: k, values: d[name][k], differs: differ.has(name + "." + k) }));
      const params = section("params");
      const metrics = section("metrics");
      const nameCol = { key: "name", label: "Name", render: (row) => html`<span class=${row.differs ? "differs" : ""}>${row.name}</span>` };
      return html`<label class="inline"><input type="checkbox" checked=${all} onChange=${() => setAll(!all)} />
          show parameters that are the same too</label>
        ${params.length ? html`<${Table} caption=${all ? "Parameters" : "Parameters that differ"} rows=${params}
            columns=${[nameCol, ...runCols]} />` : html`<p>No parameter differs.</p>`}
        <${Table} caption="Metrics" rows=${metrics} columns=${[nameCol, ...runCols]} />
        ${metrics.filter((m) => m.values.every((v) => typeof v === "number") && m.name !== "rows").slice(0, 1).map((m) =>
          html`<${Chart} title=${`${m.name} by run`} xs=${d.runs.map((_, i) => i + 1)} bars=${true}
            series=${[{ label: m.name, values: m.values }]} xLabel="run (column order)" yLabel=${m.name} />`)}
        <${ParallelCoords} d=${d} differ=${differ} />
        <${ParamScatter} runs=${d.runs} />`;
    }}<//>`;
}
