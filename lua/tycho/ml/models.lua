--- The model zoo over core/kernels: gradient-boosted trees, random forests,
-- logistic and linear regression, k-means. One shape for all:
--
--   local m = models.gbt { rounds = 100, depth = 6, eta = 0.3 }
--   assert(m:fit(train, { label = "label", valid = valid }))   -- self or nil, err
--   local pred = m:predict(test)      -- frame: prediction (+ probability)
--   m:save("spam.model");  local m2 = assert(models.load("spam.model"))
--   m:importance()                    -- { {feature=, gain=}, ... } best first
--
-- Features default to every non-label column (string columns must be
-- encoded first). Class labels may be any values: they are mapped to
-- 0..K-1 in sorted order and predictions come back as the original values.
-- Prediction picks features by name, so extra columns are ignored and a
-- missing one is an error naming it.
local ffi = require "ffi"
local base = require "tycho.core.base"
local frame = require "tycho.core.frame"
local json = require "tycho.util.json"
local pretty = require "tycho.util.pretty"
local files = require "tycho.util.files"
local errors = require "tycho.util.errors"
local options = require "tycho.util.options"
local families = require "tycho.ml.families"
local columns = require "tycho.ml.columns"
local make_blend = require "tycho.ml.blend"

local M = {}

local err = base.err
local MODEL_KIND, MODEL_VERSION = 100, 1  -- tz_blob kind of a Tycho model file

local Model = {}
Model.__index = Model

-- ---- data ------------------------------------------------------------------

-- A tz_data over frame columns (no copy for float64 columns); `anchor` keeps
-- every array alive as long as the data is used.
local function make_data(f, features, y)
  local n, p = f:nrows(), #features
  local cols = ffi.new("const double*[?]", math.max(p, 1))
  local anchor = { f, cols, y }
  for j, name in ipairs(features) do
    if not f:has(name) then return errors.fail("invalid", "the frame has no feature column '" .. name .. "'") end
    local col = f:col(name)
    if col.code == 3 then
      return errors.fail("invalid", "feature '" .. name .. "' is a string column: encode it first (e.g. a one-hot step)")
    end
    cols[j - 1] = col:f64()
    anchor[#anchor + 1] = col
  end
  local d = ffi.new("tz_data", { n_rows = n, n_cols = p, cols = cols, y = y, weight = nil })
  anchor[#anchor + 1] = d
  return d, anchor
end

-- Encodes the label column: classes (sorted distinct values) and codes.
local function encode_labels(col, classes)
  local n = col.n
  local y = ffi.new("double[?]", math.max(n, 1))
  local index = {}
  if not classes then
    local seen = {}
    classes = {}
    for i = 1, n do
      local v = col:get(i)
      if v == nil then return errors.fail("invalid", "label '" .. col.name .. "' is null at row " .. i) end
      if not seen[v] then seen[v] = true classes[#classes + 1] = v end
    end
    table.sort(classes, function(a, b)
      if type(a) == type(b) then return a < b end
      return tostring(a) < tostring(b)
    end)
  end
  for k, v in ipairs(classes) do index[v] = k - 1 end
  for i = 1, n do
    local code = index[col:get(i)]
    if code == nil then
      return errors.fail("invalid", "label value " .. tostring(col:get(i)) .. " at row " .. i .. " was not seen in training")
    end
    y[i - 1] = code
  end
  return y, classes
end

local function numeric_labels(col)
  local n = col.n
  local y = ffi.new("double[?]", math.max(n, 1))
  for i = 1, n do
    local v = col:get(i)
    if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
      return errors.fail("invalid",
        "target '" .. col.name .. "' must be a finite number at row " .. i .. ", got " .. tostring(v))
    end
    y[i - 1] = v
  end
  return y
end

-- A label is categorical when it is text or bool, or integral with few
-- distinct values (a price in whole dollars is still a regression target).
local MAX_INFERRED_CLASSES = 256
local function is_categorical(col)
  if col.code == 2 or col.code == 3 then return true end
  local seen, distinct = {}, 0
  for i = 1, col.n do
    local v = col:get(i)
    if v ~= nil then
      if v % 1 ~= 0 then return false end
      if not seen[v] then
        seen[v], distinct = true, distinct + 1
        if distinct > MAX_INFERRED_CLASSES then return false end
      end
    end
  end
  return true
end

-- A model of a family. Options are checked (names, types, ranges) and kept
-- under their canonical names; a model read from bytes takes the options
-- it was saved with as they are (trusted), so a model saved by an older
-- release always loads.
local function new_model(family, opts, trusted)
  local fam = families[family]
  if not trusted then opts = options.check("models." .. family, fam.options, opts, 3) end
  return setmetatable({ family = family, opts = opts or {}, fam = fam }, Model)
end

--- models.gbt{objective = "regression"|"binary"|"multiclass" (inferred from
-- the label when absent), rounds, eta, depth, max_leaves, min_child_weight,
-- lambda, gamma, subsample, colsample, max_bins, seed, early_stopping_rounds}.
function M.gbt(opts) return new_model("gbt", opts) end
--- models.forest{task = "classification"|"regression", trees, depth,
-- min_samples_leaf, max_features, bootstrap, max_bins, seed}.
function M.forest(opts) return new_model("forest", opts) end
--- models.logistic{C = 1, max_iter = 100, tol, fit_intercept}.
function M.logistic(opts) return new_model("logistic", opts) end
--- models.linear{alpha = 0 (ridge when > 0), fit_intercept}.
function M.linear(opts) return new_model("linear", opts) end
--- models.kmeans{k = 8, n_init = 10, max_iter = 300, tol, seed}.
function M.kmeans(opts) return new_model("kmeans", opts) end

-- Kernel messages count columns and rows from 0: name the feature and give
-- the 1-based row the frame would show.
local function kernel_error(m, msg)
  msg = msg or ffi.string(err.msg)
  msg = msg:gsub("column (%d+)", function(j)
    local name = m.features[tonumber(j) + 1]
    return name and ("column '" .. name .. "'") or ("column " .. j)
  end)
  return (msg:gsub("row (%d+)", function(i) return "row " .. (tonumber(i) + 1) end))
end

-- ---- fitting -------------------------------------------------------------------

local function decide_task(m, col)
  local want = m.opts.objective or m.opts.task
  -- Classification always encodes labels; the class count then decides
  -- between binary and multiclass.
  local map = { regression = "regression", squared = "regression", binary = "classify", logistic = "classify",
                multiclass = "classify", softmax = "classify", classification = "classify" }
  local t = want and map[want]
  if want and not t then error("models." .. m.family .. ": unknown objective '" .. tostring(want) .. "'", 4) end
  if m.family == "linear" then return "regression" end
  if m.family == "logistic" then t = "classify" end
  if not t then t = is_categorical(col) and "classify" or "regression" end
  return t
end

--- Trains on frame f. opts: label (required except k-means), features (list;
-- default every other column except the frame's entity keys and event
-- time, which are left out with a note; a text column is refused by name),
-- valid (frame, for early stopping), quiet. Returns self, or nil, a
-- message naming what is wrong, and "invalid".
function Model:fit(f, opts)
  if not frame.is_frame(f) then error("fit: expected a frame", 2) end
  opts = opts or {}
  local label = opts.label
  local fam = self.fam
  if self.family ~= "kmeans" and not label then error("fit: opts.label names the label column", 2) end
  if label and not f:has(label) then return errors.fail("invalid", "the frame has no label column '" .. label .. "'") end
  if f:nrows() == 0 then return errors.fail("invalid", "cannot fit on an empty frame") end
  local features, left_out, code = columns.choose(f, label, opts.features, "refuse")
  if not features then return nil, left_out, code end
  if #features == 0 then return errors.fail("invalid", "no feature columns to train on") end
  self.features, self.left_out = features, left_out
  local note = not opts.quiet and columns.describe("models." .. self.family, features, left_out)
  if note then io.stderr:write(note, "\n") end
  self.label, self.quiet = label, opts.quiet
  local y, n_classes, classes
  if self.family == "kmeans" then
    self.task = "clustering"
  else
    local col = f:col(label)
    local t = decide_task(self, col)
    if t == "classify" then
      y, classes, code = encode_labels(col)
      if not y then return nil, classes, code end
      if #classes < 2 then
        return errors.fail("invalid", "label '" .. label .. "' has a single class (" .. tostring(classes[1]) .. ")")
      end
      self.classes = classes
      n_classes = #classes
      t = n_classes == 2 and "binary" or "multiclass"
    else
      local msg
      y, msg, code = numeric_labels(col)
      if not y then return nil, msg, code end
    end
    if not fam.tasks[t] then return errors.fail("invalid", "models." .. self.family .. " cannot do " .. t) end
    self.task = t
  end
  local train, anchor, dcode = make_data(f, self.features, y)
  if not train then return nil, anchor, dcode end
  local valid, vanchor
  if opts.valid then
    local vy = self.classes and encode_labels(opts.valid:col(label), self.classes)
      or numeric_labels(opts.valid:col(label))
    if not vy then return errors.fail("invalid", "validation frame: bad labels") end
    valid, vanchor = make_data(opts.valid, self.features, vy)
    if not valid then return errors.fail("invalid", "validation frame: " .. vanchor) end
  end
  local t0 = require("luv").hrtime()
  local handle, info = fam.fit(self, train, valid, n_classes)
  if not handle then return errors.fail("invalid", kernel_error(self, info)) end
  self.handle, self.info = handle, info
  self.trained = { rows = f:nrows(), seconds = tonumber(require("luv").hrtime() - t0) / 1e9, at = os.time() }
  local _ = anchor and vanchor  -- both stay referenced until training is over
  return self
end

-- ---- predicting ----------------------------------------------------------------

local function check_trained(m)
  if not m.handle then error(m.family .. " model is not trained: call fit first", 3) end
end

--- Raw outputs for frame f: a double array of rows x k values (row-major),
-- and k. Values: regression value, P(class 2nd) for binary, class
-- probabilities for multiclass, cluster index for k-means.
function Model:predict_raw(f)
  check_trained(self)
  local x, anchor, code = make_data(f, self.features, nil)
  if not x then return nil, anchor, code end
  local k, n = self.fam.n_outputs(self.handle), f:nrows()
  local out = ffi.new("double[?]", math.max(n * k, 1))
  if self.fam.predict(self.handle, x, out, err) ~= 0 then return errors.fail("invalid", kernel_error(self)) end
  if self.task == "binary" and k == 2 then
    -- Families that give both class probabilities: keep P(second class).
    local p1 = ffi.new("double[?]", math.max(n, 1))
    for i = 0, n - 1 do p1[i] = out[2 * i + 1] end
    return p1, 1
  end
  return out, k
end

--- Raw outputs for one row given as a table of feature values (the serving
-- hot path: no frame is built). Returns the reused output array and k.
function Model:predict_values(row)
  local x = self:input_row()
  for j, name in ipairs(self.features) do
    local v = row[name]
    if v == nil then v = 0 / 0
    elseif type(v) ~= "number" then
      return errors.fail("invalid", "feature '" .. name .. "' is not a number: " .. tostring(v))
    end
    x[j - 1] = v
  end
  return self:predict_input_row()
end

--- The one-row input buffer (double[#features], in feature order) that
-- predict_input_row reads: the serving fast path writes it directly.
function Model:input_row()
  check_trained(self)
  if not self._row then
    local p = #self.features
    self._row = ffi.new("double[?]", p)
    self._cols = ffi.new("const double*[?]", p)
    for j = 0, p - 1 do self._cols[j] = self._row + j end
    self._data = ffi.new("tz_data", { n_rows = 1, n_cols = p, cols = self._cols })
    self._k = self.fam.n_outputs(self.handle)
    self._out = ffi.new("double[?]", self._k)
    self._p1 = ffi.new("double[1]")
  end
  return self._row
end

--- Raw outputs for the row in input_row(), as predict_values gives them.
function Model:predict_input_row()
  if self.fam.predict(self.handle, self._data, self._out, err) ~= 0 then
    return errors.fail("invalid", kernel_error(self))
  end
  if self.task == "binary" and self._k == 2 then
    self._p1[0] = self._out[1]
    return self._p1, 1
  end
  return self._out, self._k
end

--- Raw outputs for n rows given as columns in feature order (cols: a
-- `const double*[?]`, column j at cols[j]), in one kernel call: as
-- predict_raw gives them for a frame, in arrays this model keeps and
-- reuses (valid until the next call).
function Model:predict_columns(cols, n)
  check_trained(self)
  local k = self.fam.n_outputs(self.handle)
  if n > (self._batch_cap or 0) then
    self._batch_out = ffi.new("double[?]", n * k)
    self._batch_p1 = ffi.new("double[?]", n)
    self._batch_cap = n
  end
  local data = self._batch_data or ffi.new("tz_data")
  self._batch_data = data
  data.n_rows, data.n_cols, data.cols = n, #self.features, cols
  local out = self._batch_out
  if self.fam.predict(self.handle, data, out, err) ~= 0 then
    return errors.fail("invalid", kernel_error(self))
  end
  if self.task == "binary" and k == 2 then
    local p1 = self._batch_p1
    for i = 0, n - 1 do p1[i] = out[2 * i + 1] end
    return p1, 1
  end
  return out, k
end

-- One prediction table from raw outputs, as predict() gives per row.
function M.format_one(model, raw, k)
  local prediction, probability = M.answer_of(model, raw, 0, k)
  return { prediction = prediction, probability = probability }
end

--- format_one's two values for the row whose k outputs start at raw[at],
-- without the table (prediction, probability or nil), for loops over many
-- rows; a binary model's label at `threshold` (0.5 by default).
function M.answer_of(model, raw, at, k, threshold)
  if model.task == "binary" then
    local p = raw[at]
    return model.classes[p >= (threshold or 0.5) and 2 or 1], p
  elseif model.task == "multiclass" then
    local best, bp = 1, raw[at]
    for c = 2, k do
      if raw[at + c - 1] > bp then best, bp = c, raw[at + c - 1] end
    end
    return model.classes[best], bp
  end
  return raw[at]
end

--- Predictions as a frame: `prediction` (class label, value or cluster) and,
-- for classifiers, `probability` (of the predicted class; of the positive
-- class for binary models, see opts.positive) — or nil, message, "invalid".
function Model:predict(f)
  local out, k, code = self:predict_raw(f)
  if not out then return nil, k, code end
  local n = f:nrows()
  local pred, prob = {}, nil
  if self.task == "binary" then
    prob = {}
    for i = 1, n do
      local p = out[i - 1]
      prob[i] = p
      pred[i] = self.classes[p >= 0.5 and 2 or 1]
    end
  elseif self.task == "multiclass" then
    prob = {}
    for i = 1, n do
      local best, bp = 1, out[(i - 1) * k]
      for c = 2, k do
        local v = out[(i - 1) * k + c - 1]
        if v > bp then best, bp = c, v end
      end
      pred[i], prob[i] = self.classes[best], bp
    end
  else
    for i = 1, n do pred[i] = out[i - 1] end
  end
  local cols, order = { prediction = pred }, { "prediction" }
  if prob then cols.probability, order[2] = prob, "probability" end
  return frame.new(cols, { order = order, n = n })
end

--- Class probabilities as a frame with one column per class (p_<class>).
function Model:predict_proba(f)
  if self.task ~= "binary" and self.task ~= "multiclass" then
    error("predict_proba: " .. tostring(self.task) .. " models give no probabilities", 2)
  end
  local out, k, code = self:predict_raw(f)
  if not out then return nil, k, code end
  local n, cols, order = f:nrows(), {}, {}
  for c, cls in ipairs(self.classes) do
    local name = "p_" .. tostring(cls)
    order[c], cols[name] = name, {}
    for i = 1, n do
      if self.task == "binary" then
        cols[name][i] = c == 2 and out[i - 1] or 1 - out[i - 1]
      else
        cols[name][i] = out[(i - 1) * k + c - 1]
      end
    end
  end
  return frame.new(cols, { order = order, n = n })
end

--- Feature importance (total split gain), best first: {{feature=, gain=}}.
function Model:importance()
  check_trained(self)
  if not self.fam.importance then return errors.fail("invalid", self.family .. " models have no split importance") end
  local p = #self.features
  local gains = ffi.new("double[?]", p)
  self.fam.importance(self.handle, gains)
  local out = {}
  for j = 1, p do out[j] = { feature = self.features[j], gain = gains[j - 1] } end
  table.sort(out, function(a, b) return a.gain > b.gain end)
  return pretty.as_table(out, { "feature", "gain" })
end

function Model:__tostring()
  if not self.handle then return string.format("<%s model, untrained>", self.family) end
  return string.format("<%s %s model: %d features%s>", self.family, self.task, #self.features,
    self.classes and (", " .. #self.classes .. " classes") or "")
end

-- ---- files -------------------------------------------------------------------------

--- The model as bytes: a Tycho file (versioned, checksummed) holding the
-- metadata and the kernel's own versioned, checksummed model.
function Model:to_bytes()
  check_trained(self)
  local kernel, msg = self.fam.save(self.handle)
  if not kernel then return errors.fail("unavailable", msg) end
  -- Only what the training determined: the same data and seed give the
  -- same bytes (timings belong to the run record, not the model).
  local meta = json.encode_canonical({ family = self.family, task = self.task, features = self.features, label = self.label,
                             classes = self.classes, opts = self.opts, info = self.info,
                             rows = self.trained and self.trained.rows })
  local bytes, perr = base.blob.pack(MODEL_KIND, MODEL_VERSION, { meta, kernel })
  if not bytes then return errors.fail("unavailable", perr) end
  return bytes
end

--- Writes the model file (atomically); true or nil, message, code.
function Model:save(path)
  local bytes, msg, code = self:to_bytes()
  if not bytes then return nil, msg, code end
  return files.write_atomic(path, bytes)
end

local blend

--- A model from bytes, or nil, why (damaged, truncated, foreign or newer)
-- and "invalid".
function M.from_bytes(bytes)
  local parts, msg = base.blob.unpack(bytes, MODEL_KIND, MODEL_VERSION)
  if not parts or #parts ~= 2 then return errors.fail("invalid", "not a usable Tycho model: " .. (msg or "bad layout")) end
  local meta = json.decode(parts[1])
  if type(meta) == "table" and meta.family == "blend" then return blend.from_parts(meta, parts[2]) end
  return M.from_parts(meta, parts[2])
end

--- A model from its metadata (family, task, features, label, classes, opts,
-- info, rows) and its kernel's bytes, checked as a model file is: how a
-- model made elsewhere (an imported XGBoost model) becomes one. The model,
-- or nil, why and "invalid".
function M.from_parts(meta, kernel)
  local fam = type(meta) == "table" and families[meta.family]
  if not fam or type(meta.features) ~= "table" then return errors.fail("invalid", "not a usable Tycho model: bad metadata") end
  local handle, why = fam.load(kernel, #kernel)
  if not handle then return errors.fail("invalid", "not a usable Tycho model: " .. why) end
  local m = new_model(meta.family, type(meta.opts) == "table" and meta.opts or {}, true)
  m.handle = handle
  m.task, m.features, m.label, m.info = meta.task, meta.features, meta.label, meta.info
  m.trained = { rows = meta.rows }
  if meta.classes ~= nil and meta.classes ~= json.null then m.classes = meta.classes end
  if fam.n_features(m.handle) ~= #m.features then
    return errors.fail("invalid", "not a usable Tycho model: feature count mismatch")
  end
  return m
end

blend = make_blend(Model, M.from_bytes, MODEL_KIND, MODEL_VERSION)
M.blend = blend.new

--- Loads a model file; model or nil, message, code.
function M.load(path)
  local bytes, ferr, fcode = files.read(path)
  if not bytes then return nil, ferr, fcode end
  local m, msg, code = M.from_bytes(bytes)
  if not m then return nil, path .. ": " .. msg, code end
  return m
end

--- Whether v is a model of any family, a blend included (fitted or not).
function M.is_model(v) return getmetatable(v) == Model or blend.is_blend(v) end

--- The tz_data view of a frame's feature columns (for metrics); data, anchor.
M._data = make_data

return M
