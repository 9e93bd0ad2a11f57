-- The web console (issue 24): its read routes on a seeded home, `tycho ui`,
-- and every page driven in headless chromium (tests/browser/console.mjs:
-- no console error or failed request; Promote, Stop and Trigger refused
-- without the token and accepted with it), then the home checked for what
-- the page did.
local testing = require "tycho.testing"
local console = dofile("tests/lua/fixtures/console.lua")

describe("console", function()
  local home, srv
  setup(function()
    home = dofile("tests/lua/fixtures/spam_home.lua")({})
    -- A run whose names hold markup: the pages must show it as text.
    local seed = testing.write(home .. "/seed.lua", [[
      local runs = require "tycho.registry.runs"
      assert(runs.record { kind = "fit", model = "<img src=x onerror=alert(1)>", params = { note = "<b>x</b>" },
                           metrics = { auc = 0.5 }, seconds = 0.1 })
      -- A version registered without a holdout evaluation (as before they were kept).
      local reg = assert(require("tycho.registry").open())
      assert(reg:register("spam_legacy", assert(reg:load("spam", "1.0.0"))))]])
    local code, _, err = testing.run({ "--home", home, "run", seed })
    assert(code == 0, err)
    -- An hour of predictions of spam 1.0.0 (every input kept, one in 50 an
    -- error, capitalTotal drifting in the second half), written through
    -- the prediction log's own batch, spread over the last 50 minutes.
    local predictions = testing.write(home .. "/predictions.lua", [[
      local tycho = require "tycho"
      local pipe = assert(tycho.registry.open():load("spam", "1.0.0"))
      local f = assert(tycho.frame.read_csv("../shared/data/spam.csv"))
      local n = math.min(f:nrows(), 600)
      dofile("tests/lua/fixtures/prediction_history.lua")(assert(tycho.store.open()), { n = n, seconds = 3000,
        entry = function(i)
          local row = f:row(i)
          row.label = nil
          if i > n / 2 then row.capitalTotal = (row.capitalTotal or 0) * 8 + 50 end
          return { model = "spam", version = "1.0.0", inputs = row, output = pipe:predict(row),
                   ms = 0.2 + (i % 13) / 10 + (i > n / 2 and 1 or 0), error = i % 50 == 0 and "rejected input" or nil }
        end })]])
    code, _, err = testing.run({ "--home", home, "run", predictions })
    assert(code == 0, err)
    -- A DAG with two runs (its train task logs markup: shown as text).
    local dag = testing.write(home .. "/etl.lua", [[
      local tycho = require "tycho"
      return tycho.dag { name = "etl", schedule = "0 3 * * *", tasks = {
        extract = { run = function(ctx) print("extracted 100 rows for " .. ctx.date) return { rows = 100 } end },
        train = { after = "extract", run = function() print("training <b>spam</b>") end },
        report = { after = { "extract", "train" }, run = function() print("report written") end },
      } }]])
    for _, date in ipairs { "2026-01-01", "2026-01-02" } do
      code, _, err = testing.run({ "--home", home, "dag", "run", dag, "--date", date, "--quiet" }, { timeout = 30000 })
      assert(code == 0, err)
    end
    -- Four days of three experiments' traffic (an A/B test, a bandit, one with a
    -- sample-ratio mismatch).
    code, _, err = testing.run({ "--home", home, "run", "tests/lua/fixtures/experiment_history.lua" })
    assert(code == 0, err)
    -- spam with a canary and a shadow, for the serving page.
    srv = console.serve("tests/lua/fixtures/console_app.lua", home)
  end)
  teardown(function() console.stop(srv, home) end)

  local function get(path) return testing.request(srv.port, "GET", path) end

  it("pages runs from the store: by time with a cursor, sorted by a metric, filtered", function()
    local status, _, _, doc = get("/v1/runs?limit=2")
    assert.equal(200, status)
    assert.equal(7, doc.total)
    assert.equal(2, #doc.runs)
    assert.equal(2, doc.next_offset)
    assert.is_string(doc.cursor)
    local _, _, _, after = get("/v1/runs?limit=2&cursor=" .. doc.cursor)
    assert.equal(2, #after.runs)
    assert.is_true(after.runs[1].id < doc.runs[2].id)
    local _, _, _, by_offset = get("/v1/runs?limit=2&offset=2")
    assert.same({ after.runs[1].id, after.runs[2].id }, { by_offset.runs[1].id, by_offset.runs[2].id })
    local _, _, _, sorted = get("/v1/runs?sort=metrics.auc&limit=100")
    local last = math.huge
    for _, r in ipairs(sorted.runs) do
      if r.metrics and r.metrics.auc then
        assert.is_true(r.metrics.auc <= last)
        last = r.metrics.auc
      end
    end
    local _, _, _, asc = get("/v1/runs?sort=auc&order=asc&limit=1")
    assert.equal(0.5, asc.runs[1].metrics.auc)
    local _, _, _, fits = get("/v1/runs?kind=fit&model=spam")
    assert.equal(2, fits.total)
    for _, r in ipairs(fits.runs) do assert.same({ "fit", "spam" }, { r.kind, r.model }) end
    assert.equal(400, (get("/v1/runs?limit=0")))
    assert.equal(400, (get("/v1/runs?sort=auc&cursor=00")))
  end)

  it("shows one run and compares runs, naming what differs", function()
    local _, _, _, page = get("/v1/runs?limit=3")
    local status, _, _, one = get("/v1/runs/" .. page.runs[1].id)
    assert.equal(200, status)
    assert.equal(page.runs[1].id, one.id)
    assert.equal(404, (get("/v1/runs/1-2-3")))
    local _, _, _, cmp = get("/v1/runs:compare?ids=" .. page.runs[1].id .. "," .. page.runs[2].id)
    assert.equal(2, #cmp.runs)
    assert.is_table(cmp.differ)
    assert.equal(400, (get("/v1/runs:compare?ids=" .. page.runs[1].id)))
  end)

  it("serves the console with a CSP and no inline script, and rollback needs the token", function()
    local status, headers, body = get("/ui/")
    assert.equal(200, status)
    assert.matches("script-src 'self'", headers["content-security-policy"], 1, true)
    assert.is_nil(headers["content-security-policy"]:find("unsafe", 1, true))
    assert.is_nil(body:find("<script>", 1, true))
    assert.equal(302, (get("/")))
    assert.equal(404, (get("/ui/assets/..%2F..%2Fetc%2Fpasswd")))
    assert.equal(401, (testing.request(srv.port, "POST", "/v1/registry/models/spam/aliases/production/rollback")))
  end)

  it("takes promotion requests and their approval over HTTP, with the token", function()
    local auth = console.AUTH
    local path = "/v1/registry/models/spam/aliases/review/requests"
    assert.equal(401, (testing.request(srv.port, "POST", path, { body = { version = "1.0.0" } })))
    local status, _, body, req = testing.request(srv.port, "POST", path,
      { body = { version = "1.0.0", by = "ana", reason = "<b>try</b>" }, headers = auth })
    assert.equal(201, status, body)
    assert.equal("pending", req.status)
    local approve = "/v1/registry/models/spam/requests/" .. req.id .. "/approve"
    assert.equal(401, (testing.request(srv.port, "POST", approve, { body = { by = "lead" } })))
    local doc
    status, _, body, doc = testing.request(srv.port, "POST", approve, { body = { by = "lead", reason = "ok" }, headers = auth })
    assert.equal(200, status, body)
    assert.equal("approved", doc.status)
    local _, _, _, list = get("/v1/registry/models/spam/requests")
    assert.equal("approved", list.requests[1].status)
    local _, _, _, model = get("/v1/registry/models/spam")
    assert.equal("1.0.0", model.aliases.review)
  end)

  it("aggregates monitoring on the server: series per slice, drift sorted by PSI with histograms", function()
    local status, _, body, m = get("/v1/monitor/spam?window=1h&buckets=30")
    assert(status == 200, body)
    assert.equal(1, #m.versions)
    local v = m.versions[1]
    assert.same({ "1.0.0", "live", 600, 12 }, { v.version, v.role, v.volume, v.errors })
    assert.equal(30, #v.series.volume)
    assert.equal(30, #v.series.p99_ms)
    local sum = 0
    for _, n in ipairs(v.series.volume) do sum = sum + n end
    assert.equal(600, sum)
    local first = v.drift.features[1]
    assert.equal("capitalTotal", first.feature)
    assert.is_true(first.drifted)
    for i = 2, #v.drift.features do
      assert.is_true((v.drift.features[i].psi or -1) <= (v.drift.features[i - 1].psi or -1))
    end
    assert.equal(#first.histogram.reference, #first.histogram.live)
    assert.is_table(v.drift.output.histogram)
    assert.equal(400, (get("/v1/monitor/spam?window=soon")))
    assert.equal(400, (get("/v1/monitor/spam?buckets=0")))
    local _, _, _, none = get("/v1/monitor/nobody")
    assert.same({}, none.versions)
  end)

  it("pages DAG runs as a grid, shows one run with its log tails, and triggering needs the token", function()
    local _, _, _, dags = get("/v1/dags")
    assert.equal("etl", dags.dags[1].name)
    local _, _, _, dag = get("/v1/dags/etl")
    assert.same({ "extract", "train", "report" }, dag.tasks)
    assert.equal(3, #dag.edges)
    local _, _, _, page = get("/v1/dags/etl/runs?limit=1")
    assert.same({ 2, 1, "2026-01-02" }, { page.total, page.next_offset, page.runs[1].run_id })
    assert.same({ "extract", "train", "report" }, page.tasks)
    assert.equal("success", page.runs[1].tasks[2].state)
    local _, _, _, older = get("/v1/dags/etl/runs?limit=1&offset=1")
    assert.equal("2026-01-01", older.runs[1].run_id)
    local status, _, _, run = get("/v1/dags/etl/runs/2026-01-01")
    assert.equal(200, status)
    assert.matches("extracted 100 rows for 2026-01-01", table.concat(run.tasks[1].log, "\n"), 1, true)
    assert.equal(404, (get("/v1/dags/etl/runs/1999-01-01")))
    assert.equal(404, (get("/v1/dags/nope/runs")))
    assert.equal(400, (get("/v1/dags/etl/runs?limit=5000")))
    assert.equal(401, (testing.request(srv.port, "POST", "/v1/dags/etl/runs", { body = "{}" })))
  end)

  it("`tycho ui` serves the console and the read routes with no app file", function()
    local port = testing.free_port()
    local proc = testing.spawn({ "ui", "--port", tostring(port) }, { env = { "TYCHO_HOME=" .. home } })
    local ok = testing.run_until(function()
      return proc.code ~= nil or testing.request(port, "GET", "/v2/health/ready", { timeout = 500 }) == 200
    end, 15000)
    local status, _, _, models = testing.request(port, "GET", "/v1/registry/models")
    local ui = testing.request(port, "GET", "/ui/")
    proc:kill("sigterm")
    assert.equal(0, proc:wait(10000))
    assert.is_true(ok)
    assert.equal(200, status)
    assert.equal("spam", models.models[1].name)
    assert.equal(200, ui)
    assert.matches("the console is at http://127.0.0.1:" .. port .. "/ui/", proc.stdout(), 1, true)
  end)

  it("opens every page in chromium; Promote is refused without the token and accepted with it", function()
    local report, skipped = console.drive("console.mjs", srv, { "--model spam", "--version 1.0.1", "--alias production" })
    if not report then
      pending(skipped)
      return
    end
    assert.is_true(report.actions.markup_shown_as_text)
    assert.matches("401", report.actions.without_token)
    assert.matches("is now production", report.actions.with_token)
    assert.matches("approved", report.actions.approved)
    assert.is_true(#report.pages >= 23)
    assert.matches("401", report.actions.trigger_without_token)
    assert.matches("Started a runner", report.actions.trigger_with_token)
    assert.equal(3, report.actions.dag_runs)
    assert.equal("capitalTotal", report.actions.most_drifted)
    assert.is_true(report.actions.monitor_charts >= 3)
    assert.equal(3, report.actions.gantt_bars)
    assert.is_true(report.actions.log_markup_as_text)
    -- Serving: the worker's slots and four charts of spam's traffic.
    assert.is_true(report.actions.serving_workers >= 1)
    assert.same({ "main", "canary", "shadow" }, report.actions.serving_slots)
    assert.equal(4, report.actions.serving_charts)
    -- Experiments: lift and traffic (and a bandit's allocation) over time,
    -- Stop refused without the token, a winner declared with it, the SRM banner.
    assert.equal(2, report.actions.experiment_charts)
    assert.equal(3, report.actions.bandit_charts)
    assert.matches("401", report.actions.stop_without_token)
    assert.matches("every unit now gets treatment", report.actions.declared)
    assert.matches("Sample%-ratio", report.actions.srm_banner)
    -- Models and features (model_eval.js, feature_search.js, feature_lineage.js):
    -- ROC and PR curves, the matrix, importance, the alias timeline; two
    -- versions' curves overlaid; the note of a version without an evaluation;
    -- the search by owner and the view's lineage to the endpoint serving it.
    assert.same({ 2, 4 }, { report.actions.evaluation_curves, report.actions.confusion_cells })
    assert.is_true(report.actions.importance_rows >= 10)
    assert.is_true(report.actions.timeline_bars >= 3)
    assert.equal(4, report.actions.compare_curves)
    assert.is_true(report.actions.compare_metrics >= 6)
    assert.matches("no holdout evaluation", report.actions.legacy_note)
    assert.equal(1, report.actions.search_rows)
    assert.is_true(report.actions.lineage_models >= 2)
    -- spam's main, canary and shadow slots all serve versions that read the view.
    assert.same({ "/v1/models/spam:predict", "/v1/models/spam:predict", "/v1/models/spam:predict" },
      report.actions.lineage_endpoints)
    -- The home saw the promotion the page made.
    local reg = assert(require("tycho.registry").open({ home = home }))
    assert.equal("1.0.1", reg:get("spam", "production").version)
    local history = reg:history("spam")
    local promoted, last = nil, history[#history]
    for _, h in ipairs(history) do if h.alias == "production" and h.why == "promote" then promoted = h end end
    assert.same({ "1.0.0", "1.0.1" }, { promoted.from, promoted.to })
    -- Then the request the page made, approved there: the last move, by "lead".
    assert.same({ "review", "1.0.1", "approve", "lead" }, { last.alias, last.to, last.why, last.approved_by })
    -- The experiment the page stopped, with the winner it declared.
    local checkout = assert(require("tycho.experiments").load("checkout", assert(require("tycho.store").open(home))))
    assert.same({ "stopped", "treatment" }, { checkout.stored.status, checkout.stored.winner })
    -- And the run the page triggered.
    local runs = assert(require("tycho.dag").history("etl", { home = home, limit = 10 }))
    assert.equal(3, #runs)
    assert.equal("success", runs[1].status)
  end)
end)
