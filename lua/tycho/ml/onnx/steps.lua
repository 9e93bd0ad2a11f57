--- Pipeline steps as ONNX nodes: the columns a row holds flow through the
-- steps as [N, 1] tensors (double, or string for text), each step
-- rewriting them with double-precision core operators, so the numbers are
-- the doubles the Lua steps compute:
--
--   fill_missing  IsNaN + Where              standardize, minmax  Sub + Div
--   clip          Less / Greater + Where     log1p   Add + Log, NaN at or below -1
--   onehot        text: OneHotEncoder (ai.onnx.ml); numbers: lo <= x <= hi per level
--   select, drop  which columns flow on      kmeans  standardize, squared distances,
--                                                    ArgMin and the nearest distance
--
--   local env = steps.new_env(g, false)
--   env:add_input("amount", "double")
--   assert(steps.apply(env, step.kind, step.state))
--   local x = env:get("amount").v      -- the value name of the column now
local ffi = require "ffi"
local errors = require "tycho.util.errors"
local proto = require "tycho.ml.onnx.proto"
local graph = require "tycho.ml.onnx.graph"
local onnx_models = require "tycho.ml.onnx.models"

local M = {}
local attr, DOUBLE, STRING = proto.attr, proto.DOUBLE, proto.STRING

local function sorted_keys(t)
  local out = {}
  for k in pairs(t or {}) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- ---- columns flowing through the steps --------------------------------------------

-- The columns a row holds at some point of the pipeline: name -> { v = value
-- name, t = "double" | "string" }. An open set (after a Lua step) turns a
-- column read before anything made it into a graph input; `gone` holds the
-- columns the steps removed since.
local Env = {}
Env.__index = Env

--- A column set over graph g; open (after a Lua step): a column read
-- before anything made it becomes a graph input.
function M.new_env(g, open)
  return setmetatable({ g = g, cols = {}, open = open, gone = {}, inputs = {} }, Env)
end

--- Declares graph input name of type t ("double" | "string") as a column.
function Env:add_input(name, t)
  local v = self.g:input(name, t == "string" and STRING or DOUBLE)
  self.inputs[#self.inputs + 1] = { name = name, type = t }
  self.cols[name] = { v = v, t = t }
  return self.cols[name]
end

--- The column c, or nil when the row has none (t: the type an input made
-- for it in an open set would have).
function Env:get(c, t)
  local e = self.cols[c]
  if e or not self.open or self.gone[c] then return e end
  return self:add_input(c, t or "double")
end

--- Column c is now the double value v; remove: the row no longer has c.
function Env:set(c, v) self.cols[c], self.gone[c] = { v = v, t = "double" }, nil end
function Env:remove(c) self.cols[c], self.gone[c] = nil, true end

-- ---- steps -------------------------------------------------------------------------

local step_graph = {}
M.kinds = step_graph

-- Applies fn(value) -> value to the double columns named, as steps do to
-- number values (text and absent columns are left as they are).
local function each_number(env, names, fn)
  for _, c in ipairs(names) do
    local e = env:get(c)
    if e and e.t == "double" then env:set(c, fn(e.v, c)) end
  end
end

function step_graph.fill_missing(env, st)
  local g = env.g
  for _, c in ipairs(sorted_keys(st.fill)) do
    local fill = st.fill[c]
    if type(fill) ~= "number" then
      return errors.fail("invalid", "onnx: fill_missing fills '" .. c .. "' with a non-number, which the export cannot express")
    end
    local e = env:get(c)
    if not e then
      env:set(c, g:filled(fill))
    elseif e.t == "double" then
      env:set(c, g:op("Where", { g:op("IsNaN", { e.v }), g:scalar(fill), e.v }))
    end
  end
  return true
end

-- (x - shift[c]) / scale[c] for each column c of shift: standardize and minmax.
local function affine(env, shift, scale)
  local g = env.g
  each_number(env, sorted_keys(shift), function(x, c)
    return g:op("Div", { g:op("Sub", { x, g:scalar(shift[c]) }), g:scalar(scale[c]) })
  end)
  return true
end

function step_graph.standardize(env, st) return affine(env, st.mean, st.scale) end

function step_graph.minmax(env, st) return affine(env, st.lo, st.span) end

function step_graph.clip(env, st)
  local g = env.g
  each_number(env, st.columns, function(x)
    if st.lo then x = g:op("Where", { g:op("Less", { x, g:scalar(st.lo) }), g:scalar(st.lo), x }) end
    if st.hi then x = g:op("Where", { g:op("Greater", { x, g:scalar(st.hi) }), g:scalar(st.hi), x }) end
    return x
  end)
  return true
end

function step_graph.log1p(env, st)
  local g = env.g
  each_number(env, st.columns, function(x)
    local log = g:op("Log", { g:op("Add", { x, g:scalar(1) }) })
    return g:op("Where", { g:op("Greater", { x, g:scalar(-1) }), log, g:scalar(0 / 0) })
  end)
  return true
end

-- onehot matches a number v to a level when tostring(v) == level, and
-- tostring keeps 14 significant digits: a level stands for the interval
-- of doubles that print as it. level_interval gives its ends (lo, hi), or
-- "nan" for a NaN level, or nil when the level is no number.
local as_bits = ffi.new("union { double d; int64_t i; }")
local function bits(d) as_bits.d = d return as_bits.i end
local function double(i) as_bits.i = i return as_bits.d end

-- The first double in [from, to] (non-negative, so ordered as their bits)
-- where pred turns true, pred false before it and true after.
local function first_true(from, to, pred)
  local a, b = bits(from), bits(to)
  while a < b do
    local mid = a + (b - a) / 2
    if pred(double(mid)) then b = mid else a = mid + 1 end
  end
  return double(a)
end

local function level_interval(level)
  if level == "true" then return 1, 1 elseif level == "false" then return 0, 0 end
  if level == "nan" or level == "-nan" then return "nan" end
  local v = tonumber(level)
  if not v or tostring(v) ~= level then return nil end
  if v == 0 or v == math.huge or v == -math.huge then return v, v end
  local a = math.abs(v)
  local prints = function(d) return tostring(d) == tostring(a) end
  local width = 10 ^ (math.floor(math.log10(a)) - 13)  -- one unit of the 14th digit
  local lo = first_true(math.max(a - width, 0), a, prints)
  local hi = first_true(a, a + width, function(d) return not prints(d) end)
  hi = double(bits(hi) - 1)
  if v < 0 then return -hi, -lo end
  return lo, hi
end

-- Splits x [N, C] into C columns named prefix=level.
local function split_levels(env, name, levels, x)
  local cols = #levels == 1 and { x } or { env.g:op("Split", { x }, { attr.i("axis", 1) }, #levels) }
  for i, level in ipairs(levels) do env:set(name .. "=" .. level, cols[i]) end
end

-- One-hot columns of number column x: lo <= x <= hi per level; a NaN
-- level matches NaN.
local function onehot_numbers(env, name, levels, bounds, x)
  local g = env.g
  local lo, hi = {}, {}
  for i, b in ipairs(bounds) do lo[i], hi[i] = b.lo, b.hi end
  local above = g:op("GreaterOrEqual", { x, g:const(DOUBLE, { 1, #levels }, lo, "level_lo") })
  local below = g:op("LessOrEqual", { x, g:const(DOUBLE, { 1, #levels }, hi, "level_hi") })
  split_levels(env, name, levels, g:op("Cast", { g:op("And", { above, below }) }, { attr.i("to", DOUBLE) }))
  for i, b in ipairs(bounds) do
    if b.nan then env:set(name .. "=" .. levels[i], g:op("Cast", { g:op("IsNaN", { x }) }, { attr.i("to", DOUBLE) })) end
  end
end

-- The columns name=level for one column of an onehot step; true, or nil,
-- message, code.
local function onehot_column(env, name, levels)
  local g = env.g
  local numeric, bounds = true, {}
  for i, level in ipairs(levels) do
    local lo, hi = level_interval(level)
    if lo == nil then numeric = false end
    bounds[i] = lo == "nan" and { lo = 0 / 0, hi = 0 / 0, nan = true } or { lo = lo, hi = hi }
  end
  local e = env:get(name, numeric and "double" or "string")
  if not e then
    for _, level in ipairs(levels) do env:set(name .. "=" .. level, g:filled(0)) end
  elseif e.t == "string" then
    local hot = g:op("OneHotEncoder", { e.v }, { attr.strings("cats_strings", levels), attr.i("zeros", 1) }, 1, graph.ML)
    g:annotate(hot, proto.FLOAT, { "N", 1, #levels })
    local flat = g:op("Reshape", { hot, g:ints({ -1, #levels }) })
    split_levels(env, name, levels, g:op("Cast", { flat }, { attr.i("to", DOUBLE) }))
  elseif not numeric then
    return errors.fail("invalid", "onnx: onehot on number column '" .. name .. "' has a level that is no number")
  else
    onehot_numbers(env, name, levels, bounds, e.v)
  end
  return true
end

function step_graph.onehot(env, st)
  for _, col in ipairs(st.columns) do
    if #col.levels > 0 then
      local ok, err, code = onehot_column(env, col.name, col.levels)
      if not ok then return nil, err, code end
    end
    env:remove(col.name)
  end
  return true
end

function step_graph.select(env, st)
  local keep = {}
  for _, c in ipairs(st.keep) do keep[c] = env:get(c) end
  env.cols, env.open = keep, false
  return true
end

function step_graph.drop(env, st)
  for _, c in ipairs(st.drop) do env:remove(c) end
  return true
end

function step_graph.kmeans(env, st)
  local g = env.g
  local z = {}
  for i, c in ipairs(st.columns) do
    local e = env:get(c)
    if e and e.t == "double" then
      local scaled = g:op("Div", { g:op("Sub", { e.v, g:scalar(st.mean[c]) }), g:scalar(st.scale[c]) })
      z[i] = g:op("Where", { g:op("IsNaN", { e.v }), g:scalar(0), scaled })
    else
      z[i] = g:filled(0)
    end
  end
  local dist = onnx_models.square_distances(g, z, st.centers)
  local best = g:op("ArgMin", { dist }, { attr.i("axis", 1), attr.i("keepdims", 1) })
  local nearest = g:op("ReduceMin", { dist }, { attr.ints("axes", { 1 }), attr.i("keepdims", 1) })
  env:set(st.name, g:op("Cast", { best }, { attr.i("to", DOUBLE) }))
  env:set(st.name .. "_distance", g:op("Sqrt", { nearest }))
  return true
end

--- Rewrites env as a step of this kind with this (fitted) state does a
-- row: true, or nil, message, code when the step has no ONNX form.
function M.apply(env, kind, state)
  local fn = step_graph[kind]
  if not fn then return errors.fail("invalid", "onnx: steps of kind '" .. tostring(kind) .. "' have no ONNX form") end
  return fn(env, state)
end

return M
