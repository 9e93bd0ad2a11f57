// DAGs, continued: the graph of a DAG's tasks (a layered layout of our own:
// layers by longest path, each ordered by its parents' positions), each
// task coloured by its state in the latest run; and Backfill (a date range
// of the schedule's slots queued for one runner; needs the token).
import { useState } from "preact/hooks";
import { get, post, enc, hasToken } from "../api.js";
import { html, useLoad, Table, list } from "../ui.js";

const NODE_W = 150, NODE_H = 30, GAP_X = 56, GAP_Y = 14, PAD = 8;

// Layers and positions: tasks come in run order (parents first).
export function layout(tasks, edges) {
  const parents = new Map(tasks.map((t) => [t, []]));
  for (const e of edges) if (parents.has(e.to) && parents.has(e.from)) parents.get(e.to).push(e.from);
  const layer = new Map();
  const depth = (t, seen) => {
    if (layer.has(t)) return layer.get(t);
    if (seen.has(t)) return 0;  // a cycle would not load as a DAG; stay finite anyway
    seen.add(t);
    const d = parents.get(t).reduce((m, p) => Math.max(m, depth(p, seen) + 1), 0);
    layer.set(t, d);
    return d;
  };
  tasks.forEach((t) => depth(t, new Set()));
  const layers = [];
  for (const t of tasks) (layers[layer.get(t)] ||= []).push(t);
  const row = new Map();
  layers.forEach((ts, l) => {
    if (l > 0) {
      const bary = (t) => {
        const ps = parents.get(t);
        return ps.length ? ps.reduce((s, p) => s + row.get(p), 0) / ps.length : 0;
      };
      ts.sort((a, b) => bary(a) - bary(b));
    }
    ts.forEach((t, i) => row.set(t, i));
  });
  const tallest = Math.max(1, ...layers.map((ts) => ts.length));
  const pos = new Map();
  layers.forEach((ts, l) => {
    const offset = ((tallest - ts.length) * (NODE_H + GAP_Y)) / 2;
    ts.forEach((t, i) => pos.set(t, { x: PAD + l * (NODE_W + GAP_X), y: PAD + offset + i * (NODE_H + GAP_Y) }));
  });
  return { pos, parents, width: PAD * 2 + layers.length * (NODE_W + GAP_X) - GAP_X,
           height: PAD * 2 + tallest * (NODE_H + GAP_Y) - GAP_Y };
}

const short = (s) => (s.length > 19 ? s.slice(0, 18) + "…" : s);

export function DagGraph({ name, tasks, edges }) {
  const latest = useLoad(() => get(`/v1/dags/${enc(name)}/runs?limit=1`), [name]);
  if (tasks.length === 0) return html`<p class="muted">The DAG's file no longer loads: no graph.</p>`;
  const run = latest.data && list(latest.data.runs)[0];
  const state = new Map(run ? list(run.tasks).map((t) => [t.task, t.state]) : []);
  const g = layout(tasks, edges);
  return html`<figure class="chart dag-graph"><figcaption>Graph: ${tasks.length} tasks, coloured by their state in ${
      run ? `run ${run.run_id}` : "no run yet"}</figcaption>
    <div class="graph-wrap"><svg width=${g.width} height=${g.height} role="img" aria-label=${`graph of DAG ${name}`}>
      ${edges.filter((e) => g.pos.has(e.from) && g.pos.has(e.to)).map((e) => {
        const a = g.pos.get(e.from), b = g.pos.get(e.to);
        const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2, mid = (x1 + x2) / 2;
        return html`<path class="edge" key=${e.from + ">" + e.to} d=${`M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`} />`;
      })}
      ${tasks.map((t) => {
        const p = g.pos.get(t), st = state.get(t) || "none";
        return html`<g class=${"node state-" + st} key=${t} transform=${`translate(${p.x},${p.y})`}>
          <title>${t}: ${st}</title><rect width=${NODE_W} height=${NODE_H} rx="5" />
          <text x="8" y=${NODE_H / 2 + 4}>${short(t)}</text></g>`;
      })}
    </svg></div>
    <details><summary>The graph's table</summary><${Table} caption="Tasks, what they run after, their last state"
      rows=${tasks} rowKey=${(t) => t} className="graph-table" columns=${[
        { key: "task", label: "Task", value: (t) => t },
        { key: "after", label: "After", value: (t) => g.parents.get(t).join(", ") || "–" },
        { key: "state", label: "Last state", render: (t) => html`<span class=${"state state-" + (state.get(t) || "none")}>
          ${state.get(t) || "none"}</span>` },
      ]} /></details>
  </figure>`;
}

export function Backfill({ name, onDone }) {
  const [form, setForm] = useState({ from: "", to: "", rerun: false, keep_going: false });
  const [result, setResult] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (patch) => setForm({ ...form, ...patch });
  const go = async () => {
    setBusy(true);
    const r = await post("/v1/dags/" + enc(name) + "/backfill", form);
    setBusy(false);
    setResult(r);
    if (r.ok) onDone();
  };
  const dates = result && result.ok ? list(result.data.dates) : [];
  return html`<section class="actions"><h3>Backfill</h3>
    ${hasToken() ? null : html`<p class="muted">Type the server's token at the top: without it the server refuses.</p>`}
    <form onSubmit=${(e) => e.preventDefault()}>
      <label>From <input name="from" value=${form.from} placeholder="YYYY-MM-DD" onInput=${(e) => set({ from: e.target.value.trim() })} /></label>
      <label>To <input name="to" value=${form.to} placeholder="YYYY-MM-DD" onInput=${(e) => set({ to: e.target.value.trim() })} /></label>
      <label class="inline"><input type="checkbox" name="rerun" checked=${form.rerun} onChange=${() => set({ rerun: !form.rerun })} />
        run dates that succeeded again</label>
      <label class="inline"><input type="checkbox" name="keep_going" checked=${form.keep_going}
        onChange=${() => set({ keep_going: !form.keep_going })} />keep going past a failed date</label>
      <button id="backfill" disabled=${busy} onClick=${go}>Backfill</button></form>
    ${result ? (result.ok ? html`<p class="ok" role="status">Queued ${result.data.runs} runs of ${name} (${
        result.data.from} to ${result.data.to}) for one runner (pid ${result.data.pid})${
        dates.some((d) => d.succeeded) && !form.rerun ? `; ${dates.filter((d) => d.succeeded).length} already succeeded and are skipped` : ""}.</p>
        <p class="muted">${dates.map((d) => d.date).join(", ")}</p>`
      : html`<p class="error" role="alert"><strong>${result.status} ${result.error.code}</strong>: ${result.error.message}</p>`) : null}
  </section>`;
}
