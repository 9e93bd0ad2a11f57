// One view's lineage (the view -> the registered versions, i.e. pipelines,
// that read it -> the endpoints serving them) and its features duplicated
// by value in other views of its entity (fs:duplicates, this view only).
import { get, enc } from "../api.js";
import { html, fmt, useLoad, Loading, Table, list } from "../ui.js";

function Flow({ doc }) {
  const models = list(doc.models), eps = list(doc.endpoints);
  const versions = models.flatMap((m) => list(m.versions));
  return html`<div class="lineage-flow" aria-label="lineage">
    <div class="node view"><strong>${doc.view}</strong><small>view of ${doc.entity}${doc.owner ? `, ${doc.owner}` : ""}</small></div>
    <span class="arrow">→</span>
    <div class="node-col">${versions.length ? versions.map((v) => html`<div class="node model">
      <a href=${"#/models/" + enc(v.name)}>${v.name} ${v.version}</a>
      <small>${[v.latest ? "latest" : null, ...list(v.aliases)].filter(Boolean).join(", ") || "–"}</small></div>`)
      : html`<div class="node none">no registered pipeline reads it</div>`}</div>
    <span class="arrow">→</span>
    <div class="node-col">${eps.length ? eps.map((e) => html`<div class=${"node endpoint" + (e.alive ? "" : " gone")}>
      <code>${e.route}</code><small>${e.slot} ${e.model} ${e.version}, port ${fmt(e.port)} worker ${fmt(e.worker)}${e.alive ? "" : " (gone)"}</small></div>`)
      : html`<div class="node none">not served</div>`}</div></div>`;
}

export function Lineage({ view }) {
  const state = useLoad(() => get(`/v1/features/${enc(view)}/lineage`), [view]);
  return html`<section class="lineage"><h3>Lineage</h3><${Loading} state=${state}>${(doc) => html`
    <${Flow} doc=${doc} />
    <${Table} caption="Registered versions (pipelines) that read the view" className="readers"
      rows=${list(doc.models).flatMap((m) => list(m.versions))} rowKey=${(v) => v.name + "@" + v.version} columns=${[
        { key: "name", label: "Model", render: (v) => html`<a href=${"#/models/" + enc(v.name)}>${v.name}</a>` },
        { key: "version", label: "Version", value: (v) => v.version },
        { key: "aliases", label: "Aliases", value: (v) => [v.latest ? "latest" : null, ...list(v.aliases)].filter(Boolean).join(", ") },
        { key: "reads", label: "Reads", value: (v) => list(v.reads).join(", ") },
      ]} />
    <${Table} caption="Endpoints serving them" className="endpoints" rows=${list(doc.endpoints)} columns=${[
        { key: "route", label: "Route", render: (e) => html`<code>${e.route}</code>` },
        { key: "slot", label: "Slot", value: (e) => e.slot },
        { key: "model", label: "Model", value: (e) => `${e.model} ${e.version}${e.alias ? ` (${e.alias})` : ""}` },
        { key: "where", label: "Worker", value: (e) => `port ${e.port}, worker ${e.worker}` },
        { key: "alive", label: "Alive", value: (e) => e.alive },
      ]} />`}<//></section>`;
}

export function ValueDuplicates({ view }) {
  const state = useLoad(() => get(`/v1/features:duplicates?view=${enc(view)}`), [view]);
  return html`<section class="duplicates"><h3>Duplicated by value</h3><${Loading} state=${state}>${(data) => {
    const found = list(data.duplicates);
    if (found.length === 0) {
      return html`<p class="muted">No feature of ${view} agrees with another view's of its entity (identical, or |r| ≥ ${data.threshold}).</p>`;
    }
    return html`<div class="banner dup-banner" role="status">${found.length} feature${found.length > 1 ? "s" : ""} of ${view}
      hold the same values as another team's.</div>
      <${Table} caption="Duplicated features" rows=${found} columns=${[
      { key: "a", label: "Feature", value: (d) => d.a }, { key: "b", label: "Duplicate", value: (d) => d.b },
      { key: "owners", label: "Owners", value: (d) => list(d.owners).join(" / ") },
      { key: "shared", label: "Shared entities", num: true, value: (d) => d.shared },
      { key: "identical", label: "Identical", num: true, value: (d) => d.identical },
      { key: "r", label: "r", num: true, value: (d) => d.correlation },
    ]} />`;
  }}<//></section>`;
}
