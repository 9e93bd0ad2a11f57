-- The console's model and feature pages (issue 24, items 1 and 4): the
-- holdout evaluation stored at registration and its route (shapes, bounds,
-- a version without one), two versions compared, views searched across
-- teams a page at a time, a view's lineage to the endpoints serving it,
-- and duplicates of one view by value.
local testing = require "tycho.testing"
local json = require "tycho.json"
local console = dofile("tests/lua/fixtures/console.lua")

-- Users of three teams: user_stats (growth) read by the churn pipeline,
-- user_activity (risk) repeating its clicks, orders (sales) read by none.
-- churn 1.0.0 (gbt, evaluated on a 2,000-row holdout) in production; 1.0.1
-- (logistic, one more input, registered with opts.holdout); 1.0.2 the
-- same artifact registered bare, as versions were before evaluations;
-- price (regression) and tier (three classes).
local SEED = [[
local tycho = require "tycho"
local N = 8000
local fs = assert(tycho.features.open())
fs:entity { name = "user", join_key = "user_id" }
fs:entity { name = "order", join_key = "order_id" }
assert(fs:feature_view { name = "user_stats", entity = "user", owner = "growth", tags = { "users", "activity" },
  description = "clicks and spend per user", schema = { clicks = "float", spend = "float", visits = "int" } })
assert(fs:feature_view { name = "user_activity", entity = "user", owner = "risk", tags = { "fraud" },
  schema = { clicks = "float", sessions = "int" } })
assert(fs:feature_view { name = "orders", entity = "order", owner = "sales", schema = { amount = "float" } })
local cols = { user_id = {}, event_time = {}, clicks = {}, spend = {}, visits = {}, sessions = {}, age = {},
               label = {}, price = {}, tier = {} }
local seed = 7
local function rnd() seed = (seed * 1103515245 + 12345) % 2147483648 return seed / 2147483648 end
for i = 1, N do
  local clicks, spend, visits = rnd() * 10, rnd() * 100, math.floor(rnd() * 20)
  cols.user_id[i], cols.event_time[i] = string.format("u%05d", i), 1735689600 + i
  cols.clicks[i], cols.spend[i], cols.visits[i], cols.sessions[i], cols.age[i] = clicks, spend, visits, math.floor(rnd() * 5), rnd() * 60
  cols.label[i] = (clicks + spend / 20 + rnd() * 6 > 11) and 1 or 0
  cols.price[i] = 3 * clicks + spend / 2 + rnd() * 5
  cols.tier[i] = spend < 33 and "low" or spend < 66 and "mid" or "high"
end
local all = tycho.frame.new(cols)
assert(fs:ingest("user_stats", all:select { "user_id", "event_time", "clicks", "spend", "visits" }))
assert(fs:ingest("user_activity", all:select { "user_id", "event_time", "clicks", "sessions" }))
local tr, te = all:split { test = 0.25, seed = 1 }
local reg = assert(tycho.registry.open())
local gbt = assert(tycho.pipeline { features = { "user_stats:*" }, model = tycho.models.gbt { rounds = 20, depth = 3 } }
  :fit(tr, { label = "label", quiet = true }))
assert(reg:register("churn", gbt, { metrics = gbt:evaluate(te) }))
assert(reg:promote("churn", "1.0.0", "production"))
local logistic = assert(tycho.pipeline { features = { "user_stats:*" }, request = { age = "float" },
  model = tycho.models.logistic {} }:fit(tr, { label = "label", quiet = true }))
assert(reg:register("churn", logistic, { holdout = te }))
assert(reg:register("churn", (assert(gbt:to_bytes()))))
local price = assert(tycho.pipeline { features = { "user_stats:*" }, model = tycho.models.gbt { rounds = 10 } }
  :fit(tr:drop("label"), { label = "price", quiet = true }))
assert(reg:register("price", price, { holdout = te:drop("label") }))
local tier = assert(tycho.pipeline { features = { "user_stats:*" },
  model = tycho.models.gbt { rounds = 5, objective = "multiclass" } }:fit(tr:drop("label"), { label = "tier", quiet = true }))
assert(reg:register("tier", tier, { holdout = te:drop("label") }))
]]

local APP = [[
local app = require("tycho").app()
app:model("churn", { alias = "production" })
return app
]]

describe("console: model evaluations and feature lineage", function()
  local home, srv
  setup(function()
    home = testing.tmpdir()
    local code, _, err = testing.run({ "--home", home, "run", testing.write(home .. "/seed.lua", SEED) },
      { timeout = 120000 })
    assert(code == 0, err)
    srv = console.serve(testing.write(home .. "/app.lua", APP), home)
  end)
  teardown(function() console.stop(srv, home) end)

  local function get(path) return testing.request(srv.port, "GET", path) end

  local function ascending(list)
    for i = 2, #list do if list[i] < list[i - 1] then return false end end
    return true
  end

  it("stores a binary classifier's holdout evaluation, bounded whatever the holdout", function()
    local status, _, body, doc = get("/v1/registry/models/churn/versions/1.0.0/evaluation")
    assert.equal(200, status, body)
    local ev = doc.evaluation
    assert.same({ "binary", 2000 }, { ev.task, ev.rows })
    assert.is_true(#body < 64 * 1024)
    local roc, pr = ev.roc, ev.pr
    assert.is_true(#roc.fpr >= 20 and #roc.fpr <= 202, tostring(#roc.fpr))
    assert.same({ #roc.fpr, #roc.fpr, #roc.fpr, #roc.fpr }, { #roc.tpr, #roc.threshold, #pr.recall, #pr.precision })
    assert.same({ 0, 0, 1, 1 }, { roc.fpr[1], roc.tpr[1], roc.fpr[#roc.fpr], roc.tpr[#roc.tpr] })
    assert.is_true(ascending(roc.fpr) and ascending(roc.tpr) and ascending(pr.recall))
    assert.is_true(roc.auc > 0.8 and pr.average_precision > 0.8)
    local _, _, _, model = get("/v1/registry/models/churn")
    assert.near(model.versions[1].metrics.auc, roc.auc, 1e-4)
    local m = ev.confusion.matrix
    assert.same({ "0", "1" }, ev.confusion.labels)
    assert.equal(2000, m[1][1] + m[1][2] + m[2][1] + m[2][2])
    assert.same({ "clicks", "spend", "visits" }, (function()
      local names = {}
      for i, f in ipairs(ev.importance) do names[i] = f.feature end
      table.sort(names)
      return names
    end)())
    assert.same({ "binary", 2000 }, { model.versions[1].evaluation.task, model.versions[1].evaluation.rows })
  end)

  it("keeps residuals for regression and the matrix for many classes, and says when a version has none", function()
    local _, _, _, price = get("/v1/registry/models/price/versions/latest/evaluation")
    local r = price.evaluation.residuals
    assert.equal(#r.counts + 1, #r.edges)
    local sum = 0
    for _, n in ipairs(r.counts) do sum = sum + n end
    assert.same({ 2000, 30 }, { sum, #r.counts })
    assert.is_nil(price.evaluation.roc)
    local _, _, _, tier = get("/v1/registry/models/tier/versions/1.0.0/evaluation")
    assert.equal(3, #tier.evaluation.confusion.matrix)
    assert.equal(3, #tier.evaluation.confusion.matrix[2])
    local status, _, _, old = get("/v1/registry/models/churn/versions/1.0.2/evaluation")
    assert.equal(200, status)
    assert.equal(json.null, old.evaluation)
    assert.matches("no holdout evaluation", old.note)
    assert.equal(404, (get("/v1/registry/models/churn/versions/9.9.9/evaluation")))
    assert.equal(404, (get("/v1/registry/models/nobody/versions/1.0.0/evaluation")))
  end)

  it("compares two versions: metrics, hyperparameters, the schema diff and both evaluations", function()
    local status, _, body, cmp = get("/v1/registry/models/churn/compare?a=1.0.0&b=1.0.1")
    assert.equal(200, status, body)
    assert.same({ "1.0.0", "1.0.1" }, cmp.versions)
    assert.is_number(cmp.metrics.auc[1])
    assert.is_number(cmp.metrics.auc[2])
    assert.same({ "gbt", "logistic" }, cmp.params.family)
    assert.same({ { name = "age", type = "float" } }, cmp.schema.added)
    assert.same({ {}, {} }, { cmp.schema.removed, cmp.schema.changed })
    assert.same({ "binary", "binary" }, { cmp.evaluations[1].task, cmp.evaluations[2].task })
    local _, _, _, old = get("/v1/registry/models/churn/compare?a=production&b=1.0.2")
    assert.same({ "1.0.0", "1.0.2" }, old.versions)
    assert.equal(json.null, old.evaluations[2])
    assert.equal(400, (get("/v1/registry/models/churn/compare?a=1.0.0")))
    assert.equal(404, (get("/v1/registry/models/churn/compare?a=1.0.0&b=7.0.0")))
  end)

  it("refuses an evaluation past its bound, and stores none when told", function()
    local reg = assert(require("tycho.registry").open({ home = home }))
    local pipe = assert(reg:load("churn", "1.0.0"))
    local big = { task = "binary", roc = { fpr = {} } }
    for i = 1, 20000 do big.roc.fpr[i] = i / 20000 end
    local v, err, code = reg:register("churn", pipe, { evaluation = big })
    assert.same({ nil, "too_large" }, { v, code })
    assert.matches("more than 65536", err)
    v, err, code = reg:register("churn", pipe, { evaluation = "roc" })
    assert.same({ nil, "invalid" }, { v, code })
    assert.matches("an evaluation is a table", err)
    v = assert(reg:register("churn", pipe, { evaluation = false }))
    assert.is_false(reg:evaluation("churn", v))
  end)

  it("draws curves from ties and imbalance as sklearn does (average precision)", function()
    local evaluation = require "tycho.ml.evaluation"
    local ffi = require "ffi"
    local roc, pr = evaluation.curves(ffi.new("double[4]", { 1, 0, 1, 0 }), ffi.new("double[4]", { 0.9, 0.8, 0.7, 0.1 }), 4)
    assert.same({ 0, 0, 0.5, 0.5, 1 }, roc.fpr)
    assert.same({ 0, 0.5, 0.5, 1, 1 }, roc.tpr)
    assert.near(0.8333, pr.average_precision, 1e-4)
    -- Ties move both rates at once; one class has no curve.
    roc = evaluation.curves(ffi.new("double[4]", { 1, 0, 1, 0 }), ffi.new("double[4]", { 0.5, 0.5, 0.5, 0.5 }), 4)
    assert.same({ { 0, 1 }, { 0, 1 } }, { roc.fpr, roc.tpr })
    assert.is_nil(evaluation.curves(ffi.new("double[2]", { 1, 1 }), ffi.new("double[2]", { 0.2, 0.4 }), 2))
  end)

  it("searches every team's views on the server, a page at a time, flagging duplicates", function()
    local status, _, body, doc = get("/v1/features:search?q=clicks")
    assert.equal(200, status, body)
    assert.equal(2, doc.total)
    assert.same({ "user_activity", "user_stats" }, { doc.views[1].name, doc.views[2].name })
    assert.same({ "clicks = user_stats:clicks" }, doc.views[1].same_name)
    local _, _, _, by_owner = get("/v1/features:search?q=SALES")
    assert.same({ 1, "orders" }, { by_owner.total, by_owner.views[1].name })
    assert.same({}, by_owner.views[1].same_name)
    local _, _, _, by_tag = get("/v1/features:search?q=fraud")
    assert.equal("user_activity", by_tag.views[1].name)
    local _, _, _, described = get("/v1/features:search?q=spend%20per")
    assert.equal("user_stats", described.views[1].name)
    local _, _, _, page = get("/v1/features:search?limit=2")
    assert.same({ 3, 2, 2, 3 }, { page.total, #page.views, page.next_offset, #page.owners })
    local _, _, _, rest = get("/v1/features:search?limit=2&offset=2")
    assert.same({ 1, nil }, { #rest.views, rest.next_offset })
    local _, _, _, team = get("/v1/features:search?owner=risk")
    assert.same({ 1, "user_activity" }, { team.total, team.views[1].name })
    assert.equal(400, (get("/v1/features:search?limit=0")))
    assert.equal(400, (get("/v1/features:search?limit=abc")))
  end)

  it("follows a view to the versions that read it and the endpoints serving them", function()
    local doc
    -- The worker writes what it hosts to the home within a second of starting.
    assert(testing.run_until(function()
      doc = select(4, get("/v1/features/user_stats/lineage"))
      return doc and #doc.endpoints > 0
    end, 5000), "no endpoint in the lineage")
    assert.same({ "user_stats", "user", "growth" }, { doc.view, doc.entity, doc.owner })
    local names = {}
    for _, m in ipairs(doc.models) do names[#names + 1] = m.name end
    assert.same({ "churn", "price", "tier" }, names)
    local churn = doc.models[1].versions
    assert.same({ "1.0.0", { "production" }, { "user_stats:*" } }, { churn[1].version, churn[1].aliases, churn[1].reads })
    assert.is_true(churn[#churn].latest)
    local ep = doc.endpoints[1]
    assert.same({ "/v1/models/churn:predict", "main", "churn", "1.0.0", true },
      { ep.route, ep.slot, ep.model, ep.version, ep.alive })
    local _, _, _, orders = get("/v1/features/orders/lineage")
    assert.same({ {}, {} }, { orders.models, orders.endpoints })
    assert.equal(404, (get("/v1/features/nope/lineage")))
  end)

  it("finds one view's duplicates by value among the views of its entity", function()
    local status, _, body, doc = get("/v1/features:duplicates?view=user_activity")
    assert.equal(200, status, body)
    assert.equal(1, #doc.duplicates)
    local d = doc.duplicates[1]
    assert.same({ "user_activity:clicks", "user_stats:clicks", 1 }, { d.a, d.b, d.identical })
    local _, _, _, none = get("/v1/features:duplicates?view=orders")
    assert.same({}, none.duplicates)
    assert.equal(404, (get("/v1/features:duplicates?view=nope")))
  end)
end)
