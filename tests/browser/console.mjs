// Drives Debian's chromium through every console page of a running tycho
// server (tests/lua/e2e/console_spec.lua starts it on a seeded home).
//
//   node tests/browser/console.mjs --base http://127.0.0.1:PORT --token SECRET --out build/console-screenshots \
//        --model spam --version 1.0.1 --alias production [--chromium /usr/bin/chromium]
//
// Fails (exit 1) on any console error, page error, dialog (an escaped string
// that ran), failed request or HTTP error answer, except the one 401 it
// provokes by clicking Promote, Stop and Trigger without the token. Prints one
// JSON line (tests/browser/harness.mjs):
// { ok, pages: [{ name, ms, screenshot }], problems: [...], actions: {...} }.
import { drive } from "./harness.mjs";

await drive("console.mjs", "build/console-screenshots", async ({ args, page, problems, actions, visit, shoot, refused }) => {
  const model = args.model || "spam";
  const version = args.version || "1.0.1";
  const alias = args.alias || "production";

  await visit("features", "/features", "main table tbody tr");
  const view = await page.textContent("main table tbody tr td a");
  await visit("feature-view", "/features/" + encodeURIComponent(view), "main figure.chart canvas");
  await visit("runs", "/runs", "main table.runs tbody tr");
  // Sort by a metric column (on the server) and check the order came back.
  const sorted = page.waitForResponse((r) => r.url().includes("/v1/runs?") && r.url().includes("sort=metrics.auc"));
  await page.click("main table.runs th button:text-is('auc')");
  const sortedDoc = await (await sorted).json();
  const aucs = sortedDoc.runs.map((r) => r.metrics && r.metrics.auc).filter((v) => typeof v === "number");
  if (aucs.some((v, i) => i > 0 && v > aucs[i - 1])) problems.push(`runs sorted by auc are not descending: ${aucs}`);
  actions.sorted_by_auc = aucs.length;
  await visit("runs-sorted", null, "main table.runs th[aria-sort='descending']");
  // Escaping: the seeded run named with markup shows as text.
  const seeded = await page.$$eval("main table.runs td", (tds) => tds.some((td) => td.textContent.includes("<img")));
  actions.markup_shown_as_text = seeded;
  const runId = await page.textContent("main table.runs tbody tr td:nth-child(2) a");
  await visit("run", "/runs/" + encodeURIComponent(runId), "main dl.kv");
  await visit("runs-compare", "/runs", "main table caption:text-is('Metrics')", async () => {
    await page.waitForSelector("main table.runs tbody tr input[type=checkbox]");
    const boxes = await page.$$("main table.runs tbody tr input[type=checkbox]");
    await boxes[0].check();
    await boxes[1].check();
    await page.click("main a.button:not(.disabled)");
  });
  await visit("models", "/models", "main table tbody tr");
  await visit("model", "/models/" + encodeURIComponent(model), "main table.history tbody tr");

  // Promote without the token: the server refuses (401), the page says so.
  await page.selectOption("main select[name=version]", version);
  await page.fill("main input[name=alias]", alias);
  actions.without_token = await refused("#promote", "main .actions .error");
  await shoot("promote-refused");

  // With the token: accepted, and the page shows the new alias.
  await page.fill("header input[name=token]", args.token);
  await page.click("#promote");
  await page.waitForSelector("main .actions .ok");
  actions.with_token = (await page.textContent("main .actions .ok")).trim();
  // Locators, not waitForFunction: its polling may evaluate a string, which the CSP refuses.
  await page.locator("main table.aliases tbody tr", { hasText: alias }).filter({ hasText: version })
    .first().waitFor({ state: "visible" });
  await visit("model-promoted", null, "main .actions .ok");

  // A promotion request waits for an approval; Approve moves the alias.
  await page.fill("main input[name=alias]", "review");
  await page.fill("main input[name=approved_by]", "ana");
  await page.click("#request");
  await page.waitForSelector("main .requests article.request");
  await page.fill("main input[name=decided_by]", "lead");
  await page.fill("main input[name=decision_reason]", "checked the metrics");
  await shoot("approval-request");
  await page.click("main .requests button.approve");
  await page.waitForSelector("main .requests .ok");
  actions.approved = (await page.textContent("main .requests .ok")).trim();
  await page.locator("main table.aliases tbody tr", { hasText: "review" }).first().waitFor({ state: "visible" });

  // Serving: each worker's slots (main, canary, shadow) and traffic per version.
  await visit("serving", "/serving", "main table.traffic tbody tr");
  actions.serving_workers = await page.$$eval("main table.workers tbody tr", (r) => r.length);
  actions.serving_slots = await page.$$eval("main table.split tbody tr td:first-child", (t) => t.map((x) => x.textContent.trim()));
  actions.serving_charts = await page.$$eval("main figure.chart canvas", (c) => c.length);

  // Experiments: lift over time, traffic per day; Stop refused without the
  // token, Declare winner accepted with it; a bandit's allocation; the SRM banner.
  await visit("experiments", "/experiments", "main table tbody tr");
  await visit("experiment", "/experiments/checkout", "main section.timeline figure.chart canvas");
  actions.experiment_charts = await page.$$eval("main section.timeline figure.chart canvas", (c) => c.length);
  actions.stop_without_token = await refused("#stop", "main .actions .error");
  await page.fill("header input[name=token]", args.token);
  await page.selectOption("main select[name=winner]", "treatment");
  await page.click("#declare");
  await page.waitForSelector("main .actions .ok");
  actions.declared = (await page.textContent("main .actions .ok")).trim();
  await page.locator("main h2 small.status", { hasText: "stopped" }).first().waitFor({ state: "visible" });
  await visit("experiment-stopped", null, "main .banner");
  await visit("experiment-bandit", "/experiments/banner", "main section.timeline figure.chart canvas");
  actions.bandit_charts = await page.$$eval("main section.timeline figure.chart canvas", (c) => c.length);
  await visit("experiment-srm", "/experiments/layout", "main .banner.srm");
  actions.srm_banner = (await page.textContent("main .banner.srm")).trim();

  // Monitoring: server-aggregated series and the drift table with histograms.
  await visit("monitor", "/monitor", "main table tbody tr");
  await visit("monitor-model", "/monitor/" + encodeURIComponent(model), "main table.drift tbody tr");
  actions.monitor_charts = await page.$$eval("main figure.chart canvas", (c) => c.length);
  const driftFirst = await page.textContent("main table.drift tbody tr:nth-child(2) td:first-child");
  actions.most_drifted = driftFirst.trim();
  await page.click("main table.drift tbody tr:nth-child(2) button");
  await visit("monitor-histogram", null, "main table.histogram tbody tr");

  // DAGs: the grid, Trigger refused without the token and accepted with it.
  await visit("dags", "/dags", "main table tbody tr td a");
  const dagName = (await page.textContent("main table tbody tr td a")).trim();
  await visit("dag", "/dags/" + encodeURIComponent(dagName), "main table.grid tbody tr");
  actions.trigger_without_token = await refused("#trigger", "main .actions .error");
  await page.fill("header input[name=token]", args.token);
  await page.click("#trigger");
  await page.waitForSelector("main .actions .ok");
  actions.trigger_with_token = (await page.textContent("main .actions .ok")).trim();
  const runsBefore = await page.$$eval("main table.grid th.run-head", (t) => t.length);
  // The runner is a child process: refresh until its run shows, finished.
  for (let i = 0; i < 40; i++) {
    await page.click("main .pager button:text-is('Refresh')");
    await page.waitForTimeout(500);
    const heads = await page.$$eval("main table.grid th.run-head", (t) => t.map((x) => x.textContent));
    if (heads.length > runsBefore && !/running|queued/.test(heads[0])) break;
  }
  actions.dag_runs = await page.$$eval("main table.grid th.run-head", (t) => t.length);
  await visit("dag-triggered", null, "main table.grid tbody tr");
  const runLink = await page.getAttribute("main table.grid th.run-head a", "href");
  await visit("dag-run", runLink.replace(/^#/, ""), "main details.log summary");
  actions.gantt_bars = await page.$$eval("main .gantt-bar", (b) => b.length);
  actions.log_markup_as_text = await page.$$eval("main details.log pre", (p) => p.some((x) => x.textContent.includes("<b>spam</b>")));

  // ---- Models: holdout evaluation, alias timeline, compare; Features: search, lineage ----
  // (pages/model_eval.js, feature_search.js, feature_lineage.js)
  await visit("model-evaluation", "/models/" + encodeURIComponent(model), "main section.evaluation figure.curves polyline");
  actions.evaluation_curves = await page.$$eval("main section.evaluation figure.curves polyline", (p) => p.length);
  actions.confusion_cells = await page.$$eval("main section.evaluation table.confusion tbody td", (t) => t.length);
  actions.importance_rows = await page.$$eval("main section.evaluation table.importance tbody tr", (t) => t.length);
  actions.timeline_bars = await page.$$eval("main section.timeline .alias-bar", (b) => b.length);
  await visit("model-compare", null, "main figure.curves polyline", async () => {
    await page.click("main a#compare");
    await page.waitForSelector("main table.schema-diff, main p.schema-same");
  });
  actions.compare_curves = await page.$$eval("main figure.curves polyline", (p) => p.length);
  actions.compare_metrics = await page.$$eval("main .compare .table-wrap:first-child tbody tr", (t) => t.length);
  await visit("model-legacy", "/models/spam_legacy", "main section.evaluation p.note");
  actions.legacy_note = (await page.textContent("main section.evaluation p.note")).trim();
  await visit("features-search", "/features", "main table.views tbody tr", async () => {
    await page.waitForSelector("main table.views tbody tr");
    const searched = page.waitForResponse((r) => r.url().includes("/v1/features:search?q=trust"));
    await page.fill("main input[name=q]", "trust");
    await searched;
  });
  actions.search_rows = await page.$$eval("main table.views tbody tr", (t) => t.length);
  const searchedView = (await page.textContent("main table.views tbody tr td a")).trim();
  await visit("feature-lineage", "/features/" + encodeURIComponent(searchedView), "main section.lineage .node.endpoint");
  actions.lineage_models = await page.$$eval("main section.lineage table.readers tbody tr", (t) => t.length);
  actions.lineage_endpoints = await page.$$eval("main section.lineage table.endpoints tbody tr td code",
    (t) => t.map((x) => x.textContent.trim()));
  await page.locator("main section.duplicates p, main section.duplicates table").first().waitFor({ state: "visible" });
  // ---- end of the models / features block ----
});
