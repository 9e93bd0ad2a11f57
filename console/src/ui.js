// Shared pieces: formatting, tables, key/value lists, charts (uPlot) and
// the data-loading hook. Text goes through Preact, which escapes it: no
// page ever sets HTML from data.
import { h } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import htm from "htm";
import uPlot from "uplot";

export const html = htm.bind(h);

export function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3);
    return String(Math.round(v * 1e4) / 1e4);
  }
  if (typeof v === "boolean") return v ? "true" : "false";
  if (Array.isArray(v)) return v.map(fmt).join(", ");
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

export function seconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

// Loads path(s) when deps change: { loading, error, data }.
export function useLoad(loader, deps) {
  const [state, setState] = useState({ loading: true });
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    loader().then((r) => {
      if (!live) return;
      if (r.ok) setState({ loading: false, data: r.data });
      else setState({ loading: false, error: r.error });
    });
    return () => { live = false; };
  }, deps);
  return state;
}

export function Loading({ state, children }) {
  if (state.error) return html`<p class="error" role="alert">${state.error.code}: ${state.error.message}</p>`;
  if (state.loading && !state.data) return html`<p class="muted">Loading…</p>`;
  return children(state.data);
}

export function Table({ columns, rows, rowKey, caption, onHeader, sort, className }) {
  return html`<div class="table-wrap"><table class=${className || ""}>
    ${caption ? html`<caption>${caption}</caption>` : null}
    <thead><tr>${columns.map((c) => html`<th scope="col" class=${c.num ? "num" : ""}
        aria-sort=${sort && sort.key === c.key ? (sort.desc ? "descending" : "ascending") : undefined}>
      ${onHeader && c.sortable !== false
        ? html`<button class="link" onClick=${() => onHeader(c)}>${c.label}${sort && sort.key === c.key
            ? (sort.desc ? " ▼" : " ▲") : ""}</button>`
        : c.label}</th>`)}</tr></thead>
    <tbody>${rows.map((r, i) => html`<tr key=${rowKey ? rowKey(r) : i}>
      ${columns.map((c) => html`<td class=${c.num ? "num" : ""}>${c.render ? c.render(r) : fmt(c.value(r))}</td>`)}
    </tr>`)}</tbody></table></div>`;
}

export function KV({ data, title }) {
  const keys = data && typeof data === "object" ? Object.keys(data).sort() : [];
  if (keys.length === 0) return null;
  return html`<section><h3>${title}</h3><dl class="kv">${keys.map((k) => html`<dt>${k}</dt><dd>${fmt(data[k])}</dd>`)}
  </dl></section>`;
}

// A uPlot chart: xs and one or more series { label, values, color, dash }.
// bars draws bars (a histogram); otherwise lines with points (dash: a
// dashed line without, for an interval's bounds; color: a palette index,
// so that bounds take their line's colour); time: xs are Unix seconds.
export function Chart({ title, xs, series, bars, xLabel, yLabel, height, time }) {
  const ref = useRef(null);
  useEffect(() => {
    const el = ref.current;
    if (!el || xs.length === 0) return undefined;
    const palette = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280"];
    const opts = {
      width: Math.max(320, Math.min(el.clientWidth || 720, 960)),
      height: height || 240,
      scales: { x: { time: !!time } },
      legend: { show: series.length > 1 },
      // Integer x values (runs, versions, variants) get integer ticks only.
      axes: [{ label: xLabel, incrs: !time && xs.every(Number.isInteger) ? [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] : undefined },
             { label: yLabel }],
      series: [{ label: xLabel || "x" }, ...series.map((s, i) => ({
        label: s.label,
        stroke: palette[(s.color ?? i) % palette.length],
        fill: bars ? palette[i % palette.length] + "88" : undefined,
        width: bars ? 1 : 2,
        dash: s.dash ? [6, 4] : undefined,
        paths: bars ? uPlot.paths.bars({ size: [0.9, 80] }) : undefined,
        points: { show: !bars && !s.dash },
      }))],
    };
    const plot = new uPlot(opts, [xs, ...series.map((s) => s.values)], el);
    return () => plot.destroy();
  }, [JSON.stringify([xs, series, bars, time])]);
  return html`<figure class="chart"><figcaption>${title}</figcaption><div ref=${ref} class="chart-box"></div></figure>`;
}

// A time (Unix seconds) as HH:MM:SS UTC, and as YYYY-MM-DD.
export const clock = (t) => new Date(t * 1000).toISOString().slice(11, 19);
export const day = (t) => new Date(t * 1000).toISOString().slice(0, 10);

// Series over time (t: Unix seconds, one value per series and slice, null
// where a slice has none): a chart and, folded, its table of the slices
// that hold anything. when formats a slice's time in the table.
export function SeriesChart({ title, t, series, yLabel, when }) {
  const at = when || clock;
  const rows = t.map((x, i) => ({ i, t: x })).filter((r) => series.some((s) => s.values[r.i] !== null && s.values[r.i] !== 0));
  return html`<${Chart} title=${title} xs=${t} series=${series} xLabel="time (UTC)" yLabel=${yLabel} time=${true} />
    <details><summary>${title}: table (${rows.length} non-empty slices)</summary><${Table} caption=${title} rows=${rows}
      columns=${[{ key: "t", label: "Slice (UTC)", value: (r) => at(r.t) },
                 ...series.map((s) => ({ key: s.label, label: s.label, num: true, value: (r) => s.values[r.i] }))]} />
    </details>`;
}

// A JSON list, or [] for anything else: the server's JSON encoder writes an
// empty Lua table as {}.
export function list(v) { return Array.isArray(v) ? v : []; }
