--- Experiments, timeline: the results over time, from the hourly history of
-- each variant's counters (the "h" records of records.lua).
--
--   e:timeline { window = 30 * 86400, buckets = 60 }
--
-- At the end of each of up to `buckets` slices of whole hours (over the
-- window, never before the experiment started, up to now or its stop):
-- every variant's units so far, the units it gained in the slice and its
-- share of them (a bandit's allocation), and for each variant but the
-- control its cumulative lift over the control with the 95 % interval. Per
-- UTC day: the units and exposures each variant gained (traffic). It seeks
-- one record per variant for each slice's end and each day's, never a unit
-- nor every hour: bounded by what it answers, however long the experiment
-- ran or how many units it has.
local json = require "tycho.util.json"
local keys = require "tycho.util.keys"
local stats = require "tycho.experiments.stats"
local timeutil = require "tycho.util.timeutil"
local shared = require "tycho.experiments.records"
local results = require "tycho.experiments.results"
local assignment = require "tycho.experiments.assign"
local cluster = require "tycho.experiments.cluster"

local Experiment = shared.Experiment
local history_key = shared.history_key
local HOUR, DAY = shared.HOUR, 86400
local ZERO = { units = 0, exposures = 0, sum = 0, sumsq = 0 }

local function num_or_null(x) return (x == x and x ~= math.huge and x ~= -math.huge) and x or json.null end

-- A variant's counters as they stood at time t (a whole hour, Unix
-- seconds): its last snapshot of an hour before t (an hour's snapshot holds
-- the counters at its end), or zeros. One seek, however many hours passed.
local function counters_at(tx, name, variant, t)
  local raw
  for _, v in tx:scan("experiments", { from = keys.pack("s s s", "h", name, variant),
                                       to = history_key(name, variant, t), reverse = true, limit = 1 }) do
    raw = v
  end
  return raw and json.decode(raw) or ZERO
end

-- at(t): every variant's counters at time t, in variant order, read once
-- per t (a slice's end is often a day's too).
local function reader(tx, e)
  local cache = {}
  return function(t)
    local got = cache[t]
    if not got then
      got = {}
      for i, v in ipairs(e.variants) do got[i] = counters_at(tx, e.name, v.name, t) end
      cache[t] = got
    end
    return got
  end
end

-- The hours the timeline covers: from the window's start (or the
-- experiment's, if later) to the end of the hour of now (or of the stop).
local function span_of(rec, window, now)
  local last = rec.stopped_at or now
  local to = math.floor(last / (HOUR * 1e6)) * HOUR + HOUR
  local from = to - math.ceil(window / HOUR) * HOUR
  if rec.started_at then from = math.max(from, math.floor(rec.started_at / (HOUR * 1e6)) * HOUR) end
  return from, to, last
end

-- Cumulative lift of counters c over the control's ctl: lift, lo, hi or nulls.
local function lift_of(ctl, c)
  local lift, lo, hi = stats.lift_ci(assignment.mean_of(ctl), results.variance(ctl), ctl.units,
    assignment.mean_of(c), results.variance(c), c.units)
  return num_or_null(lift), num_or_null(lo), num_or_null(hi)
end

-- Per slice: every variant's units so far, those gained and their share,
-- and the lift of each variant but the control.
local function slices(variants, at, from, ends)
  local out = {}
  for i, v in ipairs(variants) do
    out[i] = { name = v.name, units = {}, new_units = {}, share = {} }
    if i > 1 then out[i].lift, out[i].lift_lo, out[i].lift_hi = {}, {}, {} end
  end
  local previous = at(from)
  for k, t in ipairs(ends) do
    local now, gained, total = at(t), {}, 0
    for i, c in ipairs(now) do
      gained[i] = c.units - previous[i].units
      total = total + gained[i]
    end
    for i, s in ipairs(out) do
      s.units[k], s.new_units[k] = now[i].units, gained[i]
      s.share[k] = total > 0 and gained[i] / total or json.null
      if s.lift then s.lift[k], s.lift_lo[k], s.lift_hi[k] = lift_of(now[1], now[i]) end
    end
    previous = now
  end
  return out
end

-- Per UTC day of [from, to): the units and exposures each variant gained.
local function days(variants, at, from, to)
  local labels, out = {}, {}
  for i, v in ipairs(variants) do out[i] = { name = v.name, units = {}, exposures = {} } end
  local previous = at(from)
  for day = math.floor(from / DAY) * DAY, to - 1, DAY do
    local now = at(math.min(day + DAY, to))
    labels[#labels + 1] = os.date("!%Y-%m-%d", day)
    for i, c in ipairs(now) do
      out[i].units[#labels] = c.units - previous[i].units
      out[i].exposures[#labels] = c.exposures - previous[i].exposures
    end
    previous = now
  end
  return { day = labels, variants = out }
end

--- The experiment's results over time (see the top of this file). opts:
-- window (seconds, default 30 days), buckets (1 to 500, default 60), now
-- (µs, default now), store. Answers { name, kind, metric_type, status,
-- from, to, slice_seconds, slices = { t (slice ends, Unix seconds),
-- variants = [{ name, units, new_units, share, lift, lift_lo, lift_hi }] },
-- days = { day ("YYYY-MM-DD"), variants = [{ name, units, exposures }] } }.
function Experiment:timeline(opts)
  opts = opts or {}
  local window, buckets = opts.window or 30 * DAY, opts.buckets or 60
  if type(window) ~= "number" or window <= 0 then error("timeline: window must be a positive number of seconds", 2) end
  if type(buckets) ~= "number" or buckets < 1 or buckets > 500 or buckets % 1 ~= 0 then
    error("timeline: buckets must be an integer from 1 to 500", 2)
  end
  local now = opts.now or timeutil.now()
  local store = opts.store or shared.st()
  local sh = cluster.of(store)
  if sh then sh:before_results(store, self) end
  return store:view(function(tx)
    local rec = tx:get_json("experiments", shared.def_key(self.name)) or self:record()
    local from, to, last = span_of(rec, window, now)
    local step = math.ceil((to - from) / HOUR / buckets) * HOUR
    local ends, ts = {}, {}
    for t = from + step, to + step - 1, step do
      ends[#ends + 1] = math.min(t, to)
      ts[#ts + 1] = math.min(t, last / 1e6)
    end
    local at = reader(tx, self)
    return { name = self.name, kind = self.kind, metric_type = self.metric_type, status = rec.status or "running",
             from = timeutil.format(from * 1e6), to = timeutil.format(last), slice_seconds = step,
             slices = { t = ts, variants = slices(self.variants, at, from, ends) },
             days = days(self.variants, at, from, to) }
  end)
end
