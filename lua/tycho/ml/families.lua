--- The model families over core/kernels (gbt, forest, logistic, linear, kmeans):
-- for each, the tasks it takes, how its options map to the kernel's
-- parameters (with the aliases users bring from XGBoost and scikit-learn),
-- and its kernel's fit, predict, save and load. ml/models.lua gives them
-- one shape.
local ffi = require "ffi"
local C = require "tycho.core.kernels"
local base = require "tycho.core.base"
local err = base.err

local function pick(opts, ...)
  for i = 1, select("#", ...) do
    local v = opts[select(i, ...)]
    if v ~= nil then return v end
  end
end

local families = {}

families.gbt = {
  tasks = { regression = true, binary = true, multiclass = true },
  fit = function(m, train, valid, n_classes)
    local o, p = m.opts, ffi.new("tz_gbt_params")
    C.tz_gbt_params_default(p)
    p.objective = m.task == "regression" and 0 or m.task == "binary" and 1 or 2
    p.n_classes = n_classes or 0
    p.rounds = pick(o, "rounds", "n_estimators") or p.rounds
    p.learning_rate = pick(o, "eta", "learning_rate") or p.learning_rate
    p.max_depth = pick(o, "depth", "max_depth") or p.max_depth
    p.max_leaves = o.max_leaves or p.max_leaves
    p.min_child_weight = o.min_child_weight or p.min_child_weight
    p.lambda = pick(o, "lambda", "l2") or p.lambda
    p.gamma = o.gamma or p.gamma
    p.subsample = o.subsample or p.subsample
    p.colsample = pick(o, "colsample", "colsample_bytree") or p.colsample
    p.max_bins = o.max_bins or p.max_bins
    p.seed = o.seed or 42
    p.early_stopping_rounds = o.early_stopping_rounds or (valid and 10 or 0)
    local progress = ffi.new("tz_progress", { label = "gbt", total = p.rounds, quiet = m.quiet and 1 or 0 })
    local out = ffi.new("tz_gbt_model*[1]")
    local rc = C.tz_gbt_fit(p, train, valid, C.tz_progress_report, progress, out, err)
    C.tz_progress_done(progress)
    if rc ~= 0 then return nil end
    m.info = { rounds = C.tz_gbt_rounds(out[0]) }
    return out[0]
  end,
  predict = C.tz_gbt_predict, n_outputs = C.tz_gbt_n_outputs, n_features = C.tz_gbt_n_features,
  save = C.tz_gbt_save, load = C.tz_gbt_load, free = C.tz_gbt_free, importance = C.tz_gbt_importance,
  ctype = "tz_gbt_model*[1]",
}

families.forest = {
  tasks = { regression = true, binary = true, multiclass = true },
  fit = function(m, train, _, n_classes)
    local o, p = m.opts, ffi.new("tz_forest_params")
    C.tz_forest_params_default(p)
    p.task = m.task == "regression" and 1 or 0
    p.n_classes = n_classes or 0
    p.n_trees = pick(o, "trees", "n_trees", "n_estimators") or p.n_trees
    p.max_depth = pick(o, "depth", "max_depth") or p.max_depth
    p.min_samples_leaf = o.min_samples_leaf or p.min_samples_leaf
    p.max_features = o.max_features or p.max_features
    if o.bootstrap == false then p.bootstrap = 0 end
    p.max_bins = o.max_bins or p.max_bins
    p.seed = o.seed or 42
    local out = ffi.new("tz_forest_model*[1]")
    if C.tz_forest_fit(p, train, out, err) ~= 0 then return nil end
    m.info = { oob_score = C.tz_forest_oob_score(out[0]) }
    return out[0]
  end,
  predict = C.tz_forest_predict, n_outputs = C.tz_forest_n_outputs, n_features = C.tz_forest_n_features,
  save = C.tz_forest_save, load = C.tz_forest_load, free = C.tz_forest_free, importance = C.tz_forest_importance,
  ctype = "tz_forest_model*[1]",
}

families.logistic = {
  tasks = { binary = true, multiclass = true },
  fit = function(m, train, _, n_classes)
    local o, p = m.opts, ffi.new("tz_logistic_params")
    C.tz_logistic_params_default(p)
    p.C = o.C or (o.l2 and 1 / o.l2) or p.C
    p.max_iter = o.max_iter or p.max_iter
    p.tol = o.tol or p.tol
    if o.fit_intercept == false then p.fit_intercept = 0 end
    p.n_classes = n_classes or 0
    local out = ffi.new("tz_logistic_model*[1]")
    if C.tz_logistic_fit(p, train, out, err) ~= 0 then return nil end
    m.info = { iterations = C.tz_logistic_n_iter(out[0]), converged = C.tz_logistic_converged(out[0]) ~= 0 }
    return out[0]
  end,
  predict = C.tz_logistic_predict, n_outputs = function(h) return tonumber(C.tz_logistic_n_outputs(h)) end,
  n_features = function(h) return tonumber(C.tz_logistic_n_features(h)) end,
  save = C.tz_logistic_save, load = C.tz_logistic_load, free = C.tz_logistic_free,
  ctype = "tz_logistic_model*[1]",
}

families.linear = {
  tasks = { regression = true },
  fit = function(m, train)
    local o, p = m.opts, ffi.new("tz_linear_params")
    C.tz_linear_params_default(p)
    p.alpha = pick(o, "alpha", "l2") or p.alpha
    if o.fit_intercept == false then p.fit_intercept = 0 end
    local out = ffi.new("tz_linear_model*[1]")
    if C.tz_linear_fit(p, train, out, err) ~= 0 then return nil end
    m.info = { intercept = C.tz_linear_intercept(out[0]) }
    return out[0]
  end,
  predict = C.tz_linear_predict, n_outputs = function() return 1 end,
  n_features = function(h) return tonumber(C.tz_linear_n_features(h)) end,
  save = C.tz_linear_save, load = C.tz_linear_load, free = C.tz_linear_free,
  ctype = "tz_linear_model*[1]",
}

families.kmeans = {
  tasks = { clustering = true },
  fit = function(m, train)
    local o, p = m.opts, ffi.new("tz_kmeans_params")
    C.tz_kmeans_params_default(p)
    p.k = o.k or p.k
    p.n_init = o.n_init or o.restarts or p.n_init
    p.max_iter = o.max_iter or p.max_iter
    p.tol = o.tol or p.tol
    p.seed = o.seed or 42
    local out = ffi.new("tz_kmeans_model*[1]")
    if C.tz_kmeans_fit(p, train, out, err) ~= 0 then return nil end
    m.info = { inertia = C.tz_kmeans_inertia(out[0]), iterations = C.tz_kmeans_n_iter(out[0]) }
    return out[0]
  end,
  predict = C.tz_kmeans_predict, n_outputs = function() return 1 end,
  n_features = function(h) return tonumber(C.tz_kmeans_n_features(h)) end,
  save = C.tz_kmeans_save, load = C.tz_kmeans_load, free = C.tz_kmeans_free,
  ctype = "tz_kmeans_model*[1]",
}

return families
