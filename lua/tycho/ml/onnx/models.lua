--- A fitted Tycho model as ONNX nodes. The parameters come from the
-- kernel's own saved bytes (core/kernels/tz_*.c, *_save), read here field
-- by field, so the export sees exactly what predict uses.
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
local ffi = require "ffi"
local proto = require "tycho.ml.onnx.proto"
local graph = require "tycho.ml.onnx.graph"
local errors = require "tycho.util.errors"

local M = {}
local attr = proto.attr

-- ---- the kernels' bytes -------------------------------------------------------------

-- tz_blob: "TYCHOBLB" | u32 version | u32 kind | u64 payload length | payload | u32 crc.
local KIND = { gbt = 1, forest = 2, linear = 3, logistic = 4, kmeans = 5 }

local Reader = {}
Reader.__index = Reader

local scratch = ffi.new("union { uint8_t b[8]; uint32_t u32; uint64_t u64; double f64; }")

local function bytes_at(r, n)
  if r.pos + n > r.stop then error("onnx: the model's bytes end early", 0) end
  ffi.copy(scratch.b, r.ptr + r.pos, n)
  r.pos = r.pos + n
end
function Reader:u8() bytes_at(self, 1) return scratch.b[0] end
function Reader:u32()
  scratch.u64 = 0
  bytes_at(self, 4)
  return tonumber(scratch.u32)
end
function Reader:i32()
  local v = self:u32()
  return v >= 2 ^ 31 and v - 2 ^ 32 or v
end
function Reader:u64() bytes_at(self, 8) return tonumber(scratch.u64) end
function Reader:f64() bytes_at(self, 8) return scratch.f64 end
function Reader:f64s(n)
  local out = {}
  for i = 1, n do out[i] = self:f64() end
  return out
end

-- A reader over the payload of a kernel's blob, checked for its kind and
-- version (1: the format this file reads).
local function open_kernel(m)
  if not ffi.abi("le") then return errors.fail("unavailable", "onnx: export reads model bytes on little-endian hosts only") end
  local bytes, why = m.fam.save(m.handle)
  if not bytes then return errors.fail("unavailable", "onnx: cannot read the " .. m.family .. " model: " .. tostring(why)) end
  local r = setmetatable({ s = bytes, ptr = ffi.cast("const uint8_t*", bytes), pos = 8, stop = #bytes }, Reader)
  if bytes:sub(1, 8) ~= "TYCHOBLB" then return errors.fail("invalid", "onnx: the " .. m.family .. " model is not a blob") end
  local version, kind = r:u32(), r:u32()
  local len = r:u64()
  local newest = m.family == "gbt" and 2 or 1  -- gbt 2: flags after the base margin
  if kind ~= KIND[m.family] or version < 1 or version > newest then
    return errors.fail("invalid", string.format("onnx: %s model bytes of kind %d version %d; this exporter reads kind %d "
      .. "up to version %d", m.family, kind, version, KIND[m.family], newest))
  end
  r.stop, r.version = r.pos + len, version
  return r
end

-- One tree (tz_tree_write): splits, then leaf values (n_values each).
local function read_tree(r, n_values)
  local n_nodes, n_leaves = r:u32(), r:u32()
  local nodes = {}
  for i = 1, n_nodes do
    nodes[i] = { feature = r:u32(), left = r:i32(), right = r:i32(), default_left = r:u8(), threshold = r:f64() }
  end
  return { nodes = nodes, n_leaves = n_leaves, values = r:f64s(n_leaves * n_values) }
end

local function read_gbt(r)
  local g = { objective = r:u32(), n_features = r:u32(), n_classes = r:u32(), rounds = r:u32(), base = r:f64() }
  -- Flags (version 2): float32 sums (imported XGBoost models); the export
  -- sums in double, within a float's rounding of that.
  if r.version >= 2 then g.flags = r:u32() end
  r:f64s(g.n_features)  -- importance
  g.trees = {}
  for i = 1, g.rounds * g.n_classes do g.trees[i] = read_tree(r, 1) end
  return g
end

local function read_forest(r)
  local f = { task = r:u32(), n_features = r:u32(), n_outputs = r:u32(), n_trees = r:u32(), oob = r:f64() }
  r:f64s(f.n_features)
  f.trees = {}
  for i = 1, f.n_trees do f.trees[i] = read_tree(r, f.n_outputs) end
  return f
end

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
function build.gbt(g, m, x)
  local r, err, code = open_kernel(m)
  if not r then return nil, err, code end
  local gb = read_gbt(r)
  local K = gb.n_classes
  local a = ensemble(gb.trees, function(t, tree, l) return { { (t - 1) % K, tree.values[l + 1] } } end)
  local base = {}
  for k = 1, K do base[k] = gb.base end
  local scores = ensemble_node(g, x, a, K, "SUM", base)
  if gb.objective == 1 then return { scores = sigmoid(g, scores), kind = "probability" } end
  if gb.objective == 2 then return { scores = g:op("Softmax", { scores }, { attr.i("axis", 1) }), kind = "probabilities" } end
  return { scores = scores, kind = "value" }
end

function build.forest(g, m, x)
  local r, err, code = open_kernel(m)
  if not r then return nil, err, code end
  local f = read_forest(r)
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
  local r, err, code = open_kernel(m)
  if not r then return nil, err, code end
  local p, K = r:u64(), r:u32()
  local fit_intercept = r:u8()
  r:u8() r:u32() r:f64()  -- converged, iterations, C
  local mean, scale = r:f64s(p), r:f64s(p)
  local kout = K == 2 and 1 or K
  local w = r:f64s(kout * (p + 1))
  -- Raw-feature coefficients from the standardised ones, as the kernel
  -- derives them (tz_logistic.c, derive_raw).
  local coef, icpt = {}, {}
  for k = 1, kout do
    local row = (k - 1) * (p + 1)
    local b = fit_intercept ~= 0 and w[row + p + 1] or 0
    for j = 1, p do
      local c = w[row + j] / scale[j]
      coef[(k - 1) * p + j] = c
      b = b - c * mean[j]
    end
    icpt[k] = b
  end
  local s = affine(g, x, coef, icpt, p, kout)
  if kout == 1 then return { scores = sigmoid(g, s), kind = "probability" } end
  return { scores = g:op("Softmax", { s }, { attr.i("axis", 1) }), kind = "probabilities" }
end

function build.linear(g, m, x)
  local r, err, code = open_kernel(m)
  if not r then return nil, err, code end
  local p = r:u64()
  r:u8() r:u64() r:f64()  -- fit_intercept, rank, alpha
  local icpt = r:f64()
  return { scores = affine(g, x, r:f64s(p), { icpt }, p, 1), kind = "value" }
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
  local r, err, code = open_kernel(m)
  if not r then return nil, err, code end
  local p, k = r:u64(), r:u32()
  r:u32() r:f64()  -- iterations, inertia
  local flat, centers = r:f64s(k * p), {}
  for c = 1, k do
    centers[c] = {}
    for j = 1, p do centers[c][j] = flat[(c - 1) * p + j] end
  end
  return { scores = M.square_distances(g, columns, centers), kind = "distances", k = k }
end

--- Whether models of a family can be exported.
function M.exports(family) return build[family] ~= nil end

--- The model's raw scores from x ([N, p] doubles in m.features order) and
-- the same inputs as columns: a table { scores, kind }, or nil, message, code.
function M.scores(g, m, x, columns)
  return build[m.family](g, m, x, columns)
end

return M
