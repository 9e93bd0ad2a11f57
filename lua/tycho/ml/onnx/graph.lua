--- An ONNX graph being built: nodes, constants (initializers), inputs and
-- outputs, with fresh value names that cannot collide with the graph's
-- input names. The exporter (ml/onnx.lua) speaks in columns of shape
-- [N, 1]; this module knows tensors and operators only.
--
--   local g = graph.new({ "amount" })
--   local x = g:input("amount", proto.DOUBLE)
--   local y = g:op("Div", { x, g:const(proto.DOUBLE, {}, { 100 }) })
--   g:output(y, "value", proto.DOUBLE, { "N" })
--   local bytes = g:encode()   -- a GraphProto
local proto = require "tycho.ml.onnx.proto"

local M = {}
local Graph = {}
Graph.__index = Graph

M.ML = "ai.onnx.ml"

--- A new graph whose value names avoid every name in taken (a list).
function M.new(taken)
  -- Generated names start with a prefix that no taken name starts with.
  local prefix = "~"
  local clash = true
  while clash do
    clash = false
    for _, name in ipairs(taken) do
      if name:sub(1, #prefix) == prefix then clash = true end
    end
    if clash then prefix = prefix .. "~" end
  end
  return setmetatable({ prefix = prefix, count = 0, nodes = {}, initializers = {}, inputs = {}, outputs = {},
                        value_info = {}, input_names = {}, used = {} }, Graph)
end

--- A fresh value name, readable in a viewer: prefix, a counter, the hint.
function Graph:fresh(hint)
  self.count = self.count + 1
  return self.prefix .. self.count .. "_" .. (hint or "v")
end

--- Declares a graph input of shape [N, 1] and returns its name.
function Graph:input(name, elem_type)
  self.inputs[#self.inputs + 1] = proto.value_info(name, elem_type, { "N", 1 })
  self.input_names[#self.input_names + 1] = name
  self.used[name] = true
  return name
end

--- Declares the value v as a graph output named name (an Identity node
-- renames it), of the given element type and dims.
function Graph:output(v, name, elem_type, dims)
  self:op("Identity", { v }, nil, 1, nil, name)
  self.outputs[#self.outputs + 1] = proto.value_info(name, elem_type, dims)
  self.used[name] = true
end

--- States the type and dims of value v (for checkers whose schema of an
-- operator infers none, as ONNX 1.12's OneHotEncoder). Returns v.
function Graph:annotate(v, elem_type, dims)
  self.value_info[#self.value_info + 1] = proto.value_info(v, elem_type, dims)
  return v
end

--- A constant tensor (an initializer): element type, dims, values; hint
-- names it. Returns its name.
function Graph:const(elem_type, dims, values, hint)
  local name = self:fresh(hint or "const")
  self.initializers[#self.initializers + 1] = proto.tensor(name, elem_type, dims, values)
  return name
end

--- A double scalar constant, shared between uses of the same value.
function Graph:scalar(v)
  self.scalars = self.scalars or {}
  local k = v ~= v and "nan" or string.format("%.17g", v)
  if not self.scalars[k] then self.scalars[k] = self:const(proto.DOUBLE, {}, { v }, "c") end
  return self.scalars[k]
end

--- An int64 constant vector (shapes, axes, indices), shared by value.
function Graph:ints(list)
  self.int_consts = self.int_consts or {}
  local k = table.concat(list, ",")
  if not self.int_consts[k] then self.int_consts[k] = self:const(proto.INT64, { #list }, list, "i") end
  return self.int_consts[k]
end

--- Adds a node: op type, input names, encoded attributes, number of
-- outputs (default 1), domain, and the output name (else a fresh one).
-- Returns the output names, unpacked.
function Graph:op(op, inputs, attrs, n_out, domain, out_name)
  local outs = {}
  for i = 1, n_out or 1 do outs[i] = (i == 1 and out_name) or self:fresh(op:lower()) end
  self.nodes[#self.nodes + 1] = proto.node(op, inputs, outs, attrs, domain, self.prefix .. "n" .. (#self.nodes + 1))
  if domain == M.ML then self.uses_ml = true end
  return unpack(outs)
end

--- A [N, 1] double column holding v everywhere, N taken from the first
-- graph input.
function Graph:filled(v)
  self.filled_cols = self.filled_cols or {}
  local k = v ~= v and "nan" or string.format("%.17g", v)
  if not self.filled_cols[k] then
    local shape = self:op("Shape", { assert(self.input_names[1], "onnx: the graph has no input") })
    self.filled_cols[k] = self:op("ConstantOfShape", { shape },
      { proto.attr.t("value", proto.tensor(nil, proto.DOUBLE, { 1 }, { v })) })
  end
  return self.filled_cols[k]
end

--- The GraphProto bytes.
function Graph:encode(name, doc)
  return proto.graph { name = name, doc = doc, nodes = self.nodes, initializers = self.initializers,
                       inputs = self.inputs, outputs = self.outputs, value_info = self.value_info }
end

return M
