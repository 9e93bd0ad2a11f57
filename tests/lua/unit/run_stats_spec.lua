-- Runs grouped by a parameter and tuning studies (registry/run_stats.lua):
-- the stored aggregates of the large scopes and the entries of the small
-- ones give the same counts, means and standard deviations as computing
-- them from the runs themselves; many numbers are binned, many strings cut
-- to the most frequent; a rebuilt index gives the same answers.
local internal = require "tycho.internal"
local testing = require "tycho.testing"

describe("run stats", function()
  -- A fresh home and fresh copies of the modules (the runs store is opened
  -- once per process): the unit layer's shared home holds other specs' runs.
  local runs, stats, home, saved_home, saved = nil, nil, nil, nil, {}
  local MODULES = { "tycho.registry.runs", "tycho.registry.run_stats" }
  local recorded = {}

  setup(function()
    saved_home = internal.home
    home = testing.tmpdir()
    internal.home = home
    for _, m in ipairs(MODULES) do saved[m], package.loaded[m] = package.loaded[m], nil end
    runs = require "tycho.registry.runs"
    stats = require "tycho.registry.run_stats"
    local batch = {}
    for i = 1, 300 do
      batch[i] = { kind = i % 3 == 0 and "trial" or "fit", model = i % 2 == 0 and "a" or "b",
                   params = { depth = 1 + i % 4, eta = i / 300, tag = "t" .. i, note = i % 5 == 0 and "x" or nil },
                   metrics = { auc = 0.5 + ((i * 37) % 100) / 200, loss = (i % 7) / 7 },
                   study = i % 3 == 0 and (i <= 150 and "s1" or "s2") or nil }
      recorded[i] = batch[i]
    end
    -- In three transactions, so the aggregates are merged with stored ones.
    for from = 1, 300, 100 do assert(runs.record_many({ unpack(batch, from, from + 99) })) end
  end)

  teardown(function()
    internal.home = saved_home
    for _, m in ipairs(MODULES) do package.loaded[m] = saved[m] end
    testing.rmrf(home)
  end)

  -- Count, mean and sample std of metric per depth over the runs that pass keep.
  local function expected(keep, metric)
    local by = {}
    for _, r in ipairs(recorded) do
      if keep(r) then
        local d = r.params.depth
        by[d] = by[d] or { n = 0, sum = 0, values = {} }
        by[d].n, by[d].sum = by[d].n + 1, by[d].sum + r.metrics[metric]
        by[d].values[#by[d].values + 1] = r.metrics[metric]
      end
    end
    for _, e in pairs(by) do
      e.mean = e.sum / e.n
      local ss = 0
      for _, v in ipairs(e.values) do ss = ss + (v - e.mean) ^ 2 end
      e.std = math.sqrt(ss / (e.n - 1))
    end
    return by
  end

  local function check_depth(doc, keep)
    for _, metric in ipairs { "auc", "loss" } do
      local want = expected(keep, metric)
      local seen = 0
      for _, g in ipairs(doc.groups) do
        local w = want[g.value]
        assert.equal(w.n, g.count)
        assert.near(w.mean, g.metrics[metric].mean, 1e-9)
        assert.near(w.std, g.metrics[metric].std, 1e-9)
        seen = seen + 1
      end
      local groups = 0
      for _ in pairs(want) do groups = groups + 1 end
      assert.equal(groups, seen)
    end
  end

  it("groups all runs and one kind from the stored aggregates", function()
    local doc = assert(stats.groups { by = "params.depth", metrics = { "auc", "loss" } })
    assert.same({ 300, 0 }, { doc.runs, doc.without })
    assert.same({ "1", "2", "3", "4" }, { doc.groups[1].label, doc.groups[2].label, doc.groups[3].label, doc.groups[4].label })
    check_depth(doc, function() return true end)
    check_depth(assert(stats.groups { by = "params.depth", kind = "trial", metrics = { "auc", "loss" } }),
      function(r) return r.kind == "trial" end)
  end)

  it("groups a model's runs (and of one kind) from their index entries, with the same numbers", function()
    check_depth(assert(stats.groups { by = "params.depth", model = "a", metrics = { "auc", "loss" } }),
      function(r) return r.model == "a" end)
    check_depth(assert(stats.groups { by = "params.depth", model = "b", kind = "fit", metrics = { "auc", "loss" } }),
      function(r) return r.model == "b" and r.kind == "fit" end)
    check_depth(assert(stats.groups { by = "params.depth", study = "s2", metrics = { "auc", "loss" } }),
      function(r) return r.study == "s2" end)
  end)

  it("bins many numbers, keeps the most frequent strings, counts runs without the field", function()
    local eta = assert(stats.groups { by = "params.eta", metrics = { "auc" } })
    assert.equal(10, #eta.groups)
    local n = 0
    for _, g in ipairs(eta.groups) do
      n = n + g.count
      assert.is_true(g.lo <= g.hi)
    end
    assert.equal(300, n)
    local tags = assert(stats.groups { by = "params.tag" })
    assert.same({ 50, 250 }, { #tags.groups, tags.left_out })
    local note = assert(stats.groups { by = "params.note" })
    assert.same({ 60, 240 }, { note.groups[1].count, note.without })
    assert.same({ "auc", "loss" }, note.metrics)  -- the newest runs' metrics by default
  end)

  it("answers the same after the index is rebuilt", function()
    local before = assert(stats.groups { by = "params.depth", metrics = { "auc" } })
    -- Forget the index's coverage: the next read rebuilds it (aggregates too).
    assert(require("tycho.core.store").open(home)):update(function(tx)
      tx:delete("runs_index", require("tycho.util.keys").pack("s", "meta"))
    end)
    local after = assert(stats.groups { by = "params.depth", metrics = { "auc" } })
    for i, g in ipairs(before.groups) do
      assert.equal(g.count, after.groups[i].count)
      assert.near(g.metrics.auc.mean, after.groups[i].metrics.auc.mean, 1e-12)
    end
  end)

  it("refuses what it cannot group by", function()
    for _, opts in ipairs { { by = "metrics.auc" }, { by = "params." }, { by = "params.depth", model = "a", study = "s1" },
                            { by = "params.depth", metrics = { "a", "b", "c", "d", "e", "f", "g", "h", "i" } } } do
      local doc, _, code = stats.groups(opts)
      assert.is_nil(doc)
      assert.equal("invalid", code)
    end
  end)

  it("lists studies and shows one's trials in order with the best so far", function()
    local list = assert(stats.studies {})
    assert.equal(2, list.total)
    assert.same({ "s2", "s1" }, { list.studies[1].study, list.studies[2].study })
    assert.same({ 50, "auc" }, { list.studies[2].trials, list.studies[2].metric })
    local s = assert(stats.study("s1"))
    assert.same({ 50, 50 }, { s.total, #s.trials })
    local best = -math.huge
    for i, t in ipairs(s.trials) do
      assert.equal(i, t.n)
      best = math.max(best, t.score)
      assert.equal(best, t.best)
    end
    assert.equal(best, s.best.score)
    local none, _, code = stats.study("nope")
    assert.is_nil(none)
    assert.equal("not_found", code)
    assert.equal("invalid", select(3, stats.studies { limit = 0 }))
  end)
end)
