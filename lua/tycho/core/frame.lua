--- Columnar data frames over core/frame, read and written through the FFI.
--
--   local f = tycho.frame.read_csv("spam.csv")       -- frame, report
--   f:nrows(), f:names(), f:col("label"):get(1)
--   local train, test = f:split { mask = "spam.split" }
--   f:filter(function(r) return r.label == 1 end):describe()
--
-- Rows are 1-based in Lua. Columns: float64, int64, bool, string (dictionary
-- encoded); nulls are tracked per value (and float64 nulls are NaN in the raw
-- array). Frames share columns, so select and with_column copy nothing.
local ffi = require "ffi"
local bit = require "bit"
local base = require "tycho.core.base"
local install_ops = require "tycho.frame.ops"
local install_roles = require "tycho.frame.roles"
local install_format = require "tycho.frame.format"

ffi.cdef [[
typedef struct tz_dict tz_dict;
typedef struct tz_column {
  char *name; int type; size_t n; size_t cap; void *data; uint8_t *valid;
  size_t null_count; tz_dict *dict; int refs;
} tz_column;
typedef struct tz_frame { size_t n_rows, n_cols, cap_cols; tz_column **cols; } tz_frame;
tz_column *tz_column_new(const char *name, int type, size_t n);
void tz_column_ref(tz_column *c);
void tz_column_unref(tz_column *c);
int tz_column_rename(tz_column *c, const char *name, tz_err *err);
tz_column *tz_column_to_f64(const tz_column *c);
void tz_column_set_valid(tz_column *c, size_t i, int valid);
int32_t tz_dict_intern(tz_dict *d, const char *s, size_t len);
const char *tz_dict_get(const tz_dict *d, int32_t code, size_t *len);
int32_t tz_dict_find(const tz_dict *d, const char *s, size_t len);
size_t tz_dict_size(const tz_dict *d);
tz_frame *tz_frame_new(void);
void tz_frame_free(tz_frame *f);
int tz_frame_add(tz_frame *f, tz_column *c, tz_err *err);
int tz_frame_take(const tz_frame *f, const int64_t *idx, size_t n, tz_frame **out, tz_err *err);
size_t tz_frame_bytes(const tz_frame *f);
]]

-- After the declarations above, which the file reader's use.
local install_io = require "tycho.core.frame_io"

local C = ffi.C
local M = {}

local F64, I64, BOOL, STR = 0, 1, 2, 3
local TYPE_NAMES = { [F64] = "float", [I64] = "int", [BOOL] = "bool", [STR] = "string" }
local TYPE_CODES = { float = F64, float64 = F64, double = F64, int = I64, int64 = I64, integer = I64,
                     bool = BOOL, boolean = BOOL, string = STR, str = STR, text = STR }
M.types = TYPE_CODES

local err = base.err
local len_out = ffi.new("size_t[1]")
local frame_out = ffi.new("tz_frame*[1]")

local Frame, Column = {}, {}
Frame.__index = Frame
Column.__index = Column

local function owned_frame(handle)
  return setmetatable({ handle = ffi.gc(handle, C.tz_frame_free) }, Frame)
end

local function check(rc)
  if rc ~= 0 then error(ffi.string(err.msg), 3) end
end

local function type_code(t)
  local code = TYPE_CODES[t]
  if not code then error("unknown column type '" .. tostring(t) .. "' (float, int, bool, string)", 3) end
  return code
end

-- ---- columns ---------------------------------------------------------------

local function wrap_column(frame, c)
  local ptr
  local t = c.type
  if t == F64 then ptr = ffi.cast("double*", c.data)
  elseif t == I64 then ptr = ffi.cast("int64_t*", c.data)
  elseif t == BOOL then ptr = ffi.cast("uint8_t*", c.data)
  else ptr = ffi.cast("int32_t*", c.data) end
  return setmetatable({ frame = frame, c = c, ptr = ptr, valid = c.valid, type = TYPE_NAMES[t], code = t,
                        n = tonumber(c.n), name = ffi.string(c.name) }, Column)
end

--- True when row i (1-based) holds a value.
function Column:present(i)
  local k = i - 1
  return bit.band(self.valid[bit.rshift(k, 3)], bit.lshift(1, bit.band(k, 7))) ~= 0
end

--- The value at row i, or nil when null. int64 values come back as numbers.
function Column:get(i)
  if i < 1 or i > self.n then error("row " .. tostring(i) .. " out of range 1.." .. self.n, 2) end
  if not self:present(i) then return nil end
  local v = self.ptr[i - 1]
  local code = self.code
  if code == F64 then return v end
  if code == I64 then return tonumber(v) end
  if code == BOOL then return v ~= 0 end
  local s = C.tz_dict_get(self.c.dict, v, len_out)
  return ffi.string(s, len_out[0])
end

--- Sets row i (nil = null). Only on columns this frame owns alone.
function Column:set(i, v)
  if self.c.refs > 1 then error("column '" .. self.name .. "' is shared with another frame: copy it first", 2) end
  local k = i - 1
  if v == nil then
    C.tz_column_set_valid(self.c, k, 0)
    if self.code == F64 then self.ptr[k] = 0 / 0 end
    return
  end
  local code = self.code
  if code == STR then
    v = tostring(v)
    self.ptr[k] = C.tz_dict_intern(self.c.dict, v, #v)
  elseif code == BOOL then
    self.ptr[k] = v and 1 or 0
  else
    if type(v) ~= "number" then error("column '" .. self.name .. "' holds numbers, got " .. type(v), 2) end
    self.ptr[k] = v
  end
  C.tz_column_set_valid(self.c, k, 1)
end

--- Number of nulls.
function Column:nulls() return tonumber(self.c.null_count) end

--- Values as a Lua table (nulls as nil, so use 1..column.n).
function Column:to_table()
  local t = {}
  for i = 1, self.n do t[i] = self:get(i) end
  return t
end

--- The distinct strings of a string column, in code order.
function Column:levels()
  if self.code ~= STR then return nil end
  local out = {}
  for code = 0, tonumber(C.tz_dict_size(self.c.dict)) - 1 do
    out[code + 1] = ffi.string(C.tz_dict_get(self.c.dict, code, len_out), len_out[0])
  end
  return out
end

--- A double* over the values (NaN for nulls): the column's own array for
-- float64, a converted copy kept alive by the frame otherwise.
function Column:f64()
  if self.code == F64 then return self.ptr end
  if not self.f64_copy then
    local copy = ffi.gc(C.tz_column_to_f64(self.c), C.tz_column_unref)
    if copy == nil then error("out of memory", 2) end
    for i = 0, self.n - 1 do
      if not self:present(i + 1) then ffi.cast("double*", copy.data)[i] = 0 / 0 end
    end
    self.f64_copy = copy
  end
  return ffi.cast("double*", self.f64_copy.data)
end

-- ---- building frames -------------------------------------------------------

local function new_column(name, code, n)
  local c = C.tz_column_new(name, code, n)
  if c == nil then error("out of memory", 3) end
  return c
end

local function infer_type(values, n)
  local t
  for i = 1, n do
    local v = values[i]
    if v ~= nil then
      local vt = type(v)
      if vt == "number" then
        if t == nil or t == I64 then t = (v % 1 == 0 and v >= -2 ^ 53 and v <= 2 ^ 53) and I64 or F64 end
      elseif vt == "boolean" then
        t = (t == nil or t == BOOL) and BOOL or STR
      else
        t = STR
      end
      if t == STR then return STR end
      if t == F64 and vt ~= "number" then return STR end
    end
  end
  return t or F64
end

local function fill_column(c, code, values, n, name)
  local col = wrap_column(nil, c)
  for i = 1, n do
    local v = values[i]
    if v ~= nil then
      if code ~= STR and code ~= BOOL and type(v) ~= "number" then
        error(string.format("column '%s' row %d: %s is not a number", name, i, tostring(v)), 4)
      end
      col:set(i, v)
    end
  end
end

local function add_column(handle, c)
  local rc = C.tz_frame_add(handle, c, err)
  C.tz_column_unref(c)  -- the frame holds it now
  check(rc)
end

--- A frame from columns: M.new({ a = {1, 2}, b = {"x", "y"} }, { order = {"a", "b"},
-- types = { a = "float" } }). Without order, names are sorted.
function M.new(columns, opts)
  opts = opts or {}
  local names = opts.order
  if not names then
    names = {}
    for k in pairs(columns) do names[#names + 1] = k end
    table.sort(names)
  end
  local handle = ffi.gc(C.tz_frame_new(), C.tz_frame_free)
  local n = opts.n
  for _, name in ipairs(names) do
    local values = columns[name] or error("no values for column '" .. name .. "'", 2)
    n = n or table.maxn(values)
  end
  n = n or 0
  for _, name in ipairs(names) do
    local values = columns[name]
    local code = opts.types and opts.types[name] and type_code(opts.types[name]) or infer_type(values, n)
    local c = new_column(name, code, n)
    fill_column(c, code, values, n, name)
    add_column(handle, c)
  end
  return setmetatable({ handle = handle }, Frame)
end

--- A frame from a list of row tables; columns in first-seen order (or opts.order).
function M.from_rows(rows, opts)
  opts = opts or {}
  local order, seen, cols = opts.order, {}, {}
  if not order then
    order = {}
    for _, r in ipairs(rows) do
      for k in pairs(r) do
        if not seen[k] then seen[k] = true order[#order + 1] = k end
      end
    end
    table.sort(order)
  end
  for _, name in ipairs(order) do cols[name] = {} end
  for i, r in ipairs(rows) do
    for _, name in ipairs(order) do cols[name][i] = r[name] end
  end
  return M.new(cols, { order = order, types = opts.types, n = #rows })
end

-- ---- shape and access --------------------------------------------------------

--- Lets go of the frame's columns now instead of at the next garbage
-- collection (their memory is C's, which the collector does not see): for
-- loops that make a large frame a step, whose memory would pile up
-- between collections. The frame is empty afterwards.
function Frame:release()
  local handle = self.handle
  C.tz_frame_free(ffi.gc(handle, nil))
  self.handle = ffi.gc(C.tz_frame_new(), C.tz_frame_free)
end

--- Number of rows.
function Frame:nrows() return tonumber(self.handle.n_rows) end
--- Number of columns.
function Frame:ncols() return tonumber(self.handle.n_cols) end

--- Column names in order.
function Frame:names()
  local out = {}
  for j = 0, self:ncols() - 1 do out[j + 1] = ffi.string(self.handle.cols[j].name) end
  return out
end

--- Column types by name ("float", "int", "bool", "string").
function Frame:types()
  local out = {}
  for j = 0, self:ncols() - 1 do out[ffi.string(self.handle.cols[j].name)] = TYPE_NAMES[self.handle.cols[j].type] end
  return out
end

--- Bytes held by the columns.
function Frame:bytes() return tonumber(C.tz_frame_bytes(self.handle)) end

local function column_index(self, name)
  for j = 0, self:ncols() - 1 do
    if ffi.string(self.handle.cols[j].name) == name then return j end
  end
  return nil
end

--- The column named name (raises when absent).
function Frame:col(name)
  self.cache = self.cache or {}
  local col = self.cache[name]
  if col then return col end
  local j = column_index(self, name)
  if not j then
    error("no column '" .. tostring(name) .. "' (columns: " .. table.concat(self:names(), ", ") .. ")", 2)
  end
  col = wrap_column(self, self.handle.cols[j])
  self.cache[name] = col
  return col
end

--- Whether the frame has a column named name (col raises instead).
function Frame:has(name) return column_index(self, name) ~= nil end

--- Row i as a table (nulls absent).
function Frame:row(i, into)
  local r = into or {}
  for _, name in ipairs(self:names()) do r[name] = self:col(name):get(i) end
  return r
end

--- Iterates rows: for i, row in f:rows() do ... end (row is reused).
function Frame:rows()
  local i, n, r, cols = 0, self:nrows(), {}, {}
  for _, name in ipairs(self:names()) do cols[#cols + 1] = self:col(name) end
  return function()
    i = i + 1
    if i > n then return nil end
    for _, c in ipairs(cols) do r[c.name] = c:get(i) end
    return i, r
  end
end

-- ---- deriving frames -----------------------------------------------------------

local function share(self, names)
  local handle = ffi.gc(C.tz_frame_new(), C.tz_frame_free)
  for _, name in ipairs(names) do
    local j = column_index(self, name)
    if not j then error("no column '" .. tostring(name) .. "'", 3) end
    check(C.tz_frame_add(handle, self.handle.cols[j], err))
  end
  handle.n_rows = self.handle.n_rows
  return setmetatable({ handle = handle }, Frame)
end

--- A frame of the named columns (shared, not copied).
function Frame:select(...)
  local names = select("#", ...) == 1 and type(...) == "table" and ... or { ... }
  return share(self, names)
end

--- A frame without the named columns.
function Frame:drop(...)
  local gone = {}
  for _, n in ipairs(select("#", ...) == 1 and type(...) == "table" and ... or { ... }) do gone[n] = true end
  local keep = {}
  for _, n in ipairs(self:names()) do if not gone[n] then keep[#keep + 1] = n end end
  return share(self, keep)
end

--- A frame of this one's columns plus C columns made elsewhere (tz_column*,
-- whose references pass to the new frame). For modules that fill columns in C.
function Frame:attach(columns)
  local out = share(self, self:names())
  for _, c in ipairs(columns) do add_column(out.handle, c) end
  return out
end

--- A new column of n null rows, as a tz_column* whose reference the caller
-- owns until it attaches it.
function M.new_column(name, typ, n) return new_column(name, type_code(typ), n) end

--- A new column of n rows filled by value_at(i) for i = 0 .. n-1 (a number
-- for "float", a string for "string"; nil or NaN for null), as a tz_column*
-- whose reference the caller owns until it attaches it: for columns
-- computed in bulk (batch scoring) without a Lua table of n values.
function M.column_of(name, typ, n, value_at)
  local code = type_code(typ)
  if code ~= F64 and code ~= STR then error("column_of makes float or string columns, not " .. typ, 2) end
  local c = new_column(name, code, n)
  local codes = {}  -- string -> its dictionary code
  local data = code == F64 and ffi.cast("double*", c.data) or ffi.cast("int32_t*", c.data)
  for i = 0, n - 1 do
    local v = value_at(i)
    if v ~= nil and v == v then
      if code == STR then
        local k = codes[v]
        if not k then
          k = C.tz_dict_intern(c.dict, v, #v)
          codes[v] = k
        end
        v = k
      end
      data[i] = v
      C.tz_column_set_valid(c, i, 1)
    end
  end
  return c
end

--- Renames column c (a tz_column* no frame shares yet) in place.
function M.rename_column(c, name)
  if c.refs > 1 then error("rename_column: column '" .. ffi.string(c.name) .. "' is shared", 2) end
  check(C.tz_column_rename(c, name, err))
end

--- One more owner of column c (a tz_column*), or one less.
M.retain_column, M.release_column = C.tz_column_ref, C.tz_column_unref

--- Rows by 1-based index list (an int64 array in C).
function Frame:take(indices)
  local n = #indices
  local idx = ffi.new("int64_t[?]", n > 0 and n or 1)
  for i = 1, n do idx[i - 1] = indices[i] - 1 end
  check(C.tz_frame_take(self.handle, idx, n, frame_out, err))
  return owned_frame(frame_out[0])
end

--- The first n rows (10).
function Frame:head(n)
  n = math.min(n or 10, self:nrows())
  local idx = {}
  for i = 1, n do idx[i] = i end
  return self:take(idx)
end

--- Rows for which pred(row, i) is true.
function Frame:filter(pred)
  local keep = {}
  for i, r in self:rows() do
    if pred(r, i) then keep[#keep + 1] = i end
  end
  return self:take(keep)
end

--- A new frame of fn(row, i) for every row (fn returns a table, or nil to drop).
function Frame:map(fn)
  local out = {}
  for i = 1, self:nrows() do
    local r = fn(self:row(i), i)
    if r ~= nil then out[#out + 1] = r end
  end
  return M.from_rows(out)
end

--- A frame with one more (or a replaced) column: values is a table of
-- nrows values or a function(row, i) -> value.
function Frame:with_column(name, values, typ)
  local n = self:nrows()
  if type(values) == "function" then
    local fn, computed = values, {}
    for i, r in self:rows() do computed[i] = fn(r, i) end
    values = computed
  end
  local code = typ and type_code(typ) or infer_type(values, n)
  local c = new_column(name, code, n)
  fill_column(c, code, values, n, name)
  local keep = {}
  for _, existing in ipairs(self:names()) do if existing ~= name then keep[#keep + 1] = existing end end
  local out = share(self, keep)
  add_column(out.handle, c)
  return out
end

--- Provenance of the frame for the registry: what made it (feature views
-- and versions, time range, when it came from the feature store), its
-- shape and a content hash (FNV-1a 64 over names and values, hex).
function Frame:fingerprint()
  local h = ffi.new("uint64_t", 14695981039346656037ULL)
  for _, name in ipairs(self:names()) do
    h = C.tz_hash_fnv1a64(h, name, #name)
    local col = self:col(name)
    for i = 1, col.n do
      local v = col:get(i)
      local s = v == nil and "\0null" or tostring(v)
      h = C.tz_hash_fnv1a64(h, s, #s)
    end
  end
  local fp = { rows = self:nrows(), columns = self:names(), content_hash = string.format("%016x", h) }
  for k, v in pairs(self.provenance or {}) do fp[k] = v end
  return fp
end

--- Whether v is a frame (and not, say, a table of columns or rows).
function M.is_frame(v) return getmetatable(v) == Frame end

install_io(Frame, M, { owned_frame = owned_frame, type_code = type_code, frame_out = frame_out })
install_ops(Frame, M)
install_roles(Frame, M)
install_format(Frame, M)

return M
