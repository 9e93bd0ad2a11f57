--- Run tracking (like MLflow's): every pipeline fit, evaluation and tuning
-- trial is recorded in the home's `runs` database under a time-ordered id.
--   tycho.runs.list { model = "gbt", kind = "fit", sort = "auc", limit = 10 }
local json = require "tycho.util.json"
local keys = require "tycho.util.keys"
local timeutil = require "tycho.util.timeutil"
local pretty = require "tycho.util.pretty"
local errors = require "tycho.util.errors"
local options = require "tycho.util.options"
local aggregates = require "tycho.registry.run_aggregates"

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

-- ---- the sort index (db runs_index) ----------------------------------------------
-- Beside every run, small keys that keep the runs ordered by each field
-- they can be sorted by, in three scopes (all runs, the runs of one model,
-- the runs of one kind), so a sorted or filtered page reads only its rows:
--   e · SCOPE · FIELD · TYPED VALUE · ID  ->  id \0 kind [\0 field...]
--   c · SCOPE                             ->  runs in the scope
--   meta                                  ->  format \0 runs indexed
-- SCOPE is "*", "m:MODEL", "k:KIND" or "s:STUDY"; FIELD is "at", "seconds", "model",
-- "kind", "metrics.NAME" or "params.NAME"; a typed value is \1 and an f64
-- (numbers first) or \2 and a string (cut at MAX_TEXT bytes). The "at"
-- entries also list the run's fields, so the runs that lack the sorted
-- field (listed after those that have it) are found without decoding any.
-- Beside them, group-by aggregates of the large scopes (run_aggregates.lua).
-- Runs recorded without the index (before it existed, or by an older
-- tycho) are indexed by a one-time rebuild: the index notes how many runs
-- it covers and is rebuilt when the runs database holds another count.
local INDEX, INDEX_FORMAT = "runs_index", "2"
local MAX_TEXT, MAX_NAME = 100, 100
local META = keys.pack("s", "meta")

local function scope_prefix(scope, field) return keys.pack("s s s", "e", scope, field) end
local function count_key(scope) return keys.pack("s s", "c", scope) end

local function at_of(id) return tonumber(tostring(id):match("^(%d+)%-%d+%-%d+$")) end
local function run_key(id) return keys.pack("i64 s", at_of(id), id) end

local function typed(v)
  if type(v) == "number" then
    if v ~= v then return nil end
    return "\1" .. keys.pack("f64", v)
  end
  if type(v) == "boolean" then v = tostring(v) end
  if type(v) ~= "string" then return nil end
  return "\2" .. keys.pack("s", v:sub(1, MAX_TEXT))
end

local function clean(s) return (tostring(s):gsub("%z", "")) end

-- The scopes a run is listed in (a tuning study's trials also in theirs).
local function scopes_of(r)
  local out = { "*" }
  if type(r.model) == "string" and #r.model <= MAX_NAME then out[#out + 1] = "m:" .. r.model end
  if type(r.kind) == "string" and #r.kind <= MAX_NAME then out[#out + 1] = "k:" .. r.kind end
  if type(r.study) == "string" and #r.study <= MAX_NAME then out[#out + 1] = "s:" .. r.study end
  return out
end

-- The run's sortable fields: { {field, typed value} } ("at" first).
local function fields_of(r)
  local out = { { "at", typed(at_of(r.id)) } }
  local function add(field, v)
    local t = typed(v)
    if t and #field <= MAX_NAME then out[#out + 1] = { field, t } end
  end
  add("seconds", r.seconds)
  add("model", r.model)
  add("kind", r.kind)
  for _, section in ipairs { "metrics", "params" } do
    if type(r[section]) == "table" then
      for k, v in pairs(r[section]) do
        if type(k) == "string" then add(section .. "." .. k, v) end
      end
    end
  end
  return out
end

-- Writes run r's index entries in tx; counts[scope] += 1, and its
-- aggregates into aggs (add_counts writes them).
local function index_run(tx, r, counts, aggs)
  if not at_of(r.id) then return end
  local fields = fields_of(r)
  local names = {}
  for i = 2, #fields do names[#names + 1] = clean(fields[i][1]) end
  local suffix = keys.pack("s", r.id)
  local kind = clean(r.kind or "")
  local plain = r.id .. "\0" .. kind
  local with_names = #names > 0 and plain .. "\0" .. table.concat(names, "\0") or plain
  local scopes = scopes_of(r)
  aggregates.add(aggs, scopes, r, typed)
  for _, scope in ipairs(scopes) do
    counts[scope] = (counts[scope] or 0) + 1
    for i, f in ipairs(fields) do
      tx:put(INDEX, scope_prefix(scope, f[1]) .. f[2] .. suffix, i == 1 and with_names or plain)
    end
  end
end

local function add_counts(tx, counts, rows, aggs)
  aggregates.flush(tx, INDEX, aggs)
  for scope, n in pairs(counts) do
    tx:put(INDEX, count_key(scope), tostring(tonumber(tx:get(INDEX, count_key(scope)) or "0") + n))
  end
  local meta = tx:get(INDEX, META)
  local covered = meta and tonumber(meta:match("^[^%z]*%z(%d+)$")) or 0
  tx:put(INDEX, META, INDEX_FORMAT .. "\0" .. (covered + rows))
end

-- Whether the index covers every run (inside tx).
local function index_current(tx)
  local meta = tx:get(INDEX, META)
  if not meta then return tx:count("runs") == 0 end
  local format, covered = meta:match("^([^%z]*)%z(%d+)$")
  return format == INDEX_FORMAT and tonumber(covered) == tx:count("runs")
end

-- Rebuilds the index when it does not cover every run (one write, once).
local function ensure_index(st)
  if st:view(index_current) then return end
  st:update(function(tx)
    if index_current(tx) then return end
    tx:clear(INDEX)
    local counts, aggs, rows = {}, {}, 0
    for _, v in tx:scan("runs") do
      rows = rows + 1
      local r = json.decode(v)
      if type(r) == "table" and type(r.id) == "string" then index_run(tx, r, counts, aggs) end
    end
    add_counts(tx, counts, rows, aggs)
  end)
end

local function new_run(run)
  counter = counter + 1
  local now = timeutil.now()
  local id = string.format("%d-%d-%d", now, require("luv").os_getpid(), counter)
  run.id, run.at = id, timeutil.format(now)
  return keys.pack("i64 s", now, id)
end

-- Writes runs (a list) in one transaction; their ids, or nil, err, code.
local function record_list(list)
  local st, err, code = open()
  if not st then return nil, err, code end
  local ids, stored = {}, {}
  for i, run in ipairs(list) do
    stored[i] = { new_run(run), json.encode(run) }
    ids[i] = run.id
  end
  local ok, perr = pcall(function()
    st:update(function(tx)
      local counts, aggs, indexed = {}, {}, index_current(tx)
      for i, run in ipairs(list) do
        tx:put("runs", stored[i][1], stored[i][2])
        if indexed then index_run(tx, run, counts, aggs) end
      end
      -- An index that was already behind is rebuilt by the next page.
      if indexed then add_counts(tx, counts, #list, aggs) end
    end)
  end)
  if not ok then return errors.fail("unavailable", tostring(perr)) end
  return ids
end

--- Records a run: { kind, model, params, metrics, seconds, data }. Returns
-- its id. Failures to record never break training: they return nil, err,
-- "unavailable".
function M.record(run)
  local ids, err, code = record_list({ run })
  if not ids then return nil, err, code end
  return ids[1]
end

--- Records many runs in one transaction (imports, and seeding a home for
-- the scale spec): a list of runs as record takes them. Returns their ids,
-- or nil, err, "unavailable".
function M.record_many(list)
  if type(list) ~= "table" then error("record_many: expected a list of runs", 2) end
  return record_list(list)
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

--- Runs, newest first, filtered by model, kind and study; sort by a metric name
-- (best first: higher for scores, lower for losses) or "seconds".
function M.list(opts)
  opts = opts or {}
  local st, err, code = open()
  if not st then return nil, err, code end
  local out = {}
  st:view(function(tx)
    for _, v in tx:scan("runs", { reverse = true }) do
      local r = json.decode(v)
      if r and (not opts.model or r.model == opts.model) and (not opts.kind or r.kind == opts.kind)
          and (not opts.study or r.study == opts.study) then
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
  local limit, offset, code = options.page(opts, 50, MAX_PAGE)
  if not limit then return nil, offset, code end
  if opts.order ~= nil and opts.order ~= "asc" and opts.order ~= "desc" then
    return errors.fail("invalid", "order is asc or desc")
  end
  if opts.study ~= nil and (type(opts.study) ~= "string" or #opts.study > MAX_NAME or opts.model) then
    return errors.fail("invalid", "study is a name of at most " .. MAX_NAME .. " bytes, given without model")
  end
  local cursor
  if opts.cursor ~= nil then
    cursor = type(opts.cursor) == "string" and unhex(opts.cursor)
    if not cursor or cursor == "" then return errors.fail("invalid", "cursor is not one this server gave") end
    if opts.sort and opts.sort ~= "at" then return errors.fail("invalid", "a cursor pages runs by time only") end
  end
  return limit, offset, cursor
end

-- The index field a sort names: "metrics.auc", "params.rounds", "seconds",
-- "model", "kind", "at" (also "id"), or a bare metric name.
local function sort_field(sort)
  if sort == nil or sort == "at" or sort == "id" then return "at" end
  if sort:match("^metrics%..") or sort:match("^params%..") then return sort end
  if sort == "seconds" or sort == "model" or sort == "kind" then return sort end
  return "metrics." .. sort
end

-- Whether sort puts the largest first when no order is given: a score
-- metric best first (higher), a loss best first (lower), anything else
-- largest (newest) first.
local function default_desc(sort)
  if sort == nil then return true end
  local section, name = sort:match("^(%a+)%.(.+)$")
  local metric = section == "metrics" and name or (not section and sort ~= "seconds" and sort ~= "model"
    and sort ~= "kind" and sort ~= "at" and sort ~= "id" and sort)
  return not metric or require("tycho.ml.metrics").higher_is_better(metric)
end

-- id, kind and (for "at" entries) the set of fields, from an entry's value.
local function entry(v)
  local id, kind, rest = v:match("^([^%z]*)%z([^%z]*)(.*)$")
  return id, kind, rest
end

local function lacks(rest, field)
  return not (rest .. "\0"):find("\0" .. field .. "\0", 1, true)
end

-- The index scope a filter reads, and the kind still to check in it.
local function scope_of(opts)
  if opts.study then return "s:" .. opts.study, opts.kind end
  if opts.model then return "m:" .. opts.model, opts.kind end
  if opts.kind then return "k:" .. opts.kind end
  return "*"
end

-- A page from the index: the runs of the scope that have the sorted field,
-- in its order, then those that lack it, newest first. Only the page's
-- rows are decoded.
local function indexed_page(st, opts, limit, offset, cursor)
  local scope, kind = scope_of(opts)
  local field = sort_field(opts.sort)
  local desc = opts.order == "desc" or (opts.order == nil and default_desc(opts.sort))
  if (opts.model and field == "model") or (opts.kind and not opts.model and field == "kind") then
    field = "at"  -- one value in the whole scope
  end
  local prefix, at_prefix = scope_prefix(scope, field), scope_prefix(scope, "at")
  if cursor and (cursor:sub(1, #prefix) ~= prefix or not desc) then
    return errors.fail("invalid", "cursor is not one this server gave")
  end
  return st:view(function(tx)
    local total = tonumber(tx:get(INDEX, count_key(scope)) or "0")
    if kind then
      total = 0
      for _, v in tx:scan(INDEX, { prefix = at_prefix }) do
        local _, k = entry(v)
        if k == kind then total = total + 1 end
      end
    end
    local ids, skip, more, last_key = {}, offset, false, nil
    local function take(k, id)
      if skip > 0 then skip = skip - 1 return true end
      if #ids < limit then
        ids[#ids + 1], last_key = id, k
        return true
      end
      more = true
      return false
    end
    for k, v in tx:scan(INDEX, { prefix = prefix, reverse = desc, to = cursor }) do
      local id, k_ = entry(v)
      if (not kind or k_ == kind) and not take(k, id) then break end
    end
    if not more and field ~= "at" then
      for k, v in tx:scan(INDEX, { prefix = at_prefix, reverse = true }) do
        local id, k_, rest = entry(v)
        if (not kind or k_ == kind) and lacks(rest, field) and not take(k, id) then break end
      end
      last_key = nil
    end
    local list = {}
    for i, id in ipairs(ids) do
      local raw = tx:get("runs", run_key(id))
      list[i] = raw and json.decode(raw) or { id = id }
    end
    local next_cursor = more and field == "at" and desc and last_key and hex(last_key) or nil
    return list, total, next_cursor, more
  end)
end

-- A page by decoding and sorting every matching run: for what the index
-- leaves out (names longer than MAX_NAME bytes).
local function full_page(opts, limit, offset)
  local all = assert(M.list { model = opts.model, kind = opts.kind, study = opts.study })
  local desc = opts.order == "desc" or (opts.order == nil and default_desc(opts.sort))
  sort_runs(all, opts.sort or "at", desc)
  local list = {}
  for i = offset + 1, math.min(offset + limit, #all) do list[#list + 1] = all[i] end
  return list, #all, nil, offset + limit < #all
end

--- One page of runs for the console: opts { model, kind, study (a tuning
-- search's trials: tune's result.study), sort ("metrics.auc",
-- "params.rounds", a bare metric name, "seconds", "model", "kind", "at"
-- (default: newest first)), order ("asc" | "desc"; default best first for
-- a metric, else largest first), limit (1..1000, default 50), offset,
-- cursor (from the last page, when paging by time, newest first) }. Runs
-- that lack the sorted field come last, newest first; ties go by id in the
-- order asked. Returns { runs, total, offset, limit, next_offset, cursor
-- (of the next page, by time only), columns (metric then param columns of
-- this page) }, or nil, message, "invalid" | "unavailable". The sort index
-- (see above) makes a page cost its rows, whatever the number of runs.
function M.page(opts)
  opts = opts or {}
  local limit, offset, cursor = check_page_opts(opts)
  if not limit then return nil, offset, cursor end
  local st, err, code = open()
  if not st then return nil, err, code end
  local list, total, next_cursor, more
  local long = #(opts.model or "") > MAX_NAME or #(opts.kind or "") > MAX_NAME or #sort_field(opts.sort) > MAX_NAME
  if long then
    if cursor then return errors.fail("invalid", "cursor is not one this server gave") end
    list, total, next_cursor, more = full_page(opts, limit, offset)
  else
    local ok, ierr = pcall(ensure_index, st)
    if not ok then return errors.fail("unavailable", tostring(ierr)) end
    list, total, next_cursor, more = indexed_page(st, opts, limit, offset, cursor)
    if not list then return nil, total, next_cursor end
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
  local at = type(id) == "string" and at_of(id)
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

-- The home's store with the sort index current.
local function indexed_store()
  local st, err, code = open()
  if not st then return nil, err, code end
  local ok, ierr = pcall(ensure_index, st)
  if not ok then return errors.fail("unavailable", tostring(ierr)) end
  return st
end

-- The sort index, for registry/run_stats.lua, which aggregates over it.
M.index = { db = INDEX, prefix = scope_prefix, count_key = count_key, scope_of = scope_of, entry = entry,
            run_key = run_key, max_name = MAX_NAME, store = indexed_store }

return M
