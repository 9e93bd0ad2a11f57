--- tycho.features, ingestion: batch (CSV, JSONL, frames) and push; every row validated, the good ones
-- landed in one transaction, the rejected ones quarantined with their reasons.
local json = require "tycho.util.json"
local frame = require "tycho.core.frame"
local codec = require "tycho.features.rowcodec"
local timeutil = require "tycho.util.timeutil"
local errors = require "tycho.util.errors"
local layout = require "tycho.features.layout"
local quality = require "tycho.features.quality"
local offline_key, online_put = layout.offline_key, layout.online_put
local validation = require "tycho.features.validate"
local validate = validation.validate
local columns = require "tycho.features.ingest_columns"

local M = {}
local FS = {}


-- Which columns a tabular source has: present(row, column) for land().
-- A column the source lacks is omitted, not null: the row keeps the
-- entity's stored value for it.
local function columns_of(f)
  local has = {}
  for _, name in ipairs(f:names()) do has[name] = true end
  return function(_, column) return has[column] end
end

-- A column a row table names is present, even as JSON null (a null the
-- sender meant).
local function key_present(row, column) return row[column] ~= nil end

local function rows_of(source, v)
  -- Returns an iterator of (line, row), a list of reader issues and the
  -- source's present(row, column).
  if frame.is_frame(source) then
    return source:rows(), {}, columns_of(source), source, function(i) return i end
  end
  if type(source) ~= "string" then error("ingest: source must be a path or a frame", 3) end
  local f = io.open(source, "rb")
  if not f then return nil, "cannot open " .. source end
  local head = f:read(512) or ""
  f:close()
  if source:match("%.jsonl$") or source:match("%.ndjson$") or head:match("^%s*{") then
    local fr, rep = frame.read_jsonl(source)
    if not fr then return nil, rep end
    return fr:rows(), rep.issues, columns_of(fr), fr, function(i) return i end
  end
  if head:find("\0", 1, true) then return nil, source .. " is not a CSV or JSONL file (binary content)" end
  -- The key as text, so its format is ours to judge; feature columns with
  -- their declared types, so the reader rejects misfits. The time as the
  -- reader finds it: epoch numbers come as numbers (a text column of 10M
  -- distinct times was a dictionary of 10M strings, each parsed again),
  -- ISO-8601 times as text, and the ingest judges both.
  local schema = { [v.join_key] = "string" }
  for _, feat in ipairs(v.features) do schema[feat.column or feat.name] = feat.type end
  local fr, rep = frame.read_csv(source, { schema = schema, line_column = "_tycho_line", unique_header = true })
  if not fr then return nil, rep end
  local lines = fr:col("_tycho_line")
  local data = fr:drop("_tycho_line")
  local it = data:rows()
  return function()
    local i, row = it()
    if not i then return nil end
    return lines:get(i), row
  end, rep.issues, columns_of(fr), data, function(i) return lines:get(i) end
end

-- The quarantine file holds every rejected row up to this many; past it,
-- one closing record counts the rest (they are in the report's counts).
local QUARANTINE_MAX = 100000

local function write_quarantine(fs, view, rejected)
  if #rejected == 0 then return nil end
  os.execute("mkdir -p '" .. fs.quarantine_dir:gsub("'", "'\\''") .. "'")
  local path = string.format("%s/%s-%s.jsonl", fs.quarantine_dir, view, os.date("!%Y%m%dT%H%M%S"))
  local n = 0
  while io.open(path) do
    n = n + 1
    path = string.format("%s/%s-%s-%d.jsonl", fs.quarantine_dir, view, os.date("!%Y%m%dT%H%M%S"), n)
  end
  local f = assert(io.open(path, "w"))
  for i = 1, math.min(#rejected, QUARANTINE_MAX) do f:write(json.encode(rejected[i]), "\n") end
  if #rejected > QUARANTINE_MAX then
    f:write(json.encode({ more = #rejected - QUARANTINE_MAX, reason = "rejected rows past the first "
      .. QUARANTINE_MAX .. " are counted, not listed" }), "\n")
  end
  f:close()
  return path
end

-- The features a row leaves out (nil when it names them all).
local function omitted_by(v, row, present)
  local out
  for _, f in ipairs(v.features) do
    if not present(row, f.column or f.name) then
      out = out or {}
      out[#out + 1] = f.name
    end
  end
  return out
end

-- The row to store for values: a row that leaves features out carries the
-- entity's values for them as of its time (online and offline alike, so a
-- point-in-time join answers as the online store does).
local function complete(tx, v, entity, t, values, omitted)
  if omitted then
    local before = layout.row_at(tx, v, entity, t)
    if before then
      local old = codec.decode(before, v.by_version)
      for _, name in ipairs(omitted) do values[name] = old[name] end
    end
  end
  return codec.encode(v.version, v.current, values)
end

local finish

-- A rejected row's record, with a copy of the row (validation may have
-- left it half-read).
local function rejection(row, line, reason, source_name)
  local copy = row
  if type(row) == "table" then
    copy = {}
    for k, val in pairs(row) do copy[k] = val end
  end
  return { line = line, reason = reason, row = copy, source = source_name }
end

-- Validates rows. Returns the report so far, the rejected rows and the
-- good ones, { entity, time, values, omitted features } each, in order.
local function check(fs, v, iter, issues, source_name, present)
  local report = { view = v.name, rows_read = 0, landed = 0, rejected = 0, duplicates = 0, unchanged = 0,
                   online_updates = 0, min_time = nil, max_time = nil }
  local rejected, seen, good = {}, {}, {}
  for _, is in ipairs(issues) do
    rejected[#rejected + 1] = { line = is.line, column = is.column, reason = is.message, source = source_name }
    report.rows_read = report.rows_read + 1
  end
  local tty = require("luv").guess_handle(2) == "tty"
  for line, row in iter do
    report.rows_read = report.rows_read + 1
    if tty and report.rows_read % 100000 == 0 then
      io.stderr:write(string.format("\ringest %s: %d rows validated", v.name, report.rows_read))
    end
    local entity, t, values = validate(fs, v, row)
    if not entity then
      rejected[#rejected + 1] = rejection(row, line, t, source_name)
    else
      local k = entity .. "\0" .. t
      if seen[k] then
        report.duplicates = report.duplicates + 1
        rejected[#rejected + 1] = { line = line, reason = "duplicate of line " .. seen[k] .. " (same entity and time)",
                                    source = source_name }
      else
        seen[k] = line
        good[#good + 1] = { entity, t, values, omitted_by(v, row, present) }
      end
    end
  end
  if tty and report.rows_read >= 100000 then io.stderr:write("\n") end
  return report, rejected, good
end

-- The event times of good rows, into report's min_time and max_time.
local function span(report, good)
  for _, g in ipairs(good) do
    report.min_time = math.min(report.min_time or g[2], g[2])
    report.max_time = math.max(report.max_time or g[2], g[2])
  end
end

-- Writes good rows (check's) in one transaction, in order, to the stores
-- `to` names ("online", "offline" or both), counting in report: every row
-- is landed (it changed a store) or unchanged (the store held it already,
-- or a newer online value for an online-only write). A later row at the
-- same entity and time replaces an earlier one, as separate writes would.
local function write(fs, v, good, to, report)
  local write_offline = to ~= "online"
  local write_online = to ~= "offline"
  fs.store:update(function(tx)
    report.landed, report.unchanged, report.online_updates = 0, 0, 0
    local written, replaced = {}, {}
    for _, g in ipairs(good) do
      local entity, t = g[1], g[2]
      local enc = complete(tx, v, entity, t, g[3], g[4])
      local changed = false
      if write_offline then
        local k = offline_key(v, entity, t)
        local before = tx:get("offline", k)
        if before ~= enc then
          -- A correction of a stored row: its old values leave the statistics.
          if before then replaced[#replaced + 1] = { entity, t, codec.decode(before, v.by_version) } end
          tx:put("offline", k, enc)
          changed = true
        end
      end
      if write_online and online_put(tx, v, entity, t, enc) then
        report.online_updates = report.online_updates + 1
        changed = true
      end
      if changed then
        report.landed = report.landed + 1
        written[#written + 1] = g
      else
        report.unchanged = report.unchanged + 1
      end
    end
    quality.record(tx, v, written, replaced)
    if fs._after_land then fs._after_land(tx) end
  end)
  span(report, good)
end

-- Validates rows and writes the good ones in one transaction (write). The
-- report's counts always add up: every row read is landed, unchanged or
-- rejected (and in the quarantine, with its reason).
local function land(fs, v, iter, issues, to, source_name, present)
  local report, rejected, good = check(fs, v, iter, issues, source_name, present)
  write(fs, v, good, to, report)
  return finish(fs, v, report, rejected)
end

-- The report's rejected rows, quarantine file and time range.
function finish(fs, v, report, rejected)
  report.rejected = #rejected
  report.quarantine = write_quarantine(fs, v.name, rejected)
  report.issues = rejected
  if report.min_time then
    report.time_range = { timeutil.format(report.min_time), timeutil.format(report.max_time) }
  end
  return report
end

-- A frame through the columnar path (features/ingest_columns.lua), after
-- the reader's own rejections; or nil when it takes the row path.
local function land_columns(fs, v, fr, lines, issues, to, source_name)
  local report, rejected_rows = columns.land(fs, v, fr, lines, to, source_name)
  if not report then return nil end
  local rejected = {}
  for _, is in ipairs(issues) do
    rejected[#rejected + 1] = { line = is.line, column = is.column, reason = is.message, source = source_name }
  end
  for _, r in ipairs(rejected_rows) do rejected[#rejected + 1] = r end
  report.rows_read = report.rows_read + #issues
  return finish(fs, v, report, rejected)
end

--- Batch ingestion from a CSV or JSONL path or a frame: every row
-- validated, good rows landed in offline and online stores in one
-- transaction, rejected rows written to a quarantine file with line and
-- reason. Returns the report (rows_read, landed, rejected, duplicates,
-- unchanged (already there: re-ingesting is idempotent), time_range,
-- quarantine) or nil, message when the source cannot be read at all.
function FS:ingest(view, source, opts)
  local v, verr, vcode = self:view(view)
  if not v then return nil, verr, vcode end
  local iter, issues, present, fr, lines = rows_of(source, v)
  if not iter then return nil, issues end
  local to, name = opts and opts.to or "online_and_offline", type(source) == "string" and source or "frame"
  return land_columns(self, v, fr, lines, issues, to, name) or land(self, v, iter, issues, to, name, present)
end

-- A push's rows as a list of row tables: rows is a list already, or
-- Feast's column form { col = {v1, v2}, ... } (a short column, with
-- trailing nils in Lua, reads as nulls). nil, message, code when neither.
local function row_list(rows)
  if type(rows) ~= "table" then return errors.fail("invalid", "push needs rows") end
  if not (#rows == 0 and next(rows)) then return rows end
  local list, n = {}, 0
  for col, values in pairs(rows) do
    if type(values) ~= "table" then return errors.fail("invalid", "df column '" .. tostring(col) .. "' must be a list") end
    n = math.max(n, table.maxn(values))
  end
  for col, values in pairs(rows) do
    for i = 1, n do
      list[i] = list[i] or {}
      list[i][col] = values[i] == nil and json.null or values[i]
    end
  end
  return list
end

local function list_iter(list)
  local i = 0
  return function()
    i = i + 1
    if list[i] then return i, list[i] end
  end
end

-- With a cluster (fs.stream), rows bound for the offline store go to the
-- push stream (features/push_stream.lua), not to this home: the node that
-- keeps the offline store applies them (fs:drain_stream). They are encoded
-- before the online write, which completes a row's omitted features in
-- place: the offline node completes them from its own history.
local function push_streamed(fs, v, iter, to, present)
  local report, rejected, good = check(fs, v, iter, {}, "push", present)
  if #good > 0 then
    local entry = fs.stream.encode(good)
    if to == "online_and_offline" then write(fs, v, good, "online", report) end
    local id, e, code = fs.stream:append(v.name, entry)
    if not id then return nil, e, code end
    report.stream_id = id
  end
  report.landed, report.unchanged, report.streamed = #good, 0, #good
  span(report, good)
  return finish(fs, v, report, rejected)
end

local function push(self, view, rows, to)
  local v, verr, vcode = self:view(view)
  if not v then return nil, verr, vcode end
  if to and to ~= "online" and to ~= "offline" and to ~= "online_and_offline" then
    return errors.fail("invalid", "to must be online, offline or online_and_offline")
  end
  to = to or "online"
  local is_frame = frame.is_frame(rows)
  if self.stream and to ~= "online" then
    if is_frame then return push_streamed(self, v, rows:rows(), to, columns_of(rows)) end
    local list, lerr, lcode = row_list(rows)
    if not list then return nil, lerr, lcode end
    return push_streamed(self, v, list_iter(list), to, key_present)
  end
  if is_frame then
    return land_columns(self, v, rows, function(i) return i end, {}, to, "push")
      or land(self, v, rows:rows(), {}, to, "push", columns_of(rows))
  end
  local list, lerr, lcode = row_list(rows)
  if not list then return nil, lerr, lcode end
  return land(self, v, list_iter(list), {}, to, "push", key_present)
end

--- Push rows (Feast's push): rows is a frame, a list of row tables or a
-- Feast "df" ({column = {values...}}); to = "online" (default) | "offline"
-- | "online_and_offline". Returns the report, or nil, message, code.
-- With a cluster, rows bound for the offline store are appended to the
-- view's push stream instead of this home's offline store, and the report
-- counts them landed (with streamed and stream_id) once a replica holds
-- the entry; when none confirms it within the cluster's wait_ms, nil,
-- message, "unavailable": the online write stands, and sending the rows
-- again is safe (applying an entry twice changes nothing). An online write
-- the cluster cannot acknowledge is nil, message, "unavailable" too (the
-- transaction rolled back).
function FS:push(view, rows, to)
  local ok, report, e, code = pcall(push, self, view, rows, to)
  if ok then return report, e, code end
  return errors.caught(report)
end

M.land = land
M.write = write
M.finish = finish
M.key_present = key_present
M.methods = FS

return M
