// The Tycho console: one page, routed by the URL's hash (#/runs,
// #/models/spam, ...), reading the same JSON API as the CLI.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "uplot/dist/uPlot.min.css";
import "./style.css";
import { setToken } from "./api.js";
import { html } from "./ui.js";
import { FeatureView } from "./pages/features.js";
import { FeatureSearch } from "./pages/feature_search.js";
import { RunList, RunView, RunCompare } from "./pages/runs.js";
import { StudyList, StudyView } from "./pages/runs_more.js";
import { TrainPage, TrainJob } from "./pages/train.js";
import { ModelList, ModelView } from "./pages/models.js";
import { ModelCompare } from "./pages/model_eval.js";
import { ServingView } from "./pages/serving.js";
import { ExperimentList, ExperimentView } from "./pages/experiments.js";
import { MonitorList, MonitorView } from "./pages/monitor.js";
import { DagList, DagView, DagRun } from "./pages/dags.js";

const SECTIONS = [["features", "Features"], ["runs", "Runs"], ["train", "Train"], ["models", "Models"], ["serving", "Serving"],
  ["experiments", "Experiments"], ["monitor", "Monitoring"], ["dags", "DAGs"]];

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, qs] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map((p) => {
    try { return decodeURIComponent(p); } catch (e) { return p; }
  });
  return { parts, query: new URLSearchParams(qs || "") };
}

function Page({ route }) {
  const [section, arg] = route.parts;
  switch (section || "features") {
    case "features": return arg ? html`<${FeatureView} name=${arg} />` : html`<${FeatureSearch} />`;
    case "runs":
      if (arg === "compare") {
        const ids = (route.query.get("ids") || "").split(",").filter(Boolean);
        return html`<${RunCompare} ids=${ids} />`;
      }
      if (arg === "studies") return route.parts[2] ? html`<${StudyView} id=${route.parts[2]} />` : html`<${StudyList} />`;
      return arg ? html`<${RunView} id=${arg} />` : html`<${RunList} />`;
    case "models":
      if (arg && route.parts[2] === "compare") {
        return html`<${ModelCompare} name=${arg} a=${route.query.get("a")} b=${route.query.get("b")} />`;
      }
      return arg ? html`<${ModelView} name=${arg} />` : html`<${ModelList} />`;
    case "train": return arg ? html`<${TrainJob} id=${arg} />` : html`<${TrainPage} />`;
    case "serving": return html`<${ServingView} />`;
    case "experiments": return arg ? html`<${ExperimentView} name=${arg} />` : html`<${ExperimentList} />`;
    case "monitor": return arg ? html`<${MonitorView} name=${arg} />` : html`<${MonitorList} />`;
    case "dags":
      if (arg && route.parts[2]) return html`<${DagRun} name=${arg} run=${route.parts[2]} />`;
      return arg ? html`<${DagView} name=${arg} />` : html`<${DagList} />`;
    default: return html`<p class="error">No page ${section}.</p>`;
  }
}

function TokenField() {
  const [value, setValue] = useState("");
  return html`<label class="token">Token <input type="password" name="token" autocomplete="off" value=${value}
    placeholder="for promote, stop, trigger" onInput=${(e) => { setValue(e.target.value); setToken(e.target.value); }} /></label>`;
}

function App() {
  const [route, setRoute] = useState(parseHash());
  useEffect(() => {
    const on = () => setRoute(parseHash());
    window.addEventListener("hashchange", on);
    on();  // a hash that changed before the listener was there
    return () => window.removeEventListener("hashchange", on);
  }, []);
  const current = route.parts[0] || "features";
  return html`<header><h1><a href="#/features">Tycho</a></h1>
      <nav>${SECTIONS.map(([k, label]) => html`<a href=${"#/" + k} aria-current=${k === current ? "page" : undefined}>${label}</a>`)}</nav>
      <${TokenField} /></header>
    <main key=${location.hash}><${Page} route=${route} /></main>`;
}

const root = document.getElementById("app");
root.textContent = "";  // the "Loading the console…" placeholder
render(html`<${App} />`, root);
