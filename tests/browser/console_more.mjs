// Drives Debian's chromium through the console's Runs (group-by, compare with
// parallel coordinates and a scatter, tuning studies), Train and DAG (graph,
// Backfill) pages of a running tycho server (tests/lua/e2e/console_more_spec.lua
// starts it on a seeded home).
//
//   node tests/browser/console_more.mjs --base http://127.0.0.1:PORT --token SECRET \
//        --out build/console-more-screenshots [--chromium /usr/bin/chromium]
//
// Fails (exit 1) on any console error, page error, dialog, failed request or
// HTTP error answer, except the 401s it provokes by clicking Train and
// Backfill without the token. Prints one JSON line (tests/browser/harness.mjs):
// { ok, pages: [{ name, ms, screenshot }], problems: [...], actions: {...} }.
import { drive } from "./harness.mjs";

await drive("console_more.mjs", "build/console-more-screenshots", async ({ args, page, actions, visit, shoot, refused }) => {
  // ---- Runs: group-by on the server, compare, studies ----
  await visit("runs-group-by", "/runs", "main table.groups tbody tr", async () => {
    await page.waitForSelector("main table.runs tbody tr");
    await page.click("main details.group-by summary");
    await page.selectOption("main select[name=group-by]", "params.depth");
  });
  actions.groups = await page.$$eval("main table.groups tbody tr", (r) => r.map((x) => x.textContent.trim()));
  actions.meanstd_whiskers = await page.$$eval("main figure.meanstd line.whisker", (l) => l.length);
  actions.list_scatter = await page.$$eval("main section.param-scatter canvas", (c) => c.length);

  await visit("runs-compare", "/runs?", "main figure.parallel polyline", async () => {
    await page.selectOption("main select[name=kind]", "trial");
    await page.locator("main table.runs tbody tr", { hasText: "churn_tune" }).first().waitFor({ state: "visible" });
    const boxes = page.locator("main table.runs tbody tr input[type=checkbox]");
    for (let i = 0; i < 3; i++) await boxes.nth(i).check();
    await page.click("main a.button:not(.disabled)");
  });
  actions.parallel_lines = await page.$$eval("main figure.parallel polyline", (p) => p.length);
  actions.parallel_axes = await page.$$eval("main figure.parallel line.axis", (l) => l.length);
  actions.compare_scatter = await page.$$eval("main section.param-scatter canvas", (c) => c.length);

  await visit("studies", "/runs/studies", "main table.studies tbody tr");
  await visit("study", null, "main figure.study-progress canvas", async () => {
    await page.click("main table.studies tbody tr td a");
  });
  actions.study_trials = await page.$$eval("main table.trials tbody tr", (r) => r.length);
  const bests = await page.$$eval("main table.trials tbody tr td:nth-child(5)", (t) => t.map((x) => Number(x.textContent)));
  actions.best_never_worse = bests.every((b, i) => i === 0 || b >= bests[i - 1]);

  // ---- Train: refused without the token; with it the job runs and lands ----
  await visit("train", "/train", "main form.train select[name=label-view]");
  await page.fill("main input[name=name]", "churn_console");
  await page.selectOption("main select[name=label-view]", "user_labels");
  await page.selectOption("main select[name=label-feature]", "churned");
  await page.check("main input[name=view][value=user_stats]");
  await page.selectOption("main select[name=family]", "gbt");
  await page.fill("main input[name=param-rounds]", "30");
  await page.fill("main input[name=param-depth]", "3");
  actions.train_without_token = await refused("#train", "main form.train .error");
  await shoot("train-refused");
  await page.fill("header input[name=token]", args.token);
  const t0 = Date.now();
  await page.click("#train");
  await page.waitForSelector("main section.progress");
  await page.locator("main p.ok", { hasText: "Trained" }).waitFor({ state: "visible", timeout: 60000 });
  actions.train_seconds = (Date.now() - t0) / 1000;
  actions.trained = (await page.textContent("main p.ok")).trim();
  actions.train_log_lines = await page.$$eval("main details.log pre", (p) => p[0].textContent.split("\n").length);
  await shoot("train-job");
  const runHref = await page.getAttribute("main p.ok a", "href");
  await visit("train-run", runHref.replace(/^#/, ""), "main dl.kv");
  actions.train_run_kind = (await page.textContent("main dl.kv dd")).trim();

  // AutoML with a budget of trials: its progress, then its study.
  await visit("train-automl", "/train", "main form.train select[name=label-view]");
  await page.fill("main input[name=name]", "churn_automl");
  await page.selectOption("main select[name=label-view]", "user_labels");
  await page.selectOption("main select[name=label-feature]", "churned");
  await page.check("main input[name=view][value=user_stats]");
  await page.selectOption("main select[name=family]", "automl");
  await page.fill("main input[name=budget]", "6");
  // (gbt and logistic: the families of a classification, in name order forest, gbt, linear, logistic)
  await page.check("main input[name=automl-family] >> nth=1");
  await page.check("main input[name=automl-family] >> nth=3");
  await page.click("#train");
  await page.locator("main p.ok", { hasText: "Trained" }).waitFor({ state: "visible", timeout: 90000 });
  actions.automl = (await page.textContent("main p.ok")).trim();
  actions.automl_trials = (await page.textContent("main section.progress dl.kv")).trim();
  await shoot("train-automl-job");
  await visit("train-jobs", "/train", "main table.jobs tbody tr");
  actions.jobs = await page.$$eval("main table.jobs tbody tr", (r) => r.length);

  // ---- DAGs: the graph by state; Backfill refused, then queued ----
  await visit("dag-graph", "/dags/etl", "main figure.dag-graph g.node");
  actions.graph_nodes = await page.$$eval("main figure.dag-graph g.node", (g) => g.map((x) => x.getAttribute("class")));
  actions.graph_edges = await page.$$eval("main figure.dag-graph path.edge", (p) => p.length);
  const runsBefore = await page.$$eval("main table.grid th.run-head", (t) => t.length);
  await page.fill("main .actions input[name=from]", "2026-01-05");
  await page.fill("main .actions input[name=to]", "2026-01-07");
  actions.backfill_without_token = await refused("#backfill", "main .actions .error");
  await page.fill("header input[name=token]", args.token);
  await page.click("#backfill");
  await page.waitForSelector("main .actions .ok");
  actions.backfill = (await page.textContent("main .actions .ok")).trim();
  // The runner is a child process: refresh until its three runs show, finished.
  for (let i = 0; i < 60; i++) {
    await page.click("main .pager button:text-is('Refresh')");
    await page.waitForTimeout(500);
    const heads = await page.$$eval("main table.grid th.run-head", (t) => t.map((x) => x.textContent));
    if (heads.length >= runsBefore + 3 && !heads.some((h) => /running|queued/.test(h))) break;
  }
  actions.dag_runs = await page.$$eval("main table.grid th.run-head", (t) => t.length);
  await visit("dag-backfilled", null, "main table.grid tbody tr");
});
