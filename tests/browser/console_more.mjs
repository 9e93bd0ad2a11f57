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
// Backfill without the token. Prints one JSON line:
// { ok, pages: [{ name, ms, screenshot }], problems: [...], actions: {...} },
// also written to OUT/report.json (the page timings beside the screenshots).
import { chromium } from "playwright-core";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith("--")) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const base = args.base;
const out = args.out || "build/console-more-screenshots";
const TIMEOUT = 15000;

const guard = setTimeout(() => { console.error("console_more.mjs: gave up after 150 s"); process.exit(2); }, 150000);
mkdirSync(out, { recursive: true });

const problems = [];
const pages = [];
const actions = {};
// The 401s the test provokes on purpose: answers, and chromium's console
// lines about them (which may arrive after the page shows the refusal).
let answer401 = 0;
let console401 = 0;

const browser = await chromium.launch({
  executablePath: args.chromium || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  timeout: 30000,
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    if (console401 > 0 && /status of 401/.test(msg.text())) { console401--; return; }
    problems.push(`console error: ${msg.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("dialog", async (d) => { problems.push(`dialog opened (unescaped script?): ${d.message()}`); await d.dismiss(); });
  page.on("requestfailed", (req) => problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`));
  page.on("response", (res) => {
    if (res.status() < 400) return;
    if (res.status() === 401 && answer401 > 0) { answer401--; return; }
    problems.push(`HTTP ${res.status()} for ${res.url()}`);
  });

  const first = await page.goto(base + "/ui/", { waitUntil: "load" });
  const csp = first.headers()["content-security-policy"] || "";
  if (!/script-src 'self'/.test(csp) || /unsafe-inline/.test(csp)) problems.push(`bad CSP on /ui/: ${csp}`);

  async function shoot(name, ms) {
    const screenshot = join(out, `${String(pages.length + 1).padStart(2, "0")}-${name}.png`);
    await page.screenshot({ path: screenshot, fullPage: true });
    pages.push({ name, ms, screenshot });
  }

  // Opens a hash route (or stays), runs act, waits for ready (a selector)
  // and no "Loading…", fails on a shown error, saves a screenshot.
  async function visit(name, hash, ready, act) {
    const t0 = Date.now();
    if (hash !== null) await page.goto(base + "/ui/#" + hash, { waitUntil: "load" });
    if (act) await act();
    await page.waitForSelector(ready, { state: "visible" });
    // (a locator, not waitForFunction: that one may evaluate a string, which the CSP refuses)
    await page.locator("main .muted", { hasText: "Loading…" }).first().waitFor({ state: "detached" });
    const ms = Date.now() - t0;
    const err = await page.$("main .error");
    if (err) problems.push(`${name}: the page shows an error: ${await err.textContent()}`);
    await shoot(name, ms);
  }

  // Clicks button sel without the token: the server answers 401 and the
  // page shows it in errorSel. Returns the text shown.
  async function refused(sel, errorSel) {
    await page.fill("header input[name=token]", "");
    answer401 += 1;
    console401 += 1;
    await page.click(sel);
    await page.waitForSelector(errorSel);
    return (await page.textContent(errorSel)).trim();
  }

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
  await shoot("train-refused", 0);
  await page.fill("header input[name=token]", args.token);
  const t0 = Date.now();
  await page.click("#train");
  await page.waitForSelector("main section.progress");
  await page.locator("main p.ok", { hasText: "Trained" }).waitFor({ state: "visible", timeout: 60000 });
  actions.train_seconds = (Date.now() - t0) / 1000;
  actions.trained = (await page.textContent("main p.ok")).trim();
  actions.train_log_lines = await page.$$eval("main details.log pre", (p) => p[0].textContent.split("\n").length);
  await shoot("train-job", 0);
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
  await shoot("train-automl-job", 0);
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
} catch (e) {
  problems.push(`driver: ${e.message}`);
  // What the page showed when the driver gave up.
  const pg = browser.contexts()[0]?.pages()[0];
  if (pg) await pg.screenshot({ path: join(out, "failure.png"), fullPage: true }).catch(() => {});
} finally {
  await browser.close();
  clearTimeout(guard);
}
if (answer401 !== 0) problems.push(`${answer401} refusal(s) expected without the token were not answered 401`);
const report = { ok: problems.length === 0, pages, problems, actions };
writeFileSync(join(out, "report.json"), JSON.stringify(report, null, 2));
console.log(JSON.stringify(report));
process.exit(report.ok ? 0 : 1);
