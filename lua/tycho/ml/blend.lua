--- Blends: a model that averages the outputs (probabilities or values) of
-- several models fitted on the same rows; what AutoML hands back when two
-- families together beat either alone. A blend is a Model (ml/models.lua
-- hands it the class to extend and its reader for the members' bytes).
local ffi = require "ffi"
local base = require "tycho.core.base"
local json = require "tycho.util.json"
local errors = require "tycho.util.errors"

return function(Model, from_bytes, MODEL_KIND, MODEL_VERSION)
local M = {}
local Blend = setmetatable({}, { __index = Model })
Blend.__index = Blend

--- models.blend{ members = { models.gbt{...}, models.forest{...} }, weights = {...} }.
function M.new(opts)
  if type(opts) ~= "table" or type(opts.members) ~= "table" or #opts.members < 2 then
    error("models.blend: needs members = a list of two or more models", 2)
  end
  return setmetatable({ family = "blend", members = opts.members, weights = opts.weights, opts = {} }, Blend)
end

function M.is_blend(v) return getmetatable(v) == Blend end

function Blend:fit(f, opts)
  for i, m in ipairs(self.members) do
    local ok, why, code = m:fit(f, opts)
    if not ok then return nil, "blend member " .. i .. " (" .. m.family .. "): " .. tostring(why), code end
  end
  local first = self.members[1]
  for _, m in ipairs(self.members) do
    if m.task ~= first.task then return errors.fail("invalid", "blend members disagree on the task") end
  end
  self.task, self.classes, self.features, self.label = first.task, first.classes, first.features, first.label
  self.info = { members = #self.members }
  self.trained = { rows = f:nrows() }
  self.handle = true
  return self
end

function Blend:predict_raw(f)
  if not self.handle then error("blend model is not trained: call fit first", 2) end
  local sum, k, n
  local total = 0
  for i, m in ipairs(self.members) do
    local out, mk, code = m:predict_raw(f)
    if not out then return nil, mk, code end
    local w = self.weights and self.weights[i] or 1
    total = total + w
    n, k = f:nrows(), mk
    if not sum then sum = ffi.new("double[?]", math.max(n * k, 1)) end
    for j = 0, n * k - 1 do sum[j] = sum[j] + w * out[j] end
  end
  for j = 0, n * k - 1 do sum[j] = sum[j] / total end
  return sum, k
end

function Blend:predict_values(row)
  if not self.handle then error("blend model is not trained: call fit first", 2) end
  local total, k = 0, nil
  self._sum = self._sum or {}
  for i, m in ipairs(self.members) do
    local out, mk, code = m:predict_values(row)
    if not out then return nil, mk, code end
    local w = self.weights and self.weights[i] or 1
    if not k then
      k = mk
      self._acc = self._acc or ffi.new("double[?]", k)
      for j = 0, k - 1 do self._acc[j] = 0 end
    end
    for j = 0, k - 1 do self._acc[j] = self._acc[j] + w * out[j] end
    total = total + w
  end
  for j = 0, k - 1 do self._acc[j] = self._acc[j] / total end
  return self._acc, k
end

function Blend.importance() return errors.fail("invalid", "blends have no split importance") end

function Blend:__tostring()
  local fams = {}
  for i, m in ipairs(self.members) do fams[i] = m.family end
  return string.format("<blend of %s: %s>", table.concat(fams, " + "), tostring(self.task))
end

function Blend:to_bytes()
  if not self.handle then error("blend model is not trained: call fit first", 2) end
  -- The first part is reserved (empty): blends saved by earlier releases have it.
  local parts = { "" }
  for _, m in ipairs(self.members) do
    local bytes, e, code = m:to_bytes()
    if not bytes then return nil, e, code end
    parts[#parts + 1] = bytes
  end
  local members = {}
  for i, m in ipairs(self.members) do members[i] = m.family end
  local meta = json.encode_canonical({ family = "blend", task = self.task, features = self.features,
    label = self.label, classes = self.classes, members = members, weights = self.weights,
    rows = self.trained and self.trained.rows })
  local payload, msg = base.blob.pack(MODEL_KIND, MODEL_VERSION, parts)
  if not payload then return errors.fail("unavailable", msg) end
  local bytes, perr = base.blob.pack(MODEL_KIND, MODEL_VERSION, { meta, payload })
  if not bytes then return errors.fail("unavailable", perr) end
  return bytes
end

--- A blend from its metadata and payload (what from_bytes found), or nil,
-- why and "invalid".
function M.from_parts(meta, payload)
  local parts, msg = base.blob.unpack(payload, MODEL_KIND, MODEL_VERSION)
  if not parts then return errors.fail("invalid", "not a usable Tycho model: blend: " .. msg) end
  local n = #(meta.members or {})
  if n < 2 or #parts ~= n + 1 then return errors.fail("invalid", "not a usable Tycho model: bad blend") end
  local members = {}
  for i = 1, n do
    local m, e, code = from_bytes(parts[i + 1])
    if not m then return nil, e, code end
    members[i] = m
  end
  local b = M.new { members = members, weights = meta.weights ~= json.null and meta.weights or nil }
  b.task, b.features, b.label = meta.task, meta.features, meta.label
  if meta.classes ~= nil and meta.classes ~= json.null then b.classes = meta.classes end
  b.handle, b.info, b.trained = true, { members = #members }, { rows = meta.rows }
  return b
end

return M
end
