--- The spam filter's pieces, shared by its DAG, pipeline script and demo:
-- the email timeline, ingestion into the feature store, the point-in-time
-- training set, the two model families and the validation gate.
local tycho = require "tycho"
local frame, step = tycho.frame, tycho.step

local M = {}

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "../common.lua")
M.DATA = common.DATA
M.BASE = 1735689600  -- 2025-01-01T00:00:00Z: the first email arrives then

-- Emails arrive one a minute in a fixed shuffled order (spam.csv lists
-- spam first; a real mailbox mixes them). Returns arrival time by row.
function M.arrivals(n) return common.arrivals(n, M.BASE, 60, 20250101) end

function M.email_id(row) return string.format("email-%05d", row) end

--- The dataset with arrival times and the fixed test split (1 = test).
function M.emails()
  local emails = assert(frame.read_csv(M.DATA .. "/spam.csv"))
  local split = {}
  for line in io.lines(M.DATA .. "/spam.split") do split[#split + 1] = tonumber(line) end
  return emails, M.arrivals(emails:nrows()), split
end

--- Declares the entity and the feature view (idempotent).
function M.declare(fs, emails)
  assert(fs:entity { name = "email", join_key = "email_id", description = "one received email" })
  local schema = {}
  for _, name in ipairs(emails:names()) do
    if name ~= "label" then schema[name] = { type = "float", min = 0 } end
  end
  assert(fs:feature_view { name = "email_stats", entity = "email", schema = schema, ttl = "30d", owner = "trust",
                           tags = { "spam" }, description = "word and character statistics of an email" })
end

--- Ingests the emails that arrived by `until_ts` as events; rows already
-- in the store are skipped, so a rerun of a day adds nothing twice.
function M.ingest(until_ts)
  local emails, at = M.emails()
  local fs = assert(tycho.features.open())
  M.declare(fs, emails)
  local events = common.arrived_events(emails, at, until_ts, "label", "email_id", M.email_id)
  return assert(fs:ingest("email_stats", events))
end

--- Point-in-time training and holdout sets of the emails labelled by
-- until_ts (a label is known a minute after the email arrives).
function M.training_set(until_ts)
  local emails, at, split = M.emails()
  local ids, times, labels, is_test = {}, {}, {}, {}
  local label = emails:col("label"):to_table()
  for row = 1, emails:nrows() do
    if at[row] + 60 <= until_ts then
      ids[#ids + 1], times[#times + 1], labels[#labels + 1] = M.email_id(row), at[row] + 60, label[row]
      is_test[#is_test + 1] = split[row]
    end
  end
  local spine = frame.new({ email_id = ids, event_time = times, label = labels },
    { order = { "email_id", "event_time", "label" } })
  local fs = assert(tycho.features.open())
  local training = assert(fs:historical(spine, { "email_stats:*" }))
  local train, holdout = training:split { mask = is_test }
  return train, holdout, training
end

--- The two model families the A/B test compares.
function M.pipeline(family, quick)
  if family == "gbt" then
    return tycho.pipeline {
      name = "spam", features = { "email_stats:*" },
      steps = { step.fill_missing { "median" }, step.log1p { columns = { "capitalTotal", "capitalLong" } } },
      model = tycho.models.gbt { rounds = quick and 40 or 120, depth = 6, eta = 0.2 },
    }
  end
  return tycho.pipeline {
    name = "spam_lr", features = { "email_stats:*" },
    steps = { step.fill_missing { "median" }, step.log1p { columns = { "capitalTotal", "capitalLong", "capitalAve" } },
              step.standardize {} },
    model = tycho.models.logistic { C = 10 },
  }
end

--- Fits a family on the data labelled by until_ts, registers it and
-- promotes it to production if it passes the gates: AUC above a floor, and
-- no worse than the current production on this holdout. Returns a report.
function M.train_and_promote(family, until_ts, opts)
  opts = opts or {}
  local train, holdout, training = M.training_set(until_ts)
  local name = family == "gbt" and "spam" or "spam_lr"
  local reg = assert(tycho.registry.open())
  local current = reg:get(name, "production")
  local fingerprint = training:fingerprint()
  if current and type(current.data) == "table" and current.data.content_hash == fingerprint.content_hash then
    -- Nothing new was labelled since production was trained: a refit would
    -- only add an identical version.
    return { model = name, version = current.version, rows = train:nrows(), skipped = "no new labelled data" }
  end
  local pipe = assert(M.pipeline(family, opts.quick):fit(train, { label = "label", quiet = true }))
  local metrics = pipe:evaluate(holdout)
  local version = assert(reg:register(name, pipe, { metrics = metrics, data = fingerprint,
    description = family .. " trained on " .. train:nrows() .. " emails up to " .. os.date("!%F %R", until_ts) }))
  local ok, why = reg:promote(name, version, "production",
    { gates = { auc = 0.9, no_worse_than = { holdout = holdout, metric = "auc", by = 0.002 } } })
  return { model = name, version = version, rows = train:nrows(), holdout = holdout:nrows(), auc = metrics.auc,
           accuracy = metrics.accuracy, promoted = ok and true or false, refused = not ok and why or nil }
end

return M
