// Models: the registry's models; one model's versions (metrics, params,
// provenance, inputs), aliases with their policies and history, and
// Promote / Rollback / Request approval, and the requests waiting for an
// approval (candidate against the alias's holder, Approve / Reject), which
// send the token the user typed.
import { useState } from "preact/hooks";
import { get, post, enc, hasToken } from "../api.js";
import { html, fmt, useLoad, Loading, Table, Chart, KV, list } from "../ui.js";
import { Evaluation, AliasTimeline } from "./model_eval.js";

export function ModelList() {
  const state = useLoad(() => get("/v1/registry/models"), []);
  return html`<h2>Registered models</h2><${Loading} state=${state}>${(data) => html`
    <${Table} caption=${`${list(data.models).length} models`} rows=${list(data.models)} rowKey=${(m) => m.name} columns=${[
      { key: "name", label: "Model", render: (m) => html`<a href=${"#/models/" + enc(m.name)}>${m.name}</a>` },
      { key: "latest", label: "Latest", value: (m) => m.latest },
      { key: "versions", label: "Versions", num: true, value: (m) => m.versions },
      { key: "aliases", label: "Aliases", value: (m) => Object.keys(m.aliases || {}).sort()
        .map((a) => `${a} → ${m.aliases[a]}`).join(", ") || "–" },
    ]} />`}<//>`;
}

function Result({ result }) {
  if (!result) return null;
  if (result.ok) return html`<p class="ok" role="status">${result.message}</p>`;
  const reasons = list(result.error.reasons);
  return html`<div class="error" role="alert"><strong>${result.status} ${result.error.code}</strong>: ${result.error.message}
    ${reasons.length ? html`<ul>${reasons.map((r) => html`<li>${r}</li>`)}</ul>` : null}</div>`;
}

function Actions({ model, reload }) {
  const versions = model.versions.map((v) => v.version);
  const [version, setVersion] = useState(versions[versions.length - 1]);
  const [alias, setAlias] = useState(Object.keys(model.aliases)[0] || "production");
  const [approvedBy, setApprovedBy] = useState("");
  const [result, setResult] = useState(null);
  const [busy, setBusy] = useState(false);
  const act = async (path, body, message) => {
    setBusy(true);
    const r = await post(path, body);
    setBusy(false);
    setResult(r.ok ? { ok: true, message: message(r.data) } : r);
    if (r.ok) reload();
  };
  const base = "/v1/registry/models/" + enc(model.name) + "/aliases/" + enc(alias);
  return html`<section class="actions"><h3>Promote or roll back</h3>
    ${hasToken() ? null : html`<p class="muted">Type the server's token at the top: without it the server refuses.</p>`}
    <form onSubmit=${(e) => e.preventDefault()}>
      <label>Version <select name="version" value=${version} onChange=${(e) => setVersion(e.target.value)}>
        ${versions.map((v) => html`<option value=${v}>${v}</option>`)}</select></label>
      <label>Alias <input name="alias" value=${alias} onInput=${(e) => setAlias(e.target.value.trim())} /></label>
      <label>Approved by <input name="approved_by" value=${approvedBy} placeholder="when the policy asks"
        onInput=${(e) => setApprovedBy(e.target.value)} /></label>
      <button id="promote" disabled=${busy || !alias} onClick=${() => act(base,
        { version, approved_by: approvedBy || undefined }, (d) => `${d.name} ${d.version} is now ${d.alias}`)}>Promote</button>
      <button id="rollback" disabled=${busy || !alias} onClick=${() => act(base + "/rollback", {},
        (d) => `${d.name} ${d.alias} rolled back to ${d.version}`)}>Roll back ${alias}</button>
      <button id="request" disabled=${busy || !alias} onClick=${() => act(base + "/requests",
        { version, by: approvedBy || undefined }, (d) => `${d.name} ${d.version} waits for an approval to become ${d.alias}`)}>
        Request approval</button>
    </form><${Result} result=${result} /></section>`;
}

// The requests of a model: pending ones with the candidate's metrics beside
// the alias holder's, and Approve / Reject naming who and why.
function Requests({ model, reload }) {
  const state = useLoad(() => get("/v1/registry/models/" + enc(model.name) + "/requests"), [model]);
  const [by, setBy] = useState("");
  const [why, setWhy] = useState("");
  const [result, setResult] = useState(null);
  const decide = async (r, verb) => {
    const res = await post("/v1/registry/models/" + enc(model.name) + "/requests/" + enc(r.id) + "/" + verb,
      { by: by || undefined, reason: why || undefined });
    setResult(res.ok ? { ok: true, message: `request ${r.id} ${res.data.status}` } : res);
    if (res.ok) reload();
  };
  const metricsOf = (version) => (model.versions.find((v) => v.version === version) || {}).metrics || {};
  return html`<section class="requests"><h3>Promotion requests</h3><${Loading} state=${state}>${(doc) => {
    const all = list(doc.requests), open = all.filter((r) => r.status === "pending");
    return html`
      ${open.map((r) => {
        const cand = metricsOf(r.version), held = r.current ? metricsOf(r.current) : {};
        const names = [...new Set([...Object.keys(cand), ...Object.keys(held)])].filter((k) => k !== "rows").sort();
        return html`<article class="request"><p><strong>${r.version}</strong> to <strong>${r.alias}</strong>${" "}
          (now ${r.current || "unset"}), asked by ${r.by}${r.reason ? html` — ${r.reason}` : null} at ${r.at}</p>
          <${Table} caption=${`Candidate ${r.version} against ${r.current || "nothing"}`} rows=${names.map((k) => ({ k }))}
            columns=${[{ key: "k", label: "Metric", value: (x) => x.k },
                       { key: "c", label: r.version, num: true, value: (x) => cand[x.k] },
                       { key: "h", label: r.current || "–", num: true, value: (x) => held[x.k] }]} />
          ${r.current ? html`<p><a class="compare-link" href=${`#/models/${enc(model.name)}/compare?a=${enc(r.current)}&b=${enc(r.version)}`}>
            ${r.version} against ${r.current} side by side: curves, schema, hyperparameters</a></p>` : null}
          <button class="approve" onClick=${() => decide(r, "approve")}>Approve</button>
          <button class="reject" onClick=${() => decide(r, "reject")}>Reject</button></article>`;
      })}
      ${open.length ? html`<form onSubmit=${(e) => e.preventDefault()}>
        <label>Decided by <input name="decided_by" value=${by} onInput=${(e) => setBy(e.target.value)} /></label>
        <label>Why <input name="decision_reason" value=${why} onInput=${(e) => setWhy(e.target.value)} /></label></form>`
        : html`<p class="muted">No request waits.</p>`}
      <${Result} result=${result} />
      <${Table} caption="All requests" rows=${all} rowKey=${(r) => r.id} columns=${[
        { key: "at", label: "At", value: (r) => (r.at || "").replace("T", " ").slice(0, 19) },
        { key: "version", label: "Version", value: (r) => r.version },
        { key: "alias", label: "Alias", value: (r) => r.alias },
        { key: "by", label: "Asked by", value: (r) => r.by },
        { key: "status", label: "Status", value: (r) => r.status },
        { key: "decided_by", label: "Decided by", value: (r) => r.decided_by },
        { key: "decision", label: "Why", value: (r) => r.decision },
      ]} />`;
  }}<//></section>`;
}

function VersionDetail({ v }) {
  const inputs = list(v.inputs).map((name) => ({ name, type: (v.input_types || {})[name] || "?" }));
  const data = v.data && { rows: v.data.rows, content_hash: v.data.content_hash, views: v.data.views,
                           time_range: v.data.time_range, refs: v.data.refs };
  return html`<article class="version"><h3>Version ${v.version}</h3>
    <dl class="kv"><dt>Created</dt><dd>${v.created} by ${fmt(v.owner)}</dd><dt>Artifact</dt>
      <dd>${fmt(v.size)} bytes, sha256 <code>${v.sha256}</code></dd>
      ${v.description ? html`<dt>Description</dt><dd>${v.description}</dd>` : null}</dl>
    <div class="columns"><${KV} title="Metrics" data=${v.metrics} /><${KV} title="Hyperparameters" data=${v.params} /></div>
    <div class="columns"><${KV} title="Training data" data=${data} /><${KV} title="Code" data=${v.code} />
      <${KV} title="Provenance" data=${v.provenance} /></div>
    ${inputs.length ? html`<details><summary>${inputs.length} inputs</summary><${Table} caption="Input schema"
      rows=${inputs} columns=${[{ key: "name", label: "Input", value: (i) => i.name },
                                { key: "type", label: "Type", value: (i) => i.type }]} /></details>` : null}
    <${Evaluation} name=${v.name} version=${v.version} />
  </article>`;
}

export function ModelView({ name }) {
  const [tick, setTick] = useState(0);
  const state = useLoad(() => get("/v1/registry/models/" + enc(name)), [name, tick]);
  const [picked, setPicked] = useState(null);
  return html`<p><a href="#/models">← Models</a></p><${Loading} state=${state}>${(doc) => {
    const m = { ...doc, versions: list(doc.versions), history: list(doc.history), aliases: doc.aliases || {},
                policies: doc.policies || {} };
    const metricNames = [...new Set(m.versions.flatMap((v) => Object.keys(v.metrics || {})))]
      .filter((k) => k !== "rows").sort();
    const chartMetric = metricNames.includes("auc") ? "auc" : metricNames[0];
    const current = m.versions.find((v) => v.version === picked) || m.versions[m.versions.length - 1];
    const aliases = Object.keys(m.aliases).sort().map((a) => ({ alias: a, version: m.aliases[a], policy: m.policies[a] }));
    return html`<h2>Model ${m.name}</h2>
      <${Table} caption="Aliases" rows=${aliases} rowKey=${(a) => a.alias} className="aliases" columns=${[
        { key: "alias", label: "Alias", value: (a) => a.alias },
        { key: "version", label: "Version", value: (a) => a.version },
        { key: "policy", label: "Policy", value: (a) => (a.policy ? JSON.stringify(a.policy) : "none") },
      ]} />
      <${Actions} model=${m} reload=${() => setTick(tick + 1)} />
      <${Requests} model=${m} reload=${() => setTick(tick + 1)} />
      <${Table} caption="Versions (pick one for its details)" rows=${m.versions} rowKey=${(v) => v.version}
        className="versions" columns=${[
          { key: "version", label: "Version", render: (v) => html`<button class="link" aria-pressed=${v === current}
            onClick=${() => setPicked(v.version)}>${v.version}</button>` },
          { key: "created", label: "Created", value: (v) => (v.created || "").replace("T", " ").slice(0, 19) },
          { key: "owner", label: "Owner", value: (v) => v.owner },
          { key: "aliases", label: "Aliases", value: (v) => list(v.aliases).join(", ") || "–" },
          ...metricNames.map((k) => ({ key: k, label: k, num: true, value: (v) => (v.metrics || {})[k] })),
        ]} />
      ${chartMetric && m.versions.length > 1 ? html`<${Chart} title=${`${chartMetric} by version (table above)`}
        xs=${m.versions.map((_, i) => i + 1)} series=${[{ label: chartMetric,
          values: m.versions.map((v) => (v.metrics || {})[chartMetric] ?? null) }]}
        xLabel="version (in order)" yLabel=${chartMetric} />` : null}
      ${m.versions.length > 1 ? html`<p><a class="button" id="compare" href=${`#/models/${enc(m.name)}/compare?a=${
        enc(m.versions[m.versions.length - 2].version)}&b=${enc(m.versions[m.versions.length - 1].version)}`}>Compare two versions</a></p>` : null}
      ${current ? html`<${VersionDetail} v=${current} />` : null}
      <${AliasTimeline} history=${m.history} />
      <${Table} caption="Alias history" rows=${m.history} className="history" columns=${[
        { key: "at", label: "At", value: (h) => (h.at || "").replace("T", " ").slice(0, 19) },
        { key: "alias", label: "Alias", value: (h) => h.alias },
        { key: "move", label: "Change", value: (h) => (h.kind === "policy" ? "policy " + (h.policy ? JSON.stringify(h.policy) : "removed")
          : h.kind === "request" ? `request for ${h.version}` : `${h.from ?? "–"} → ${h.to}`) },
        { key: "who", label: "By", value: (h) => h.who },
        { key: "why", label: "Why", value: (h) => [h.why, h.reason, h.approved_by && "approved by " + h.approved_by]
          .filter(Boolean).join("; ") },
        { key: "gates", label: "Checked", value: (h) => (h.forced ? "forced over: " + list(h.overrode).join("; ")
          : list(h.gates).join(", ")) },
      ]} />`;
  }}<//>`;
}
