--- tycho.features, data-quality metadata per view, kept current by every
-- ingest and push (in the same transaction as the rows, so the statistics
-- never disagree with what is stored) and never by rescanning the history:
-- rows, entities, and per feature the values and nulls seen, mean and
-- variance (merged batch by batch), min, max, an approximate distinct count
-- (HyperLogLog, core/util/tz_hll) and a histogram; the ingest history gives
-- freshness and the update interval. fs:quality(view) reads them, with the
-- registered models that consume the view and the view's expectations
-- (max_missing, max_lag) checked.
local ffi = require "ffi"
local json = require "tycho.util.json"
local timeutil = require "tycho.util.timeutil"
local base = require "tycho.core.base"

local M = {}
local FS = {}

local P = 9                 -- HyperLogLog precision: 512 registers, ~4.6 % error
local REGISTERS = 2 ^ P
local BINS = 16             -- histogram bins over the range first seen

local function key_of(view) return "quality/" .. view end

-- HyperLogLog registers live as raw bytes under keys of their own beside
-- the statistics record (the entity sketch under an empty feature name):
-- copied in and out with one memcpy, never re-encoded as text on a push.
-- Numbers count by their bytes (tz_hll_add_f64), text and booleans by their
-- text; sketches made before numbers were counted so (under "quality_hll/")
-- are left alone rather than mixed, and counting starts again here.
local function sketch_key(view, feature) return "quality_hll2/" .. view .. "\0" .. feature end

local function registers(bytes)
  local regs = ffi.new("uint8_t[?]", REGISTERS)
  if bytes and #bytes == REGISTERS then ffi.copy(regs, bytes, REGISTERS) end
  return regs
end

local function read_sketch(tx, view, feature) return registers(tx:get("catalog", sketch_key(view, feature))) end

local function write_sketch(tx, view, feature, regs)
  tx:put("catalog", sketch_key(view, feature), ffi.string(regs, REGISTERS))
end

local function estimate(tx, view, feature)
  local bytes = tx:get("catalog", sketch_key(view, feature))
  return bytes and math.floor(base.hll.estimate(registers(bytes), P) + 0.5) or 0
end

local function new_feature(f)
  return { type = f.type, count = 0, nulls = 0, mean = 0, m2 = 0 }
end

-- Folds one batch's values of a numeric feature into its statistics
-- (Chan et al.'s merge of counts, means and squared deviations).
local function merge_moments(st, n, mean, m2)
  if n == 0 then return end
  local total = st.count + n
  local delta = mean - st.mean
  st.m2 = st.m2 + m2 + delta * delta * st.count * n / total
  st.mean = st.mean + delta * n / total
  st.count = total
end

local function add_to_histogram(st, values)
  if #values == 0 then return end
  local h = st.hist
  if not h then
    local lo, hi = math.huge, -math.huge
    for _, x in ipairs(values) do lo, hi = math.min(lo, x), math.max(hi, x) end
    if hi <= lo then hi = lo + 1 end
    h = { lo = lo, hi = hi, counts = {}, under = 0, over = 0 }
    for b = 1, BINS do h.counts[b] = 0 end
    st.hist = h
  end
  local width = (h.hi - h.lo) / BINS
  for _, x in ipairs(values) do
    if x < h.lo then h.under = h.under + 1
    elseif x > h.hi then h.over = h.over + 1
    else
      local b = math.min(BINS, math.floor((x - h.lo) / width) + 1)
      h.counts[b] = h.counts[b] + 1
    end
  end
end

-- Takes one value back out of a feature's statistics (a stored row that a
-- correction replaced): counts and moments stay exact for the stored rows;
-- min, max, distinct and the histogram keep every value ever landed.
local function remove_value(st, x)
  if x == nil then
    st.nulls = math.max(0, st.nulls - 1)
    return
  end
  if type(x) == "boolean" then x = x and 1 or 0 end
  if type(x) ~= "number" then
    st.count = math.max(0, st.count - 1)
    return
  end
  if st.count <= 1 then
    st.count, st.mean, st.m2 = 0, 0, 0
    return
  end
  local mean = (st.count * st.mean - x) / (st.count - 1)
  st.m2 = math.max(0, st.m2 - (x - st.mean) * (x - mean))
  st.mean, st.count = mean, st.count - 1
end

local function read_record(tx, v)
  return tx:get_json("catalog", key_of(v.name)) or { rows = 0, ingests = 0, features = {} }
end

-- One more ingest of `written` rows (`replaced` of them corrected stored
-- ones), the newest event `last_event`: the record's counts and times.
local function count_ingest(q, written, replaced, last_event)
  local now = timeutil.now()
  q.rows, q.ingests = q.rows + written - replaced, q.ingests + 1
  q.first_ingest, q.last_ingest = q.first_ingest or now, now
  if last_event and (not q.last_event or last_event > q.last_event) then q.last_event = last_event end
end

--- Folds rows just written (lists of { entity, time µs, values }) into
-- view v's statistics, inside the writing transaction tx; `replaced` holds
-- the old values of stored rows those writes corrected.
function M.record(tx, v, written, replaced)
  if #written == 0 then return end
  replaced = replaced or {}
  local q = read_record(tx, v)
  local entity_regs, last_event = read_sketch(tx, v.name, ""), nil
  for _, w in ipairs(written) do
    base.hll.add(entity_regs, P, w[1], #w[1])
    if not last_event or w[2] > last_event then last_event = w[2] end
  end
  count_ingest(q, #written, #replaced, last_event)
  write_sketch(tx, v.name, "", entity_regs)
  for _, f in ipairs(v.current) do
    local st = q.features[f.name] or new_feature(f)
    q.features[f.name] = st
    local regs = read_sketch(tx, v.name, f.name)
    local numbers, n, sum = {}, 0, 0
    for _, w in ipairs(written) do
      local x = w[3][f.name]
      if x == nil then
        st.nulls = st.nulls + 1
      else
        if type(x) == "number" then
          base.hll.add_f64(regs, P, x)
        else
          local s = type(x) == "string" and x or tostring(x)
          base.hll.add(regs, P, s, #s)
        end
        if type(x) == "boolean" then x = x and 1 or 0 end
        if type(x) == "number" then
          n, sum = n + 1, sum + x
          numbers[n] = x
          st.min = st.min and math.min(st.min, x) or x
          st.max = st.max and math.max(st.max, x) or x
        else
          st.count = st.count + 1
        end
      end
    end
    for _, r in ipairs(replaced) do remove_value(st, r[3][f.name]) end
    if n > 0 then
      local mean, m2 = sum / n, 0
      for i = 1, n do m2 = m2 + (numbers[i] - mean) ^ 2 end
      merge_moments(st, n, mean, m2)
      add_to_histogram(st, numbers)
    end
    write_sketch(tx, v.name, f.name, regs)
  end
  tx:put_json("catalog", key_of(v.name), q)
end

--- The statistics a columnar batch (core/store/tz_ingest) folds into, for
-- view v inside tx: { q = the record, entity = registers, features = {
-- [name] = { st, regs } } }, with the histogram ranges and HLL registers the
-- batch's C structs take (see fill_batch). P is the registers' precision.
M.P = P
function M.open_batch(tx, v)
  local q = read_record(tx, v)
  local state = { q = q, entity = read_sketch(tx, v.name, ""), features = {} }
  for _, f in ipairs(v.current) do
    local st = q.features[f.name] or new_feature(f)
    q.features[f.name] = st
    state.features[f.name] = { st = st, regs = read_sketch(tx, v.name, f.name) }
  end
  return state
end

--- Folds the batch's statistics (tz_ingest_batch b, its features in
-- v.current's order) into state and writes them in tx, as record() does for
-- rows: `replaced` holds the old values ({ entity, time, values }) of the
-- stored rows the batch corrected.
function M.close_batch(tx, v, state, b, replaced)
  local written = tonumber(b.landed)
  if written == 0 then return end
  local q = state.q
  count_ingest(q, written, #replaced, tonumber(b.last_event))
  write_sketch(tx, v.name, "", state.entity)
  for j, f in ipairs(v.current) do
    local c, fs = b.features[j - 1], state.features[f.name]
    local st = fs.st
    st.nulls = st.nulls + tonumber(c.nulls)
    st.count = st.count + tonumber(c.others)
    local n = tonumber(c.numbers)
    if n > 0 then
      st.min = st.min and math.min(st.min, c.lo) or c.lo
      st.max = st.max and math.max(st.max, c.hi) or c.hi
    end
    for _, r in ipairs(replaced) do remove_value(st, r[3][f.name]) end
    if n > 0 then
      merge_moments(st, n, c.sum / n, c.m2)
      local h = st.hist
      if not h then
        h = { lo = c.hist_lo, hi = c.hist_hi, counts = {}, under = 0, over = 0 }
        for bin = 1, BINS do h.counts[bin] = 0 end
        st.hist = h
      end
      for bin = 1, BINS do h.counts[bin] = h.counts[bin] + tonumber(c.hist[bin - 1]) end
      h.under, h.over = h.under + tonumber(c.under), h.over + tonumber(c.over)
    end
    write_sketch(tx, v.name, f.name, fs.regs)
  end
  tx:put_json("catalog", key_of(v.name), q)
end

--- Gives the batch's feature structs their statistics inputs: registers
-- and the histogram range already fixed for each feature.
function M.fill_batch(state, v, features)
  for j, f in ipairs(v.current) do
    local c, fs = features[j - 1], state.features[f.name]
    c.hll = fs.regs
    local h = fs.st.hist
    if h then c.has_hist, c.hist_lo, c.hist_hi = 1, h.lo, h.hi else c.has_hist = 0 end
  end
end

-- Registered models whose latest version reads the view ("view:feature"
-- or "view:*" among its pipeline's features). Read from the registry's
-- records in the home (registry/init.lua: "model/NAME" names the latest
-- version, "version/NAME/V" holds its features): the registry module itself
-- reaches the feature store through pipelines, so requiring it from here
-- would close a cycle.
local function consumers(fs, view)
  local out = {}
  fs.store:view(function(tx)
    for _, raw in tx:scan("registry", { prefix = "model/" }) do
      local m = json.decode(raw)
      local meta = type(m) == "table" and m.latest and tx:get_json("registry", "version/" .. m.name .. "/" .. m.latest)
      for _, ref in ipairs(meta and type(meta.features) == "table" and meta.features or {}) do
        if type(ref) == "string" and ref:match("^([^:]+):") == view then
          out[#out + 1] = m.name .. " " .. m.latest
          break
        end
      end
    end
  end)
  table.sort(out)
  return out
end

--- The data-quality metadata of a view: { view, rows, entities, features =
-- { { name, type, values, nulls, missing_ratio, mean, variance, min, max,
-- distinct, histogram = { edges = {...}, counts = {...}, below, above } } },
-- missing_ratio (over every feature value), ingests, first_ingest,
-- last_ingest, last_event, freshness_seconds (now - last event),
-- update_interval_seconds (mean time between ingests), consumers
-- ({ "model version" }), expect (the view's expectations), violations
-- ({ "..." } for each expectation not met) }; or nil, message, code.
-- Counts and moments are exact; entities and distinct are HyperLogLog
-- estimates (about 5 %).
function FS:quality(view)
  local v, verr, vcode = self:view(view)
  if not v then return nil, verr, vcode end
  local q, distinct = self.store:view(function(tx)
    local record = read_record(tx, v)
    local counts = { [""] = estimate(tx, v.name, "") }
    for _, f in ipairs(v.current) do counts[f.name] = estimate(tx, v.name, f.name) end
    return record, counts
  end)
  local now = timeutil.now()
  local out = { view = v.name, rows = q.rows, ingests = q.ingests, features = {}, expect = v.expect or json.null,
                entities = distinct[""],
                first_ingest = q.first_ingest and timeutil.format(q.first_ingest) or json.null,
                last_ingest = q.last_ingest and timeutil.format(q.last_ingest) or json.null,
                last_event = q.last_event and timeutil.format(q.last_event) or json.null,
                freshness_seconds = q.last_event and (now - q.last_event) / 1e6 or json.null,
                update_interval_seconds = q.ingests > 1 and (q.last_ingest - q.first_ingest) / 1e6 / (q.ingests - 1)
                  or json.null,
                consumers = consumers(self, v.name), violations = {} }
  local values, nulls = 0, 0
  for _, f in ipairs(v.current) do
    local st = q.features[f.name] or new_feature(f)
    local total = st.count + st.nulls
    local h = st.hist
    local entry = { name = f.name, type = f.type, values = st.count, nulls = st.nulls,
                    missing_ratio = total > 0 and st.nulls / total or 0,
                    mean = st.min and st.mean or json.null, min = st.min or json.null, max = st.max or json.null,
                    variance = st.min and st.count > 1 and st.m2 / (st.count - 1) or json.null,
                    distinct = distinct[f.name],
                    histogram = json.null }
    if h then
      local edges = {}
      for b = 0, BINS do edges[b + 1] = h.lo + (h.hi - h.lo) * b / BINS end
      entry.histogram = { edges = edges, counts = h.counts, below = h.under, above = h.over }
    end
    values, nulls = values + st.count, nulls + st.nulls
    out.features[#out.features + 1] = entry
    local e = v.expect
    if e and e.max_missing and entry.missing_ratio > e.max_missing then
      out.violations[#out.violations + 1] = string.format("%s: %.1f%% missing, more than %.1f%%", f.name,
        100 * entry.missing_ratio, 100 * e.max_missing)
    end
  end
  out.missing_ratio = values + nulls > 0 and nulls / (values + nulls) or 0
  local e = v.expect
  if e and e.max_lag and q.last_event and (now - q.last_event) / 1e6 > e.max_lag then
    out.violations[#out.violations + 1] = string.format("freshness: the newest event is %ds old, more than %ds",
      math.floor((now - q.last_event) / 1e6), e.max_lag)
  elseif e and e.max_lag and not q.last_event then
    out.violations[#out.violations + 1] = "freshness: no data yet"
  end
  if #out.violations == 0 then out.violations = json.empty_array end
  if #out.consumers == 0 then out.consumers = json.empty_array end
  return out
end

--- What /metrics exports of every view, cheaply (no sketch is decoded):
-- { { view =, freshness_seconds = (or nil), missing = { feature = ratio } } }.
function FS:quality_gauges()
  local now, out = timeutil.now(), {}
  self.store:view(function(tx)
    for k, raw in tx:scan("catalog", { prefix = "quality/" }) do
      local q = json.decode(raw)
      if type(q) == "table" then
        local g = { view = k:sub(#"quality/" + 1), missing = {},
                    freshness_seconds = q.last_event and (now - q.last_event) / 1e6 or nil }
        for name, st in pairs(q.features or {}) do
          local total = st.count + st.nulls
          g.missing[name] = total > 0 and st.nulls / total or 0
        end
        out[#out + 1] = g
      end
    end
  end)
  return out
end

M.methods = FS

return M
