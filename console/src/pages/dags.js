// DAGs (like Airflow): the DAGs with runs in the home; one DAG's grid (runs
// x tasks by state, paged on the server) and graph edges; one run's Gantt
// and its tasks' log tails; Trigger (needs the token).
import { useState } from "preact/hooks";
import { get, post, enc, hasToken } from "../api.js";
import { html, fmt, useLoad, Loading, Table, list } from "../ui.js";
import { DagGraph, Backfill } from "./dag_graph.js";

const utc = (t) => (t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) : "–");

export function DagList() {
  const state = useLoad(() => get("/v1/dags"), []);
  return html`<h2>DAGs</h2><${Loading} state=${state}>${(data) => html`<${Table}
    caption=${`${list(data.dags).length} DAGs with runs in this home`} rows=${list(data.dags)} rowKey=${(d) => d.name}
    columns=${[
      { key: "name", label: "DAG", render: (d) => html`<a href=${"#/dags/" + enc(d.name)}>${d.name}</a>` },
      { key: "schedule", label: "Schedule", value: (d) => d.schedule },
      { key: "last_run", label: "Last run", value: (d) => d.last_run },
      { key: "last_status", label: "Status", render: (d) => html`<span class=${"state state-" + d.last_status}>${d.last_status}</span>` },
      { key: "started", label: "Started (UTC)", value: (d) => utc(d.last_started) },
      { key: "file", label: "File", value: (d) => d.file },
    ]} />`}<//>`;
}

function Trigger({ name, onDone }) {
  const [date, setDate] = useState("");
  const [result, setResult] = useState(null);
  const [busy, setBusy] = useState(false);
  const go = async () => {
    setBusy(true);
    const r = await post("/v1/dags/" + enc(name) + "/runs", date ? { date } : {});
    setBusy(false);
    setResult(r);
    if (r.ok) onDone();
  };
  return html`<section class="actions"><h3>Trigger a run</h3>
    ${hasToken() ? null : html`<p class="muted">Type the server's token at the top: without it the server refuses.</p>`}
    <form onSubmit=${(e) => e.preventDefault()}>
      <label>Logical date <input name="date" value=${date} placeholder="YYYY-MM-DD (default: the latest slot)"
        onInput=${(e) => setDate(e.target.value.trim())} /></label>
      <button id="trigger" disabled=${busy} onClick=${go}>Trigger</button></form>
    ${result ? (result.ok ? html`<p class="ok" role="status">Started a runner (pid ${result.data.pid}) for ${name}.</p>`
      : html`<p class="error" role="alert"><strong>${result.status} ${result.error.code}</strong>: ${result.error.message}</p>`) : null}
  </section>`;
}

export function DagView({ name }) {
  const [offset, setOffset] = useState(0);
  const [tick, setTick] = useState(0);
  const limit = 25;
  const info = useLoad(() => get("/v1/dags/" + enc(name)), [name]);
  const state = useLoad(() => get(`/v1/dags/${enc(name)}/runs?limit=${limit}&offset=${offset}`), [name, offset, tick]);
  return html`<p><a href="#/dags">← DAGs</a></p><h2>DAG ${name}</h2>
    <${Loading} state=${info}>${(d) => html`<dl class="kv"><dt>Schedule</dt><dd>${fmt(d.schedule)}</dd>
      <dt>File</dt><dd>${d.file}</dd><dt>Tasks</dt><dd>${list(d.tasks).join(", ") || "–"}</dd>
      <dt>Edges</dt><dd>${list(d.edges).map((e) => `${e.from} → ${e.to}`).join(", ") || "–"}</dd></dl>
      <${DagGraph} name=${name} tasks=${list(d.tasks)} edges=${list(d.edges)} key=${tick} />`}<//>
    <${Trigger} name=${name} onDone=${() => setTimeout(() => setTick((t) => t + 1), 1500)} />
    <${Backfill} name=${name} onDone=${() => setTimeout(() => setTick((t) => t + 1), 1500)} />
    <div class="pager"><button onClick=${() => setTick(tick + 1)}>Refresh</button></div>
    <${Loading} state=${state}>${(p) => {
      const runs = list(p.runs);
      const tasks = list(p.tasks);
      const rows = tasks.map((t) => ({ task: t, cells: runs.map((r) => list(r.tasks).find((x) => x.task === t)) }));
      return html`<p class="muted">Runs ${p.offset + (runs.length ? 1 : 0)}–${p.offset + runs.length} of ${p.total}, newest first</p>
        <div class="table-wrap"><table class="grid"><caption>Grid: tasks by run</caption>
          <thead><tr><th scope="col">Task</th>${runs.map((r) => html`<th scope="col" class="run-head">
            <a href=${"#/dags/" + enc(name) + "/" + enc(r.run_id)}>${r.run_id}</a><br />
            <span class=${"state state-" + r.status}>${r.status}</span></th>`)}</tr></thead>
          <tbody>${rows.map((row) => html`<tr key=${row.task}><th scope="row">${row.task}</th>
            ${row.cells.map((c, i) => html`<td class=${"cell state-" + (c ? c.state : "none")}
              title=${`${runs[i].run_id} ${row.task}: ${c ? c.state : "none"}`}>${c ? c.state : "–"}</td>`)}</tr>`)}</tbody>
        </table></div>
        <nav class="pager">
          <button disabled=${p.offset === 0} onClick=${() => setOffset(Math.max(0, p.offset - limit))}>← Newer</button>
          <button disabled=${p.next_offset === undefined} onClick=${() => setOffset(p.next_offset)}>Older →</button>
        </nav>`;
    }}<//>`;
}

function Gantt({ run }) {
  const tasks = list(run.tasks).filter((t) => t.started);
  if (tasks.length === 0) return html`<p class="muted">No task started.</p>`;
  const t0 = Math.min(...tasks.map((t) => t.started));
  const end = Math.max(...tasks.map((t) => t.started + (t.duration || 0)), run.finished || 0);
  const span = Math.max(end - t0, 1e-3);
  return html`<figure class="chart gantt"><figcaption>${`Gantt: each task from its first start, over ${fmt(span)} s`}</figcaption>
    ${tasks.map((t) => html`<div class="gantt-row"><span class="gantt-label">${t.task}</span><span class="gantt-track">
      <span class=${"gantt-bar state-" + t.state} title=${`${t.task}: ${fmt(t.duration)} s`}
        style=${{ left: `${((t.started - t0) / span) * 100}%`, width: `${Math.max(((t.duration || 0) / span) * 100, 0.5)}%` }}></span>
    </span></div>`)}</figure>`;
}

export function DagRun({ name, run }) {
  const state = useLoad(() => get(`/v1/dags/${enc(name)}/runs/${enc(run)}`), [name, run]);
  return html`<p><a href=${"#/dags/" + enc(name)}>← DAG ${name}</a></p><${Loading} state=${state}>${(r) => html`
    <h2>Run ${r.run_id} <small>of ${name}</small></h2>
    <dl class="kv"><dt>Status</dt><dd><span class=${"state state-" + r.status}>${r.status}</span>${r.reason ? " — " + r.reason : ""}</dd>
      <dt>Trigger</dt><dd>${fmt(r.trigger)}</dd><dt>Logical date</dt><dd>${r.date}</dd>
      <dt>Started / finished (UTC)</dt><dd>${utc(r.started)} / ${utc(r.finished)}</dd></dl>
    <${Gantt} run=${r} />
    <${Table} caption="Tasks (the Gantt's table)" rows=${list(r.tasks)} rowKey=${(t) => t.task} className="tasks" columns=${[
      { key: "task", label: "Task", value: (t) => t.task },
      { key: "state", label: "State", render: (t) => html`<span class=${"state state-" + t.state}>${t.state}</span>` },
      { key: "attempts", label: "Attempts", num: true, value: (t) => t.attempts },
      { key: "started", label: "Started (UTC)", value: (t) => utc(t.started) },
      { key: "duration", label: "Seconds", num: true, value: (t) => t.duration },
      { key: "error", label: "Error", value: (t) => t.error },
    ]} />
    <h3>Log tails</h3>
    ${list(r.tasks).map((t) => html`<details class="log" open=${t.state !== "success"}><summary>${t.task}
      (${list(t.log).length} lines)</summary><pre>${list(t.log).join("\n")}</pre></details>`)}`}<//>`;
}
