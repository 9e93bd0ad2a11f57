-- Experiment definitions, assignment and bandit policies, on a temporary home.
local experiments = require "tycho.experiments"
local store = require "tycho.store"
local testing = require "tycho.testing"

local function def(extra)
  local d = { name = "exp", unit = "user", variants = { { name = "control", weight = 0.5 }, { name = "b", weight = 0.5 } } }
  for k, v in pairs(extra or {}) do d[k] = v end
  return d
end

describe("experiment definitions", function()
  it("refuses bad definitions with the reason", function()
    local function refused(d, pattern)
      local ok, err = pcall(experiments.define, d)
      assert.is_false(ok)
      assert.matches(pattern, tostring(err))
    end
    refused(def { variants = { { name = "a", weight = 0.5 }, { name = "b", weight = 0.6 } } }, "weights sum to 1.1, not 1")
    refused(def { variants = { { name = "a", weight = 0.5 }, { name = "b" } } }, "every variant a weight")
    refused(def { variants = { { name = "a" } } }, "at least two")
    refused(def { variants = { { name = "a" }, { name = "a" } } }, "appears twice")
    refused(def { kind = "coin" }, "unknown kind")
    refused(def { winner = "z" }, "winner 'z' is no variant")
    refused(def { target = 3 }, "target must be a function")
    refused(def { unit = 42 }, "unit must name")
    refused(def { variants = { { name = "a", model = "bad model!" }, { name = "b", model = "m" } } }, "bad model")
    refused(def { name = "has space" }, "name must be")
    refused(def { variants = { { name = "{a}" }, { name = "b" } } }, "starts with '{'")
    local e = experiments.define(def { variants = { { name = "a" }, { name = "b" }, { name = "c" } } })
    assert.near(1 / 3, e.variants[2].weight, 1e-12)
  end)

  it("parses model references", function()
    assert.same({ "spam", "staging" }, { experiments.parse_model_ref("spam@staging") })
    assert.same({ "spam", "production" }, { experiments.parse_model_ref("spam") })
    assert.is_nil(experiments.parse_model_ref("a@b@c"))
  end)
end)

describe("assignment", function()
  local dir, st
  setup(function()
    dir = testing.tmpdir()
    st = assert(store.open(dir))
  end)
  teardown(function()
    st:close()
    testing.rmrf(dir)
  end)

  it("hashes units into variants by weight, sticky and independent of the process", function()
    local e = experiments.define(def { name = "weights", variants = { { name = "control", weight = 0.2 },
                                                                       { name = "b", weight = 0.8 } } })
    e:save(st)
    local n = { control = 0, b = 0 }
    for i = 1, 20000 do
      local v, counted = e:assign("user-" .. i, nil, st)
      assert.is_true(counted)
      n[v.name] = n[v.name] + 1
    end
    -- 20000 draws at p = 0.2: sd 57, so 4 sd is 230.
    assert.is_true(math.abs(n.control - 4000) < 230, "control got " .. n.control)
    local again = experiments.define(def { name = "weights", variants = { { name = "control", weight = 0.2 },
                                                                           { name = "b", weight = 0.8 } } })
    for i = 1, 200 do
      assert.equal(e:assign("user-" .. i, nil, st).name, again:assign("user-" .. i, nil, st).name)
    end
    -- The salt decorrelates experiments over the same units.
    assert.are_not.equal(experiments.unit_hash("a", "user-1"), experiments.unit_hash("b", "user-1"))
  end)

  it("gives the control, uncounted, outside the target or when the target raises", function()
    local e = experiments.define(def { name = "targeted", target = function(_, inst)
      if inst.boom then error("boom") end
      return inst.country == "NZ"
    end })
    e:save(st)
    local v, counted = e:assign("u1", nil, st, { country = "FR" })
    assert.same({ "control", false }, { v.name, counted })
    v, counted = e:assign("u1", nil, st, { boom = true })
    assert.same({ "control", false }, { v.name, counted })
    assert.equal(1, e.target_errors)
    experiments.flush({ e }, st)
    assert.equal(1, e:results(st).target_errors)
  end)

  it("counts units once and exposures every time", function()
    local e = experiments.define(def { name = "counts" })
    e:save(st)
    for _ = 1, 3 do for i = 1, 10 do e:assign("u" .. i, nil, st) end end
    experiments.flush({ e }, st)
    local r = e:results(st)
    assert.equal(10, r.variants[1].units + r.variants[2].units)
    assert.equal(30, r.variants[1].exposures + r.variants[2].exposures)
    -- A unit with a NUL byte is keyed like every other (escaped).
    e:assign("nul\0unit", nil, st)
    experiments.flush({ e }, st)
    assert.equal(1, assert(e:record_events({ { unit = "nul\0unit", value = 1 } }, st)).accepted)
    r = e:results(st)
    assert.equal(11, r.variants[1].units + r.variants[2].units)
  end)

  it("keeps buffered exposures until the transaction that writes them commits", function()
    local e = experiments.define(def { name = "kept" })
    e:save(st)
    for i = 1, 10 do e:assign("k" .. i, nil, st) end
    -- A full map repeats the transaction: the repeat writes the same exposures.
    -- (A second call in one transaction writes nothing.)
    local tries = 0
    st:update(function(tx)
      e:flush_in(tx)
      e:flush_in(tx)
      tries = tries + 1
      if tries == 1 then error(store.MAP_FULL, 0) end
    end)
    assert.equal(2, tries)
    local r = e:results(st)
    assert.same({ 10, 10 }, { r.variants[1].units + r.variants[2].units,
                              r.variants[1].exposures + r.variants[2].exposures })
    -- A transaction that fails leaves them buffered for the next flush.
    for i = 11, 15 do e:assign("k" .. i, nil, st) end
    assert.is_false(pcall(st.update, st, function(tx) e:flush_in(tx) error("disk on fire") end))
    assert.is_true(e:has_work())
    experiments.flush({ e }, st)
    assert.is_false(e:has_work())
    r = e:results(st)
    assert.same({ 15, 15 }, { r.variants[1].units + r.variants[2].units,
                              r.variants[1].exposures + r.variants[2].exposures })
  end)

  it("stores a unit without events as its variant's name, and reads records of either form", function()
    local e = experiments.define(def { name = "records" })
    e:save(st)
    local v1 = e:assign("r1", nil, st).name
    experiments.flush({ e }, st)
    local keys = require "tycho.keys"
    assert.equal(v1, st:get("experiments", keys.pack("s s s", "u", "records", "r1")))
    -- A record written as JSON (by an older Tycho) is read as well.
    local v2 = experiments.unit_hash(e.salt, "r2") < 0.5 and "control" or "b"
    st:put("experiments", keys.pack("s s s", "u", "records", "r2"), '{"v":"' .. v2 .. '","s":0,"n":0}')
    local res = assert(e:record_events({ { unit = "r1", value = 1 }, { unit = "r2", value = 1 } }, st))
    assert.equal(2, res.accepted)
    assert.same({ v = v1, s = 1, n = 1 },
      require("tycho.json").decode(st:get("experiments", keys.pack("s s s", "u", "records", "r1"))))
    assert.same({ v = v2, s = 1, n = 1 },
      require("tycho.json").decode(st:get("experiments", keys.pack("s s s", "u", "records", "r2"))))
  end)

  it("joins feedback to logged predictions: records, sums, duplicates, ids and outcomes", function()
    local keys, json = require "tycho.keys", require "tycho.json"
    local e = experiments.define(def { name = "fb", metric_type = "continuous" })
    e:save(st)
    local v = e:assign("f1", nil, st).name
    experiments.flush({ e }, st)
    local now = require("tycho.timeutil").now()
    local id = string.format("%016x-2a-1", now)
    st:put("predictions", experiments.log_key(id),
      json.encode { id = id, experiment = "fb", unit = "f1", variant = v, output = { prediction = 1 } })
    local items = { { prediction_id = id, outcome = 0.1 }, { prediction_id = id, outcome = 5 },
                    { prediction_id = id:upper(), outcome = 1 }, { prediction_id = id .. "-", outcome = 1 },
                    { prediction_id = id:sub(2), outcome = 1 }, { prediction_id = id, outcome = 0 / 0 },
                    { prediction_id = string.format("%016x-1-1", now), outcome = "spam \"x\"" } }
    local res = st:update(function(tx) return experiments.feedback_in(tx, items, { experiments = { fb = e } }) end)
    local statuses = {}
    for i, r in ipairs(res.results) do statuses[i] = r.code or r.status end
    -- Upper-case hex is the same time; the last id has no prediction yet.
    assert.same({ "accepted", "duplicate", "pending", "invalid", "invalid", "invalid", "pending" }, statuses)
    assert.equal("malformed prediction_id", res.results[4].reason)
    assert.matches("outcome must be", res.results[6].reason)
    assert.same({ v = v, s = 0.1, n = 1 }, json.decode(st:get("experiments", keys.pack("s s s", "u", "fb", "f1"))))
    local rec = json.decode(st:get("outcomes", id))
    assert.equal(0.1, rec.outcome)
    assert.is_true(rec.at >= now and rec.at % 1 == 0, "at, in whole µs: " .. rec.at)
    assert.equal('spam "x"', json.decode(st:get("outcomes", string.format("%016x-1-1", now))).outcome)
    local c = e:results(st).variants
    local sum = 0
    for _, x in ipairs(c) do sum = sum + x.mean * x.units end
    assert.near(0.1, sum, 1e-12)
  end)

  local function run_bandit(kind, rates)
    local e = experiments.define(def { name = "bandit-" .. kind, kind = kind, seed = 3, epsilon = 0.1 })
    e:save(st)
    local rng = 99
    local picks = { control = 0, b = 0 }
    for i = 1, 1500 do
      local unit = "u" .. i
      local v = e:assign(unit, nil, st)
      if i > 1000 then picks[v.name] = picks[v.name] + 1 end
      experiments.flush({ e }, st)
      rng = rng * 16807 % 2147483647
      local converted = rng / 2147483647 < rates[v.name]
      assert(e:record_events({ { unit = unit, value = converted } }, st))
    end
    return picks, e
  end

  for _, kind in ipairs { "thompson", "ucb1", "epsilon_greedy" } do
    it(kind .. " moves traffic to the better variant, deterministically for a seed", function()
      local picks = run_bandit(kind, { control = 0.2, b = 0.4 })
      assert.is_true(picks.b > 350, kind .. " gave b " .. picks.b .. " of the last 500")
    end)
  end

  it("keeps a bandit's unit on its first variant", function()
    local e = experiments.define(def { name = "sticky", kind = "thompson" })
    e:save(st)
    local first = e:assign("same", nil, st).name
    experiments.flush({ e }, st)
    for _ = 1, 20 do assert.equal(first, e:assign("same", nil, st).name) end
  end)

  it("stops: the winner for everyone, uncounted, and no more events", function()
    local e = experiments.define(def { name = "stopping" })
    e:save(st)
    e:assign("u1", nil, st)
    experiments.flush({ e }, st)
    local stopped, why, stop_code = e:stop("nope", st)
    assert.is_nil(stopped)
    assert.matches("no variant 'nope'", why, 1, true)
    assert.equal("invalid", stop_code)
    local _, lerr, lcode = experiments.load("never-defined", st)
    assert.matches("no experiment 'never-defined'", lerr, 1, true)
    assert.equal("not_found", lcode)
    assert.equal("b", e:stop("b", st).winner)
    for i = 1, 20 do
      local v, counted = e:assign("x" .. i, nil, st)
      assert.same({ "b", false }, { v.name, counted })
    end
    local res, msg, code = e:record_events({ { unit = "u1", value = 1 } }, st)
    assert.is_nil(res)
    assert.matches("is stopped", msg)
    assert.equal("conflict", code)
    local saved = experiments.define(def { name = "stopping" })
    saved:save(st)  -- a restart declares it again: it stays stopped
    assert.equal("stopped", saved:results(st).status)
  end)

  it("uses Welch's test and normal posteriors for continuous metrics", function()
    local e = experiments.define(def { name = "revenue", metric = "revenue", metric_type = "continuous" })
    e:save(st)
    for i = 1, 200 do e:assign("r" .. i, nil, st) end
    experiments.flush({ e }, st)
    local events = {}
    for i = 1, 200 do
      local v = e:assign("r" .. i, nil, st).name
      events[i] = { unit = "r" .. i, metric = "revenue", value = (v == "b" and 12 or 10) + (i % 7) }
    end
    experiments.flush({ e }, st)
    local res = assert(e:record_events(events, st))
    assert.equal(200, res.accepted)
    local r = e:results(st)
    -- One request moved each variant's counters a hundred times: exact sums.
    local sums, ns = {}, {}
    for i, ev in ipairs(events) do
      local v = e:assign("r" .. i, nil, st).name
      sums[v], ns[v] = (sums[v] or 0) + ev.value, (ns[v] or 0) + 1
    end
    for _, v in ipairs(r.variants) do assert.near(sums[v.name] / ns[v.name], v.mean, 1e-9) end
    assert.is_true(r.variants[2].p_value < 1e-6)
    assert.is_true(r.variants[2].prob_beat_control > 0.99)
    assert.near(0.2, r.variants[2].lift, 0.1)
  end)
end)

describe("results over time", function()
  local dir, st
  local timeutil = require "tycho.util.timeutil"
  local real_now = timeutil.now
  local DAY0 = 1767225600e6  -- 2026-01-01T00:00:00Z
  setup(function()
    dir = testing.tmpdir()
    st = assert(store.open(dir))
  end)
  teardown(function()
    timeutil.now = real_now
    st:close()
    testing.rmrf(dir)
  end)

  it("gives the delta method's interval of a relative lift", function()
    local s = require "tycho.stats"
    -- 52 / 116 against 28 / 84, by hand: var(m2 / m1) = v2 / (n2 m1^2) + m2^2 v1 / (n1 m1^4).
    local m1, m2 = 52 / 116, 28 / 84
    local v1, v2 = m1 * (1 - m1) * 116 / 115, m2 * (1 - m2) * 84 / 83
    local lift, lo, hi = s.lift_ci(m1, v1, 116, m2, v2, 84)
    assert.near(-0.25641025641025644, lift, 1e-12)
    assert.near(-0.5282814277742838, lo, 1e-12)
    assert.near(0.015460914953770832, hi, 1e-12)
    local none = s.lift_ci(0, 0, 10, 0.5, 0.25, 10)
    assert.is_true(none ~= none)
  end)

  it("reads the hourly counters: units per slice and day, shares, and the cumulative lift", function()
    local clock = DAY0 + 1800e6  -- 00:30
    timeutil.now = function() return clock end
    local e = experiments.define(def { name = "timed" })
    e:save(st)
    -- 00:30 and 01:30 on day one, 12:30 on day two: 40, 20 and 40 new units.
    local n = 0
    local function traffic(count, at)
      clock = at
      for _ = 1, count do
        n = n + 1
        e:assign("t" .. n, nil, st)
      end
      experiments.flush({ e }, st)
      local events = {}
      for i = n - count + 1, n do
        if e:assign("t" .. i, nil, st).name == "b" or i % 4 == 0 then events[#events + 1] = { unit = "t" .. i, value = 1 } end
      end
      assert(e:record_events(events, st))
    end
    traffic(40, DAY0 + 1800e6)
    traffic(20, DAY0 + 5400e6)
    traffic(40, DAY0 + 86400e6 + 45000e6)
    timeutil.now = real_now
    local now = DAY0 + 2 * 86400e6 - 1
    local tl = e:timeline { store = st, now = now, buckets = 4 }
    -- 48 hours in 4 slices of 12: day one's morning, its afternoon, day two's.
    assert.same({ "2026-01-01T00:00:00Z", 12 * 3600 }, { tl.from, tl.slice_seconds })
    assert.equal(4, #tl.slices.t)
    local r = e:results(st)
    local total = {}
    for i, v in ipairs(tl.slices.variants) do
      assert.equal(r.variants[i].units, v.units[4])
      total[i] = v.new_units
    end
    assert.same({ 60, 0, 0, 40 }, { total[1][1] + total[2][1], total[1][2] + total[2][2], total[1][3] + total[2][3],
                                   total[1][4] + total[2][4] })
    assert.equal(require("tycho.json").null, tl.slices.variants[1].share[2])
    assert.near(1, tl.slices.variants[1].share[1] + tl.slices.variants[2].share[1], 1e-12)
    assert.near(r.variants[2].lift, tl.slices.variants[2].lift[4], 1e-12)
    assert.is_true(tl.slices.variants[2].lift_lo[4] < r.variants[2].lift and r.variants[2].lift < tl.slices.variants[2].lift_hi[4])
    assert.is_nil(tl.slices.variants[1].lift)
    assert.same({ "2026-01-01", "2026-01-02" }, tl.days.day)
    for i, v in ipairs(tl.days.variants) do
      assert.equal(r.variants[i].units, v.units[1] + v.units[2])
      assert.equal(total[i][1], v.units[1])
    end
    -- A window of 6 hours reads those hours only: day two's traffic.
    local late = e:timeline { store = st, now = now, window = 6 * 3600, buckets = 500 }
    assert.same({ "2026-01-02T18:00:00Z", 3600, 6 }, { late.from, late.slice_seconds, #late.slices.t })
    assert.equal(0, late.slices.variants[1].new_units[1] + late.slices.variants[2].new_units[1])
    assert.equal(r.variants[1].units, late.slices.variants[1].units[1])
    assert.has_error(function() e:timeline { buckets = 0 } end, "timeline: buckets must be an integer from 1 to 500")
  end)
end)
