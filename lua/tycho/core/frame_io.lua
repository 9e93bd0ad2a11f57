--- Frames from and to files: CSV through core/frame's reader and writer
-- (tz_csv), JSON Lines through lua-cjson. core/frame.lua installs these on
-- the frame module when it loads, handing over what they share with it.
local ffi = require "ffi"
local base = require "tycho.core.base"
-- (tz_frame and tz_err are declared by core/frame.lua and core/base.lua,
-- which load first.)

ffi.cdef [[
typedef struct tz_csv_opts {
  char delimiter; int no_header; size_t infer_rows; const char *const *na_values; size_t n_na;
  const char *const *schema_names; const int *schema_types; size_t n_schema; int strict;
  const char *line_column; int unique_header; size_t part_bytes; size_t from, to, from_line;
} tz_csv_opts;
typedef struct tz_csv_issue { size_t line; size_t column; char message[160]; } tz_csv_issue;
typedef struct tz_csv_report {
  size_t rows_read, rows_bad; tz_csv_issue *issues; size_t n_issues; size_t *more_lines; size_t n_more;
} tz_csv_report;
int tz_csv_read(const char *path, const tz_csv_opts *opts, tz_frame **out, tz_csv_report *report, tz_err *err);
void tz_csv_report_free(tz_csv_report *r);
int tz_csv_write(const tz_frame *f, const char *path, char delimiter, tz_err *err);
typedef struct tz_csv_blocks tz_csv_blocks;
int tz_csv_blocks_open(const char *in, const char *out, char delimiter, size_t block_bytes, tz_csv_blocks **b,
                       tz_err *err);
const tz_frame *tz_csv_blocks_columns(const tz_csv_blocks *b);
int tz_csv_blocks_next(tz_csv_blocks *b, const tz_csv_opts *opts, tz_frame *recycle, tz_frame **out,
                       tz_csv_report *report, tz_err *err);
int tz_csv_blocks_write_header(tz_csv_blocks *b, const char *const *names, size_t n, tz_err *err);
int tz_csv_blocks_write(tz_csv_blocks *b, const int64_t *lines, const tz_frame *tail, tz_err *err);
int tz_csv_blocks_close(tz_csv_blocks *b, int keep, tz_err *err);
]]

local C = ffi.C
local err = base.err

return function(Frame, M, internal)
  local owned_frame, type_code, frame_out = internal.owned_frame, internal.type_code, internal.frame_out

  -- ---- reading and writing ---------------------------------------------------

  -- Every rejected row: the first ones with the reader's message, the rest
  -- by line (the reader keeps messages for a bounded number).
  local function issues_of(report)
    local out = {}
    for i = 0, tonumber(report.n_issues) - 1 do
      local is = report.issues[i]
      out[#out + 1] = { line = tonumber(is.line), column = tonumber(is.column), message = ffi.string(is.message) }
    end
    local first = tonumber(report.n_issues)
    for i = 0, tonumber(report.n_more) - 1 do
      out[#out + 1] = { line = tonumber(report.more_lines[i]), column = 0,
                        message = "rejected by the CSV reader (it describes the first " .. first .. " rejected rows)" }
    end
    return out
  end

  -- opts (as read_csv takes them) as a tz_csv_opts, and the arrays it
  -- points at, which the caller keeps alive for as long as it uses it.
  local function csv_opts(opts)
    local o, anchors = ffi.new("tz_csv_opts"), {}
    o.delimiter = opts.delimiter and opts.delimiter:byte() or 0
    o.no_header = opts.header == false and 1 or 0
    o.infer_rows = opts.infer_rows or 0
    o.strict = opts.strict and 1 or 0
    o.line_column = opts.line_column
    o.unique_header = opts.unique_header and 1 or 0
    if opts.na then
      local na = ffi.new("const char*[?]", #opts.na)
      for i, s in ipairs(opts.na) do na[i - 1] = s end
      o.na_values, o.n_na, anchors.na = na, #opts.na, na
    end
    if opts.schema then
      local names, n = {}, 0
      for k in pairs(opts.schema) do n = n + 1 names[n] = k end
      local cnames, ctypes = ffi.new("const char*[?]", n), ffi.new("int[?]", n)
      for i, k in ipairs(names) do cnames[i - 1], ctypes[i - 1] = k, type_code(opts.schema[k]) end
      o.schema_names, o.schema_types, o.n_schema = cnames, ctypes, n
      anchors.names, anchors.types, anchors.strings = cnames, ctypes, names
    end
    return o, anchors
  end

  local function report_of(report)
    local rep = { rows_read = tonumber(report.rows_read), rows_bad = tonumber(report.rows_bad),
                  issues = issues_of(report) }
    C.tz_csv_report_free(report)
    return rep
  end

  --- Reads a CSV file. opts: delimiter (","), header (true), schema
  -- ({column = "float"|"int"|"bool"|"string"}), na (list of null markers),
  -- infer_rows (1000), strict (first bad row is an error), line_column (name of
  -- an added int column holding each row's line in the file), unique_header
  -- (a name twice in the header is an error; otherwise the second is name_2).
  -- Returns frame, report {rows_read, rows_bad, issues = {{line, column, message}}}
  -- or nil, message. Bad rows are left out and listed in report.issues.
  function M.read_csv(path, opts)
    if type(path) ~= "string" then error("read_csv: path must be a string", 2) end
    local o, anchors = csv_opts(opts or {})
    local report = ffi.new("tz_csv_report")
    local rc = C.tz_csv_read(path, o, frame_out, report, err)
    if rc ~= 0 then return nil, ffi.string(err.msg) end
    local frame = owned_frame(frame_out[0])
    local _ = anchors
    return frame, report_of(report)
  end

  local Blocks = {}
  Blocks.__index = Blocks
  local blocks_out = ffi.new("tz_csv_blocks*[1]")
  local function drop_blocks(b) C.tz_csv_blocks_close(b, 0, nil) end

  --- A CSV file read a block of whole records at a time, with a copy of it
  -- written beside (core/frame's tz_csv_blocks; tycho score's stream):
  -- opts.output (a path, "-" for standard output, nil for no copy),
  -- opts.delimiter, opts.block_bytes (about 8 MiB). The copy appears at
  -- output only when blocks:close(true) succeeds. Returns the reader, or
  -- nil, message.
  function M.read_csv_blocks(path, opts)
    opts = opts or {}
    local delim = opts.delimiter and opts.delimiter:byte() or 0
    if C.tz_csv_blocks_open(path, opts.output, delim, opts.block_bytes or 0, blocks_out, err) ~= 0 then
      return nil, ffi.string(err.msg)
    end
    return setmetatable({ handle = ffi.gc(blocks_out[0], drop_blocks) }, Blocks)
  end

  --- The header's column names.
  function Blocks:names()
    local columns = setmetatable({ handle = C.tz_csv_blocks_columns(self.handle) }, Frame)
    return columns:names()
  end

  --- The next block as a frame and its report, read as read_csv reads with
  -- opts (line_column required); nil after the last block; nil, message.
  -- recycle: the block before, done with (it is emptied, and its memory
  -- becomes the new block's).
  function Blocks:next(opts, recycle)
    local o, anchors = csv_opts(opts)
    local report = ffi.new("tz_csv_report")
    local old = nil
    if recycle then
      old = ffi.gc(recycle.handle, nil)
      recycle.handle = ffi.gc(C.tz_frame_new(), C.tz_frame_free)
    end
    local rc = C.tz_csv_blocks_next(self.handle, o, old, frame_out, report, err)
    local _ = anchors
    if rc ~= 0 then return nil, ffi.string(err.msg) end
    if frame_out[0] == nil then return nil end
    return owned_frame(frame_out[0]), report_of(report)
  end

  --- Writes the copy's header: the input's, then names.
  function Blocks:write_header(names)
    local cnames = ffi.new("const char*[?]", math.max(#names, 1))
    for i, name in ipairs(names) do cnames[i - 1] = name end
    if C.tz_csv_blocks_write_header(self.handle, cnames, #names, err) ~= 0 then return nil, ffi.string(err.msg) end
    return true
  end

  --- Writes rows of the last block to the copy: for each row i of tail,
  -- the record at line lines[i - 1] (an int64_t array), then tail's row i.
  function Blocks:write(lines, tail)
    if C.tz_csv_blocks_write(self.handle, lines, tail.handle, err) ~= 0 then return nil, ffi.string(err.msg) end
    return true
  end

  --- Closes the file; keep: the copy takes its place (else it is removed).
  -- true, or nil, message.
  function Blocks:close(keep)
    local handle = self.handle
    if not handle then return true end
    self.handle = nil
    local rc = C.tz_csv_blocks_close(ffi.gc(handle, nil), keep and 1 or 0, err)
    if rc ~= 0 then return nil, ffi.string(err.msg) end
    return true
  end

  --- Reads JSON Lines: one object per line; keys become columns. Lines that are
  -- not JSON objects are left out and listed in the report like CSV's.
  function M.read_jsonl(path, opts)
    opts = opts or {}
    local json = require "tycho.util.json"
    local f, ferr = io.open(path)
    if not f then return nil, "cannot open " .. path .. ": " .. ferr end
    local rows, issues, lineno, read = {}, {}, 0, 0
    for line in f:lines() do
      lineno = lineno + 1
      if line:match("%S") then
        read = read + 1
        local v, derr = json.decode(line)
        if type(v) ~= "table" then
          issues[#issues + 1] = { line = lineno, column = 0, message = derr or "not a JSON object" }
        else
          for k, x in pairs(v) do if x == json.null then v[k] = nil end end
          rows[#rows + 1] = v
        end
      end
    end
    f:close()
    if read == 0 then return nil, path .. " is empty" end
    return M.from_rows(rows, { types = opts.schema }), { rows_read = read, rows_bad = #issues, issues = issues }
  end

  --- Writes the frame as CSV (nulls as empty fields). Returns true or nil, message.
  function Frame:write_csv(path, opts)
    local delim = opts and opts.delimiter and opts.delimiter:byte() or 0
    if C.tz_csv_write(self.handle, path, delim, err) ~= 0 then return nil, ffi.string(err.msg) end
    return true
  end
end
