// Serving (like TF Serving's model status with a traffic dashboard): the
// workers and what each hosts — per model its slots (main, canary, shadow,
// experiment variants), the alias each follows and the version loaded — and
// per model the traffic of every version and role over a window: req/s,
// errors, p50 / p99 latency. The server aggregates (GET /v1/serving,
// /v1/serving/{model}): the page never receives raw predictions.
import { useState } from "preact/hooks";
import { get, enc } from "../api.js";
import { html, fmt, seconds, useLoad, Loading, Table, SeriesChart, list } from "../ui.js";

const WINDOWS = ["15m", "1h", "6h", "24h", "7d"];

// What a slot takes of the model's traffic, in words.
function share(slot, slots) {
  if (slot.slot === "shadow") return "a copy of every request (answer not returned)";
  if (slot.slot === "canary") return `${fmt(slot.percent)} % of units (by hash)`;
  if (slot.slot.startsWith("variant:")) return `weight ${fmt(slot.weight)} of the experiment's units`;
  const canary = slots.find((s) => s.slot === "canary" && s.version !== null);
  const variants = slots.some((s) => s.slot.startsWith("variant:"));
  if (variants) return "requests outside the experiment";
  return canary ? `${fmt(100 - canary.percent)} % of units` : "every request";
}

function slotText(m) {
  return list(m.slots).map((s) => `${s.slot} ${s.version === null ? "(not loaded)" : s.version}`).join(", ");
}

function Workers({ workers, stale }) {
  return html`<${Table} caption=${`Workers (gone: not seen for ${stale} s)`} className="workers" rows=${workers}
    rowKey=${(w) => `${w.port}:${w.worker}`} columns=${[
      { key: "port", label: "Port", num: true, value: (w) => w.port },
      { key: "worker", label: "Worker", num: true, value: (w) => w.worker },
      { key: "pid", label: "PID", num: true, value: (w) => w.pid },
      { key: "state", label: "State", render: (w) => html`<span class=${w.alive ? "tag" : "tag drift"}>${w.alive
        ? "alive" : "gone"}</span>` },
      { key: "seen", label: "Last seen", value: (w) => `${seconds(w.seen_seconds_ago)} ago` },
      { key: "started", label: "Started", value: (w) => w.started_at },
      { key: "models", label: "Hosts", value: (w) => list(w.models).map((m) => `${m.name}: ${slotText(m)}`).join("; ") || "–" },
    ]} />`;
}

// The series label of a version and role: the canary named as such.
function label(v, slots) {
  const main = slots.find((s) => s.slot === "main");
  const canary = slots.find((s) => s.slot === "canary");
  const isCanary = v.role === "live" && canary && canary.version === v.version && (!main || main.version !== v.version);
  return `${v.version} ${isCanary ? "canary" : v.role}`;
}

function Traffic({ name, win, slots }) {
  const state = useLoad(() => get(`/v1/serving/${enc(name)}?window=${enc(win)}&buckets=60`), [name, win]);
  return html`<${Loading} state=${state}>${(d) => {
    const versions = list(d.versions);
    if (versions.length === 0) return html`<p class="muted">No predictions of ${name} in the last ${win}.</p>`;
    const t = list(d.t);
    const per = (key) => versions.map((v) => ({ label: label(v, slots), values: list(v.series[key]) }));
    return html`<p class="muted">${d.from} .. ${d.to}, slices of ${fmt(d.bucket_seconds)} s</p>
      <${Table} caption="Versions over the window" className="traffic" rows=${versions} rowKey=${(v) => v.version + v.role}
        columns=${[
          { key: "v", label: "Version", value: (v) => label(v, slots) },
          { key: "volume", label: "Predictions", num: true, value: (v) => v.volume },
          { key: "req_s", label: "req/s", num: true, value: (v) => v.req_s },
          { key: "errors", label: "Errors", num: true, value: (v) => v.errors },
          { key: "p50", label: "p50 ms", num: true, value: (v) => v.latency_ms.p50 },
          { key: "p99", label: "p99 ms", num: true, value: (v) => v.latency_ms.p99 },
        ]} />
      <div class="columns charts">
        <div><${SeriesChart} title=${`${name}: requests per second`} t=${t} yLabel="req/s" series=${per("req_s")} /></div>
        <div><${SeriesChart} title=${`${name}: errors per slice`} t=${t} yLabel="errors" series=${per("errors")} /></div>
        <div><${SeriesChart} title=${`${name}: p50 latency (ms)`} t=${t} yLabel="ms" series=${per("p50_ms")} /></div>
        <div><${SeriesChart} title=${`${name}: p99 latency (ms)`} t=${t} yLabel="ms" series=${per("p99_ms")} /></div>
      </div>`;
  }}<//>`;
}

function ModelPanel({ name, workers, win }) {
  const host = workers.find((w) => w.alive && list(w.models).some((m) => m.name === name))
    || workers.find((w) => list(w.models).some((m) => m.name === name));
  const model = host ? list(host.models).find((m) => m.name === name) : null;
  const slots = model ? list(model.slots) : [];
  return html`<section class="version-panel"><h3>${name} <small>${model && model.experiment
      ? "split by experiment " + model.experiment : ""}</small></h3>
    ${slots.length ? html`<${Table} caption=${`Split (worker ${host.worker} on port ${host.port})`} className="split"
      rows=${slots} rowKey=${(s) => s.slot} columns=${[
        { key: "slot", label: "Slot", value: (s) => s.slot },
        { key: "alias", label: "Follows", value: (s) => `${s.model}@${s.alias}` },
        { key: "version", label: "Version", value: (s) => s.version },
        { key: "share", label: "Takes", value: (s) => share(s, slots) },
        { key: "error", label: "Error", value: (s) => s.error },
      ]} />` : html`<p class="muted">No worker state for ${name}.</p>`}
    <${Traffic} name=${name} win=${win} slots=${slots} />
  </section>`;
}

export function ServingView() {
  const [win, setWin] = useState("1h");
  const state = useLoad(() => get("/v1/serving"), []);
  return html`<h2>Serving</h2>
    <form class="filters" onSubmit=${(e) => e.preventDefault()}>
      <label>Window <select name="window" value=${win} onChange=${(e) => setWin(e.target.value)}>
        ${WINDOWS.map((w) => html`<option value=${w}>${w}</option>`)}</select></label></form>
    <${Loading} state=${state}>${(d) => {
      const workers = list(d.workers);
      return html`${workers.length ? html`<${Workers} workers=${workers} stale=${d.stale_seconds} />`
          : html`<p class="muted">No serving worker has recorded its state in this home (tycho serve writes it).</p>`}
        ${list(d.models).map((name) => html`<${ModelPanel} key=${name} name=${name} workers=${workers} win=${win} />`)}`;
    }}<//>`;
}
