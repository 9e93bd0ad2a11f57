--- The serving fast path of a fitted pipeline: instances parsed from the
-- request body straight into rows of doubles (core/util/tz_rows_json), run
-- through the pipeline's elementwise steps as a flat list of operations
-- (steps.lua's dense(), run by core/kernels/tz_dense) in the model's own
-- input row, and predicted by the
-- kernel: no Lua table per instance or per value, and loops LuaJIT
-- compiles. It gives exactly what pipe:predict(row) gives for a full
-- numeric instance; anything else (a missing or non-numeric value, an
-- entity key, an unknown field, a step or post-processing it cannot run)
-- is left to the general path.
local ffi = require "ffi"
local base = require "tycho.core.base"
local errors = require "tycho.util.errors"
local frame = require "tycho.core.frame"
local kernels = require "tycho.core.kernels"
local models = require "tycho.ml.models"
local step_kinds = require "tycho.ml.steps"

local M = {}

local rows_json, ops = base.rows_json, kernels.dense
local CODES = { fill = ops.FILL, affine = ops.AFFINE, clip = ops.CLIP, log1p = ops.LOG1P, missing = ops.MISSING }

local Plan = {}
Plan.__index = Plan

-- The plan for pipe, or false when pipe cannot take the fast path.
local function build(pipe)
  local post = pipe.post
  if post ~= nil and (type(post) ~= "table" or post.lua ~= nil or post.top_k ~= nil) then return false end
  local model = pipe.model
  local features, is_input = model.features, {}
  for _, c in ipairs(pipe.inputs) do is_input[c] = true end
  -- Index order: the model's features (its input row), then the other inputs.
  local names, pos = {}, {}
  for j, c in ipairs(features) do
    if not is_input[c] then return false end  -- made by a step: no dense form
    names[j], pos[c] = c, j - 1
  end
  for _, c in ipairs(pipe.inputs) do
    if pos[c] == nil then names[#names + 1] = c end
  end
  local plan = setmetatable({ model = model, p = #features, width = #names, names = names, cap = 0,
                              nops = 0, current = 0, n_extras = ffi.new("int[1]") }, Plan)
  local list = {}
  local function add(op, j, a, b) list[#list + 1] = { CODES[op], j, a or 0, b or 0 } end
  for _, s in ipairs(pipe.steps) do
    local dense = step_kinds.kinds[s.kind].dense
    if not dense or not dense(s, pos, add) then return false end
  end
  -- The operations as C arrays for tz_dense_apply (core/kernels/tz_dense).
  local n = #list
  plan.nops, plan.op, plan.at = n, ffi.new("int[?]", n + 1), ffi.new("int[?]", n + 1)
  plan.a, plan.b = ffi.new("double[?]", n + 1), ffi.new("double[?]", n + 1)
  for i, o in ipairs(list) do plan.op[i - 1], plan.at[i - 1], plan.a[i - 1], plan.b[i - 1] = o[1], o[2], o[3], o[4] end
  plan.index = rows_json.index(names)
  if not plan.index then return false end
  plan.min_bytes = tonumber(rows_json.min_bytes(#names))
  plan.threshold = type(post) == "table" and model.task == "binary" and post.threshold or nil
  -- The logged inputs of the row predicted last, made only when the
  -- prediction log keeps them (one closure per plan, none per request).
  plan.inputs_row = function() return plan:row_table(plan.current) end
  return plan
end

--- The fast-path plan of a fitted pipeline (made once and kept), or nil
-- when the pipeline's steps or post-processing need the general path.
function M.plan(pipe)
  local plan = pipe._dense
  if plan == nil then
    plan = build(pipe)
    pipe._dense = plan
  end
  return plan or nil
end

-- Other keys an instance may carry on the fast path (ids, tags), on average.
local EXTRAS_PER_ROW = 4

--- Parses a predict body into the plan's row buffer: the number of
-- instances, or nil when the body is not the full numeric shape or holds
-- more than limit instances (the general path answers it). With extras,
-- instances may also carry other keys of scalar value (a request id): they
-- are logged with the inputs, as the general path logs them. body may be
-- a pointer to len bytes (a direct route's, made no Lua string), which the
-- plan reads until the request is answered (extras_hold, row_table).
function Plan:parse(body, limit, extras, len)
  len = len or #body
  local cap = math.min(limit + 1, math.floor(len / self.min_bytes) + 1)
  if cap > self.cap then
    self.rows = ffi.new("double[?]", cap * self.width)
    self.extras = rows_json.extras(cap * EXTRAS_PER_ROW)
    self.cap = cap
  end
  local n = rows_json.parse(self.index, body, len, self.rows, cap, extras and self.extras or nil,
                            extras and cap * EXTRAS_PER_ROW or 0, self.n_extras)
  if n < 1 or n > limit then return nil end
  self.body = body
  return n
end

--- Prediction for parsed row r (0-based): { prediction, probability? } as
-- pipe:predict(row) gives it, or nil, message. into: a table to fill
-- instead of a new one (a server's, used up before its next request).
function Plan:predict(r, into)
  local model = self.model
  local x = model:input_row()
  ffi.copy(x, self.rows + r * self.width, self.p * 8)
  ops.apply(x, self.nops, self.op, self.at, self.a, self.b)
  local raw, k = model:predict_input_row()
  if not raw then return nil, k end
  local out = into or {}
  out.prediction, out.probability = models.answer_of(model, raw, 0, k, self.threshold)
  return out
end

-- The prediction table of row r of raw (k outputs a row), as
-- pipe:predict(row) gives it.
local function prediction_at(plan, raw, k, r)
  local prediction, probability = models.answer_of(plan.model, raw, r * k, k, plan.threshold)
  return { prediction = prediction, probability = probability }
end

--- Predictions for parsed rows 0 .. n-1 in one kernel call: a list of
-- tables as Plan:predict gives each row, or nil, message.
function Plan:predict_all(n)
  local p = self.p
  if n > (self.batch_cap or 0) then
    self.cols = ffi.new("double[?]", math.max(n * p, 1))
    self.col_ptrs = ffi.new("const double*[?]", math.max(p, 1))
    self.scratch = self.scratch or ffi.new("double[?]", math.max(p, 1))
    self.batch_cap = n
  end
  for j = 0, p - 1 do self.col_ptrs[j] = self.cols + j * n end
  ops.columns(self.rows, n, self.width, p, self.scratch, self.cols, self.nops, self.op, self.at, self.a, self.b)
  local raw, k = self.model:predict_columns(self.col_ptrs, n)
  if not raw then return nil, k end
  local preds = {}
  for r = 0, n - 1 do preds[r + 1] = prediction_at(self, raw, k, r) end
  return preds
end

--- Rows a block of score_frame: the copies of the columns the steps change
-- are made one block at a time, where copies of whole columns took a third
-- of the time and memory of scoring 1M rows of 57 columns.
M.SCORE_BLOCK = 65536

-- The model's raw outputs for the n rows of inputs (double arrays in the
-- plan's order; owned[j] when inputs[j] is a copy of this call's), as
-- predict_columns gives them, block by block: the model's columns are the
-- inputs' own arrays where the steps change nothing in the block, else
-- copies with the steps applied (an owned input is changed in place).
local function predict_blocks(plan, inputs, owned, n)
  local p, block = plan.p, M.SCORE_BLOCK
  local written = {}
  for i = 0, plan.nops - 1 do written[plan.at[i] + 1] = true end
  local src = ffi.new("const double*[?]", math.max(p, 1))
  local scratch = ffi.new("double*[?]", math.max(p, 1))
  local cols = ffi.new("const double*[?]", math.max(p, 1))
  -- The copies are the plan's, kept from one call to the next: a stream
  -- of blocks would otherwise map (and zero) fresh ones for every block.
  local rows = math.min(n, block)
  if (plan.copy_rows or 0) < rows then plan.copies, plan.copy_rows = {}, rows end
  local copies = plan.copies
  for j = 1, p do
    src[j - 1] = ffi.cast("const double*", inputs[j])
    if written[j] and not owned[j] then
      copies[j] = copies[j] or ffi.new("double[?]", plan.copy_rows)
      scratch[j - 1] = copies[j]
    end
  end
  local all, k
  for lo = 0, n - 1, block do
    local m = math.min(block, n - lo)
    for j = 1, p do
      if owned[j] then scratch[j - 1] = ffi.cast("double*", inputs[j]) + lo end
    end
    ops.block(src, lo, m, p, scratch, cols, plan.nops, plan.op, plan.at, plan.a, plan.b)
    local raw, kb = plan.model:predict_columns(cols, m)
    if not raw then return nil end
    if m == n then return raw, kb end
    k = kb
    all = all or ffi.new("double[?]", n * k)
    ffi.copy(all + lo * k, raw, m * k * 8)
  end
  return all, k
end

-- The scored columns of frame f (its plan's inputs all present): the
-- prediction, and the probability for classifiers, as tz_column*s whose
-- references the caller owns; keep (bool[n], 0-based) false for the rows
-- left out because an input is null (unless fill: then they are scored,
-- nulls as missing values, as the row path's --missing fill does), and
-- those rows, 1-based. nil when an input is absent or not a number column,
-- or the model's answers are not numbers or strings.
local function score_columns(plan, f, fill)
  local n = f:nrows()
  -- Each input as doubles: a float column's own array, or a copy held here
  -- (an int column's; a column with nulls, NaN written where they are,
  -- their rows skipped unless fill).
  local inputs, owned, keep, skipped = {}, {}, ffi.new("bool[?]", n), {}
  ffi.fill(keep, n, 1)
  for j, name in ipairs(plan.names) do
    local c = f:has(name) and f:col(name)
    if not c or (c.type ~= "float" and c.type ~= "int") then return nil end
    if c.type == "float" and c:nulls() == 0 then inputs[j] = c:f64()
    else
      local copy = ffi.new("double[?]", n)
      ffi.copy(copy, c:f64(), n * 8)
      if c:nulls() > 0 then
        for r = 0, n - 1 do
          if not c:present(r + 1) then copy[r], keep[r] = 0 / 0, fill end
        end
      end
      inputs[j], owned[j] = copy, true
    end
  end
  for r = 0, n - 1 do if not keep[r] then skipped[#skipped + 1] = r + 1 end end
  local raw, k = predict_blocks(plan, inputs, owned, n)
  if not raw then return nil end
  local model, threshold = plan.model, plan.threshold
  local label = type((models.answer_of(model, raw, 0, k, threshold)))
  if label ~= "string" and label ~= "number" then return nil end
  local added = { frame.column_of("prediction", label == "string" and "string" or "float", n, function(r)
    if keep[r] then return (models.answer_of(model, raw, r * k, k, threshold)) end
  end) }
  if model.task == "binary" or model.task == "multiclass" then
    added[2] = frame.column_of("probability", "float", n, function(r)
      if keep[r] then return select(2, models.answer_of(model, raw, r * k, k, threshold)) end
    end)
  end
  return added, keep, skipped
end

-- The 1-based rows of n that keep holds.
local function kept_rows(keep, n)
  local rows = {}
  for r = 0, n - 1 do if keep[r] then rows[#rows + 1] = r + 1 end end
  return rows
end

--- Batch scoring of frame f, columns at a time (tycho score): f with a
-- `prediction` column (and `probability` for classifiers) holding what
-- pipe:predict(row) gives each row, and the 1-based rows left out because
-- an input is null (unless fill: then they are scored, nulls as missing
-- values, as the row path's --missing fill does). nil when the pipeline or
-- f needs the row path: no plan, or an input that is absent or not a
-- number column.
function M.score_frame(pipe, f, fill)
  local plan = M.plan(pipe)
  local n = f:nrows()
  if not plan or n == 0 then return nil end
  local added, keep, skipped = score_columns(plan, f, fill)
  if not added then return nil end
  local scored = f:attach(added)
  if #skipped == 0 then return scored, skipped end
  return scored:take(kept_rows(keep, n)), skipped
end

-- Names that a file's header already has (a set), and one for the line
-- column the stream adds that it has not.
local function header_of(blocks)
  local has = {}
  for _, name in ipairs(blocks:names()) do has[name] = true end
  local line_column = "tycho_line"
  while has[line_column] do line_column = "_" .. line_column end
  return has, line_column
end

-- How many skipped rows' lines and refused records' messages a score_csv
-- result keeps, over the whole file (the counts go on).
local KEEP_DETAILS = 1000

-- One block of the stream scored and written: its kept rows with their
-- added columns, after their records. nil, message on failure.
local function score_block(plan, blocks, f, line_column, fill, result)
  local n = f:nrows()
  local added, keep, skipped = score_columns(plan, f, fill)
  if not added then return errors.fail("invalid", "the model's answers are neither numbers nor strings") end
  if not result.header then
    local names = {}
    for i, c in ipairs(added) do names[i] = ffi.string(c.name) end
    local ok, err = blocks:write_header(names)
    if not ok then return nil, err end
    result.header = names
  end
  local tail = f:select({}):attach(added)
  local lines = f:col(line_column).ptr
  if #skipped > 0 then
    local rows = kept_rows(keep, n)
    tail = tail:take(rows)
    local kept = ffi.new("int64_t[?]", math.max(#rows, 1))
    for i, r in ipairs(rows) do kept[i - 1] = lines[r - 1] end
    for _, r in ipairs(skipped) do
      if #result.skipped < KEEP_DETAILS then result.skipped[#result.skipped + 1] = tonumber(lines[r - 1]) end
    end
    result.n_skipped = result.n_skipped + #skipped
    lines = kept
  end
  local n_tail = tail:nrows()
  result.scored = result.scored + n_tail
  local ok, err = true, nil
  if n_tail > 0 then ok, err = blocks:write(lines, tail) end
  tail:release()
  return ok, err
end

--- tycho score's stream for a CSV file: input read a block at a time and
-- output ("-": standard output) written as it goes, so memory stays a few
-- blocks' worth whatever the file's size. Each row kept is written as the
-- input has it (its values never reformatted), then its prediction (and
-- probability), as score_frame gives them. Every input column is read as
-- numbers: a record with anything else there is refused alone, by the
-- reader's message; a row with an empty input is skipped unless fill.
-- Returns { rows_read, scored, n_skipped, skipped (lines), n_refused,
-- refused ({line, column, message}), header (the added names) }, the
-- first KEEP_DETAILS lines and messages kept; the output is left in
-- place only when a row was scored. opts: fill, block_bytes (tests),
-- avoid: names that, in the header, leave the file to score_frame (an
-- entity key that fetches features), and progress: called with the result
-- so far after each block. nil when the pipeline or the file
-- needs score_frame: no plan, an input the header lacks, a name to avoid,
-- or an added name the header has already. nil, message on failure.
function M.score_csv(pipe, input, output, opts)
  local plan = M.plan(pipe)
  if not plan then return nil end
  local blocks, err = frame.read_csv_blocks(input, { output = output, block_bytes = opts.block_bytes })
  if not blocks then return nil, err end
  local has, line_column = header_of(blocks)
  local fits = not has.prediction and not has.probability
  for _, name in ipairs(opts.avoid or {}) do fits = fits and not has[name] end
  local schema = {}
  for name in pairs(has) do schema[name] = "string" end
  for _, name in ipairs(plan.names) do
    fits = fits and has[name]
    schema[name] = "float"
  end
  if not fits then
    blocks:close(false)
    return nil
  end
  local fill = opts.fill == true
  local read = { schema = schema, line_column = line_column, infer_rows = 1 }
  local done  -- the block scored last, whose memory the next one takes
  local result = { rows_read = 0, scored = 0, n_skipped = 0, skipped = {}, n_refused = 0, refused = {} }
  while true do
    local f, rep = blocks:next(read, done)
    if not f then
      if rep then err = rep end
      break
    end
    result.rows_read = result.rows_read + rep.rows_read
    result.n_refused = result.n_refused + rep.rows_bad
    for _, issue in ipairs(rep.issues) do
      if #result.refused < KEEP_DETAILS then result.refused[#result.refused + 1] = issue end
    end
    done = f
    if f:nrows() > 0 then
      local ok, serr = score_block(plan, blocks, f, line_column, fill, result)
      if not ok then
        err = serr
        break
      end
    end
    if opts.progress then opts.progress(result) end
  end
  if err then
    blocks:close(false)
    return nil, err
  end
  local ok, cerr = blocks:close(result.scored > 0)
  if not ok then return nil, cerr end
  return result
end

--- Parsed row r (0-based) as a table of its inputs, as the request gave them.
--- Whether an instance of the body parsed last carries one of keys (a set
-- of names) among its other keys.
function Plan:extras_hold(keys)
  local body = ffi.cast("const char*", self.body)
  for i = 0, self.n_extras[0] - 1 do
    local e = self.extras[i]
    if keys[ffi.string(body + e.key_at, e.key_len)] then return true end
  end
  return false
end

function Plan:row_table(r)
  local row, base_at = {}, r * self.width
  for j, name in ipairs(self.names) do row[name] = self.rows[base_at + j - 1] end
  local body = ffi.cast("const char*", self.body)
  for i = 0, self.n_extras[0] - 1 do
    local e = self.extras[i]
    if e.row == r and e.kind ~= rows_json.NULL then  -- null: absent, as the general path reads it
      local text = ffi.string(body + e.value_at, e.value_len)
      local value = e.kind == rows_json.STRING and text or e.kind == rows_json.NUMBER and tonumber(text)
                    or e.kind == rows_json.TRUE
      row[ffi.string(body + e.key_at, e.key_len)] = value
    end
  end
  return row
end

return M
