--- Run tracking (like MLflow's): every pipeline fit, evaluation and tuning
-- trial is recorded in the home's `runs` database under a time-ordered id.
--   tycho.runs.list { model = "gbt", kind = "fit", sort = "auc", limit = 10 }
local json = require "tycho.util.json"
local keys = require "tycho.util.keys"
local timeutil = require "tycho.util.timeutil"
local pretty = require "tycho.util.pretty"
local errors = require "tycho.util.errors"

local M = {}
local store, counter = nil, 0

local function open()
  if not store then
    local st, err = require("tycho.core.store").open()
    if not st then return errors.fail("unavailable", err) end
    store = st
  end
  return store
end

--- Records a run: { kind, model, params, metrics, seconds, data }. Returns
-- its id. Failures to record never break training: they return nil, err,
-- "unavailable".
function M.record(run)
  local st, err, code = open()
  if not st then return nil, err, code end
  counter = counter + 1
  local now = timeutil.now()
  local id = string.format("%d-%d-%d", now, require("luv").os_getpid(), counter)
  run.id, run.at = id, timeutil.format(now)
  local ok, perr = pcall(function()
    st:put("runs", keys.pack("i64 s", now, id), json.encode(run))
  end)
  if not ok then return errors.fail("unavailable", tostring(perr)) end
  return id
end

-- The columns a list of runs prints with: who and when, then every metric
-- and every parameter that any of them has.
local function columns_of(list)
  local columns, metric_names, param_names, seen = { "id", "kind", "model", "seconds" }, {}, {}, {}
  for _, r in ipairs(list) do
    for _, part in ipairs { { r.metrics, metric_names, "metrics." }, { r.params, param_names, "params." } } do
      for k, v in pairs(type(part[1]) == "table" and part[1] or {}) do
        if type(k) == "string" and type(v) ~= "table" and not seen[part[3] .. k] then
          seen[part[3] .. k] = true
          part[2][#part[2] + 1] = part[3] .. k
        end
      end
    end
  end
  table.sort(metric_names)
  table.sort(param_names)
  for _, c in ipairs(metric_names) do columns[#columns + 1] = c end
  for _, c in ipairs(param_names) do columns[#columns + 1] = c end
  return columns
end

--- Runs, newest first, filtered by model and kind; sort by a metric name
-- (best first: higher for scores, lower for losses) or "seconds".
function M.list(opts)
  opts = opts or {}
  local st, err, code = open()
  if not st then return nil, err, code end
  local out = {}
  st:view(function(tx)
    for _, v in tx:scan("runs", { reverse = true }) do
      local r = json.decode(v)
      if r and (not opts.model or r.model == opts.model) and (not opts.kind or r.kind == opts.kind) then
        out[#out + 1] = r
      end
    end
  end)
  if opts.sort then
    local lower = opts.sort == "seconds" or not require("tycho.ml.metrics").higher_is_better(opts.sort)
    local function value(r)
      if opts.sort == "seconds" then return r.seconds end
      return type(r.metrics) == "table" and r.metrics[opts.sort] or nil
    end
    table.sort(out, function(a, b)
      local va, vb = value(a), value(b)
      if va == nil then return false end
      if vb == nil then return true end
      if lower then return va < vb end
      return va > vb
    end)
  end
  if opts.limit then
    for i = #out, opts.limit + 1, -1 do out[i] = nil end
  end
  return pretty.as_table(out, columns_of(out))
end

-- ---- pages for the console (GET /v1/runs) ------------------------------------------

local MAX_PAGE = 1000

local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
local function unhex(s)
  if #s % 2 ~= 0 or s:find("[^%x]") then return nil end
  return (s:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

-- The value a run sorts by: "metrics.NAME", "params.NAME", a bare metric
-- name, "seconds" or "at".
local function sort_value(r, sort)
  local section, name = sort:match("^(%a+)%.(.+)$")
  if section == "metrics" or section == "params" then
    return type(r[section]) == "table" and r[section][name] or nil
  end
  if sort == "seconds" or sort == "at" or sort == "id" or sort == "model" or sort == "kind" then return r[sort] end
  return type(r.metrics) == "table" and r.metrics[sort] or nil
end

-- a before b in ascending order: numbers before strings, nil (and
-- tables) last whatever the order (descending flips only the first two).
local function ascending(va, vb)
  local ta, tb = type(va), type(vb)
  if ta == tb and (ta == "number" or ta == "string") then return va < vb end
  if ta == "number" then return true end
  if tb == "number" then return false end
  return ta == "string" and tb ~= "string"
end

local function sortable(v) return type(v) == "number" or type(v) == "string" or type(v) == "boolean" end

local function sort_runs(list, sort, desc)
  local values = {}
  for _, r in ipairs(list) do
    local v = sort_value(r, sort)
    if type(v) == "boolean" then v = tostring(v) end
    values[r] = sortable(v) and v or nil
  end
  table.sort(list, function(a, b)
    local va, vb = values[a], values[b]
    if va == nil or vb == nil then
      if va == vb then return a.id > b.id end
      return vb == nil
    end
    if va == vb then return a.id > b.id end
    if desc then return ascending(vb, va) end
    return ascending(va, vb)
  end)
end

local function check_page_opts(opts)
  local limit, offset = opts.limit or 50, opts.offset or 0
  if type(limit) ~= "number" or limit < 1 or limit > MAX_PAGE or limit % 1 ~= 0 then
    return errors.fail("invalid", "limit must be an integer from 1 to " .. MAX_PAGE)
  end
  if type(offset) ~= "number" or offset < 0 or offset % 1 ~= 0 then
    return errors.fail("invalid", "offset must be a non-negative integer")
  end
  if opts.order ~= nil and opts.order ~= "asc" and opts.order ~= "desc" then
    return errors.fail("invalid", "order is asc or desc")
  end
  local cursor
  if opts.cursor ~= nil then
    cursor = type(opts.cursor) == "string" and unhex(opts.cursor)
    if not cursor or cursor == "" then return errors.fail("invalid", "cursor is not one this server gave") end
    if opts.sort and opts.sort ~= "at" then return errors.fail("invalid", "a cursor pages runs by time only") end
  end
  return limit, offset, cursor
end

-- Newest first without sorting: only the page's rows are decoded when no
-- filter applies; the cursor is the last row's key.
local function page_by_time(st, opts, limit, offset, cursor)
  local filtered = opts.model or opts.kind
  local out, total, last_key, more = {}, 0, nil, false
  st:view(function(tx)
    local skip = offset
    if not filtered then total = tx:count("runs") end
    for k, v in tx:scan("runs", { reverse = true, to = cursor }) do
      local r
      if filtered then
        r = json.decode(v)
        if not (r and (not opts.model or r.model == opts.model) and (not opts.kind or r.kind == opts.kind)) then
          r = false
        end
      end
      if r ~= false then
        if filtered then total = total + 1 end
        if skip > 0 then skip = skip - 1
        elseif #out < limit then
          out[#out + 1] = r or json.decode(v)
          last_key = k
        else
          more = true
          if not filtered then break end
        end
      end
    end
  end)
  if cursor and not filtered then total = nil end  -- rows after a cursor: not worth a second count
  return out, total, more and last_key and hex(last_key) or nil, more
end

--- One page of runs for the console: opts { model, kind, sort ("metrics.auc",
-- "params.rounds", a bare metric name, "seconds", "at" (default: newest
-- first)), order ("asc" | "desc"; default best first for a metric, else
-- largest first), limit (1..1000, default 50), offset, cursor (from the
-- last page, when paging by time) }. Returns { runs, total (nil after a
-- cursor), offset, limit, next_offset, cursor (of the next page, by time
-- only), columns (metric then param columns of this page) }, or nil,
-- message, "invalid" | "unavailable".
function M.page(opts)
  opts = opts or {}
  local limit, offset, cursor = check_page_opts(opts)
  if not limit then return nil, offset, cursor end
  local st, err, code = open()
  if not st then return nil, err, code end
  local list, total, next_cursor, more
  if (opts.sort == nil or opts.sort == "at") and opts.order ~= "asc" then
    list, total, next_cursor, more = page_by_time(st, opts, limit, offset, cursor)
  else
    local all = assert(M.list { model = opts.model, kind = opts.kind })
    local desc = opts.order == "desc"
    if opts.order == nil then
      local section, name = opts.sort:match("^(%a+)%.(.+)$")
      local metric = section == "metrics" and name or (not section and opts.sort ~= "seconds" and opts.sort)
      desc = not metric or require("tycho.ml.metrics").higher_is_better(metric)
    end
    sort_runs(all, opts.sort or "at", desc)
    total, list = #all, {}
    for i = offset + 1, math.min(offset + limit, #all) do list[#list + 1] = all[i] end
    more = offset + limit < #all
  end
  local columns = columns_of(list)
  local shown = {}
  for i = 5, #columns do shown[#shown + 1] = columns[i] end
  return { runs = #list > 0 and list or json.empty_array, total = total, offset = offset, limit = limit,
           next_offset = more and offset + limit or nil, cursor = next_cursor,
           columns = #shown > 0 and shown or json.empty_array }
end

--- The run with this id, or nil, message, "not_found".
function M.get(id)
  local st, err, code = open()
  if not st then return nil, err, code end
  local at = type(id) == "string" and tonumber(id:match("^(%d+)%-%d+%-%d+$"))
  local raw = at and st:view(function(tx) return tx:get("runs", keys.pack("i64 s", at, id)) end)
  local r = raw and json.decode(raw)
  if not r then return errors.fail("not_found", "no run '" .. tostring(id) .. "'") end
  return r
end

--- Runs side by side: { runs = {run...}, params = { name = {v...} },
-- metrics = { name = {v...} }, differ = { "params.x", "metrics.y" } } (json
-- null where a run lacks one); or nil, message, code for an unknown id.
function M.compare(ids)
  local list = {}
  for i, id in ipairs(ids) do
    local r, err, code = M.get(id)
    if not r then return nil, err, code end
    list[i] = r
  end
  local doc = { runs = list, params = {}, metrics = {}, differ = {} }
  for _, section in ipairs { "params", "metrics" } do
    local names = {}
    for _, r in ipairs(list) do
      for k in pairs(type(r[section]) == "table" and r[section] or {}) do names[k] = true end
    end
    for k in pairs(names) do
      local values, differs = {}, false
      for i, r in ipairs(list) do
        local v = json.null
        if type(r[section]) == "table" and r[section][k] ~= nil then v = r[section][k] end
        values[i] = v
        if json.encode(v) ~= json.encode(values[1]) then differs = true end
      end
      doc[section][k] = values
      if differs then doc.differ[#doc.differ + 1] = section .. "." .. k end
    end
  end
  table.sort(doc.differ)
  if #doc.differ == 0 then doc.differ = json.empty_array end
  return doc
end

return M
