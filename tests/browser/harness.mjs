// What the console's browser tests (console.mjs, console_more.mjs) share:
// their arguments, Debian's chromium, a page on which every console error,
// page error, dialog (an escaped string that ran), failed request and HTTP
// error answer is a problem (but the 401s a test provokes on purpose), the
// CSP of /ui/, visits with their timings and screenshots, and the report.
//
//   import { drive } from "./harness.mjs";
//   await drive("mine.mjs", "build/mine-screenshots", async ({ args, page, actions, visit, shoot, refused }) => {
//     await visit("runs", "/runs", "main table.runs tbody tr");
//     actions.refused = await refused("#train", "main form.train .error");
//   });
//
// drive exits the process: 0 with no problem, 1 with any, 2 after 150 s.
// It prints one JSON line, { ok, pages: [{ name, ms, screenshot }],
// problems: [...], actions: {...} }, also written to OUT/report.json (the
// page timings beside the screenshots).
import { chromium } from "playwright-core";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const TIMEOUT = 15000;

// --name value pairs of the command line.
function parseArgs() {
  return Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith("--")) acc.push([a.slice(2), all[i + 1]]);
    return acc;
  }, []));
}

// Runs steps({ args, page, problems, actions, visit, shoot, refused }) on
// the console at --base, then reports and exits (see above).
export async function drive(script, defaultOut, steps) {
  const args = parseArgs();
  const base = args.base;
  const out = args.out || defaultOut;
  const guard = setTimeout(() => { console.error(`${script}: gave up after 150 s`); process.exit(2); }, 150000);
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

    // CSP on the page itself, and the bundle loaded from the server only.
    const first = await page.goto(base + "/ui/", { waitUntil: "load" });
    const csp = first.headers()["content-security-policy"] || "";
    if (!/script-src 'self'/.test(csp) || /unsafe-inline/.test(csp)) problems.push(`bad CSP on /ui/: ${csp}`);

    // Saves a screenshot of the page as it is, numbered in visiting order.
    async function shoot(name, ms = 0) {
      const screenshot = join(out, `${String(pages.length + 1).padStart(2, "0")}-${name}.png`);
      await page.screenshot({ path: screenshot, fullPage: true });
      pages.push({ name, ms, screenshot });
    }

    // Opens a hash route (or stays, for null), runs act, waits for ready (a
    // selector) and no "Loading…", fails on a shown error, saves a screenshot.
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

    await steps({ args, page, problems, actions, visit, shoot, refused });
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
}
