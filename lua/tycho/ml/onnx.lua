--- ONNX export of a fitted pipeline: its built-in steps and its model as
-- one ONNX graph (opset 17 and ai.onnx.ml 3) that ONNX Runtime runs with
-- the answers Tycho gives.
--
--   assert(pipe:export_onnx("spam.onnx", { name = "spam", version = "1.2.0" }))
--   -- or onnx.export(pipe, path, opts); onnx.to_bytes(pipe, opts) gives the bytes
--   -- node tools/onnx/run.js spam.onnx rows.json    (ONNX Runtime's answers)
--
-- Inputs: one [N, 1] tensor per pipeline input column, named after it:
-- double for numbers (a missing value is NaN; a bool is 1 or 0), string for
-- text (a missing value is ""). Outputs: `label` (the prediction: the class
-- label, as int64 when the classes are integers, else double or string;
-- or the cluster index), and for classifiers `probabilities` ([N, K],
-- classes in order) and `probability` (Tycho's number: the second class's
-- for binary models, after post.threshold for the label; the predicted
-- class's for multiclass); `value` for regression; `distances` ([N, k])
-- for k-means. An output whose name an input has gets a trailing "_".
-- Metadata (metadata_props): tycho.name, tycho.version, tycho.sha256 (of
-- the artifact), tycho.inputs, tycho.features (the model's feature order),
-- tycho.outputs, tycho.task, tycho.family, tycho.classes, tycho.steps.
--
-- How steps and models map to operators: ml/onnx/steps.lua and
-- ml/onnx/models.lua. Everything the model sees is the double Tycho
-- computes; the tree ensembles' sums come out of ONNX-ML as float32, within
-- |margin| x 6e-8 of Tycho's (measured: below 7e-7 relative).
--
-- What ONNX cannot express is refused by name ("invalid"): a sandboxed Lua
-- step (unless opts.after_lua: the graph then starts after the last Lua
-- step, and its inputs are the columns the rest reads, as the Lua step
-- leaves them), a Lua post function, a blend. Where Tycho refuses a row
-- (a NaN into a logistic, linear or k-means model; an unknown level under
-- onehot's unknown = "error") the graph answers NaN or zeros instead.
local json = require "tycho.util.json"
local files = require "tycho.util.files"
local errors = require "tycho.util.errors"
local options = require "tycho.util.options"
local internal = require "tycho.internal"
local proto = require "tycho.ml.onnx.proto"
local graph = require "tycho.ml.onnx.graph"
local onnx_steps = require "tycho.ml.onnx.steps"
local onnx_models = require "tycho.ml.onnx.models"

local M = {}
local attr, DOUBLE, STRING = proto.attr, proto.DOUBLE, proto.STRING

M.OPSET, M.ML_OPSET = 17, 3

local OPTIONS = { name = { type = "string" }, version = { type = "any" }, after_lua = { type = "bool" } }

-- ---- outputs -----------------------------------------------------------------------

-- The classes as a constant: int64 when all are integers, double when all
-- are numbers, else text. Returns the element type and the values.
local function class_values(classes)
  local ints, nums = true, true
  for _, c in ipairs(classes) do
    if type(c) ~= "number" then ints, nums = false, false
    elseif c % 1 ~= 0 or math.abs(c) >= 2 ^ 53 then ints = false end
  end
  if ints then return proto.INT64, classes end
  if nums then return DOUBLE, classes end
  local out = {}
  for i, c in ipairs(classes) do out[i] = tostring(c) end
  return STRING, out
end

local function output_name(g, want)
  while g.used[want] do want = want .. "_" end
  return want
end

-- Declares the outputs for the model's raw scores; returns the list of
-- { name, meaning } for the metadata.
local function add_outputs(g, p, res)
  local out = {}
  local function emit(v, want, elem, dims, meaning)
    local name = output_name(g, want)
    g:output(v, name, elem, dims)
    out[#out + 1] = { name = name, meaning = meaning }
  end
  local function flat() return g:ints({ -1 }) end
  local m = p.model
  if res.kind == "value" then
    emit(g:op("Reshape", { res.scores, flat() }), "value", DOUBLE, { "N" }, "the predicted value")
  elseif res.kind == "distances" then
    emit(g:op("ArgMin", { res.scores }, { attr.i("axis", 1), attr.i("keepdims", 0) }), "label", proto.INT64, { "N" },
      "the nearest cluster's index (0-based)")
    emit(g:op("Sqrt", { res.scores }), "distances", DOUBLE, { "N", res.k },
      "Euclidean distance to every cluster centre")
  else
    local elem, values = class_values(m.classes)
    local probs, label, prob
    if res.kind == "probability" then
      local p2 = res.scores
      local threshold = p.post and p.post.threshold or 0.5
      probs = res.both or g:op("Concat", { g:op("Sub", { g:scalar(1), p2 }), p2 }, { attr.i("axis", 1) })
      local c1, c2 = g:const(elem, {}, { values[1] }, "class"), g:const(elem, {}, { values[2] }, "class")
      label = g:op("Reshape", { g:op("Where", { g:op("GreaterOrEqual", { p2, g:scalar(threshold) }), c2, c1 }), flat() })
      prob = g:op("Reshape", { p2, flat() })
    else
      probs = res.scores
      local best = g:op("ArgMax", { probs }, { attr.i("axis", 1), attr.i("keepdims", 0) })
      label = g:op("Gather", { g:const(elem, { #values }, values, "classes"), best }, { attr.i("axis", 0) })
      prob = g:op("ReduceMax", { probs }, { attr.ints("axes", { 1 }), attr.i("keepdims", 0) })
    end
    emit(label, "label", elem, { "N" }, "the predicted class")
    emit(probs, "probabilities", DOUBLE, { "N", #values }, "every class's probability, classes in tycho.classes order")
    emit(prob, "probability", DOUBLE, { "N" },
      m.task == "binary" and "the probability of the second class" or "the predicted class's probability")
  end
  return out
end

-- ---- the whole pipeline -----------------------------------------------------------

-- Where the exported graph starts: 1, or after the last Lua step when
-- opts.after_lua; or nil, message, code naming the Lua steps.
local function first_step(p, opts)
  local lua_steps, last = {}, 0
  for i, s in ipairs(p.steps) do
    if s.kind == "lua" then
      lua_steps[#lua_steps + 1] = string.format("step %d ('%s')", i, tostring(s.state and s.state.name))
      last = i
    end
  end
  if last == 0 then return 1 end
  if opts.after_lua then return last + 1 end
  return errors.fail("invalid", "onnx: " .. table.concat(lua_steps, ", ") .. " of the pipeline "
    .. (#lua_steps > 1 and "are" or "is a") .. " sandboxed Lua, which ONNX cannot express; export with "
    .. "after_lua = true to export what follows the last one (its output columns become the graph's inputs)")
end

local function check_exportable(p)
  if not p.model_inputs then return errors.fail("conflict", "onnx: the pipeline is not fitted") end
  if not onnx_models.exports(p.model.family) then
    return errors.fail("invalid", "onnx: " .. tostring(p.model.family) .. " models cannot be exported (gbt, forest, "
      .. "logistic, linear and kmeans can)")
  end
  if p.post and p.post.lua then
    return errors.fail("invalid", "onnx: the pipeline's post function is sandboxed Lua, which ONNX cannot express")
  end
  return true
end

-- Builds the graph: returns the graph, the inputs and outputs described,
-- and where it started; or nil, message, code.
local function build(p, opts)
  local ok, err, code = check_exportable(p)
  if not ok then return nil, err, code end
  local start
  start, err, code = first_step(p, opts)
  if not start then return nil, err, code end
  local g = graph.new(p.inputs)
  local env = onnx_steps.new_env(g, start > 1)
  if start == 1 then
    for _, c in ipairs(p.inputs) do env:add_input(c, (p.input_types or {})[c] == "string" and "string" or "double") end
  end
  for i = start, #p.steps do
    local s = p.steps[i]
    ok, err, code = onnx_steps.apply(env, s.kind, s.state)
    if not ok then return errors.fail(code, "step " .. i .. " (" .. s.kind .. "): " .. err) end
  end
  local m, columns = p.model, {}
  for j, c in ipairs(m.features) do
    local e = env:get(c)
    if e and e.t ~= "double" then
      return errors.fail("invalid", "onnx: column '" .. c .. "' reaches the model as text")
    end
    columns[j] = e and e.v or g:filled(0 / 0)
  end
  local x = g:op("Concat", columns, { attr.i("axis", 1) })
  local res
  res, err, code = onnx_models.scores(g, m, x, columns)
  if not res then return nil, err, code end
  return g, env.inputs, add_outputs(g, p, res), start
end

local function metadata(p, opts, inputs, outputs, start)
  local name = opts.name or p.name or "pipeline"
  local version = opts.version or p.registry_version
  local sha = p.sha256
  if not sha then
    local _, sum = p:to_bytes()
    sha = sum
  end
  local kinds = {}
  for i = start, #p.steps do kinds[#kinds + 1] = p.steps[i].kind end
  local meta = {
    { "tycho.name", name },
    { "tycho.version", version ~= nil and tostring(version) or "" },
    { "tycho.sha256", sha or "" },
    { "tycho.task", tostring(p.model.task) },
    { "tycho.family", tostring(p.model.family) },
    { "tycho.label", tostring(p.label) },
    { "tycho.inputs", json.encode(inputs) },
    { "tycho.features", json.encode(p.model.features) },
    { "tycho.outputs", json.encode(outputs) },
    { "tycho.steps", #kinds > 0 and json.encode(kinds) or "[]" },
    { "tycho.exported", start > 1 and ("the steps after step " .. (start - 1) .. " (sandboxed Lua) and the model")
                          or "the whole pipeline" },
  }
  if p.model.classes then meta[#meta + 1] = { "tycho.classes", json.encode(p.model.classes) } end
  return meta, name, version
end

--- The ONNX model bytes of a fitted pipeline, or nil, message, code. opts:
-- name and version (for the metadata; default the pipeline's name and
-- registry version), after_lua (export what follows the last Lua step).
function M.to_bytes(p, opts)
  if type(p) ~= "table" or type(p.to_bytes) ~= "function" then error("onnx: expected a pipeline", 2) end
  opts = options.check("onnx", OPTIONS, opts, 2)
  local g, inputs, outputs, start = build(p, opts)
  if not g then
    local err, code = inputs, outputs
    return nil, err, code
  end
  local meta, name, version = metadata(p, opts, inputs, outputs, start)
  local kinds = {}
  for _, s in ipairs(p.steps) do kinds[#kinds + 1] = s.kind end
  local doc = string.format("Tycho pipeline %s%s: [%s] -> %s %s", name, version and (" version " .. version) or "",
    table.concat(kinds, ", "), p.model.family, tostring(p.model.task))
  local v = tonumber(version)
  return proto.model {
    graph = g:encode(name, doc), opsets = { [""] = M.OPSET, [graph.ML] = M.ML_OPSET },
    producer = "tycho", producer_version = tostring(internal.version), doc = doc,
    model_version = v and v % 1 == 0 and v >= 0 and v or nil, metadata = meta,
  }
end

--- Writes the pipeline as an ONNX file (atomically): true, or nil,
-- message, code ("invalid" naming what cannot be expressed, such as a Lua
-- step; "conflict" for an unfitted pipeline). opts as for to_bytes.
function M.export(p, path, opts)
  if type(path) ~= "string" then error("onnx.export: path must be a string", 2) end
  local bytes, err, code = M.to_bytes(p, options.check("onnx.export", OPTIONS, opts, 2))
  if not bytes then return nil, err, code end
  return files.write_atomic(path, bytes)
end

return M
