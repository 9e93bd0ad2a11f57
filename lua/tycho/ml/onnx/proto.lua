--- The ONNX protobuf messages, written by hand: varints, length-delimited
-- fields and packed arrays are all an exporter needs, so no protobuf
-- library is involved. Field numbers are those of onnx/onnx.proto (IR 8).
--
--   local t = proto.tensor("w", proto.DOUBLE, { 2 }, { 0.5, 1.5 })
--   local n = proto.node("Add", { "x", "w" }, { "y" }, { proto.attr.i("axis", 1) })
--   local bytes = proto.model { graph = proto.graph { nodes = { n }, ... }, opsets = { [""] = 17 } }
--
-- Every function returns the encoded message as a Lua string; messages nest
-- by embedding those strings as length-delimited fields.
local ffi = require "ffi"
local bit = require "bit"

local M = {}

-- TensorProto.DataType
M.FLOAT, M.INT64, M.STRING, M.BOOL, M.DOUBLE = 1, 7, 8, 9, 11

-- ---- wire format ------------------------------------------------------------------

local char, concat, floor = string.char, table.concat, math.floor

-- An integer as a base-128 varint; negative ones as their 64-bit two's
-- complement (ten bytes), as protobuf writes int64.
local function varint(n)
  if n >= 0 and n < 2 ^ 53 then
    if n < 128 then return char(n) end
    local out = {}
    while n >= 128 do
      out[#out + 1] = char(n % 128 + 128)
      n = floor(n / 128)
    end
    out[#out + 1] = char(n)
    return concat(out)
  end
  local u = ffi.cast("uint64_t", ffi.new("int64_t", n))
  local out = {}
  while u >= 128 do
    out[#out + 1] = char(tonumber(bit.band(u, 127)) + 128)
    u = u / 128
  end
  out[#out + 1] = char(tonumber(u))
  return concat(out)
end
M.varint = varint

local VARINT, BYTES, FIXED32 = 0, 2, 5  -- wire types (doubles go in packed raw bytes)

local function key(field, wire) return varint(field * 8 + wire) end

local function f_int(field, v) return key(field, VARINT) .. varint(v) end
local function f_bytes(field, s) return key(field, BYTES) .. varint(#s) .. s end

-- Fields of a message: a list of encoded fields, nil entries skipped.
local function message(fields, n)
  local parts = {}
  for i = 1, n do
    if fields[i] then parts[#parts + 1] = fields[i] end
  end
  return concat(parts)
end

local function repeated_bytes(field, list)
  local out = {}
  for i, s in ipairs(list) do out[i] = f_bytes(field, s) end
  return concat(out)
end

local function packed_ints(field, list)
  if #list == 0 then return nil end
  local out = {}
  for i, v in ipairs(list) do out[i] = varint(v) end
  return f_bytes(field, concat(out))
end

-- Numbers as little-endian raw bytes of a C type ("double", "float", "int64_t").
local function raw(ctype, list)
  if not ffi.abi("le") then error("onnx: raw tensor data is little-endian; this host is not", 0) end
  local n = #list
  if n == 0 then return "" end
  local buf = ffi.new(ctype .. "[?]", n)
  for i = 1, n do buf[i - 1] = list[i] end
  return ffi.string(buf, n * ffi.sizeof(ctype))
end

-- ---- messages ---------------------------------------------------------------------

local RAW_TYPE = { [M.DOUBLE] = "double", [M.FLOAT] = "float", [M.INT64] = "int64_t" }

--- TensorProto: name (or nil), data type, dims (list), values (list; strings
-- for STRING, numbers otherwise, stored as raw little-endian bytes).
function M.tensor(name, dtype, dims, values)
  local data
  if dtype == M.STRING then
    data = repeated_bytes(6, values)
  elseif dtype == M.BOOL then
    local b = {}
    for i, v in ipairs(values) do b[i] = v and 1 or 0 end
    data = f_bytes(9, raw("uint8_t", b))
  else
    data = f_bytes(9, raw(assert(RAW_TYPE[dtype], "proto.tensor: unknown data type"), values))
  end
  return message({ packed_ints(1, dims), f_int(2, dtype), name and f_bytes(8, name), data }, 4)
end

-- AttributeProto.AttributeType
local A_FLOAT, A_INT, A_STRING, A_TENSOR, A_FLOATS, A_INTS, A_STRINGS = 1, 2, 3, 4, 6, 7, 8

local function attribute(name, kind, value_field)
  return message({ f_bytes(1, name), value_field, f_int(20, kind) }, 3)
end

--- Attribute constructors: attr.i(name, int), attr.f(name, float),
-- attr.s(name, string), attr.t(name, encoded tensor), attr.ints(name, list),
-- attr.floats(name, list), attr.strings(name, list).
M.attr = {
  i = function(name, v) return attribute(name, A_INT, f_int(3, v)) end,
  f = function(name, v) return attribute(name, A_FLOAT, key(2, FIXED32) .. raw("float", { v })) end,
  s = function(name, v) return attribute(name, A_STRING, f_bytes(4, v)) end,
  t = function(name, tensor) return attribute(name, A_TENSOR, f_bytes(5, tensor)) end,
  ints = function(name, list) return attribute(name, A_INTS, packed_ints(8, list) or "") end,
  floats = function(name, list)
    return attribute(name, A_FLOATS, #list > 0 and f_bytes(7, raw("float", list)) or "")
  end,
  strings = function(name, list) return attribute(name, A_STRINGS, repeated_bytes(9, list)) end,
}

--- NodeProto: op type, input names, output names, encoded attributes
-- (list), domain ("" or nil for the default one), node name.
function M.node(op, inputs, outputs, attrs, domain, name)
  return message({ repeated_bytes(1, inputs), repeated_bytes(2, outputs), name and f_bytes(3, name),
                   f_bytes(4, op), repeated_bytes(5, attrs or {}), domain and domain ~= "" and f_bytes(7, domain) }, 6)
end

--- ValueInfoProto of a tensor: name, element type, dims (numbers, or
-- strings for symbolic dimensions such as "N").
function M.value_info(name, elem_type, dims)
  local dim = {}
  for i, d in ipairs(dims) do
    dim[i] = f_bytes(1, type(d) == "string" and f_bytes(2, d) or f_int(1, d))
  end
  local shape = concat(dim)
  local tensor_type = f_int(1, elem_type) .. f_bytes(2, shape)
  return f_bytes(1, name) .. f_bytes(2, f_bytes(1, tensor_type))
end

--- GraphProto: { name, nodes, initializers, inputs, outputs, value_info,
-- doc } (lists of encoded messages).
function M.graph(g)
  return message({ repeated_bytes(1, g.nodes), f_bytes(2, g.name or "tycho"), repeated_bytes(5, g.initializers or {}),
                   g.doc and f_bytes(10, g.doc), repeated_bytes(11, g.inputs), repeated_bytes(12, g.outputs),
                   repeated_bytes(13, g.value_info or {}) }, 7)
end

--- ModelProto: { graph (encoded), opsets = { [domain] = version },
-- producer, producer_version, model_version (integer or nil), doc,
-- metadata = { {key, value}, ... } }. IR version 8.
function M.model(m)
  local opsets, domains = {}, {}
  for domain in pairs(m.opsets) do domains[#domains + 1] = domain end
  table.sort(domains)
  for i, domain in ipairs(domains) do
    opsets[i] = f_bytes(8, message({ domain ~= "" and f_bytes(1, domain), f_int(2, m.opsets[domain]) }, 2))
  end
  local meta = {}
  for i, kv in ipairs(m.metadata or {}) do meta[i] = f_bytes(14, f_bytes(1, kv[1]) .. f_bytes(2, kv[2])) end
  return message({ f_int(1, 8), concat(opsets), m.producer and f_bytes(2, m.producer),
                   m.producer_version and f_bytes(3, m.producer_version), m.model_version and f_int(5, m.model_version),
                   m.doc and f_bytes(6, m.doc), f_bytes(7, m.graph), concat(meta) }, 8)
end

return M
