// Train (point-and-click): pick feature views and a label from the feature
// store, a model family with its hyperparameters or AutoML with a budget;
// the server starts the training as a child process (POST /v1/train, needs
// the token) and this page follows its progress until it lands in Runs
// and, if asked, the registry.
import { useEffect, useState } from "preact/hooks";
import { get, post, enc, hasToken } from "../api.js";
import { html, fmt, useLoad, Loading, Table, KV, list } from "../ui.js";

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;
const LIVE = { queued: true, running: true };
const STATE = { queued: "queued", running: "running", succeeded: "success", failed: "failed", interrupted: "interrupted" };
const utc = (t) => (t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) : "–");

function Status({ job }) {
  return html`<span class=${"state state-" + (STATE[job.status] || "none")}>${job.status}</span>`;
}

// Reloads every `ms` while keepGoing(data) holds: a polling useLoad.
function usePoll(loader, deps, keepGoing, ms) {
  const [tick, setTick] = useState(0);
  const state = useLoad(loader, [...deps, tick]);
  useEffect(() => {
    if (!state.data || !keepGoing(state.data)) return undefined;
    const t = setTimeout(() => setTick((x) => x + 1), ms);
    return () => clearTimeout(t);
  }, [state.data]);
  return [state, () => setTick((x) => x + 1)];
}

function ViewPicker({ views, entity, picked, setPicked }) {
  const [filter, setFilter] = useState("");
  const same = views.filter((v) => !entity || v.entity === entity);
  const shown = same.filter((v) => picked.includes(v.name) || v.name.toLowerCase().includes(filter.toLowerCase())).slice(0, 40);
  const toggle = (n) => setPicked(picked.includes(n) ? picked.filter((x) => x !== n) : [...picked, n]);
  return html`<fieldset class="views"><legend>Feature views${entity ? ` of entity ${entity}` : ""} (${picked.length} picked)</legend>
    <label>Find <input name="view-filter" value=${filter} placeholder="part of a name" onInput=${(e) => setFilter(e.target.value)} /></label>
    <div class="view-list">${shown.map((v) => html`<label class="inline" key=${v.name}>
      <input type="checkbox" name="view" value=${v.name} checked=${picked.includes(v.name)} onChange=${() => toggle(v.name)} />
      ${v.name} <span class="muted">(${list(v.features).length} features)</span></label>`)}
      ${same.length > shown.length ? html`<p class="muted">${same.length - shown.length} more: narrow the search.</p>` : null}</div>
  </fieldset>`;
}

function ParamFields({ schema, values, setValues }) {
  return Object.keys(schema).sort().map((k) => {
    const r = schema[k];
    return html`<label key=${k}>${k} <input type="number" name=${"param-" + k} min=${r.min} max=${r.max}
      step=${r.type === "int" ? 1 : "any"} value=${values[k] ?? ""} placeholder=${r.default === undefined ? "default" : String(r.default)}
      onInput=${(e) => setValues({ ...values, [k]: e.target.value })} /></label>`;
  });
}

// The request the form makes: numbers parsed, empty fields left out (the
// server fills in its defaults and checks everything again).
function requestOf(f) {
  const body = { name: f.name, views: f.views, label: `${f.labelView}:${f.labelFeature}`, family: f.family,
                 task: f.task, register: f.register };
  if (f.test !== "") body.test = Number(f.test);
  if (f.seed !== "") body.seed = Number(f.seed);
  if (f.family === "automl") {
    body.budget = { [f.budgetKind]: Number(f.budget) };
    if (f.families.length) body.families = f.families;
  } else {
    body.params = {};
    for (const [k, v] of Object.entries(f.params)) if (v !== "") body.params[k] = Number(v);
  }
  return body;
}

function problemOf(f) {
  if (!NAME.test(f.name)) return "The name is 1 to 64 letters, digits, '_', '.' or '-'.";
  if (!f.labelView || !f.labelFeature) return "Pick the label: a view and one of its features.";
  if (f.views.length === 0) return "Pick at least one feature view.";
  return null;
}

function TrainForm({ options, views }) {
  const [f, setF] = useState({ name: "", views: [], labelView: "", labelFeature: "", family: "gbt", params: {},
    budgetKind: "trials", budget: "12", families: [], task: "auto", test: "", seed: "", register: true });
  const [result, setResult] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (patch) => setF({ ...f, ...patch });
  const labelView = views.find((v) => v.name === f.labelView);
  const families = Object.keys(options.families).sort();
  const submit = async () => {
    const problem = problemOf(f);
    if (problem) { setResult({ ok: false, status: 0, error: { code: "form", message: problem } }); return; }
    setBusy(true);
    const r = await post("/v1/train", requestOf(f));
    setBusy(false);
    setResult(r);
    if (r.ok) location.hash = "#/train/" + enc(r.data.id);
  };
  return html`<form class="train" onSubmit=${(e) => { e.preventDefault(); submit(); }}>
    <div class="filters">
      <label>Name (runs, registry) <input name="name" value=${f.name} placeholder="churn_gbt" onInput=${(e) => set({ name: e.target.value.trim() })} /></label>
      <label>Label view <select name="label-view" value=${f.labelView}
        onChange=${(e) => set({ labelView: e.target.value, labelFeature: "", views: [] })}>
        <option value="">—</option>${views.map((v) => html`<option value=${v.name}>${v.name}</option>`)}</select></label>
      <label>Label feature <select name="label-feature" value=${f.labelFeature} onChange=${(e) => set({ labelFeature: e.target.value })}>
        <option value="">—</option>${list(labelView && labelView.features).map((n) => html`<option value=${n}>${n}</option>`)}</select></label>
      <label>Task <select name="task" value=${f.task} onChange=${(e) => set({ task: e.target.value })}>
        ${list(options.tasks).map((t) => html`<option value=${t}>${t}</option>`)}</select></label>
    </div>
    ${labelView ? html`<${ViewPicker} views=${views} entity=${labelView.entity} picked=${f.views}
      setPicked=${(v) => set({ views: v })} />` : html`<p class="muted">Pick the label first: the views offered share its entity.</p>`}
    <div class="filters">
      <label>Model <select name="family" value=${f.family} onChange=${(e) => set({ family: e.target.value, params: {} })}>
        ${[...families, "automl"].map((k) => html`<option value=${k}>${k === "automl" ? "AutoML (tries the families)" : k}</option>`)}
      </select></label>
      ${f.family === "automl" ? html`
        <label>Budget <select name="budget-kind" value=${f.budgetKind} onChange=${(e) => set({ budgetKind: e.target.value })}>
          <option value="trials">trials</option><option value="seconds">seconds</option></select></label>
        <label>${f.budgetKind} <input type="number" name="budget" min=${options.budget[f.budgetKind].min}
          max=${options.budget[f.budgetKind].max} value=${f.budget} onInput=${(e) => set({ budget: e.target.value })} /></label>
        ${families.map((k) => html`<label class="inline"><input type="checkbox" name="automl-family" checked=${f.families.includes(k)}
          onChange=${() => set({ families: f.families.includes(k) ? f.families.filter((x) => x !== k) : [...f.families, k] })} />${k}</label>`)}`
      : html`<${ParamFields} schema=${options.families[f.family]} values=${f.params} setValues=${(p) => set({ params: p })} />`}
    </div>
    <div class="filters">
      <label>Test fraction <input type="number" name="test" step="any" min=${options.test.min} max=${options.test.max}
        placeholder=${String(options.test.default)} value=${f.test} onInput=${(e) => set({ test: e.target.value })} /></label>
      <label>Seed <input type="number" name="seed" step="1" placeholder=${String(options.seed.default)} value=${f.seed}
        onInput=${(e) => set({ seed: e.target.value })} /></label>
      <label class="inline"><input type="checkbox" name="register" checked=${f.register}
        onChange=${() => set({ register: !f.register })} />register the model</label>
      <button id="train" type="submit" disabled=${busy}>Train</button>
    </div>
    ${hasToken() ? null : html`<p class="muted">Type the server's token at the top: without it the server refuses.</p>`}
    ${result && !result.ok ? html`<p class="error" role="alert"><strong>${result.status || ""} ${result.error.code}</strong>: ${
      result.error.message}</p>` : null}
  </form>`;
}

function JobList() {
  const [state] = usePoll(() => get("/v1/train?limit=20"), [], (d) => list(d.jobs).some((j) => LIVE[j.status]), 2000);
  return html`<${Loading} state=${state}>${(d) => (list(d.jobs).length === 0 ? html`<p class="muted">No training yet.</p>`
    : html`<${Table} caption="Recent trainings" className="jobs"
    rows=${list(d.jobs)} rowKey=${(j) => j.id} columns=${[
      { key: "id", label: "Job", render: (j) => html`<a href=${"#/train/" + enc(j.id)}>${j.id}</a>` },
      { key: "name", label: "Name", value: (j) => j.spec && j.spec.name },
      { key: "family", label: "Model", value: (j) => j.spec && j.spec.family },
      { key: "status", label: "Status", render: (j) => html`<${Status} job=${j} />` },
      { key: "stage", label: "Stage", value: (j) => j.stage },
      { key: "created", label: "Started (UTC)", value: (j) => utc(j.created) },
      { key: "run", label: "Run", render: (j) => (j.run ? html`<a href=${"#/runs/" + enc(j.run)}>${j.run}</a>` : "–") },
      { key: "version", label: "Version", value: (j) => j.version },
    ]} />`)}<//>`;
}

export function TrainPage() {
  const options = useLoad(() => get("/v1/train:options"), []);
  const views = useLoad(() => get("/v1/features"), []);
  return html`<h2>Train a model</h2>
    <p class="muted">The label view's rows are the training spine; every numeric feature of the picked views is joined as of
      each row's time. The training runs in its own process on the server.</p>
    <${Loading} state=${options}>${(o) => html`<${Loading} state=${views}>${(v) => html`<${TrainForm} options=${o}
      views=${list(v.views)} />`}<//>`}<//>
    <${JobList} />`;
}

function JobProgress({ job }) {
  const p = job.progress || {};
  return html`<section class="progress"><h3>Progress</h3>
    <p><${Status} job=${job} /> ${job.stage}${job.error ? html` — <span class="error-text">${job.error}</span>` : null}</p>
    ${p.budget ? html`<label>Trials <progress max=${p.budget} value=${p.trials || 0}>${p.trials || 0} of ${p.budget}</progress>
      ${p.trials || 0} of ${p.budget}</label>` : null}
    <dl class="kv">${p.rows !== undefined ? html`<dt>Rows</dt><dd>${p.rows}${p.train !== undefined ? ` (${p.train} train, ${p.test} test)` : ""}</dd>` : null}
      ${p.trials ? html`<dt>Trials</dt><dd>${p.trials}, last ${p.family} ${fmt(p.score)}; best ${p.metric} ${fmt(p.best)}</dd>` : null}
      <dt>Started / finished (UTC)</dt><dd>${utc(job.started || job.created)} / ${utc(job.finished)}</dd></dl>
  </section>`;
}

// The spec without its model settings (shown apart).
function asked(spec) {
  const { params, budget, ...rest } = spec || {};
  return rest;
}

export function TrainJob({ id }) {
  const [state] = usePoll(() => get("/v1/train/" + enc(id)), [id], (j) => LIVE[j.status], 1000);
  return html`<p><a href="#/train">← Train</a></p><${Loading} state=${state}>${(j) => html`
    <h2>Training ${j.spec && j.spec.name} <small>job ${j.id}</small></h2>
    <${JobProgress} job=${j} />
    ${j.status === "succeeded" ? html`<p class="ok" role="status">Trained: run <a href=${"#/runs/" + enc(j.run)}>${j.run}</a>${
      j.version ? html`, registered as <a href=${"#/models/" + enc(j.spec.name)}>${j.spec.name} ${j.version}</a>` : null}${
      j.study ? html`, trials in study <a href=${"#/runs/studies/" + enc(j.study)}>${j.study}</a>` : null}.</p>` : null}
    <${KV} title="Holdout metrics" data=${j.metrics} />
    <${KV} title="What was asked" data=${asked(j.spec)} />
    <${KV} title="Hyperparameters" data=${j.spec && (j.spec.params || j.spec.budget)} />
    <details class="log" open><summary>Output (${list(j.log).length} last lines)</summary><pre>${list(j.log).join("\n")}</pre></details>`}<//>`;
}
