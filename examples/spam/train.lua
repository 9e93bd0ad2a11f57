-- The main job, end to end on the spam dataset (../shared/data):
-- features are ingested as events into the feature store, a point-in-time
-- training set is built from a label spine, a pipeline is fitted and
-- evaluated on the fixed test split, registered with provenance, promoted
-- through gates, and a weaker version's promotion is refused.
--   tycho --home /tmp/demo run examples/spam/train.lua [DATA_DIR]
local tycho = require "tycho"
local frame, step = tycho.frame, tycho.step

local data = arg[1] or "../shared/data"
local emails = assert(frame.read_csv(data .. "/spam.csv"))
local n = emails:nrows()
print(string.format("read %d emails with %d columns", n, emails:ncols()))

-- Each email is an entity; its statistics were observed at t, its label
-- became known a minute later (the spine asks as of that moment).
local base = 1735689600  -- 2025-01-01T00:00:00Z
local ids, seen_at, labelled_at = {}, {}, {}
for i = 1, n do ids[i], seen_at[i], labelled_at[i] = string.format("email-%05d", i), base + i * 60, base + i * 60 + 60 end
local events = emails:drop("label"):with_column("email_id", ids):with_column("event_time", seen_at)

local fs = assert(tycho.features.open())
fs:entity { name = "email", join_key = "email_id", description = "one received email" }
local schema = {}
for _, name in ipairs(emails:names()) do
  if name ~= "label" then schema[name] = { type = "float", min = 0 } end
end
assert(fs:feature_view { name = "email_stats", entity = "email", schema = schema, ttl = "30d", owner = "trust",
                         tags = { "spam" }, description = "word and character statistics of an email" })
local report = assert(fs:ingest("email_stats", events))
print(string.format("ingested: %d landed, %d rejected, %d already there", report.landed, report.rejected,
  report.unchanged))

local spine = frame.new({ email_id = ids, event_time = labelled_at, label = emails:col("label"):to_table() },
  { order = { "email_id", "event_time", "label" } })
local training = assert(fs:historical(spine, { "email_stats:*" }))
local train, test = training:split { mask = data .. "/spam.split" }
print(string.format("training set: %d rows (%d train, %d test)", training:nrows(), train:nrows(), test:nrows()))

local function spam_pipeline(rounds)
  return tycho.pipeline {
    name = "spam", features = { "email_stats:*" },
    steps = { step.fill_missing { "median" }, step.log1p { columns = { "capitalTotal", "capitalLong" } } },
    model = tycho.models.gbt { rounds = rounds, depth = 6, eta = 0.3 },
  }
end

local reg = assert(tycho.registry.open())
local pipe = assert(spam_pipeline(100):fit(train, { label = "label" }))
local m = pipe:evaluate(test)
print(string.format("test: AUC %.4f, accuracy %.4f", m.auc, m.accuracy))
local v = assert(reg:register("spam", pipe, { metrics = m, data = training:fingerprint(), description = "gbt 100x6" }))
assert(reg:promote("spam", v, "production", { gates = { auc = 0.95 } }))
print("registered spam " .. v .. " and promoted it to production")

local weak = assert(spam_pipeline(2):fit(train, { label = "label" }))
local v2 = assert(reg:register("spam", weak, { metrics = weak:evaluate(test), data = training:fingerprint() }))
local ok, why = reg:promote("spam", v2, "production",
  { gates = { auc = 0.95, no_worse_than = { holdout = test, metric = "auc", by = 0.005 } } })
print(ok and ("promoted " .. v2) or ("gate refused " .. v2 .. ": " .. why))
print("production is " .. reg:get("spam", "production").version)
