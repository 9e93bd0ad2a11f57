--- XGBoost JSON models (`Booster.save_model("m.json")`) as Tycho pipelines:
-- the trees become a gbt model, the model's feature names the pipeline's
-- inputs, so an imported model serves, A/B-tests and is monitored like any
-- other.
--
--   local xgboost = require "tycho.ml.xgboost"
--   local pipe, info = assert(xgboost.import("m.json"))    -- info.trees, info.xgboost_version, ...
--   pipe:predict { f0 = 1.5, f1 = 0 / 0 }                  -- NaN or absent: missing
--   local v = assert(tycho.registry.open():import("m.json", { name = "churn", format = "xgboost" }))
--
-- Objectives: binary:logistic (P(class 1)), multi:softprob and
-- multi:softmax (classes 0..K-1, or opts.classes), reg:squarederror; a
-- gbtree booster with numerical splits. The same answers as XGBoost's
-- predict(): XGBoost sends a row left when float32(x) < threshold (both
-- float32), missing values take default_left; Tycho's trees send x left
-- when x <= t (doubles), so each threshold becomes the largest double whose
-- float32 is below XGBoost's, which makes the two tests agree for every x.
-- Leaf values and base_score are float32 as XGBoost holds them, and the
-- model sums them in float32 in XGBoost's tree order (the gbt kernel's
-- TZ_GBT_SUM_F32 flag), so margins and regression values are XGBoost's to
-- the bit; the sigmoid and softmax run in double (XGBoost's in float32),
-- so probabilities agree to about 1e-7. XGBoost's missing values are NaN
-- by default, and a sparse matrix's absent entries: send those as null or
-- leave them out, not as 0.
--
-- The file is an artifact from outside: anything that is not such a model
-- (bad JSON, another booster or objective, categorical splits, vector
-- leaves, inconsistent arrays, indices out of range, trees that loop or
-- share nodes, sizes past the limits below) is refused with a message,
-- never half-read; the kernel's own loader checks the result again.
local ffi = require "ffi"
local json = require "tycho.util.json"
local errors = require "tycho.util.errors"
local kernels = require "tycho.core.kernels"
local models = require "tycho.ml.models"
local pipeline = require "tycho.ml.pipeline"

local M = {}

M.MAX_FILE_BYTES = 256 * 1024 * 1024
M.MAX_FEATURES = 1048576
M.MAX_CLASSES = 4096           -- as the gbt kernel
M.MAX_TREES = 1000000
M.MAX_NODES = 2 ^ 25           -- in all trees together
local MAX_NAME = 256           -- bytes of a feature name
local ENOENT = 2

-- name -> { objective = the gbt kernel's, task = the model's }
local OBJECTIVES = {
  ["binary:logistic"] = { objective = 1, task = "binary" },
  ["multi:softprob"] = { objective = 2, task = "multiclass" },
  ["multi:softmax"] = { objective = 2, task = "multiclass" },
  ["reg:squarederror"] = { objective = 0, task = "regression" },
}
local OBJECTIVE_LIST = "binary:logistic, multi:softprob, multi:softmax, reg:squarederror"

-- ---- float32 -----------------------------------------------------------------------

local f32_box = ffi.new("float[1]")
local f32_bits = ffi.new("union { float f; uint32_t u; }")
local f64_bits = ffi.new("union { double d; int64_t i; }")
local FLT_MAX = (2 - 2 ^ -23) * 2 ^ 127

-- x rounded to float32 (as XGBoost stores it), as a Lua number.
local function f32(x)
  f32_box[0] = x
  return f32_box[0]
end

-- The float32 just below t (t a finite float32); below -FLT_MAX, -2^128,
-- where rounding to float32 turns into -inf.
local function f32_below(t)
  if t == 0 then return -2 ^ -149 end
  if t == -FLT_MAX then return -2 ^ 128 end
  f32_bits.f = t
  f32_bits.u = t > 0 and f32_bits.u - 1 or f32_bits.u + 1
  return f32_bits.f
end

-- The double just below m (m finite, not 0).
local function f64_below(m)
  f64_bits.d = m
  f64_bits.i = m > 0 and f64_bits.i - 1 or f64_bits.i + 1
  return f64_bits.d
end

--- The threshold t of Tycho's test `x <= t` that splits doubles exactly
-- as XGBoost's `float32(x) < c` does (c a finite float32): the largest
-- double whose float32 is below c. It lies at the midpoint between c and
-- the float32 below it (exact in double), or just under it when that
-- midpoint rounds up to c.
function M.threshold_for(c)
  local m = (f32_below(c) + c) / 2
  if f32(m) < c then return m end
  return f64_below(m)
end

-- ---- reading the document ------------------------------------------------------------

local function fail(msg) return errors.fail("invalid", "not a usable XGBoost model: " .. msg) end

local function is_int(v, lo, hi) return type(v) == "number" and v % 1 == 0 and v >= lo and v <= hi end

-- A number XGBoost writes as a string ("5E-1", "26"), or as a number; a
-- one-element list ("[5E-1]") is read as its element.
local function param_number(v)
  if type(v) == "string" then v = tonumber(v:match("^%[(.*)%]$") or v) end
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then return nil end
  return v
end

local function field(t, key) return type(t) == "table" and t[key] or nil end

-- An array of exactly n elements (a JSON list): the table, or nil.
local function array_of(v, n)
  if type(v) ~= "table" or #v ~= n then return nil end
  if n == 0 and next(v) ~= nil then return nil end
  return v
end

local function version_of(doc)
  local v = doc.version
  if type(v) ~= "table" or #v < 2 or not is_int(v[1], 1, 1000) or not is_int(v[2], 0, 1000) then
    return nil
  end
  local parts = {}
  for i = 1, math.min(#v, 3) do
    if not is_int(v[i], 0, 1e6) then return nil end
    parts[i] = string.format("%d", v[i])
  end
  return table.concat(parts, "."), parts[1] .. "." .. parts[2]
end

-- The input names: opts.features, else the model's feature_names.
local function feature_names(learner, nf, opts)
  local names = opts.features
  if names == nil then
    names = learner.feature_names
    if type(names) ~= "table" or #names == 0 then
      return fail("the model has no feature names (train on a DMatrix with feature_names, " ..
        "or give them as opts.features)")
    end
  end
  if not array_of(names, nf) then
    return fail(string.format("%d feature names for num_feature %d", type(names) == "table" and #names or 0, nf))
  end
  local seen = {}
  for i, name in ipairs(names) do
    if type(name) ~= "string" or #name == 0 or #name > MAX_NAME or name:find("[%c]") then
      return fail("feature name " .. i .. " is not a name (1.." .. MAX_NAME .. " bytes, no control characters)")
    end
    if seen[name] then return fail("feature name '" .. name .. "' appears twice") end
    seen[name] = true
  end
  local types = learner.feature_types
  if types ~= nil and types ~= json.null then
    if type(types) ~= "table" then return fail("feature_types is not a list") end
    for i, t in ipairs(types) do
      if t == "c" then
        return fail("feature '" .. tostring(names[i]) .. "' is categorical: categorical splits are not supported")
      end
    end
  end
  local copy = {}
  for i, name in ipairs(names) do copy[i] = name end
  return copy
end

-- The header: objective, classes, features, base_score and the trees'
-- container. A table, or nil and why.
local function read_header(doc, opts)
  if type(doc) ~= "table" or type(doc.learner) ~= "table" then return fail("no 'learner' object") end
  local learner = doc.learner
  local version, major_minor = version_of(doc)
  if not version then return fail("no XGBoost 'version' [major, minor, patch]") end
  local booster = learner.gradient_booster
  local bname = field(booster, "name")
  if bname ~= "gbtree" then
    if bname == "dart" or bname == "gblinear" then return fail("the " .. bname .. " booster is not supported (gbtree is)") end
    return fail("no gbtree gradient_booster")
  end
  local oname = field(learner.objective, "name")
  local obj = OBJECTIVES[oname]
  if not obj then
    return fail("objective '" .. tostring(oname) .. "' is not supported (" .. OBJECTIVE_LIST .. ")")
  end
  local mp = learner.learner_model_param
  if type(mp) ~= "table" then return fail("no learner_model_param") end
  local nf = param_number(mp.num_feature)
  if not nf or not is_int(nf, 1, M.MAX_FEATURES) then
    return fail("num_feature must be an integer in 1.." .. M.MAX_FEATURES)
  end
  local num_class = param_number(mp.num_class or "0")
  local targets = param_number(mp.num_target or "1")
  if targets ~= 1 then return fail("models with several targets are not supported") end
  local K = 1
  if obj.task == "multiclass" then
    if not num_class or not is_int(num_class, 2, M.MAX_CLASSES) then
      return fail(oname .. " needs num_class in 2.." .. M.MAX_CLASSES)
    end
    K = num_class
  elseif num_class ~= 0 and num_class ~= 1 then
    return fail(oname .. " with num_class " .. tostring(mp.num_class))
  end
  local base_score = param_number(mp.base_score)
  if not base_score then return fail("base_score is not a finite number") end
  base_score = f32(base_score)
  if obj.task == "binary" and not (base_score > 0 and base_score < 1) then
    return fail("binary:logistic needs base_score in (0, 1), got " .. tostring(mp.base_score))
  end
  if math.abs(base_score) > FLT_MAX then return fail("base_score is past float32's range") end
  local names, nerr, ncode = feature_names(learner, nf, opts)
  if not names then return nil, nerr, ncode end
  return { version = version, major_minor = major_minor, objective = oname, obj = obj, K = K, nf = nf,
           base_score = base_score, names = names, model = field(booster, "model") }
end

-- The margin every row starts from, as XGBoost computes it in float32:
-- the logit of base_score for binary:logistic, base_score itself otherwise
-- (for every class of a multiclass model).
local function base_margin(h)
  if h.obj.task ~= "binary" then return h.base_score end
  local b = h.base_score
  return f32(-math.log(f32(f32(1 / b) - 1)))
end

-- A tree's arrays, each of num_nodes entries: a table, or nil and why.
local function tree_arrays(t, where)
  if type(t) ~= "table" then return fail(where .. "not an object") end
  local n = param_number(field(t.tree_param, "num_nodes"))
  if not n or not is_int(n, 1, M.MAX_NODES) then return fail(where .. "num_nodes is not a count") end
  local a = { n = n, left = array_of(t.left_children, n), right = array_of(t.right_children, n),
              split = array_of(t.split_indices, n), cond = array_of(t.split_conditions, n),
              dleft = array_of(t.default_left, n), stype = t.split_type, losses = array_of(t.loss_changes, n) }
  if not (a.left and a.right and a.split and a.cond and a.dleft) then
    return fail(where .. "left_children, right_children, split_indices, split_conditions and default_left " ..
      "must each hold num_nodes (" .. n .. ") entries")
  end
  if t.base_weights ~= nil and not array_of(t.base_weights, n) then return fail(where .. "base_weights has the wrong length") end
  if a.stype ~= nil and not array_of(a.stype, n) then return fail(where .. "split_type has the wrong length") end
  local leaf_size = field(t.tree_param, "size_leaf_vector")
  if leaf_size ~= nil and (param_number(leaf_size) or 2) > 1 then
    return fail(where .. "vector leaves (multi-output trees) are not supported")
  end
  return a
end

-- Split `node` of a tree's arrays a: its feature and default direction
-- (0 or 1), or nil and why.
local function split_of(a, node, nf, where)
  local l, r = a.left[node + 1], a.right[node + 1]
  if not is_int(l, 1, a.n - 1) or not is_int(r, 1, a.n - 1) or l == r then
    return fail(where .. "node " .. node .. " has children out of range (" .. tostring(l) .. ", " .. tostring(r) .. ")")
  end
  local f = a.split[node + 1]
  if not is_int(f, 0, nf - 1) then return fail(where .. "node " .. node .. " splits on feature " .. tostring(f) .. " of " .. nf) end
  if a.stype and a.stype[node + 1] ~= 0 then return fail(where .. "node " .. node .. " is a categorical split: not supported") end
  local d = a.dleft[node + 1]
  if d == true or d == false then d = d and 1 or 0 end
  if d ~= 0 and d ~= 1 then return fail(where .. "default_left[" .. node .. "] is not 0 or 1") end
  return f, d
end

-- One XGBoost tree -> Tycho's layout (splits numbered in visit order, so
-- children come after their parent; leaves numbered apart), walking from
-- the root with a stack: a node reached twice (a cycle, or two parents)
-- or a child out of range is refused, so the walk ends within num_nodes
-- steps. Unreachable nodes (deleted by pruning) are skipped. The tree and
-- its node count, or nil and why.
local function convert_tree(t, ti, nf, gain)
  local where = "tree " .. (ti - 1) .. ": "
  local a, aerr, acode = tree_arrays(t, where)
  if not a then return nil, aerr, acode end
  local out = { feature = {}, left = {}, right = {}, default_left = {}, threshold = {}, values = {} }
  local seen = {}
  local stack, top = { 0, 0, 0 }, 3  -- triples: node, parent's split number (1-based; 0: none), side
  while top > 0 do
    local node, parent, side = stack[top - 2], stack[top - 1], stack[top]
    top = top - 3
    if seen[node] then return fail(where .. "node " .. node .. " is reached twice (a cycle or a shared node)") end
    seen[node] = true
    local c = a.cond[node + 1]
    if type(c) ~= "number" then return fail(where .. "split_conditions[" .. node .. "] is not a number") end
    c = f32(c)
    if math.abs(c) > FLT_MAX then return fail(where .. "node " .. node .. "'s number is past float32's range") end
    local ref
    if a.left[node + 1] == -1 then
      if a.right[node + 1] ~= -1 then return fail(where .. "node " .. node .. " has a right child but no left one") end
      out.values[#out.values + 1] = c
      ref = -#out.values  -- ~(leaf number from 0)
    else
      local f, d, scode = split_of(a, node, nf, where)
      if not f then return nil, d, scode end
      local s = #out.feature + 1
      out.feature[s], out.default_left[s], out.threshold[s] = f, d, M.threshold_for(c)
      local loss = a.losses and a.losses[node + 1]
      if type(loss) == "number" then gain[f + 1] = gain[f + 1] + loss end
      ref = s - 1
      -- right first, so the left subtree is numbered first
      stack[top + 1], stack[top + 2], stack[top + 3] = a.right[node + 1], s, 2
      stack[top + 4], stack[top + 5], stack[top + 6] = a.left[node + 1], s, 1
      top = top + 6
    end
    if parent > 0 then
      if side == 1 then out.left[parent] = ref else out.right[parent] = ref end
    end
  end
  return out, a.n
end

-- A tree that adds nothing: pads classes with fewer trees than others.
local ZERO_TREE = { feature = {}, left = {}, right = {}, default_left = {}, threshold = {}, values = { 0 } }

-- The gbt kernel's description of the model (kernels.gbt.pack's m) and
-- the counts { rounds, trees }; or nil, why, code.
local function convert_trees(h)
  local model = h.model
  local trees = field(model, "trees")
  if type(trees) ~= "table" then return fail("gradient_booster.model has no 'trees' list") end
  local n_trees = #trees
  if n_trees > M.MAX_TREES then return errors.fail("too_large", "the model has more than " .. M.MAX_TREES .. " trees") end
  local declared = param_number(field(model.gbtree_model_param, "num_trees"))
  if declared ~= nil and declared ~= n_trees then
    return fail("num_trees says " .. declared .. ", the file holds " .. n_trees .. " trees")
  end
  local info = array_of(model.tree_info, n_trees)
  if not info then return fail("tree_info must hold one class per tree (" .. n_trees .. ")") end
  local per_class, gain, total = {}, {}, 0
  for k = 1, h.K do per_class[k] = {} end
  for j = 1, h.nf do gain[j] = 0 end
  for i = 1, n_trees do
    local k = info[i]
    if not is_int(k, 0, h.K - 1) then return fail("tree_info[" .. (i - 1) .. "] is not a class in 0.." .. (h.K - 1)) end
    local t, n, code = convert_tree(trees[i], i, h.nf, gain)
    if not t then return nil, n, code end
    total = total + n
    if total > M.MAX_NODES then return errors.fail("too_large", "the model has more than " .. M.MAX_NODES .. " nodes") end
    local list = per_class[k + 1]
    list[#list + 1] = t
  end
  local rounds = 1
  for k = 1, h.K do rounds = math.max(rounds, #per_class[k]) end
  local out = {}
  for r = 1, rounds do
    for k = 1, h.K do out[#out + 1] = per_class[k][r] or ZERO_TREE end
  end
  for j = 1, h.nf do
    if gain[j] ~= gain[j] or math.abs(gain[j]) == math.huge then gain[j] = 0 end
  end
  return { objective = h.obj.objective, n_features = h.nf, n_outputs = h.K, base_margin = base_margin(h),
           flags = kernels.gbt.SUM_F32, importance = gain, trees = out }, { rounds = rounds, trees = n_trees }
end

-- ---- the pipeline --------------------------------------------------------------------------

local function classes_of(h, opts)
  local K = h.obj.task == "binary" and 2 or h.K
  if opts.classes == nil then
    local c = {}
    for k = 1, K do c[k] = k - 1 end
    return c
  end
  if #opts.classes ~= K then
    return errors.fail("invalid", string.format("opts.classes has %d classes, the model %d", #opts.classes, K))
  end
  local seen, c = {}, {}
  for k, v in ipairs(opts.classes) do
    if (type(v) ~= "string" and type(v) ~= "number") or seen[v] then
      return errors.fail("invalid", "opts.classes must be distinct strings or numbers")
    end
    seen[v], c[k] = true, v
  end
  return c
end

-- Misuse of opts raises, blaming the public function's caller.
local OPT_TYPES = { features = "table", classes = "table", label = "string", name = "string" }
local function check_opts(opts, fn)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(fn .. ": opts must be a table", 3) end
  for key, want in pairs(OPT_TYPES) do
    if opts[key] ~= nil and type(opts[key]) ~= want then error(fn .. ": opts." .. key .. " must be a " .. want, 3) end
  end
  return opts
end

-- The fitted pipeline around the converted model (kernel: its gbt bytes),
-- as the registry will hand it out: loaded back from its own artifact.
local function make_pipeline(h, kernel, rounds, classes, opts)
  local label = opts.label or "label"
  local model, merr, mcode = models.from_parts({ family = "gbt", task = h.obj.task, features = h.names, label = label,
    classes = classes, opts = {}, info = { rounds = rounds, imported = "xgboost " .. h.version, objective = h.objective } },
    kernel)
  if not model then return nil, merr, mcode end
  local request, types = {}, {}
  for _, name in ipairs(h.names) do request[name], types[name] = "float", "float" end
  local p = pipeline.new { request = request, model = model, name = opts.name }
  p.label, p.inputs, p.input_types, p.model_inputs = label, h.names, types, h.names
  local bytes, perr, pcode = p:to_bytes()
  if not bytes then return nil, perr, pcode end
  return pipeline.from_bytes(bytes)
end

--- A pipeline from the text of an XGBoost JSON model (see M.import for
-- opts), and what was read: { xgboost_version, objective, trees, rounds,
-- classes (0 for regression), features, base_score, note ("imported from
-- xgboost X.Y") }. Or nil, why, "invalid" (or "too_large").
function M.from_json(text, opts)
  if type(text) ~= "string" then error("xgboost.from_json: expected the model's JSON text", 2) end
  opts = check_opts(opts, "xgboost.from_json")
  if #text > M.MAX_FILE_BYTES then return errors.fail("too_large", "the model is larger than " .. M.MAX_FILE_BYTES .. " bytes") end
  local doc, jerr = json.decode(text)
  if doc == nil then return fail("not valid JSON (" .. tostring(jerr) .. ")") end
  local h, herr, hcode = read_header(doc, opts)
  if not h then return nil, herr, hcode end
  local spec, counts, tcode = convert_trees(h)
  if not spec then return nil, counts, tcode end
  local classes, cerr, ccode
  if h.obj.task ~= "regression" then
    classes, cerr, ccode = classes_of(h, opts)
    if not classes then return nil, cerr, ccode end
  end
  local kernel, kerr = kernels.gbt.pack(spec)
  if not kernel then return errors.fail("invalid", "cannot encode the model: " .. tostring(kerr)) end
  local p, perr, pcode = make_pipeline(h, kernel, counts.rounds, classes, opts)
  if not p then return nil, perr, pcode end
  return p, { xgboost_version = h.version, objective = h.objective, trees = counts.trees, rounds = counts.rounds,
              classes = classes and #classes or 0, features = h.nf, base_score = h.base_score,
              note = "imported from xgboost " .. h.major_minor }
end

local function read_file(path)
  local f, err, errno = io.open(path, "rb")
  if not f then return errors.fail(errno == ENOENT and "not_found" or "unavailable", "cannot open " .. path .. ": " .. err) end
  local size = f:seek("end")
  if size and size > M.MAX_FILE_BYTES then
    f:close()
    return errors.fail("too_large", path .. ": larger than " .. M.MAX_FILE_BYTES .. " bytes")
  end
  f:seek("set")
  local text = f:read("*a")
  f:close()
  if not text then return errors.fail("unavailable", "cannot read " .. path) end
  return text
end

--- Reads an XGBoost JSON model file (`Booster.save_model("m.json")`) into a
-- fitted Tycho pipeline: a gbt model whose inputs are the model's feature
-- names (all float; a missing or NaN input takes the trees' default
-- direction). opts: features (names for a model saved without them, or to
-- rename its inputs), label (the label column's name for evaluate;
-- "label"), classes (K labels in XGBoost's class order; default 0..K-1),
-- name (the pipeline's). Returns the pipeline and what was read (as
-- from_json, plus sha256 and file, and for the registry: provenance and
-- params), or nil, a message and a code:
-- "invalid" for a file that is not a supported model, "not_found",
-- "too_large". reg:import(path, { name = ... }) registers it.
function M.import(path, opts)
  if type(path) ~= "string" then error("xgboost.import: expected a file path", 2) end
  opts = check_opts(opts, "xgboost.import")
  local text, err, code = read_file(path)
  if not text then return nil, err, code end
  local p, info, icode = M.from_json(text, opts)
  if not p then return nil, path .. ": " .. info, icode end
  info.sha256, info.file = pipeline.sha256(text), path
  -- What the registry keeps (reg:import): where the model came from.
  info.provenance = { source = "xgboost", sha256 = info.sha256, file = path, xgboost_version = info.xgboost_version,
                      objective = info.objective, trees = info.trees, note = info.note }
  info.params = { family = "gbt", source = "xgboost", objective = info.objective, trees = info.trees,
                  rounds = info.rounds, features = info.features, classes = info.classes ~= 0 and info.classes or nil }
  return p, info
end

return M
