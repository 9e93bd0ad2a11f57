--- tycho.features, streaming: a JSONL file followed with a checkpoint, and
-- the cluster's push stream applied to this home's offline store.
local json = require "tycho.util.json"
local errors = require "tycho.util.errors"
local ingest = require "tycho.features.ingest"
local push_stream = require "tycho.features.push_stream"
local land = ingest.land

local M = {}
local FS = {}
local ENOENT = 2


--- Ingests the lines appended to a JSONL file since the last call (the
-- checkpoint is saved in the same transaction as the rows, so a restart
-- neither loses nor doubles lines). Returns the report of this pass, or
-- nil, message, code.
function FS:follow_once(view, path)
  local v, verr, vcode = self:view(view)
  if not v then return nil, verr, vcode end
  local ck = "follow/" .. view .. "/" .. path
  local offset = tonumber(self.store:get("catalog", ck) or "0")
  local f, ferr, errno = io.open(path, "rb")
  if not f then return errors.fail(errno == ENOENT and "not_found" or "unavailable", "cannot open " .. path .. ": " .. ferr) end
  local size = f:seek("end")
  if size < offset then offset = 0 end  -- the file was truncated or replaced: start over
  f:seek("set", offset)
  local chunk = f:read(size - offset) or ""
  f:close()
  local complete = chunk:match("^(.*\n)") or ""  -- only whole lines; a partial one waits
  local rows, issues, lineno = {}, {}, 0
  for line in complete:gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    if line:match("%S") then
      local obj, jerr = json.decode(line)
      if type(obj) == "table" then
        rows[#rows + 1] = { lineno, obj }
      else
        issues[#issues + 1] = { line = lineno, column = 0, message = jerr or "not a JSON object" }
      end
    end
  end
  local i = 0
  local function iter()
    i = i + 1
    if rows[i] then return rows[i][1], rows[i][2] end
  end
  local new_offset = offset + #complete
  -- The checkpoint is written inside land()'s transaction, with the rows.
  self._after_land = function(tx) tx:put("catalog", ck, tostring(new_offset)) end
  local report = land(self, v, iter, issues, "online_and_offline", path, ingest.key_present)
  self._after_land = nil
  report.offset = new_offset
  return report
end

--- Tails a JSONL file: ingests appended lines every interval_ms (500) on
-- the event loop. Returns a handle with :stop().
function FS:follow(view, path, opts)
  local uv = require "luv"
  local timer = uv.new_timer()
  local interval = opts and opts.interval_ms or 500
  local on_report = opts and opts.on_report
  timer:start(0, interval, function()
    local report, ferr = self:follow_once(view, path)
    if on_report then on_report(report, ferr) end
  end)
  return { stop = function() if not timer:is_closing() then timer:stop() timer:close() end end }
end

-- Why a row of the push stream does not fit view v as this home defines
-- it (the pushing node validated it against its own catalog), or nil.
local LUA_TYPE = { float = "number", int = "number", bool = "boolean", string = "string" }
local function misfit(v, row)
  if type(row) ~= "table" or type(row[1]) ~= "string" or type(row[2]) ~= "number" or type(row[3]) ~= "table"
     or (row[4] ~= nil and type(row[4]) ~= "table") then
    return "not a pushed row (entity, time, values, omitted features)"
  end
  for _, f in ipairs(v.features) do
    local value = row[3][f.name]
    if value ~= nil and (type(value) ~= LUA_TYPE[f.type] or (f.type == "int" and value % 1 ~= 0)) then
      return string.format("feature '%s': %s does not fit its type here (%s)", f.name, tostring(value), f.type)
    end
  end
end

-- Applies entries ({ id, rows }) to the offline store in one transaction,
-- in stream order. Returns ingest's report; rows that cannot be read or do
-- not fit are rejected into the quarantine, their entry id as their line.
local function apply(fs, v, entries)
  local report = { view = v.name, rows_read = 0, landed = 0, rejected = 0, duplicates = 0, unchanged = 0,
                   online_updates = 0 }
  local good, rejected = {}, {}
  for _, en in ipairs(entries) do
    local rows, why = push_stream.decode(en.rows)
    report.rows_read = report.rows_read + (rows and #rows or 1)
    if not rows then rejected[#rejected + 1] = { line = en.id, reason = why, source = "push stream" } end
    for i, row in ipairs(rows or {}) do
      local bad = misfit(v, row)
      if bad then
        rejected[#rejected + 1] = { line = en.id .. "#" .. i, reason = bad, row = row, source = "push stream" }
      else
        good[#good + 1] = row
      end
    end
  end
  ingest.write(fs, v, good, "offline", report)
  return ingest.finish(fs, v, report, rejected)
end

-- The next entries for consumer me: those a dead consumer left (while
-- there are some), then new ones. state.claiming starts true.
local function next_entries(s, view, group, me, n, state)
  if state.claiming then
    local entries, e, code = s:claim(view, group, me, n)
    if not entries then return nil, e, code end
    if #entries > 0 then
      state.claimed = state.claimed + #entries
      return entries
    end
    state.claiming = false
  end
  return s:read(view, group, me, n)
end

local function add_counts(total, r)
  for _, k in ipairs { "rows_read", "landed", "unchanged", "rejected" } do total[k] = total[k] + r[k] end
  for _, is in ipairs(r.issues) do total.issues[#total.issues + 1] = is end
  total.quarantine = r.quarantine or total.quarantine
end

-- The stream of a feature store, and its group made for view (once per
-- process: XGROUP CREATE is a round trip).
local function stream_for(fs, view, group)
  local s = fs.stream
  if not s then return errors.fail("unavailable", "no cluster: the push stream needs --cluster URL or TYCHO_CLUSTER") end
  fs.stream_groups = fs.stream_groups or {}
  local k = view .. "\0" .. group
  if not fs.stream_groups[k] then
    local ok, e, code = s:ensure_group(view, group)
    if not ok then return nil, e, code end
    fs.stream_groups[k] = true
  end
  return s
end

--- Applies view's push stream (features/push_stream.lua) to this home's
-- offline store: first the entries a dead consumer left pending for the
-- cluster's claim_idle_ms (XAUTOCLAIM), then new ones (XREADGROUP), count
-- (100) at a time, each batch in one transaction and acknowledged after it
-- (XACK); then trims what every group has acknowledged. An entry applied
-- twice changes nothing. opts: group ("offline"), consumer (host:pid),
-- count, max_entries (default: until none is left). Returns the report
-- (entries, claimed, rows_read, landed, unchanged, rejected, issues,
-- quarantine, trimmed), or nil, message, code.
function FS:drain_stream(view, opts)
  opts = opts or {}
  local v, verr, vcode = self:view(view)
  if not v then return nil, verr, vcode end
  local group = opts.group or push_stream.GROUP
  local s, serr, scode = stream_for(self, view, group)
  if not s then return nil, serr, scode end
  local me, count, max = opts.consumer or s.consumer, opts.count or 100, opts.max_entries or math.huge
  local total = { view = view, entries = 0, rows_read = 0, landed = 0, unchanged = 0, rejected = 0, issues = {} }
  local state = { claiming = true, claimed = 0 }
  while total.entries < max do
    local entries, e, code = next_entries(s, view, group, me, math.min(count, max - total.entries), state)
    if not entries then
      self.stream_groups[view .. "\0" .. group] = nil  -- the stream may be gone: make the group again
      return nil, e, code
    end
    if #entries == 0 then break end
    add_counts(total, apply(self, v, entries))
    local ids = {}
    for i, en in ipairs(entries) do ids[i] = en.id end
    local acked, aerr, acode = s:ack(view, group, ids)
    if not acked then return nil, aerr, acode end
    total.entries = total.entries + #entries
  end
  total.claimed = state.claimed
  if total.entries > 0 then total.trimmed = s:trim(view) end
  return total
end

M.methods = FS

return M
