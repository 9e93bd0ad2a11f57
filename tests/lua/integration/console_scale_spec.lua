-- The console at a real team's scale (issue 24): a home with 100,000 runs,
-- 1,000 feature views of 10 features, 300 registered models and a year of
-- an experiment's hourly counters, and every console API answer timed on
-- `tycho ui` (each under 100 ms). Seeding goes
-- through the stores' own APIs: runs.record_many (10 transactions), the
-- catalog's feature_view, and the registry's register (one tiny fitted
-- pipeline's artifact registered under 300 names: registering is what is
-- measured here, not fitting). The seed bounds itself to 50 s.
local testing = require "tycho.testing"
local uv = require "luv"

local RUNS, VIEWS, MODELS = 100000, 1000, 300
local BUDGET_MS = 100

local SEED = [[
local tycho = require "tycho"
local runs = require "tycho.registry.runs"
local RUNS, VIEWS, MODELS = %d, %d, %d
local t0 = os.clock()
local kinds = { "fit", "trial", "evaluate" }
local batch = {}
for i = 1, RUNS do
  local a = (i * 7919 %% 10007) / 10007
  batch[#batch + 1] = { kind = kinds[i %% 3 + 1], model = "model-" .. (i %% MODELS),
    params = { rounds = 10 + i %% 90, depth = 1 + i %% 8 },
    metrics = { auc = 0.5 + a / 2, log_loss = 1 - a / 2 }, seconds = (i %% 977) / 100 }
  if #batch == 10000 then
    assert(runs.record_many(batch))
    batch = {}
  end
end
if #batch > 0 then assert(runs.record_many(batch)) end
local t_runs = os.clock()
local fs = assert(tycho.features.open())
for e = 0, 99 do fs:entity { name = "entity_" .. e, join_key = "id_" .. e } end
for v = 1, VIEWS do
  local schema = {}
  for f = 1, 10 do schema[string.format("v%%d_f%%d", v, f)] = f %% 3 == 0 and "string" or "float" end
  assert(fs:feature_view { name = string.format("view_%%04d", v), entity = "entity_" .. v %% 100, schema = schema,
                           owner = "team-" .. (v %% 20), tags = { "scale" }, ttl = "30d" })
end
local t_views = os.clock()
local x, y = {}, {}
for i = 1, 40 do x[i], y[i] = i / 40, i > 20 and 1 or 0 end
local pipe = assert(tycho.pipeline { model = tycho.models.logistic {} }:fit(tycho.frame.new({ x = x, y = y }),
  { label = "y", quiet = true }))
local bytes = assert(pipe:to_bytes())
local reg = assert(tycho.registry.open())
for m = 0, MODELS - 1 do assert(reg:register("model-" .. m, bytes, { metrics = { auc = 0.9 } })) end
assert(reg:promote("model-0", "1.0.0", "production"))
-- A year of an experiment's hourly counters, 3 variants: its timeline's
-- widest window (records.history_key, the layout put_counters writes).
local records = require "tycho.experiments.records"
assert(tycho.experiments.define { name = "year", unit = "u",
  variants = { { name = "a" }, { name = "b" }, { name = "c" } } }):save()
local hour0 = math.floor(os.time() / 3600) * 3600 - 365 * 86400
assert(tycho.store.open()):update(function(tx)
  local rec = tx:get_json("experiments", records.def_key("year"))
  rec.started_at = hour0 * 1e6
  tx:put_json("experiments", records.def_key("year"), rec)
  for h = 0, 365 * 24 do
    for i, v in ipairs { "a", "b", "c" } do
      local n = h * 10 + i
      tx:put_json("experiments", records.history_key("year", v, hour0 + h * 3600),
        { units = n, exposures = 2 * n, sum = math.floor(n * i / 10), sumsq = math.floor(n * i / 10) })
    end
  end
end)
print(string.format("seeded: runs %%.1f s, views %%.1f s, models %%.1f s", t_runs - t0, t_views - t_runs,
  os.clock() - t_views))
]]

describe("console at scale", function()
  local home, proc, port
  setup(function()
    home = testing.tmpdir()
    local seed = testing.write(home .. "/seed.lua", SEED:format(RUNS, VIEWS, MODELS))
    local t0 = uv.hrtime()
    local code, out, err = testing.run({ "--home", home, "run", seed }, { timeout = 50000 })
    assert(code == 0, err)
    io.stderr:write(string.format("console scale: %s(%.1f s in all)\n", out, (uv.hrtime() - t0) / 1e9))
    port = testing.free_port()
    proc = testing.spawn({ "ui", "--port", tostring(port) }, { env = { "TYCHO_HOME=" .. home } })
    assert(testing.run_until(function()
      return proc.code ~= nil or testing.request(port, "GET", "/v2/health/ready", { timeout = 500 }) == 200
    end, 15000))
  end)
  teardown(function()
    if proc and proc.code == nil then
      proc:kill("sigterm")
      if proc:wait(10000) == nil then proc:kill("sigkill") end
    end
    if home then testing.rmrf(home) end
  end)

  -- The first and the best of three answers, in ms (the first may pay
  -- for opening a database in the worker); the first is held to the budget.
  local function timed(path)
    local first, best, status, doc = nil, math.huge, nil, nil
    for _ = 1, 3 do
      local t0 = uv.hrtime()
      local s, _, _, d = testing.request(port, "GET", path, { timeout = 10000 })
      local ms = (uv.hrtime() - t0) / 1e6
      first, best = first or ms, math.min(best, ms)
      status, doc = s, d
    end
    return first, best, status, doc
  end

  it("answers every console API call in under 100 ms", function()
    -- RUNS + 1: fitting the tiny pipeline recorded a run too.
    local checks = {
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
      -- Group-by: stored aggregates for all runs and a kind, index entries for a model.
      { "/v1/runs:groups?by=params.depth", function(d) return d.runs == RUNS and #d.groups == 8 and d.without == 1 end },
      { "/v1/runs:groups?by=params.rounds&kind=trial", function(d)  -- i % 3 == 1: 30 of the 90 rounds
        return #d.groups == 30 and d.runs == math.floor((RUNS + 2) / 3)
      end },
      { "/v1/runs:groups?by=params.rounds", function(d) return #d.groups == 10 and d.groups[1].lo == 10 end },
      { "/v1/runs:groups?by=params.depth&model=model-7", function(d) return d.groups[1].metrics.auc.n > 0 end },
      { "/v1/studies", function(d) return d.total == 0 end },
      { "/v1/features", function(d) return #d.views == VIEWS end },
      { "/v1/features/view_0500", function(d) return d.name == "view_0500" end },
      { "/v1/registry/models", function(d) return #d.models == MODELS end },
      { "/v1/registry/models/model-0", function(d) return d.aliases.production == "1.0.0" end },
      { "/v1/experiments/year/timeline?window=365d", function(d)
        return #d.slices.t == 60 and #d.days.day >= 365 and d.slices.variants[3].units[60] == 365 * 240 + 3
      end },
      { "/v1/serving", function(d) return #d.workers == 0 end },
      -- Features searched across teams, a view's lineage, a model's evaluation and compare.
      { "/v1/features:search?q=team-7&limit=50", function(d) return d.total == VIEWS / 20 and #d.views == 50 end },
      { "/v1/features:search?q=v999_f3", function(d) return d.total == 1 and d.views[1].name == "view_0999" end },
      { "/v1/features/view_0500/lineage", function(d) return d.view == "view_0500" and #d.models == 0 end },
      { "/v1/registry/models/model-0/versions/1.0.0/evaluation", function(d) return d.note ~= nil end },
      { "/v1/registry/models/model-0/compare?a=1.0.0&b=production", function(d) return d.metrics.auc[1] == 0.9 end },
    }
    local lines, slow = {}, {}
    for _, c in ipairs(checks) do
      local ms, best, status, doc = timed(c[1])
      assert.equal(200, status, c[1])
      assert.is_true(c[2](doc), c[1] .. " answered something else: "
        .. require("tycho.util.json").encode(doc):sub(1, 400))
      lines[#lines + 1] = string.format("  %-52s %7.1f ms first, %7.1f ms best", c[1], ms, best)
      if ms >= BUDGET_MS then slow[#slow + 1] = c[1] end
    end
    io.stderr:write("console API timings (first and best of 3):\n", table.concat(lines, "\n"), "\n")
    assert.same({}, slow)
  end)
end)
