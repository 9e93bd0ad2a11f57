--- A fitted Tycho model as ONNX nodes. The parameters come from the
-- trained kernel itself (core/kernels.lua's parts(): the C accessors of
-- core/kernels/tz_*.c), so the export sees exactly what predict uses.
--
--   gbt      TreeEnsembleRegressor (ai.onnx.ml 3, SUM, the base margin as
--            base values) gives the margins; then 1 / (1 + exp(-m)) (binary)
--            or Softmax (multiclass), in double
--   forest   TreeEnsembleRegressor (AVERAGE) gives the class probabilities
--            (one target per class) or the value
--   logistic MatMul + Add on the raw-feature coefficients, then as gbt
--   linear   MatMul + Add
--   kmeans   squared distances to the centres, feature by feature; ArgMin
--
-- Splits are Tycho's `x <= threshold` (BRANCH_LEQ), thresholds and leaf
-- values stay doubles (nodes_values_as_tensor, target_weights_as_tensor,
-- base_values_as_tensor, read as doubles for double inputs), and a NaN goes
-- where the learnt default direction says (nodes_missing_value_tracks_true
-- = default_left, the true branch being the left one). The ensembles add
-- in double and answer in float32, the operator's only output type.
-- ONNX-ML's TreeEnsembleClassifier, LinearClassifier and LinearRegressor are
-- not used: their weights, post transforms and outputs are float32 (their
-- logistic of a margin of -10 keeps three digits), and ONNX Runtime labels
-- a two-class ensemble by its own rules, not p >= threshold; so the
-- probabilities and labels are computed in double from the raw scores.
local proto = require "tycho.ml.onnx.proto"
local graph = require "tycho.ml.onnx.graph"

local M = {}
local attr = proto.attr

-- ---- tree ensembles ---------------------------------------------------------------

-- TreeEnsembleRegressor attributes for trees, where leaf_targets(tree_index,
-- tree, leaf) gives the { target, weight } pairs of a leaf.
local function ensemble(trees, leaf_targets)
  local a = { treeids = {}, nodeids = {}, featureids = {}, modes = {}, values = {}, truenodeids = {},
              falsenodeids = {}, missing = {}, t_treeids = {}, t_nodeids = {}, t_ids = {}, t_weights = {} }
  local function add(t, id, feature, mode, value, yes, no, missing)
    local k = #a.treeids + 1
    a.treeids[k], a.nodeids[k], a.featureids[k], a.modes[k] = t, id, feature, mode
    a.values[k], a.truenodeids[k], a.falsenodeids[k], a.missing[k] = value, yes, no, missing
  end
  for t, tree in ipairs(trees) do
    local splits = #tree.nodes
    -- Node ids: splits keep theirs (0-based), leaf l is splits + l.
    local function id_of(child) return child >= 0 and child or splits + (-child - 1) end
    for i, n in ipairs(tree.nodes) do
      add(t - 1, i - 1, n.feature, "BRANCH_LEQ", n.threshold, id_of(n.left), id_of(n.right), n.default_left)
    end
    for l = 0, tree.n_leaves - 1 do
      add(t - 1, splits + l, 0, "LEAF", 0, 0, 0, 0)
      for _, tw in ipairs(leaf_targets(t, tree, l)) do
        local k = #a.t_ids + 1
        a.t_treeids[k], a.t_nodeids[k], a.t_ids[k], a.t_weights[k] = t - 1, splits + l, tw[1], tw[2]
      end
    end
  end
  return a
end

local function ensemble_node(g, x, a, n_targets, aggregate, base)
  local list = {
    attr.s("aggregate_function", aggregate), attr.i("n_targets", n_targets), attr.s("post_transform", "NONE"),
    attr.ints("nodes_treeids", a.treeids), attr.ints("nodes_nodeids", a.nodeids),
    attr.ints("nodes_featureids", a.featureids), attr.strings("nodes_modes", a.modes),
    attr.t("nodes_values_as_tensor", proto.tensor(nil, proto.DOUBLE, { #a.values }, a.values)),
    attr.ints("nodes_truenodeids", a.truenodeids), attr.ints("nodes_falsenodeids", a.falsenodeids),
    attr.ints("nodes_missing_value_tracks_true", a.missing),
    attr.ints("target_treeids", a.t_treeids), attr.ints("target_nodeids", a.t_nodeids), attr.ints("target_ids", a.t_ids),
    attr.t("target_weights_as_tensor", proto.tensor(nil, proto.DOUBLE, { #a.t_weights }, a.t_weights)),
  }
  if base then list[#list + 1] = attr.t("base_values_as_tensor", proto.tensor(nil, proto.DOUBLE, { #base }, base)) end
  -- The ensemble answers in float32 (the operator's only output type): its
  -- sums are doubles inside ONNX Runtime, rounded once here.
  local y = g:op("TreeEnsembleRegressor", { x }, list, 1, graph.ML)
  return g:op("Cast", { y }, { attr.i("to", proto.DOUBLE) })
end

-- ---- the families -----------------------------------------------------------------

local build = {}

-- 1 / (1 + exp(-s)) in double, as the kernels compute it. (ONNX Runtime's
-- Sigmoid takes 1 - 1 / (1 + exp(s)) for s < 0, which keeps no relative
-- precision for small probabilities: 5e-5 at 2e-12.)
local function sigmoid(g, s)
  local e = g:op("Exp", { g:op("Neg", { s }) })
  return g:op("Div", { g:scalar(1), g:op("Add", { g:scalar(1), e }) })
end

-- Raw outputs: { scores, kind }: kind "probability" (scores: [N, 1], the
-- second class's; both: [N, 2] when the model gives both), "probabilities"
-- ([N, K]), "value" ([N, 1]) or "distances" ([N, k] squared, and k).
-- (A float32-summing model, an imported XGBoost one, is exported summing
-- in double: within a float's rounding of that.)
function build.gbt(g, m, x)
  local gb = m.fam.parts(m.handle)
  local K = gb.n_outputs
  local a = ensemble(gb.trees, function(t, tree, l) return { { (t - 1) % K, tree.values[l + 1] } } end)
  local base = {}
  for k = 1, K do base[k] = gb.base_margin end
  local scores = ensemble_node(g, x, a, K, "SUM", base)
  if gb.objective == 1 then return { scores = sigmoid(g, scores), kind = "probability" } end
  if gb.objective == 2 then return { scores = g:op("Softmax", { scores }, { attr.i("axis", 1) }), kind = "probabilities" } end
  return { scores = scores, kind = "value" }
end

function build.forest(g, m, x)
  local f = m.fam.parts(m.handle)
  local no = f.n_outputs
  local a = ensemble(f.trees, function(_, tree, l)
    local out = {}
    for k = 1, no do
      local v = tree.values[l * no + k]
      if v ~= 0 or no == 1 then out[#out + 1] = { k - 1, v } end
    end
    return out
  end)
  local scores = ensemble_node(g, x, a, no, "AVERAGE")
  if m.task == "binary" then
    -- Both class probabilities as the trees give them (the first is not
    -- 1 - the second: that would lose a float's precision near 1); Tycho's
    -- answer is the second one's.
    return { scores = g:op("Gather", { scores, g:ints({ 1 }) }, { attr.i("axis", 1) }), both = scores,
             kind = "probability" }
  end
  return { scores = scores, kind = m.task == "multiclass" and "probabilities" or "value" }
end

-- x [N, p] times the transposed coefficient rows (kout x p), plus intercepts.
local function affine(g, x, coef, icpt, p, kout)
  local w = {}
  for j = 1, p do
    for k = 1, kout do w[(j - 1) * kout + k] = coef[(k - 1) * p + j] end
  end
  local prod = g:op("MatMul", { x, g:const(proto.DOUBLE, { p, kout }, w, "coef") })
  return g:op("Add", { prod, g:const(proto.DOUBLE, { kout }, icpt, "intercept") })
end

function build.logistic(g, m, x)
  local lg = m.fam.parts(m.handle)
  local kout = lg.n_outputs
  local s = affine(g, x, lg.coef, lg.intercept, #lg.coef / kout, kout)
  if kout == 1 then return { scores = sigmoid(g, s), kind = "probability" } end
  return { scores = g:op("Softmax", { s }, { attr.i("axis", 1) }), kind = "probabilities" }
end

function build.linear(g, m, x)
  local ln = m.fam.parts(m.handle)
  return { scores = affine(g, x, ln.coef, { ln.intercept }, #ln.coef, 1), kind = "value" }
end

--- Squared Euclidean distances [N, k] from columns (a list of [N, 1]
-- doubles) to centres (k lists of #columns numbers), summed feature by
-- feature in order as the kernels do, so the sums are the same doubles.
function M.square_distances(g, columns, centers)
  local dist
  for j, col in ipairs(columns) do
    local cj = {}
    for c, center in ipairs(centers) do cj[c] = center[j] end
    local diff = g:op("Sub", { col, g:const(proto.DOUBLE, { 1, #centers }, cj, "centre") })
    local sq = g:op("Mul", { diff, diff })
    dist = dist and g:op("Add", { dist, sq }) or sq
  end
  return dist
end

function build.kmeans(g, m, _, columns)
  local centers = m.fam.parts(m.handle).centers
  return { scores = M.square_distances(g, columns, centers), kind = "distances", k = #centers }
end

--- Whether models of a family can be exported.
function M.exports(family) return build[family] ~= nil end

--- The model's raw scores from x ([N, p] doubles in m.features order) and
-- the same inputs as columns: a table { scores, kind }, or nil, message, code.
function M.scores(g, m, x, columns)
  return build[m.family](g, m, x, columns)
end

return M
