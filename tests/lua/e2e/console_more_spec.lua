-- The console's Runs, Train and DAG pages (issue 24, items 2, 3 and 8):
-- runs grouped on the server and tuning studies; trainings started over
-- HTTP as child processes (token, checked requests, a bound on how many
-- run at once) that land in the runs and the registry; a DAG's backfill
-- (token, bounded); then every page driven in headless chromium
-- (tests/browser/console_more.mjs) and the home checked for what it did.
local testing = require "tycho.testing"
local json = require "tycho.json"

local console = dofile("tests/lua/fixtures/console.lua")
local AUTH = console.AUTH

describe("console: runs, train, DAGs", function()
  local home, srv
  setup(function()
    home = dofile("tests/lua/fixtures/console_more_home.lua")()
    srv = console.serve("tests/lua/fixtures/console_more_app.lua", home)
  end)
  teardown(function() console.stop(srv, home) end)

  local function get(path) return testing.request(srv.port, "GET", path) end
  local function post(path, body, headers)
    return testing.request(srv.port, "POST", path, { body = body, headers = headers })
  end

  -- Polls the job until it leaves queued / running (at most timeout ms).
  local function finished(id, timeout)
    local job
    assert(testing.run_until(function()
      job = select(4, get("/v1/train/" .. id))
      return job and job.status ~= "queued" and job.status ~= "running"
    end, timeout or 60000), "the training did not finish")
    return job
  end

  it("groups runs by a parameter on the server, and refuses what it cannot group by", function()
    local status, _, body, doc = get("/v1/runs:groups?by=params.depth")
    assert.equal(200, status, body)
    local n = 0
    for _, g in ipairs(doc.groups) do
      n = n + g.count
      assert.is_number(g.metrics.auc.mean)
      assert.is_number(g.metrics.auc.std)
    end
    assert.same({ 12, 12, { 2, 3, 4 } }, { doc.runs, n, { doc.groups[1].value, doc.groups[2].value, doc.groups[3].value } })
    local _, _, _, fits = get("/v1/runs:groups?by=params.rounds&model=churn_fit&metrics=rounds")
    assert.same({ 6, { "rounds" } }, { #fits.groups, fits.metrics })
    assert.equal(400, (get("/v1/runs:groups?by=metrics.auc")))
    assert.equal(400, (get("/v1/runs:groups")))
    assert.equal(400, (get("/v1/runs:groups?by=params.depth&metrics=a,b,c,d,e,f,g,h,i")))
  end)

  it("lists tuning studies and shows one's best score by trial", function()
    local _, _, _, list = get("/v1/studies")
    assert.equal(1, list.total)
    local s = list.studies[1]
    assert.same({ "churn_tune", 6, "auc" }, { s.model, s.trials, s.metric })
    local status, _, _, study = get("/v1/studies/" .. s.study)
    assert.equal(200, status)
    assert.equal(6, #study.trials)
    for i = 2, 6 do assert.is_true(study.trials[i].best >= study.trials[i - 1].best) end
    assert.equal(s.best, study.best.score)
    local _, _, _, trials = get("/v1/runs?study=" .. s.study)
    assert.equal(6, trials.total)
    assert.equal(404, (get("/v1/studies/nope")))
    assert.equal(400, (get("/v1/studies?limit=1000")))
  end)

  local GOOD = { name = "churn_spec", views = { "user_stats" }, label = "user_labels:churned", family = "gbt",
                 params = { rounds = 20, depth = 3 }, register = true }

  local function with(patch)
    local req = {}
    for k, v in pairs(GOOD) do req[k] = v end
    for k, v in pairs(patch) do req[k] = v end
    return req
  end

  it("refuses a training without the token, a bad request and an unknown view, starting nothing", function()
    assert.equal(401, (post("/v1/train", GOOD)))
    local cases = {
      { with { name = 'x"]] os.execute("touch /tmp/pwned") --' }, 400 },
      { with { params = { rounds = 1e9 } }, 400 },
      { with { params = { rounds = "20; os.exit()" } }, 400 },
      { with { hack = true }, 400 },
      { with { family = "automl" }, 400 },
      { with { views = { "nope" } }, 404 },
      { with { label = "user_labels:nope" }, 404 },
      { "not json", 400 },
    }
    for _, c in ipairs(cases) do
      local status, _, body = post("/v1/train", c[1], AUTH)
      assert.equal(c[2], status, body)
    end
    local _, _, _, jobs = get("/v1/train")
    assert.same({}, jobs.jobs)
  end)

  it("starts no more trainings than the limit at once", function()
    -- A job held by a live process (this one) takes the app's one slot.
    local hist = require "tycho.dag.history"
    local pid, pstart = hist.me()
    local st = assert(require("tycho.store").open(home))
    st:update(function(tx)
      tx:put_json("train_jobs", "0000000000000000-0-0", { id = "0000000000000000-0-0", status = "running", pid = pid,
        pstart = pstart, spec = GOOD, created = hist.now() })
    end)
    local status, _, body, doc = post("/v1/train", GOOD, AUTH)
    assert.equal(503, status, body)
    assert.equal("busy", doc.error.code)
    st:update(function(tx) tx:delete("train_jobs", "0000000000000000-0-0") end)
  end)

  it("trains in a child process that lands in the runs and the registry", function()
    local status, _, body, started = post("/v1/train", GOOD, AUTH)
    assert.equal(202, status, body)
    assert.same({ "queued", true }, { started.status, started.pid > 0 })
    local job = finished(started.id)
    assert.equal("succeeded", job.status, json.encode(job))
    assert.same({ "done", "1.0.0" }, { job.stage, job.version })
    assert.is_number(job.metrics.auc)
    assert.matches("registered churn_spec 1.0.0", table.concat(job.log, "\n"), 1, true)
    local _, _, _, run = get("/v1/runs/" .. job.run)
    assert.same({ "train", "churn_spec", "gbt", 20, started.id, "1.0.0" },
      { run.kind, run.model, run.params.family, run.params.rounds, run.job, run.version })
    local _, _, _, trained = get("/v1/runs?kind=train")
    assert.equal(1, trained.total)
    local _, _, _, model = get("/v1/registry/models/churn_spec")
    assert.equal("1.0.0", model.latest or model.versions[1].version)
    local _, _, _, jobs = get("/v1/train")
    assert.equal(started.id, jobs.jobs[1].id)
  end)

  it("backfills a DAG's slots with the token, bounded", function()
    local path = "/v1/dags/etl/backfill"
    local range = { from = "2026-01-01", to = "2026-01-04" }
    assert.equal(401, (post(path, range)))
    assert.equal(400, (post(path, { from = "2026-01-01", to = "soon" }, AUTH)))
    assert.equal(400, (post(path, { from = "2026-01-01", to = "2026-01-04", force = true }, AUTH)))
    assert.equal(413, (post(path, { from = "2026-01-01", to = "2026-03-01" }, AUTH)))
    assert.equal(404, (post("/v1/dags/nope/backfill", range, AUTH)))
    local status, _, body, doc = post(path, range, AUTH)
    assert.equal(202, status, body)
    assert.equal(4, doc.runs)
    assert.same({ "2026-01-01", true, "2026-01-04", false }, { doc.dates[1].date, doc.dates[1].succeeded,
                                                             doc.dates[4].date, doc.dates[4].succeeded })
    -- The dates that succeeded before are skipped: two new runs, in order.
    local page
    assert(testing.run_until(function()
      page = select(4, get("/v1/dags/etl/runs"))
      return page.total == 4 and page.runs[1].status ~= "running"
    end, 30000), "the backfill did not finish")
    assert.same({ "2026-01-04", "success", "backfill" }, { page.runs[1].run_id, page.runs[1].status, page.runs[1].trigger })
  end)

  it("opens the Runs, Train and DAG pages in chromium; Train and Backfill need the token", function()
    local report, skipped = console.drive("console_more.mjs", srv)
    if not report then
      pending(skipped)
      return
    end
    local a = report.actions
    -- Runs: groups by depth with their whiskers, three runs compared, the study.
    assert.equal(3, #a.groups)
    assert.is_true(a.meanstd_whiskers >= 3)
    assert.same({ 3, 1, 1 }, { a.parallel_lines, a.compare_scatter, a.list_scatter })
    assert.same({ 6, true }, { a.study_trials, a.best_never_worse })
    -- Train: refused without the token; a gbt and an AutoML training landed.
    assert.matches("401", a.train_without_token)
    assert.matches("registered as churn_console 1.0.0", a.trained, 1, true)
    assert.equal("train", a.train_run_kind)
    assert.matches("trials in study", a.automl, 1, true)
    assert.is_true(a.jobs >= 3)
    -- DAGs: the graph by state; Backfill refused, then queued and run.
    assert.equal(4, #a.graph_nodes)
    assert.equal("node state-success", a.graph_nodes[1])
    assert.equal(4, a.graph_edges)
    assert.matches("401", a.backfill_without_token)
    assert.matches("Queued 3 runs of etl", a.backfill, 1, true)
    assert.equal(7, a.dag_runs)
    -- The home saw what the pages did.
    local reg = assert(require("tycho.registry").open({ home = home }))
    assert.equal("1.0.0", reg:get("churn_console", "1.0.0").version)
    assert.equal("1.0.0", reg:get("churn_automl", "1.0.0").version)
    local runs = assert(require("tycho.dag").history("etl", { home = home, limit = 20 }))
    assert.equal(7, #runs)
    assert.same({ "2026-01-07", "success" }, { runs[1].run_id, runs[1].status })
  end)
end)
