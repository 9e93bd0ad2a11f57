--- What a training started from the console (POST /v1/train) may ask for,
-- checked before anything runs: every name against a plain pattern, every
-- number against its range, no key that is not listed here. A request that
-- passes becomes a fresh table of exactly these fields; the child process
-- reads it back from its job record (ml/train/jobs.lua), so no request
-- text is ever written into Lua source.
--
--   local spec, err, code = train_spec.check {
--     name = "spam_ui", views = { "email_stats" }, label = "email_labels:is_spam",   -- VIEW:FEATURE
--     family = "gbt", params = { rounds = 50, depth = 4 }, test = 0.2, seed = 42, register = true }
--   train_spec.check { name = "spam_auto", views = { "email_stats" }, label = "email_labels:is_spam",
--                      family = "automl", budget = { trials = 12 }, families = { "gbt", "logistic" } }
local errors = require "tycho.util.errors"

local M = {}

local NAME = "^[%w_][%w_%.%-]*$"
local MAX_NAME, MAX_VIEWS = 64, 20

local function int(lo, hi, default) return { type = "int", min = lo, max = hi, default = default } end
local function num(lo, hi, default) return { type = "number", min = lo, max = hi, default = default } end

--- The families a console training may pick, each hyperparameter with its
-- range and default (bounded so one training's cost is bounded too).
M.FAMILIES = {
  gbt = { rounds = int(1, 2000, 100), depth = int(1, 16, 6), eta = num(0.001, 1, 0.3), subsample = num(0.1, 1, 1),
          colsample = num(0.1, 1, 1), min_child_weight = num(0, 100, 1), lambda = num(0, 1000, 1) },
  -- (no default: the family's own, sqrt(p) features a split, no depth limit)
  forest = { trees = int(1, 500, 100), depth = int(0, 32), min_samples_leaf = int(1, 1000, 1),
             max_features = num(0.05, 1) },
  logistic = { C = num(0.0001, 10000, 1), max_iter = int(1, 2000, 200) },
  linear = { alpha = num(0, 10000, 0.0001) },
}
--- AutoML's budget: a number of trials or of seconds.
M.BUDGET = { trials = int(2, 200, 20), seconds = int(10, 3600, 120) }
M.TASKS = { auto = true, classification = true, regression = true }
M.TEST = num(0.05, 0.5, 0.2)
M.SEED = int(0, 2147483647, 42)

local FIELDS = { name = true, views = true, label = true, family = true, params = true, budget = true,
                 families = true, task = true, test = true, seed = true, register = true }

local function bad(msg) return errors.fail("invalid", msg) end

local function check_name(v, what)
  if type(v) ~= "string" or #v > MAX_NAME or not v:match(NAME) then
    return bad(what .. " must be 1 to " .. MAX_NAME .. " letters, digits, '_', '.' or '-' (not first)")
  end
  return v
end

local function check_number(v, range, what)
  if type(v) ~= "number" or v ~= v or v < range.min or v > range.max or (range.type == "int" and v % 1 ~= 0) then
    return bad(string.format("%s must be %s from %.10g to %.10g", what, range.type == "int" and "an integer" or "a number",
      range.min, range.max))
  end
  return v
end

-- Unknown keys of t (allowed: a set) are refused by name.
local function only(t, allowed, what)
  if type(t) ~= "table" then return bad(what .. " must be an object") end
  for k in pairs(t) do
    if type(k) ~= "string" or not allowed[k] then return bad(what .. " has no field '" .. tostring(k) .. "'") end
  end
  return true
end

local function check_views(views)
  if type(views) ~= "table" or #views < 1 or #views > MAX_VIEWS then
    return bad("views must list 1 to " .. MAX_VIEWS .. " feature views")
  end
  local out, seen, n = {}, {}, 0
  for _ in pairs(views) do n = n + 1 end
  if n ~= #views then return bad("views must be a list") end
  for i = 1, #views do
    local v, err, code = check_name(views[i], "a view name")
    if not v then return nil, err, code end
    if not seen[v] then seen[v], out[#out + 1] = true, v end
  end
  return out
end

local function check_label(label)
  if type(label) ~= "string" then return bad('label must be "VIEW:FEATURE"') end
  local view, feature = label:match("^([^:]+):([^:]+)$")
  if not view then return bad('label must be "VIEW:FEATURE"') end
  local ok, err, code = check_name(view, "the label's view")
  if ok then ok, err, code = check_name(feature, "the label's feature") end
  if not ok then return nil, err, code end
  return label
end

--- The view and the feature of a checked spec's label.
function M.label(spec) return spec.label:match("^([^:]+):([^:]+)$") end

-- The hyperparameters of family: each one given, checked, the rest defaulted.
local function check_params(family, params)
  local schema = M.FAMILIES[family]
  params = params or {}
  local ok, err, code = only(params, schema, "params of " .. family)
  if not ok then return nil, err, code end
  local out = {}
  for name, range in pairs(schema) do
    if params[name] == nil then
      out[name] = range.default
    else
      local v, verr, vcode = check_number(params[name], range, family .. " " .. name)
      if not v then return nil, verr, vcode end
      out[name] = v
    end
  end
  return out
end

local function check_budget(budget)
  local ok, err, code = only(budget, M.BUDGET, "budget")
  if not ok then return nil, err, code end
  if (budget.trials == nil) == (budget.seconds == nil) then return bad("budget gives trials or seconds") end
  local what = budget.trials and "trials" or "seconds"
  local v, verr, vcode = check_number(budget[what], M.BUDGET[what], "budget " .. what)
  if not v then return nil, verr, vcode end
  return { [what] = v }
end

local function check_families(list)
  if list == nil then return nil end
  if type(list) ~= "table" or #list < 1 or #list > 4 then return bad("families lists 1 to 4 model families") end
  local out = {}
  for i, f in ipairs(list) do
    if type(f) ~= "string" or not M.FAMILIES[f] then return bad("families: unknown family '" .. tostring(f) .. "'") end
    out[i] = f
  end
  return out
end

-- The model: a family with its hyperparameters, or AutoML with a budget.
local function check_model(req, out)
  if req.family == "automl" then
    if req.params ~= nil then return bad("automl takes a budget, not params") end
    local budget, err, code = check_budget(req.budget)
    if not budget then return nil, err, code end
    local families, ferr, fcode = check_families(req.families)
    if ferr then return nil, ferr, fcode end
    out.budget, out.families = budget, families
    return out
  end
  if type(req.family) ~= "string" or not M.FAMILIES[req.family] then
    return bad("family is one of gbt, forest, logistic, linear, automl")
  end
  if req.budget ~= nil or req.families ~= nil then return bad("budget and families are for automl") end
  local params, err, code = check_params(req.family, req.params)
  if not params then return nil, err, code end
  out.params = params
  return out
end

--- The checked spec of a training request (a decoded JSON object), with
-- defaults filled in: { name, views, label, family, params | budget (+
-- families), task, test, seed, register }, itself a request that passes
-- (the child checks its job's spec again); or nil, message, "invalid"
-- naming the first field that is wrong.
function M.check(req)
  local ok, err, code = only(req, FIELDS, "the request")
  if not ok then return nil, err, code end
  local out = { family = req.family }
  local function set(field, v, why, why_code)
    out[field] = v
    return v, why, why_code
  end
  local function number(v, range, what)
    if v == nil then return range.default end
    return check_number(v, range, what)
  end
  -- Each check fills its field or says what is wrong, in this order.
  local checks = {
    function() return set("name", check_name(req.name, "name")) end,
    function() return set("views", check_views(req.views)) end,
    function() return set("label", check_label(req.label)) end,
    function() return check_model(req, out) end,
    function() return set("test", number(req.test, M.TEST, "test")) end,
    function() return set("seed", number(req.seed, M.SEED, "seed")) end,
  }
  for _, check in ipairs(checks) do
    local v, cerr, ccode = check()
    if not v then return nil, cerr, ccode end
  end
  if req.task ~= nil and not M.TASKS[req.task] then return bad("task is auto, classification or regression") end
  if req.register ~= nil and type(req.register) ~= "boolean" then return bad("register is true or false") end
  out.task, out.register = req.task or "auto", req.register == true
  return out
end

-- Feature types a model takes as they are (the others are left out, named).
local NUMERIC = { float = true, int = true }

local function feature_of(v, name)
  for _, f in ipairs(v.features) do if f.name == name then return f end end
end

--- The feature refs a checked spec trains on, given the feature store fs:
-- every numeric feature of its views but the label, all keyed like the
-- label's view. Returns { refs, left_out (features not numeric), label_view
-- (the view's definition) }, or nil, message, "not_found" | "invalid".
function M.resolve(fs, spec)
  local label_view, label = M.label(spec)
  local lv, err, code = fs:view(label_view)
  if not lv then return nil, err, code end
  if not feature_of(lv, label) then
    return errors.fail("not_found", "view " .. lv.name .. " has no feature '" .. label .. "' for the label")
  end
  local refs, left_out = {}, {}
  for _, name in ipairs(spec.views) do
    local v, verr, vcode = fs:view(name)
    if not v then return nil, verr, vcode end
    if v.join_key ~= lv.join_key then
      return bad(string.format("view %s is keyed by %s and the label's view %s by %s: they cannot be joined", name,
        v.join_key, lv.name, lv.join_key))
    end
    for _, f in ipairs(v.features) do
      local ref = name .. ":" .. f.name
      if not (name == lv.name and f.name == label) then
        if NUMERIC[f.type] then refs[#refs + 1] = ref else left_out[#left_out + 1] = ref end
      end
    end
  end
  if #refs == 0 then return bad("the views hold no numeric feature besides the label") end
  return { refs = refs, left_out = left_out, label_view = lv }
end

--- What the console's form offers: families with their hyperparameters,
-- the budget, tasks and the test fraction (each with range and default).
function M.options()
  local tasks = {}
  for t in pairs(M.TASKS) do tasks[#tasks + 1] = t end
  table.sort(tasks)
  return { families = M.FAMILIES, budget = M.BUDGET, tasks = tasks, test = M.TEST, seed = M.SEED,
           max_views = MAX_VIEWS }
end

return M
