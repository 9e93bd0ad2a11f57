--- The model families over core/kernels (gbt, forest, logistic, linear,
-- kmeans): for each, the tasks it takes, the options it accepts (with the
-- aliases users bring from XGBoost and scikit-learn, each with its type and
-- range, checked when the model is made) and how they become the kernel's
-- parameters. ml/models.lua gives them one shape.
local kernels = require "tycho.core.kernels"

local families = {}

local function int(min, aliases) return { type = "int", min = min, aliases = aliases } end
local function num(min, aliases) return { type = "number", min = min, aliases = aliases } end
local function fraction(aliases) return { type = "number", above = 0, max = 1, aliases = aliases } end
local BOOL = { type = "bool" }
local SEED = int(0)
local OBJECTIVES = { "regression", "squared", "binary", "logistic", "multiclass", "softmax", "classification" }

-- A family: its kernel's face, the tasks it can do, its option schema, and
-- params(opts, task, n_classes): the kernel's parameters from checked options.
local function family(kernel, tasks, schema, params)
  local f = { tasks = tasks, options = schema, params = params }
  for _, name in ipairs({ "predict", "n_outputs", "n_features", "importance", "save", "load", "centroids", "parts" }) do
    f[name] = kernel[name]
  end
  --- A trained handle and what the fit determined, or nil and the message.
  function f.fit(m, train, valid, n_classes)
    return kernel.fit(params(m.opts, m.task, n_classes, valid), train, valid, { label = m.family, quiet = m.quiet })
  end
  return f
end

local function objective_schema(extra)
  extra.objective = { one_of = OBJECTIVES, aliases = { "task" } }
  return extra
end

families.gbt = family(kernels.gbt, { regression = true, binary = true, multiclass = true },
  objective_schema({
    rounds = int(1, { "n_estimators", "num_boost_round" }), eta = num(0, { "learning_rate" }),
    depth = int(1, { "max_depth" }), max_leaves = int(0), min_child_weight = num(0),
    lambda = num(0, { "l2", "reg_lambda" }), gamma = num(0, { "min_split_loss" }), subsample = fraction(),
    colsample = fraction({ "colsample_bytree" }), max_bins = int(2, { "max_bin" }), seed = SEED,
    early_stopping_rounds = int(0),
  }),
  function(o, task, n_classes, valid)
    local p = kernels.gbt.params()
    p.objective = task == "regression" and 0 or task == "binary" and 1 or 2
    p.n_classes = n_classes or 0
    p.rounds = o.rounds or p.rounds
    p.learning_rate = o.eta or p.learning_rate
    p.max_depth = o.depth or p.max_depth
    p.max_leaves = o.max_leaves or p.max_leaves
    p.min_child_weight = o.min_child_weight or p.min_child_weight
    p.lambda = o.lambda or p.lambda
    p.gamma = o.gamma or p.gamma
    p.subsample = o.subsample or p.subsample
    p.colsample = o.colsample or p.colsample
    p.max_bins = o.max_bins or p.max_bins
    p.seed = o.seed or 42
    p.early_stopping_rounds = o.early_stopping_rounds or (valid and 10 or 0)
    return p
  end)

families.forest = family(kernels.forest, { regression = true, binary = true, multiclass = true },
  objective_schema({
    trees = int(1, { "n_trees", "n_estimators" }), depth = int(0, { "max_depth" }),
    min_samples_leaf = int(1), max_features = fraction(), bootstrap = BOOL, max_bins = int(2, { "max_bin" }),
    seed = SEED,
  }),
  function(o, task, n_classes)
    local p = kernels.forest.params()
    p.task = task == "regression" and 1 or 0
    p.n_classes = n_classes or 0
    p.n_trees = o.trees or p.n_trees
    p.max_depth = o.depth or p.max_depth
    p.min_samples_leaf = o.min_samples_leaf or p.min_samples_leaf
    p.max_features = o.max_features or p.max_features
    if o.bootstrap == false then p.bootstrap = 0 end
    p.max_bins = o.max_bins or p.max_bins
    p.seed = o.seed or 42
    return p
  end)

families.logistic = family(kernels.logistic, { binary = true, multiclass = true },
  objective_schema({
    C = { type = "number", above = 0 }, l2 = { type = "number", above = 0 }, max_iter = int(1),
    tol = { type = "number", above = 0 }, fit_intercept = BOOL,
  }),
  function(o, _, n_classes)
    local p = kernels.logistic.params()
    p.C = o.C or (o.l2 and 1 / o.l2) or p.C
    p.max_iter = o.max_iter or p.max_iter
    p.tol = o.tol or p.tol
    if o.fit_intercept == false then p.fit_intercept = 0 end
    p.n_classes = n_classes or 0
    return p
  end)

families.linear = family(kernels.linear, { regression = true },
  objective_schema({ alpha = num(0, { "l2" }), fit_intercept = BOOL }),
  function(o)
    local p = kernels.linear.params()
    p.alpha = o.alpha or p.alpha
    if o.fit_intercept == false then p.fit_intercept = 0 end
    return p
  end)

families.kmeans = family(kernels.kmeans, { clustering = true },
  {
    k = int(1, { "n_clusters" }), n_init = int(1, { "restarts" }), max_iter = int(1),
    tol = num(0), seed = SEED,
  },
  function(o)
    local p = kernels.kmeans.params()
    p.k = o.k or p.k
    p.n_init = o.n_init or p.n_init
    p.max_iter = o.max_iter or p.max_iter
    p.tol = o.tol or p.tol
    p.seed = o.seed or 42
    return p
  end)

return families
