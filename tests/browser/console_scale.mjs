// Opens every console page of a running tycho server on the scale home
// (tests/lua/integration/console_scale_spec.lua seeds it and starts the
// server), each from a blank tab, so that its time is a first render:
// loading /ui/ and the bundle, the page's API answers and their rendering,
// until its content shows and no "Loading…" is left.
//
//   node tests/browser/console_scale.mjs --base http://127.0.0.1:PORT --out build/console-scale-screenshots \
//        [--chromium /usr/bin/chromium]
//
// Fails (exit 1) on any console error, page error, failed request or HTTP
// error answer (tests/browser/harness.mjs). Prints one JSON line, { ok,
// pages: [{ name, ms, screenshot }], problems, actions }; the spec holds
// every page's ms to its budget.
import { drive } from "./harness.mjs";

await drive("console_scale.mjs", "build/console-scale-screenshots", async ({ page, actions, visit }) => {
  // A first render: from a blank tab, so that nothing of the page before is reused.
  async function first(name, hash, ready) {
    await page.goto("about:blank");
    await visit(name, hash, ready);
  }
  const cells = (sel) => page.$$eval(sel, (els) => els.length);

  await first("features", "/features", "main table.views tbody tr");
  await first("feature-view", "/features/view_0500", "main section.lineage");
  await first("runs", "/runs", "main table.runs tbody tr");
  actions.run_rows = await cells("main table.runs tbody tr");
  const ids = await page.$$eval("main table.runs tbody tr td:nth-child(2) a", (a) => a.slice(0, 2).map((x) => x.textContent.trim()));
  await first("run", "/runs/" + encodeURIComponent(ids[0]), "main dl.kv");
  await first("runs-compare", "/runs/compare?ids=" + ids.map(encodeURIComponent).join(","), "main table caption:text-is('Metrics')");
  await first("studies", "/runs/studies", "main table.studies caption");
  await first("train", "/train", "main form.train select[name=label-view]");
  actions.train_views = await cells("main form.train select[name=label-view] option");
  await first("models", "/models", "main table tbody tr");
  actions.model_rows = await cells("main table tbody tr");
  await first("model", "/models/model-0", "main table.history tbody tr");
  await first("model-compare", "/models/model-0/compare?a=1.0.0&b=1.0.1", "main .compare table tbody tr");
  await first("serving", "/serving", "main table.traffic tbody tr");
  actions.serving_versions = await cells("main table.traffic tbody tr");
  await first("experiments", "/experiments", "main table tbody tr");
  await first("experiment", "/experiments/year", "main section.timeline figure.chart canvas");
  await first("monitor", "/monitor", "main table tbody tr");
  await first("monitor-model", "/monitor/model-0", "main table.drift tbody tr");
  actions.monitor_panels = await cells("main section.version-panel");
  await first("dags", "/dags", "main table tbody tr td a");
  // (the grid and the graph load apart: the page is there when both are)
  await first("dag", "/dags/wide", "main:has(figure.dag-graph g.node) table.grid tbody tr");
  actions.dag_grid_rows = await cells("main table.grid tbody tr");
  actions.dag_graph_nodes = await cells("main figure.dag-graph g.node");
  const runLink = await page.getAttribute("main table.grid th.run-head a", "href");
  await first("dag-run", runLink.replace(/^#/, ""), "main details.log summary");
  actions.gantt_bars = await cells("main .gantt-bar");
});
