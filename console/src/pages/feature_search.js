// Features: every team's views, searched on the server (name, owner, tags,
// description, feature names) a page at a time, with a team filter and the
// duplicates flagged: features defined the same way elsewhere, and features
// of the same name and type in another view of the entity.
import { useEffect, useState } from "preact/hooks";
import { get, enc } from "../api.js";
import { html, useLoad, Loading, Table, list } from "../ui.js";

const LIMIT = 50;

// The value after the user stops typing for ms.
function useSettled(value, ms) {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(t);
  }, [value]);
  return settled;
}

function Flags({ v }) {
  const flags = [...list(v.duplicates).map((d) => ({ kind: "same definition", text: d })),
    ...list(v.same_name).map((d) => ({ kind: "same name and type", text: d }))];
  if (flags.length === 0) return "–";
  return html`<details class="flags"><summary><span class="tag dup">${flags.length} duplicate${flags.length > 1 ? "s" : ""}</span></summary>
    <ul>${flags.map((f) => html`<li>${f.text} <small class="muted">(${f.kind})</small></li>`)}</ul></details>`;
}

export function FeatureSearch() {
  const [text, setText] = useState("");
  const [owner, setOwner] = useState("");
  const [offset, setOffset] = useState(0);
  const q = useSettled(text, 250);
  useEffect(() => setOffset(0), [q, owner]);
  const path = `/v1/features:search?q=${enc(q)}&owner=${enc(owner)}&limit=${LIMIT}&offset=${offset}`;
  const state = useLoad(() => get(path), [path]);
  return html`<h2>Feature views</h2>
    <form class="filters" onSubmit=${(e) => e.preventDefault()}>
      <label>Search every team's views <input type="search" name="q" value=${text}
        placeholder="name, owner, tag, description, feature" onInput=${(e) => setText(e.target.value)} /></label>
      <${Loading} state=${state}>${(doc) => html`<label>Team (owner) <select name="owner" value=${owner}
        onChange=${(e) => setOwner(e.target.value)}><option value="">every team</option>
        ${(owner && !list(doc.owners).some((o) => o.owner === owner) ? [{ owner, views: 0 }] : [])
          .concat(list(doc.owners)).map((o) => html`<option value=${o.owner}>${o.owner} (${o.views})</option>`)}
      </select></label>`}<//></form>
    <${Loading} state=${state}>${(doc) => {
      const views = list(doc.views);
      const last = doc.offset + views.length;
      return html`<div class="pager">
          <button disabled=${doc.offset === 0} onClick=${() => setOffset(Math.max(0, doc.offset - LIMIT))}>Previous</button>
          <button disabled=${!doc.next_offset} onClick=${() => setOffset(doc.next_offset)}>Next</button></div>
        <${Table} caption=${`${views.length ? doc.offset + 1 : 0}–${last} of ${doc.total} views${q ? ` matching “${q}”` : ""}`}
          rows=${views} rowKey=${(v) => v.name} className="views" columns=${[
          { key: "name", label: "View", render: (v) => html`<a href=${"#/features/" + enc(v.name)}>${v.name}</a>` },
          { key: "entity", label: "Entity", value: (v) => v.entity },
          { key: "owner", label: "Owner", value: (v) => v.owner },
          { key: "tags", label: "Tags", render: (v) => list(v.tags).map((t) => html`<span class="tag">${t}</span>`) },
          { key: "description", label: "Description", value: (v) => v.description },
          { key: "version", label: "Version", num: true, value: (v) => v.version },
          { key: "features", label: "Features", num: true, value: (v) => list(v.features).length },
          { key: "dups", label: "Duplicates", render: (v) => html`<${Flags} v=${v} />` },
        ]} />`;
    }}<//>`;
}
