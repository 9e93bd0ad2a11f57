--- Rollups of the prediction log: per model, version and role, the volume,
-- errors and a latency histogram of every second, minute and hour. The
-- log's flush writes them beside its entries (serve/log.lua) and
-- monitoring reads them (monitor/init.lua), so the traffic of a window
-- costs at most 3,600 records a series however many predictions it holds
-- (a day of a million predictions is 1,440 minutes).
--
--   local acc = rollup.new()
--   rollup.add(acc, entry)            -- for each logged entry
--   rollup.write(tx, acc)             -- merged into what the home holds
--   local span = rollup.span(3600, now_us, 60)         -- an hour in 60 slices
--   local groups = rollup.traffic(tx, "spam", span, true)
--
-- Database `prediction_rollups`; key: model · level (u32 seconds: 1, 60 or
-- 3600) · start (i64 seconds) · version · role; value (string.buffer):
-- { t = start, version, role, n, errors, ms = { [bin] = count } }. Minutes
-- and hours are sums of seconds. Seconds serve windows under an hour and
-- are kept SECONDS_KEPT (2 h); minutes and hours live as long as the log.
-- Latency bins are log-spaced, 16 to a doubling from 2^-10 ms to 2^20 ms:
-- a percentile read from them is within 2.2 % of the latency it stands for.
local buffer = require "string.buffer"
local json = require "tycho.util.json"
local keys = require "tycho.util.keys"
local timeutil = require "tycho.util.timeutil"

local M = {}

M.DB = "prediction_rollups"
M.LEVELS = { 1, 60, 3600 }
local SECONDS_KEPT = 7200
-- A window is read in periods of at most 1/60 of it (what its first,
-- partial period may leave out), and in at most MAX_PERIODS of them.
local PERIODS_MIN, MAX_PERIODS = 60, 3600
local BINS_PER_DOUBLING, LOW_BIN, HIGH_BIN = 16, -160, 320
local LOG2 = math.log(2)
local floor, max, min = math.floor, math.max, math.min

local function bin(ms)
  if ms ~= ms or ms <= 0 then return LOW_BIN end  -- NaN and zero: the lowest bin
  return max(LOW_BIN, min(HIGH_BIN, floor(math.log(ms) / LOG2 * BINS_PER_DOUBLING)))
end

-- The latency a bin stands for: its middle on the log scale.
local function bin_ms(b) return 2 ^ ((b + 0.5) / BINS_PER_DOUBLING) end

-- An accumulator keys its bins HELD_SHIFT below their number, all negative:
-- a table of bins both sides of zero holds some in its array part, and
-- LuaJIT cannot record a store into such a table ("NYI: mixed sparse/dense
-- table"), which took the log's trace to the interpreter for every request
-- of a second that also had one slower than 1 ms. Stored records keep the
-- bins' numbers (merge_into converts).
local HELD_SHIFT = HIGH_BIN + 1

--- A new accumulator for add and write.
function M.new() return {} end

-- acc[model][version][role][second]: nested tables, so that counting an
-- entry allocates nothing once its second has a record.
local function second_of(acc, e)
  local version, role = tostring(e.version), e.role or "live"
  local by_version = acc[e.model] or {}
  acc[e.model] = by_version
  local by_role = by_version[version] or {}
  by_version[version] = by_role
  local by_t = by_role[role] or {}
  by_role[role] = by_t
  local t = floor(e.at / 1e6)
  local r = by_t[t]
  if not r then
    r = { t = t, version = version, role = role, n = 0, errors = 0, ms = {} }
    by_t[t] = r
  end
  return r
end

--- Counts one logged entry (model, version, role, at in µs, ms, error) in acc.
function M.add(acc, e)
  if type(e.model) ~= "string" or type(e.at) ~= "number" then return end
  local r = second_of(acc, e)
  r.n = r.n + 1
  if e.error then r.errors = r.errors + 1 end
  local ms = tonumber(e.ms)
  if ms then
    local b = bin(ms) - HELD_SHIFT
    r.ms[b] = (r.ms[b] or 0) + 1
  end
end

local function key(model, level, t, version, role)
  return keys.pack("s u32 i64 s s", model, level, t, version, role)
end

local function merge_hist(into, from)
  for b, n in pairs(from) do into[b] = (into[b] or 0) + n end
end

-- Adds record r ({ t, version, role, n, errors, ms }, an accumulator's) to
-- what the home holds for model and level.
-- (r itself is left as it is: a batch whose commit fails writes its
-- accumulator again.)
local function merge_into(tx, model, level, r)
  local k = key(model, level, r.t, r.version, r.role)
  local ms = {}
  for b, n in pairs(r.ms) do ms[b + HELD_SHIFT] = n end
  local old = tx:get(M.DB, k)
  local o = old and buffer.decode(old) or { t = r.t, version = r.version, role = r.role, n = 0, errors = 0, ms = {} }
  o.n, o.errors = o.n + r.n, o.errors + r.errors
  merge_hist(o.ms, ms)
  tx:put(M.DB, k, buffer.encode(o))
end

-- The records of `level` seconds that one series' records by_t make.
local function coarser(by_t, level)
  local out = {}
  for t, m in pairs(by_t) do
    local p = floor(t / level) * level
    local r = out[p] or { t = p, version = m.version, role = m.role, n = 0, errors = 0, ms = {} }
    out[p] = r
    r.n, r.errors = r.n + m.n, r.errors + m.errors
    merge_hist(r.ms, m.ms)
  end
  return out
end

--- Adds accumulator from's counts to into's.
function M.merge(into, from)
  for model, by_version in pairs(from) do
    for _, by_role in pairs(by_version) do
      for _, by_t in pairs(by_role) do
        for _, m in pairs(by_t) do
          local r = second_of(into, { model = model, version = m.version, role = m.role, at = m.t * 1e6 })
          r.n, r.errors = r.n + m.n, r.errors + m.errors
          merge_hist(r.ms, m.ms)
        end
      end
    end
  end
end

--- Adds acc's counts to the records in the home (inside write transaction
-- tx): the seconds' (those of the last SECONDS_KEPT), and the minutes and
-- hours they make.
function M.write(tx, acc)
  local kept = floor(timeutil.now() / 1e6) - SECONDS_KEPT
  for model, by_version in pairs(acc) do
    for _, by_role in pairs(by_version) do
      for _, by_t in pairs(by_role) do
        local minutes, hours = coarser(by_t, 60), coarser(by_t, 3600)
        for t, r in pairs(by_t) do
          if t >= kept then merge_into(tx, model, 1, r) end
        end
        for _, r in pairs(minutes) do merge_into(tx, model, 60, r) end
        for _, r in pairs(hours) do merge_into(tx, model, 3600, r) end
      end
    end
  end
end

--- Deletes up to `limit` (1000) records per model that acc counts and
-- level that start before `before` (seconds: the retention of the log
-- applied to its rollups), or, for seconds, before the last SECONDS_KEPT.
-- Returns the count.
function M.prune(tx, acc, before, limit)
  local old = {}
  local seconds_cut = max(before, floor(timeutil.now() / 1e6) - SECONDS_KEPT)
  for model in pairs(acc) do
    for _, level in ipairs(M.LEVELS) do
      local cut = level == 1 and seconds_cut or before
      for k in tx:scan(M.DB, { from = keys.pack("s u32", model, level), to = keys.pack("s u32 i64", model, level, cut),
                               limit = limit or 1000 }) do
        old[#old + 1] = k
      end
    end
  end
  for _, k in ipairs(old) do tx:delete(M.DB, k) end
  return #old
end

-- The level a window of `window` seconds cut in slices of `width` is read
-- in: the coarsest no longer than a slice and at most 1/60 of the window,
-- then coarser while that would take more than MAX_PERIODS periods.
local function level_of(window, width)
  local level = M.LEVELS[1]
  for _, l in ipairs(M.LEVELS) do
    if l <= max(1, min(width, window / PERIODS_MIN)) then level = l end
  end
  for _, l in ipairs(M.LEVELS) do
    if l > level and window / level > MAX_PERIODS then level = l end
  end
  return level
end

--- The periods a window of `window` seconds ending at now_us is read in:
-- { level, from, width, buckets } (seconds). The last period is the one
-- holding now, `from` the start of the first. With `buckets` (a count),
-- the window is cut into slices of `width` seconds, a whole number of
-- periods each (so no slice gets a period more than another): at most
-- `buckets` of them, fewer when a slice would be shorter than a period.
function M.span(window, now_us, buckets)
  local level = level_of(window, window / (buckets or 1))
  local width = math.ceil(window / (buckets or 1) / level) * level
  local n = math.ceil(window / width)
  local stop = (floor(now_us / 1e6 / level) + 1) * level
  return { level = level, from = stop - n * width, width = width, buckets = n }
end

-- The latency (ms) at quantile q of a histogram { [bin] = count }, or
-- json.null when it is empty (the rank as for a sorted list: ceil(q * n)).
local function percentile(hist, q)
  local bins, total = {}, 0
  for b, c in pairs(hist) do
    bins[#bins + 1] = b
    total = total + c
  end
  if total == 0 then return json.null end
  table.sort(bins)
  local rank, seen = max(1, math.ceil(q * total)), 0
  for _, b in ipairs(bins) do
    seen = seen + hist[b]
    if seen >= rank then return bin_ms(b) end
  end
end

local function new_group(r, n)
  local g = { version = r.version, role = r.role, volume = 0, errors = 0, ms = {} }
  if n then
    g.slices = { volume = {}, errors = {}, ms = {} }
    for b = 1, n do g.slices.volume[b], g.slices.errors[b], g.slices.ms[b] = 0, 0, {} end
  end
  return g
end

-- Per-slice figures of a group: volume, errors, p50 and p99 latency.
local function series(g)
  local s = g.slices
  local p50, p99 = {}, {}
  for b, h in ipairs(s.ms) do p50[b], p99[b] = percentile(h, 0.5), percentile(h, 0.99) end
  return { volume = s.volume, errors = s.errors, p50_ms = p50, p99_ms = p99 }
end

--- A series of n slices without traffic (what traffic's series holds).
function M.no_series(n)
  local s = { volume = {}, errors = {}, p50_ms = {}, p99_ms = {} }
  for b = 1, n do s.volume[b], s.errors[b], s.p50_ms[b], s.p99_ms[b] = 0, 0, json.null, json.null end
  return s
end

--- The traffic of `model` over span (M.span) in read transaction tx: a
-- list of { version, role, volume, errors, latency_ms = { p50, p99 },
-- series } in the order first seen; series ({ volume, errors, p50_ms,
-- p99_ms }, one value a slice of span) only when with_series.
function M.traffic(tx, model, span, with_series)
  local groups, order = {}, {}
  local stop = span.from + span.buckets * span.width
  for _, raw in tx:scan(M.DB, { from = keys.pack("s u32 i64", model, span.level, span.from),
                                to = keys.pack("s u32 i64", model, span.level, stop) }) do
    local r = buffer.decode(raw)
    local id = r.version .. "\0" .. r.role
    local g = groups[id]
    if not g then
      g = new_group(r, with_series and span.buckets)
      groups[id], order[#order + 1] = g, g
    end
    g.volume, g.errors = g.volume + r.n, g.errors + r.errors
    merge_hist(g.ms, r.ms)
    if g.slices then
      local b = floor((r.t - span.from) / span.width) + 1
      g.slices.volume[b] = g.slices.volume[b] + r.n
      g.slices.errors[b] = g.slices.errors[b] + r.errors
      merge_hist(g.slices.ms[b], r.ms)
    end
  end
  for _, g in ipairs(order) do
    g.latency_ms = { p50 = percentile(g.ms, 0.5), p99 = percentile(g.ms, 0.99) }
    g.series = g.slices and series(g) or nil
    g.ms, g.slices = nil, nil
  end
  return order
end

return M
