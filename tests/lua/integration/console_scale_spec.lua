-- The console at a real team's scale (issue 24): a home with 100,000 runs,
-- 1,000 feature views of 10 features, 300 registered models, a year of an
-- experiment's hourly counters, a day of 1,000,000 logged predictions and
-- a DAG of 50 tasks with 1,000 runs (tests/lua/fixtures/console_scale_seed.lua,
-- through the stores' own APIs), served by `tycho serve` of an app hosting
-- model-0 with a canary and a shadow. Every console API answer is timed
-- (the best of 3 under 100 ms), then every page is opened in headless chromium
-- (tests/browser/console_scale.mjs), each rendered in under 1 s.
local testing = require "tycho.testing"
local json = require "tycho.util.json"
local uv = require "luv"
local console = dofile("tests/lua/fixtures/console.lua")

local RUNS, VIEWS, MODELS, PREDICTIONS, DAG_RUNS = 100000, 1000, 300, 1000000, 1000
-- The budgets are the optimized build's; under ASan + UBSan (a Debug build,
-- every access checked: .ci/run sets ASAN_OPTIONS for that pass) the same
-- work takes several times longer, and there the spec checks the answers
-- with five times the time.
local SLOWER = os.getenv("ASAN_OPTIONS") and 5 or 1
local BUDGET_MS, RENDER_MS = 100 * SLOWER, 1000 * SLOWER

-- The volumes of a monitor or serving answer's versions, summed.
local function volume(d)
  local n = 0
  for _, v in ipairs(d.versions) do n = n + v.volume end
  return n
end

describe("console at scale", function()
  local home, srv
  setup(function()
    home = testing.tmpdir()
    local t0 = uv.hrtime()
    local code, out, err = testing.run({ "--home", home, "run", "tests/lua/fixtures/console_scale_seed.lua",
      tostring(RUNS), tostring(VIEWS), tostring(MODELS), tostring(PREDICTIONS), tostring(DAG_RUNS) }, { timeout = 120000 })
    assert(code == 0, err)
    io.stderr:write(string.format("console scale: %s(%.1f s in all)\n", out, (uv.hrtime() - t0) / 1e9))
    srv = console.serve("tests/lua/fixtures/console_scale_app.lua", home, { "--workers", "1" })
  end)
  teardown(function() console.stop(srv, home) end)

  local function get(path) return select(4, testing.request(srv.port, "GET", path, { timeout = 10000 })) end

  -- The first and the best of three answers, in ms (the first may pay
  -- for opening a database in the worker); the first is held to the budget.
  local function timed(path)
    local first, best, status, doc = nil, math.huge, nil, nil
    for _ = 1, 3 do
      local t0 = uv.hrtime()
      local s, _, _, d = testing.request(srv.port, "GET", path, { timeout = 10000 })
      local ms = (uv.hrtime() - t0) / 1e6
      first, best = first or ms, math.min(best, ms)
      status, doc = s, d
    end
    return first, best, status, doc
  end

  -- The console's read routes on this home, each with what its answer must hold.
  local function checks(run_a, run_b, dag_run)
    return {
      -- RUNS + 1: fitting the tiny pipeline recorded a run too.
      { "/v1/runs", function(d) return d.total == RUNS + 1 and #d.runs == 50 end },
      { "/v1/runs?sort=metrics.auc&limit=50", function(d)
        return d.total == RUNS + 1 and d.runs[1].metrics.auc >= d.runs[50].metrics.auc and d.runs[1].metrics.auc > 0.999
      end },
      { "/v1/runs?sort=log_loss&limit=50&offset=500", function(d) return d.runs[1].metrics.log_loss < 0.51 end },
      { "/v1/runs?model=model-7&limit=50", function(d)
        return d.total == math.floor(RUNS / MODELS) + (7 < RUNS % MODELS and 1 or 0) and d.runs[1].model == "model-7"
      end },
      { "/v1/runs?model=model-7&sort=metrics.auc&limit=50", function(d) return d.runs[1].model == "model-7" end },
      { "/v1/runs?kind=trial&sort=seconds&order=asc", function(d) return d.runs[1].seconds == 0 end },
      { "/v1/runs/" .. run_a, function(d) return d.id == run_a end },
      { "/v1/runs:compare?ids=" .. run_a .. "," .. run_b, function(d) return #d.runs == 2 end },
      -- Group-by: stored aggregates for all runs and a kind, index entries for a model.
      { "/v1/runs:groups?by=params.depth", function(d) return d.runs == RUNS and #d.groups == 8 and d.without == 1 end },
      { "/v1/runs:groups?by=params.rounds&kind=trial", function(d)  -- i % 3 == 1: 30 of the 90 rounds
        return #d.groups == 30 and d.runs == math.floor((RUNS + 2) / 3)
      end },
      { "/v1/runs:groups?by=params.rounds", function(d) return #d.groups == 10 and d.groups[1].lo == 10 end },
      { "/v1/runs:groups?by=params.depth&model=model-7", function(d) return d.groups[1].metrics.auc.n > 0 end },
      { "/v1/studies?limit=50&offset=0", function(d) return d.total == 0 end },
      { "/v1/train?limit=20", function(d) return d.jobs ~= nil end },
      { "/v1/train:options", function(d) return d.families ~= nil end },
      { "/v1/features", function(d) return #d.views == VIEWS end },
      { "/v1/features/view_0500", function(d) return d.name == "view_0500" end },
      -- Features searched across teams, a view's lineage and duplicates.
      { "/v1/features:search?q=team-7&limit=50", function(d) return d.total == VIEWS / 20 and #d.views == 50 end },
      { "/v1/features:search?q=v999_f3", function(d) return d.total == 1 and d.views[1].name == "view_0999" end },
      { "/v1/features/view_0500/lineage", function(d) return d.view == "view_0500" and #d.models == 0 end },
      { "/v1/features:duplicates?view=view_0500", function(d) return d.view == "view_0500" end },
      { "/v1/registry/models", function(d) return #d.models == MODELS end },
      { "/v1/registry/models/model-0", function(d) return d.aliases.production == "1.0.0" end },
      { "/v1/registry/models/model-0/requests", function(d) return d.requests ~= nil end },
      { "/v1/registry/models/model-0/versions/1.0.0/evaluation", function(d) return d.note ~= nil end },
      { "/v1/registry/models/model-0/compare?a=1.0.0&b=staging", function(d) return d.metrics.auc[2] == 0.91 end },
      { "/v1/experiments", function(d) return #d.experiments == 1 end },
      { "/v1/experiments/year", function(d) return d.name == "year" end },
      { "/v1/experiments/year/timeline?window=365d", function(d)
        return #d.slices.t == 60 and #d.days.day >= 365 and d.slices.variants[3].units[60] == 365 * 240 + 3
      end },
      -- A day of 1,000,000 predictions: volume and latency from the log's
      -- rollups, drift from the newest entries.
      { "/v1/serving", function(d) return #d.workers == 1 and d.models[1] == "model-0" end },
      { "/v1/serving/model-0?window=1h&buckets=60", function(d)
        return #d.versions == 3 and #d.t == 60 and volume(d) > PREDICTIONS / 25
      end },
      { "/v1/serving/model-0?window=7d&buckets=60", function(d) return volume(d) == PREDICTIONS and #d.t == 56 end },
      { "/v1/monitor/model-0?window=15m&buckets=60", function(d)  -- per-second rollups, 15 a slice
        return #d.versions == 3 and #d.versions[1].series.t == 60 and d.bucket_seconds == 15
      end },
      { "/v1/monitor/model-0?window=1h&buckets=60", function(d)
        return d.truncated and #d.versions == 3 and d.versions[1].drift.samples > 0 and #d.versions[1].series.volume == 60
      end },
      { "/v1/monitor/model-0?window=24h&buckets=60", function(d) return volume(d) > PREDICTIONS * 0.99 end },
      { "/v1/monitor/model-0?window=7d&buckets=60", function(d)
        local errors = 0
        for _, v in ipairs(d.versions) do errors = errors + v.errors end
        return volume(d) == PREDICTIONS and errors == PREDICTIONS / 500
      end },
      { "/v1/models/model-0/monitor?window=1h", function(d) return #d.versions == 3 end },
      -- A DAG of 50 tasks with 1,000 runs: its graph, the grid's first and
      -- last pages, one run's Gantt.
      { "/v1/dags", function(d) return #d.dags == 1 end },
      { "/v1/dags/wide", function(d) return #d.tasks == 50 and #d.edges == 80 end },
      { "/v1/dags/wide/runs?limit=1", function(d) return d.total == DAG_RUNS end },
      { "/v1/dags/wide/runs?limit=25&offset=0", function(d) return #d.runs == 25 and #d.runs[1].tasks == 50 end },
      { "/v1/dags/wide/runs?limit=25&offset=" .. (DAG_RUNS - 25), function(d) return d.next_offset == nil end },
      { "/v1/dags/wide/runs/" .. dag_run, function(d) return #d.tasks == 50 end },
    }
  end

  it("answers every console API call in under 100 ms", function()
    local firsts = get("/v1/runs?limit=2").runs
    local newest = get("/v1/dags/wide/runs?limit=1").runs[1].run_id
    local lines, slow = {}, {}
    for _, c in ipairs(checks(firsts[1].id, firsts[2].id, newest)) do
      local ms, best, status, doc = timed(c[1])
      assert.equal(200, status, c[1])
      assert.is_true(c[2](doc), c[1] .. " answered something else: " .. json.encode(doc):sub(1, 400))
      lines[#lines + 1] = string.format("  %-52s %7.1f ms first, %7.1f ms best", c[1], ms, best)
      -- Judged by the best of 3: the same answers take 50 to 110 ms from
      -- one minute to the next on this 2-core machine, and a route that
      -- does too much work is over budget every time.
      if best >= BUDGET_MS then slow[#slow + 1] = c[1] end
    end
    io.stderr:write("console API timings (first and best of 3):\n", table.concat(lines, "\n"), "\n")
    assert.same({}, slow)
  end)

  it("renders every page in headless chromium in under 1 s", function()
    local report, skipped = console.drive("console_scale.mjs", srv)
    if not report then return pending(skipped) end
    local lines, slow = {}, {}
    for _, p in ipairs(report.pages) do
      lines[#lines + 1] = string.format("  %-20s %5d ms", p.name, p.ms)
      if p.ms >= RENDER_MS then slow[#slow + 1] = p.name end
    end
    io.stderr:write("console first render in chromium:\n", table.concat(lines, "\n"), "\n")
    assert.is_true(#report.pages >= 18)
    assert.same({}, slow)
  end)
end)
