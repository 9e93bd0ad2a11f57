--- Pipelines: inputs (feature refs + request fields) -> steps -> model ->
-- post-processing, fitted together, saved as one artifact.
--
--   local pipe = tycho.pipeline {
--     features = { "email_stats:*" }, request = { amount = "float" },
--     steps = { step.fill_missing { "mean" }, step.standardize(), step.onehot { "country" },
--               step.lua(function(r) r.big = r.amount > 100 and 1 or 0 return r end) },
--     model = tycho.models.gbt { rounds = 100 },
--     post = { threshold = 0.7 },
--   }
--   pipe:fit(train, { label = "label" })
--   pipe:predict(test)                 -- frame: prediction, probability
--   pipe:predict({ amount = 3, ... })  -- one row table: same numbers
--
-- Every step transforms one row at a time, in fitting, batch and online
-- prediction alike, so batch and single-row answers are identical.
local frame = require "tycho.core.frame"
local models = require "tycho.ml.models"
local metrics = require "tycho.ml.metrics"
local evaluation = require "tycho.ml.evaluation"
local json = require "tycho.util.json"
local files = require "tycho.util.files"
local errors = require "tycho.util.errors"
local sandbox = require "tycho.util.sandbox"
local internal = require "tycho.internal"
local base = require "tycho.core.base"
local step_kinds = require "tycho.ml.steps"
local feature_columns = require "tycho.ml.columns"
local onnx = require "tycho.ml.onnx"

local M = {}
local kinds, step = step_kinds.kinds, step_kinds.step
M.step = step

local ARTIFACT_KIND, ARTIFACT_VERSION = 200, 1

-- ---- the pipeline ----------------------------------------------------------------------

local Pipeline = {}
Pipeline.__index = Pipeline

--- A pipeline: { features = refs, request = {name = type}, steps = {...},
-- model = a tycho.models model, post = { threshold = p } | { top_k = k } |
-- function(out, row) -> out }.
function M.new(def)
  if type(def) ~= "table" or not models.is_model(def.model) then
    error("pipeline: needs model = a tycho.models model", 2)
  end
  local post = def.post
  if type(post) == "function" then
    local src, err = sandbox.source_of(post)
    if not src then error("pipeline post: " .. err, 2) end
    post = { lua = src }
  end
  return setmetatable({ features = def.features or {}, request = def.request or {}, steps = def.steps or {},
                        model = def.model, post = post, name = def.name }, Pipeline)
end
setmetatable(M, { __call = function(_, def) return M.new(def) end })

-- The input columns: stored feature names of the refs plus request fields.
local function input_columns(p, f)
  local cols = {}
  for _, ref in ipairs(p.features) do
    local fname = ref:match(":(.+)$") or ref
    if fname == "*" then
      -- view:* means the view's features (and on-demand ones), from the catalog.
      local fs = require("tycho.features").open()
      local view = fs and fs:view(ref:match("^(.-):"))
      if not view then error("pipeline: cannot resolve '" .. ref .. "': unknown feature view", 0) end
      for _, feat in ipairs(view.features) do cols[#cols + 1] = feat.name end
      local extra = {}
      for name in pairs(view.transforms or {}) do extra[#extra + 1] = name end
      table.sort(extra)
      for _, name in ipairs(extra) do cols[#cols + 1] = name end
    else
      cols[#cols + 1] = fname
    end
  end
  local names = {}
  for k in pairs(p.request) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do cols[#cols + 1] = k end
  if #cols == 0 then
    local left_out
    cols, left_out = feature_columns.choose(f, p.label, nil, "keep")
    p.left_out = left_out
  end
  local seen, out = {}, {}
  for _, c in ipairs(cols) do
    if not seen[c] and c ~= p.label then seen[c] = true out[#out + 1] = c end
  end
  return out
end

local function copy_row(src, columns)
  local r = {}
  for _, c in ipairs(columns) do r[c] = src[c] end
  return r
end

local function run_steps(p, row)
  for _, s in ipairs(p.steps) do row = kinds[s.kind].apply(s, row) end
  return row
end

local REFERENCE_SAMPLE = 500

-- Histogram reference for drift: quantile edges and counts per column.
local function reference_of(values)
  local vals = {}
  for _, v in ipairs(values) do if type(v) == "number" and v == v then vals[#vals + 1] = v end end
  if #vals == 0 then return nil end
  table.sort(vals)
  local edges = {}
  for q = 1, 9 do edges[q] = frame.quantile(vals, q / 10) end
  local counts = {}
  for b = 1, 10 do counts[b] = 0 end
  for _, v in ipairs(vals) do
    local b = 1
    while b <= 9 and v > edges[b] do b = b + 1 end
    counts[b] = counts[b] + 1
  end
  -- Evenly spaced order statistics: the reference sample that the
  -- Kolmogorov-Smirnov drift test compares live inputs with.
  local sample, m = {}, math.min(#vals, REFERENCE_SAMPLE)
  for i = 1, m do sample[i] = vals[math.floor((i - 0.5) * #vals / m) + 1] end
  return { edges = edges, counts = counts, n = #vals, min = vals[1], max = vals[#vals], sample = sample,
           quantiles = { frame.quantile(vals, 0.01), frame.quantile(vals, 0.5), frame.quantile(vals, 0.99) } }
end

-- Fits the steps on f's rows, each on the rows as the steps before it
-- leave them. Returns the model's training frame (inputs after the steps,
-- then the label) and its input columns.
local function fit_steps(self, f, label)
  local rows = {}
  for i, r in f:rows() do rows[i] = copy_row(r, self.inputs) end
  local columns = self.inputs
  for _, s in ipairs(self.steps) do
    local k = kinds[s.kind]
    if not k then return nil, nil, "pipeline: unknown step kind '" .. tostring(s.kind) .. "'" end
    k.fit(s, rows, columns)
    for i, r in ipairs(rows) do rows[i] = k.apply(s, r) end
    local seen = {}
    columns = {}
    for _, r in ipairs(rows) do
      for c in pairs(r) do
        if not seen[c] then seen[c] = true columns[#columns + 1] = c end
      end
    end
    table.sort(columns)
  end
  local labels = f:col(label):to_table()
  for i, r in ipairs(rows) do r[label] = labels[i] end
  local order = {}
  for _, c in ipairs(columns) do order[#order + 1] = c end
  order[#order + 1] = label
  return frame.from_rows(rows, { order = order }), columns
end

--- The frame a model search sees for these steps: f's inputs through the
-- steps fitted on f, with the label (AutoML tunes on it, so features the
-- steps add take part in the search).
function M.transform_for_search(def, f, label)
  local p = { features = def.features or {}, request = def.request or {}, steps = def.steps or {}, label = label }
  p.inputs = input_columns(p, f)
  local train, _, err = fit_steps(p, f, label)
  if not train then error(err, 2) end
  return train
end

-- The reference of the model's output on x (a frame of model inputs), as
-- serving reports it: the positive class's probability, the predicted
-- class's probability, or the predicted value.
local function output_reference(self, x)
  local raw, k = self.model:predict_raw(x)
  local outs = {}
  for i = 1, x:nrows() do
    local best = raw[(i - 1) * k]
    if self.model.task == "multiclass" then
      for c = 1, k - 1 do best = math.max(best, raw[(i - 1) * k + c]) end
    end
    outs[i] = best
  end
  return reference_of(outs)
end

--- Fits steps and model on frame f (training rows only). opts: label,
-- valid (frame), quiet. Returns self, or nil, a message (a failing user
-- step is named in it) and a code.
function Pipeline:fit(f, opts)
  if not frame.is_frame(f) then error("pipeline:fit: expected a frame", 2) end
  local ok, res, err, code = pcall(self._fit, self, f, opts)
  if not ok then return errors.fail("invalid", tostring(res)) end
  return res, err, code
end

function Pipeline:_fit(f, opts)
  opts = opts or {}
  if not frame.is_frame(f) then error("pipeline:fit: expected a frame", 2) end
  local label = opts.label or self.label
  if not label or not f:has(label) then
    return errors.fail("invalid", "pipeline:fit: the frame has no label column '" .. tostring(label) .. "'")
  end
  self.label, self.left_out = label, nil
  self.inputs = input_columns(self, f)
  for _, c in ipairs(self.inputs) do
    if not f:has(c) then return errors.fail("invalid", "pipeline:fit: the frame has no input column '" .. c .. "'") end
  end
  self.input_types = {}
  for _, c in ipairs(self.inputs) do self.input_types[c] = f:col(c).type end
  local note = not opts.quiet and feature_columns.describe("pipeline", self.inputs, self.left_out or {})
  if note then io.stderr:write(note, "\n") end
  local started = require("luv").hrtime()
  local train, model_columns, step_err = fit_steps(self, f, label)
  if not train then return errors.fail("invalid", step_err) end
  self.model_inputs = model_columns
  local valid
  if opts.valid then valid = self:_transform_frame(opts.valid, true) end
  local ok, err, code = self.model:fit(train, { label = label, features = model_columns, valid = valid,
    quiet = opts.quiet })
  if not ok then return nil, err, code end
  -- Training reference for drift monitoring: inputs and output.
  self.reference = { inputs = {}, output = nil }
  for _, c in ipairs(self.inputs) do
    local ref = reference_of(f:col(c):to_table())
    if ref then self.reference.inputs[c] = ref end
  end
  self.reference.output = output_reference(self, train)
  self.fitted = { rows = f:nrows(), seconds = tonumber(require("luv").hrtime() - started) / 1e9,
                  data = f:fingerprint() }
  require("tycho.registry.runs").record { kind = "fit", model = self.name or self.model.family, params = self.model.opts,
    metrics = self.model.info, seconds = self.fitted.seconds, data = self.fitted.data }
  return self
end

-- Inputs of a frame through the steps, as a frame of the model's inputs
-- (with the label when keep_label).
function Pipeline:_transform_frame(f, keep_label)
  local rows = {}
  for i, r in f:rows() do
    local row = run_steps(self, copy_row(r, self.inputs))
    if keep_label then row[self.label] = r[self.label] end
    rows[i] = row
  end
  local order = {}
  for _, c in ipairs(self.model_inputs) do order[#order + 1] = c end
  if keep_label and f:has(self.label) then order[#order + 1] = self.label end
  local types = {}
  for _, c in ipairs(self.model_inputs) do types[c] = "float" end
  return frame.from_rows(rows, { order = order, types = types })
end

local function apply_post(p, out, row)
  local post = p.post
  if not post then return out end
  if post.threshold and p.model.task == "binary" then
    out.prediction = p.model.classes[out.probability >= post.threshold and 2 or 1]
  end
  if post.lua then
    p.post_fn = p.post_fn or assert(sandbox.compile(post.lua, "post"))
    local ok, res = sandbox.call("post", p.post_fn, nil, out, row)
    sandbox.scrub(out, row)
    if not ok then error(res, 0) end
    local plain, why = sandbox.check_value(res)
    if not plain then error("post: returned " .. why .. "; an output holds plain values", 0) end
    out = res
  end
  return out
end

--- Predictions. A frame gives a frame (prediction and, for classifiers,
-- probability); a row table gives a table with the same fields. Errors in
-- user steps come back as nil, message naming the step, "invalid".
function Pipeline:predict(input)
  if not self.model_inputs then error("pipeline:predict: fit or load the pipeline first", 2) end
  local f = input
  if not frame.is_frame(input) then
    if type(input) ~= "table" then error("pipeline:predict: expected a frame or a row table", 2) end
    -- The online path: steps on the row table, the model on a one-row
    -- array; the same numbers as the batch path, without building frames.
    local ok, row = pcall(run_steps, self, copy_row(input, self.inputs))
    if not ok then return errors.fail("invalid", tostring(row)) end
    local raw, k, code = self.model:predict_values(row)
    if not raw then return nil, k, code end
    local pok, res = pcall(apply_post, self, models.format_one(self.model, raw, k), input)
    if not pok then return errors.fail("invalid", tostring(res)) end
    return res
  end
  for _, c in ipairs(self.inputs) do
    if not f:has(c) then return errors.fail("invalid", "missing input '" .. c .. "'") end
  end
  local ok, x = pcall(self._transform_frame, self, f, false)
  if not ok then return errors.fail("invalid", tostring(x)) end
  local pred, err, code = self.model:predict(x)
  if not pred then return nil, err, code end
  local n = pred:nrows()
  local outs, has_prob = {}, pred:has("probability")
  for i = 1, n do
    local out = { prediction = pred:col("prediction"):get(i) }
    if has_prob then out.probability = pred:col("probability"):get(i) end
    local pok, res = pcall(apply_post, self, out, f:row(i))
    if not pok then return errors.fail("invalid", tostring(res)) end
    outs[i] = res
  end
  return frame.from_rows(outs, { order = has_prob and { "prediction", "probability" } or { "prediction" } })
end

--- Replaces the output's drift reference with the outputs on held-out
-- rows f. The default reference comes from the training rows, where a
-- model that fits them closely (forests, deep trees) is more confident
-- than it will be on new data, so live outputs would read as drift.
function Pipeline:set_output_reference(f)
  self.reference = self.reference or { inputs = {} }
  self.reference.output = output_reference(self, self:_transform_frame(f, false))
  return self
end

--- Metrics for the task on a labelled frame (via the model's evaluate).
-- The pipeline keeps the compact evaluation of its last holdout
-- (pipe.evaluation: curves, confusion matrix or residuals, importance; see
-- tycho.ml.evaluation), which reg:register stores with the version.
function Pipeline:evaluate(f)
  local x = self:_transform_frame(f, true)
  local res = metrics.evaluate(self.model, x)
  local data = f:fingerprint()
  self.evaluation = evaluation.of(self.model, x)
  if self.evaluation then self.evaluation.holdout = { rows = data.rows, content_hash = data.content_hash } end
  require("tycho.registry.runs").record { kind = "evaluate", model = self.name or self.model.family, metrics = res,
                                 data = data }
  return res
end

function Pipeline:__tostring()
  local kinds_list = {}
  for i, s in ipairs(self.steps) do kinds_list[i] = s.kind end
  return string.format("<pipeline %s: %d inputs -> [%s] -> %s>", self.name or "", #(self.inputs or {}),
    table.concat(kinds_list, ", "), tostring(self.model))
end

-- ---- artifacts --------------------------------------------------------------------------

--- The SHA-256 of string s as 64 lowercase hex digits, the form artifacts
-- and the registry record checksums in.
local function sha256_hex(s)
  return (base.hash.sha256(s):gsub(".", function(c) return string.format("%02x", c:byte()) end))
end
M.sha256 = sha256_hex

--- The artifact as bytes: header JSON (format, inputs, steps and their
-- state, user functions as source, post, training reference), the model's
-- bytes, and the sha256 of both; or nil, message, code.
function Pipeline:to_bytes()
  if not self.model_inputs then return errors.fail("conflict", "the pipeline is not fitted") end
  local model_bytes, merr, mcode = self.model:to_bytes()
  if not model_bytes then return nil, merr, mcode end
  local steps = {}
  for i, s in ipairs(self.steps) do steps[i] = { kind = s.kind, state = s.state } end
  if self.artifact then return self.artifact, self.sha256 end  -- loaded: the bytes it came from
  local header = json.encode_canonical({ format = ARTIFACT_VERSION, tycho = internal.version, name = self.name,
    features = self.features, request = self.request, inputs = self.inputs, input_types = self.input_types,
    model_inputs = self.model_inputs, label = self.label, steps = steps, post = self.post,
    reference = self.reference, task = self.model.task, classes = self.model.classes,
    rows = self.fitted and self.fitted.rows })
  local sum = sha256_hex(header .. model_bytes)
  local bytes, msg = base.blob.pack(ARTIFACT_KIND, ARTIFACT_VERSION, { header, model_bytes, sum })
  if not bytes then return errors.fail("unavailable", msg) end
  return bytes, sum
end

--- A pipeline from artifact bytes, or nil, why it was refused, "invalid".
function M.from_bytes(bytes)
  local parts, msg = base.blob.unpack(bytes, ARTIFACT_KIND, ARTIFACT_VERSION)
  if not parts then return errors.fail("invalid", "artifact refused: " .. msg) end
  if #parts ~= 3 then return errors.fail("invalid", "artifact refused: " .. #parts .. " parts where 3 belong") end
  local header, model_bytes, sum = parts[1], parts[2], parts[3]
  if sha256_hex(header .. model_bytes) ~= sum then
    return errors.fail("invalid", "artifact refused: sha256 mismatch (tampered)")
  end
  local h = json.decode(header)
  if type(h) ~= "table" or h.format ~= ARTIFACT_VERSION then return errors.fail("invalid", "artifact refused: bad header") end
  local model, merr, mcode = models.from_bytes(model_bytes)
  if not model then return nil, "artifact refused: " .. merr, mcode end
  local steps = {}
  for i, s in ipairs(h.steps) do
    if not kinds[s.kind] then
      return errors.fail("invalid", "artifact refused: unknown step kind '" .. tostring(s.kind) .. "'")
    end
    steps[i] = { kind = s.kind, state = s.state, opts = {} }
    if s.kind == "lua" then
      local fn, cerr = sandbox.compile(s.state.source, s.state.name)
      if not fn then return errors.fail("invalid", "artifact refused: step " .. tostring(s.state.name) .. ": " .. cerr) end
      steps[i].fn = fn
    end
  end
  local p = setmetatable({ features = h.features, request = h.request, steps = steps, model = model,
                           post = h.post ~= json.null and h.post or nil, name = h.name ~= json.null and h.name or nil,
                           inputs = h.inputs, input_types = h.input_types, model_inputs = h.model_inputs,
                           label = h.label, reference = h.reference, fitted = { rows = h.rows } }, Pipeline)
  p.sha256, p.artifact = sum, bytes
  return p
end

--- Writes the artifact file (atomically); true or nil, message, code.
function Pipeline:save(path)
  local bytes, err, code = self:to_bytes()
  if not bytes then return nil, err, code end
  return files.write_atomic(path, bytes)
end

--- Writes the fitted pipeline (its built-in steps and model) as an ONNX
-- file that ONNX Runtime answers like predict: true, or nil, message, code
-- (a sandboxed Lua step is refused by name). opts: name, version (for the
-- metadata), after_lua (export only what follows the last Lua step). See
-- tycho.ml.onnx.
function Pipeline:export_onnx(path, opts)
  return onnx.export(self, path, opts)
end

--- Loads an artifact file: pipeline or nil, message, code.
function M.load(path)
  local bytes, ferr, fcode = files.read(path)
  if not bytes then return nil, ferr, fcode end
  local p, err, code = M.from_bytes(bytes)
  if not p then return nil, path .. ": " .. err, code end
  return p
end

--- Whether v is a pipeline (fitted or not).
function M.is_pipeline(v) return getmetatable(v) == Pipeline end

return M
