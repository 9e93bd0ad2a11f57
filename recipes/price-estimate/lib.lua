--- The price estimate's pieces, shared by its DAG, pipeline script and demo:
-- the listing timeline of the diamonds, ingestion into the feature store
-- (validated, bad listings quarantined), the point-in-time training set,
-- the regression pipeline, the validation gate, and the batch job that
-- precomputes an estimate for every listed diamond into a feature view.
local tycho = require "tycho"
local frame, step = tycho.frame, tycho.step

local M = {}

-- The shared datasets sit next to the project: ../shared/data from its root.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "../common.lua")
M.DATA = common.DATA
M.BASE = 1735689600   -- 2025-01-01T00:00:00Z: the first diamond is listed then
M.EVERY = 6           -- a new listing every 6 seconds: 53940 over about 3.7 days
M.PRICED_AFTER = 3600 -- a listing's price (what it sold for) is known an hour later
M.MODEL = "price"
M.ESTIMATES = "price_estimates"
M.FEATURES = { "carat", "cut", "color", "clarity", "depth", "table", "x", "y", "z" }

-- The gate every candidate passes before it serves: absolute ceilings in
-- USD on the fixed test split, and no worse than production on it.
M.GATES = { mae = 450, rmse = 900 }

--- Listing times by row: diamonds.csv is sorted by price, a marketplace
-- is not, so rows are listed in a fixed pseudo-random order.
function M.listing_times(n) return common.arrivals(n, M.BASE, M.EVERY, 7919, 48271) end

function M.diamond_id(row) return string.format("d-%05d", row) end

local cache
--- The dataset, listing time by row and the fixed split (1 = test row).
function M.diamonds()
  if cache then return cache[1], cache[2], cache[3] end
  local d = assert(frame.read_csv(M.DATA .. "/diamonds.csv"))
  local split = {}
  for line in io.lines(M.DATA .. "/diamonds.split") do split[#split + 1] = tonumber(line) end
  assert(#split == d:nrows(), "diamonds.split does not match diamonds.csv")
  cache = { d, M.listing_times(d:nrows()), split }
  return d, cache[2], split
end

--- Declares the entity and both feature views (idempotent). Ranges and
-- allowed codes are the validation every ingest applies: a zero
-- dimension is a missing measurement, a dimension over 20 mm a typo.
function M.declare(fs)
  assert(fs:entity { name = "diamond", join_key = "diamond_id", description = "one listed diamond" })
  local mm = { type = "float", min = 0.5, max = 20 }
  assert(fs:feature_view { name = "diamond_attrs", entity = "diamond", owner = "pricing", tags = { "diamonds" },
    description = "a listing's grading: 4 Cs and measurements (codes as in the dataset's README)",
    schema = {
      carat = { type = "float", min = 0.1, max = 10, nullable = false },
      cut = { type = "int", values = { 0, 1, 2, 3, 4 }, nullable = false },
      color = { type = "int", values = { 0, 1, 2, 3, 4, 5, 6 }, nullable = false },
      clarity = { type = "int", values = { 0, 1, 2, 3, 4, 5, 6, 7 }, nullable = false },
      depth = { type = "float", min = 40, max = 80 }, table = { type = "float", min = 40, max = 100 },
      x = mm, y = mm, z = mm,
    } })
  -- Written by the batch job (tycho score --to-view): `prediction` is the
  -- column the scorer writes, stored as the feature price_estimate.
  assert(fs:feature_view { name = M.ESTIMATES, entity = "diamond", owner = "pricing", tags = { "diamonds" },
    description = "precomputed price estimate (USD) of every listed diamond, refreshed daily",
    schema = { price_estimate = { type = "float", column = "prediction", nullable = false },
               model_version = "string" } })
end

--- Ingests the diamonds listed by `until_ts` as events; rows already in
-- the store count as unchanged, so a rerun of a day adds nothing twice.
-- Returns the ingest report (rejected rows are in report.quarantine).
function M.ingest(until_ts)
  local d, at = M.diamonds()
  local fs = assert(tycho.features.open())
  M.declare(fs)
  local events = common.arrived_events(d, at, until_ts, "target", "diamond_id", M.diamond_id)
  return assert(fs:ingest("diamond_attrs", events))
end

--- Rejections of an ingest report counted by reason ("feature 'x': 0 is
-- below min 0.5" -> "feature 'x': below min"), most frequent first.
function M.rejections(report)
  local by, out = {}, {}
  for _, is in ipairs(report.issues or {}) do
    local reason = tostring(is.reason):gsub(": [%d%.%-]+ is", ":")
    by[reason] = (by[reason] or 0) + 1
  end
  for reason, n in pairs(by) do out[#out + 1] = { reason = reason, n = n } end
  table.sort(out, function(a, b) return a.n > b.n or (a.n == b.n and a.reason < b.reason) end)
  return out
end

--- Point-in-time training and holdout sets of the diamonds priced by
-- until_ts. Listings that failed validation have no features and are
-- left out. quick keeps every third training row.
function M.training_set(until_ts, quick)
  local d, at, split = M.diamonds()
  local price = d:col("target"):to_table()
  local ids, times, labels, is_test = {}, {}, {}, {}
  for row = 1, d:nrows() do
    if at[row] + M.PRICED_AFTER <= until_ts then
      ids[#ids + 1], times[#times + 1], labels[#labels + 1] = M.diamond_id(row), at[row] + M.PRICED_AFTER, price[row]
      is_test[#is_test + 1] = split[row]
    end
  end
  local spine = frame.new({ diamond_id = ids, event_time = times, price = labels },
    { order = { "diamond_id", "event_time", "price" } })
  local fs = assert(tycho.features.open())
  local training = assert(fs:historical(spine, { "diamond_attrs:*" }))
  local carat = training:col("carat")
  local good, test_mask, kept_train = {}, {}, 0
  for i = 1, training:nrows() do
    if carat:present(i) then
      local test = is_test[i] == 1
      if not test then kept_train = kept_train + 1 end
      if test or not quick or kept_train % 3 == 1 then
        good[#good + 1] = i
        test_mask[#test_mask + 1] = test and 1 or 0
      end
    end
  end
  training = training:take(good)
  local train, holdout = training:split { mask = test_mask }
  return train, holdout, training
end

--- The regression pipeline: the listing's nine attributes (from the
-- feature store by key, or sent with the request for a new item), gaps
-- filled, a volume feature, gradient-boosted trees on squared error that
-- predict the price in USD directly (no log transform: every metric, gate
-- and monitor figure is in dollars).
function M.pipeline(quick)
  return tycho.pipeline {
    name = M.MODEL, features = { "diamond_attrs:*" },
    steps = {
      step.fill_missing { "median" },
      step.lua(function(r)
        r.volume = r.x * r.y * r.z
        return r
      end, "volume"),
    },
    model = tycho.models.gbt { objective = "regression", rounds = quick and 120 or 400, depth = 7, eta = 0.1,
                               subsample = 0.8, seed = 7 },
  }
end

--- Fits on the diamonds priced by until_ts, registers the model and
-- promotes it to production through the gates. Returns a report.
function M.train_and_promote(until_ts, opts)
  opts = opts or {}
  local train, holdout, training = M.training_set(until_ts, opts.quick)
  local reg = assert(tycho.registry.open())
  local current = reg:get(M.MODEL, "production")
  local fingerprint = training:fingerprint()
  if current and type(current.data) == "table" and current.data.content_hash == fingerprint.content_hash then
    return { model = M.MODEL, version = current.version, rows = train:nrows(), skipped = "no newly priced listings" }
  end
  local pipe = assert(M.pipeline(opts.quick):fit(train, { label = "price", quiet = true }))
  local metrics = pipe:evaluate(holdout)
  local version = assert(reg:register(M.MODEL, pipe, { metrics = metrics, data = fingerprint, owner = "pricing",
    params = pipe.model.opts, description = string.format("gbt on %d diamonds priced by %s", train:nrows(),
      os.date("!%F %R", until_ts)) }))
  local gates = { no_worse_than = { holdout = holdout, metric = "mae", by = 0 } }
  for k, v in pairs(M.GATES) do gates[k] = v end
  local ok, why = reg:promote(M.MODEL, version, "production", { gates = gates })
  return { model = M.MODEL, version = version, rows = train:nrows(), holdout = holdout:nrows(), mae = metrics.mae,
           rmse = metrics.rmse, r2 = metrics.r2, promoted = ok and true or false, refused = not ok and why or nil }
end

--- The batch side of the precompute pattern: scores every diamond listed
-- by `ts` (and stored: rejected listings have nothing to score) with
-- price@production through `tycho score ... --to-view price_estimates`,
-- so the online store serves each estimate by key. Returns a report, or
-- nil and why.
function M.precompute(ts, workdir)
  local reg = assert(tycho.registry.open())
  local prod = reg:get(M.MODEL, "production")
  if not prod then return nil, "no production version of " .. M.MODEL end
  local d, at = M.diamonds()
  local fs = assert(tycho.features.open())
  local stored = assert(fs:reader { "diamond_attrs:carat" })
  local ids = {}
  for row = 1, d:nrows() do
    if at[row] <= ts and stored:get(M.diamond_id(row)) then ids[#ids + 1] = M.diamond_id(row) end
  end
  local n = #ids
  local stamp, version = {}, {}
  for i = 1, n do stamp[i], version[i] = ts, prod.version end
  os.execute("mkdir -p '" .. workdir:gsub("'", "'\\''") .. "'")
  local input = string.format("%s/listed-%s.csv", workdir, os.date("!%Y%m%dT%H%M", ts))
  assert(frame.new({ diamond_id = ids, event_time = stamp, model_version = version },
    { order = { "diamond_id", "event_time", "model_version" } }):write_csv(input))
  local uv = require "luv"
  local started = uv.hrtime()
  local code = require("tycho.cli").score(M.MODEL .. "@" .. prod.version, "--input", input, "--to-view", M.ESTIMATES)
  if code ~= 0 then return nil, "tycho score exited with " .. tostring(code) end
  os.remove(input)
  return { items = n, version = prod.version, seconds = tonumber(uv.hrtime() - started) / 1e9 }
end

return M
