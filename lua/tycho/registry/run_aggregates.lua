--- Group-by aggregates kept beside the runs' sort index: registry/runs.lua
-- writes them with its index entries, registry/run_stats.lua reads them.
-- For the two scopes that grow with the home ("*" and "k:KIND"), per
-- field a run can be grouped by (params.NAME, model, kind) and per value:
-- the number of runs, and per metric its n, mean, M2 (Welford's sum of
-- squared deviations), min and max:
--   g · SCOPE · FIELD · VALUE · METRIC  ->  n mean m2 min max (5 doubles)   (METRIC "": the runs)
-- VALUE is the index's typed value, a number kept at 3 significant digits
-- (a continuous parameter then has some 900 values a decade, not one per
-- run), so a group-by over 100,000 runs reads a few thousand keys. Smaller
-- scopes (a model's, a study's) are aggregated from their entries when
-- asked, with the same rounding (M.round_typed). The running stats
-- (new_stats, observe, merge, summary) are the one place both files keep
-- and finish a metric's mean and deviation.
local ffi = require "ffi"
local keys = require "tycho.util.keys"

local M = {}
local MAX_NAME = 100
M.RUNS = keys.pack("s", "")  -- the METRIC of an entry that counts runs
local scratch = ffi.new("double[5]")
local prefixes, n_prefixes = {}, 0  -- (scope, field) -> key prefix, for the writes

--- A number at 3 significant digits (what groups it).
function M.round(x)
  if x ~= x or x == math.huge or x == -math.huge then return x end
  return tonumber(string.format("%.3g", x))
end

--- An index typed value with its number (if any) at 3 significant digits.
function M.round_typed(typed)
  if typed:byte(1) ~= 1 then return typed end
  return "\1" .. keys.pack("f64", M.round((keys.unpack("f64", typed:sub(2)))))
end

--- The key prefix of field's aggregates in scope.
function M.prefix(scope, field) return keys.pack("s s s", "g", scope, field) end

--- Whether a scope keeps aggregates.
function M.kept(scope) return scope == "*" or scope:sub(1, 2) == "k:" end

--- Empty running stats.
function M.new_stats() return { n = 0, mean = 0, m2 = 0, min = math.huge, max = -math.huge } end

--- Adds x to running stats (Welford's update, stable for any n).
function M.observe(s, x)
  s.n = s.n + 1
  local d = x - s.mean
  s.mean = s.mean + d / s.n
  s.m2 = s.m2 + d * (x - s.mean)
  s.min, s.max = math.min(s.min, x), math.max(s.max, x)
end

--- Stats b folded into a (Chan's parallel update); a, or a copy of b when a is nil.
function M.merge(a, b)
  if not a then return { n = b.n, mean = b.mean, m2 = b.m2, min = b.min, max = b.max } end
  local n = a.n + b.n
  if n == 0 then return a end
  local d = b.mean - a.mean
  a.mean, a.m2 = a.mean + d * b.n / n, a.m2 + b.m2 + d * d * a.n * b.n / n
  a.n, a.min, a.max = n, math.min(a.min, b.min), math.max(a.max, b.max)
  return a
end

--- What running stats say: n, mean, the sample standard deviation (0 for
-- fewer than 2 values), min and max.
function M.summary(s)
  return { n = s.n, mean = s.mean, std = s.n > 1 and math.sqrt(s.m2 / (s.n - 1)) or 0, min = s.min, max = s.max }
end

--- Stats from a stored value (none from a damaged one).
function M.parse(v)
  if #v ~= 40 then return M.new_stats() end
  ffi.copy(scratch, v, 40)
  return { n = scratch[0], mean = scratch[1], m2 = scratch[2], min = scratch[3], max = scratch[4] }
end

local function format(s)
  scratch[0], scratch[1], scratch[2], scratch[3], scratch[4] = s.n, s.mean, s.m2, s.min, s.max
  return ffi.string(scratch, 40)
end

--- The typed value starting at pos of a key ("\1" and an f64, or "\2" and
-- an order-preserving string ended by two NULs) and what follows it: of an
-- aggregate key, the packed metric name (M.RUNS for the run count); of an
-- index entry's key (run_stats), the run's packed id.
function M.split(k, pos)
  local last = k:byte(pos) == 1 and pos + 8 or (k:find("\0\0", pos + 1, true) or #k) + 1
  return k:sub(pos, last), k:sub(last + 1)
end

local function cached_prefix(scope, field)
  local id = scope .. "\0" .. field
  local p = prefixes[id]
  if not p then
    if n_prefixes >= 1000 then prefixes, n_prefixes = {}, 0 end
    p, n_prefixes = M.prefix(scope, field), n_prefixes + 1
    prefixes[id] = p
  end
  return p
end

-- The runs of one field's value in acc: { runs, metrics = { packed name -> stats } }.
local function entry(acc, base)
  local e = acc[base]
  if not e then
    e = { runs = 0, metrics = {} }
    acc[base] = e
  end
  return e
end

-- The fields run r is grouped by, with their values.
local function groupings(r)
  local out = {}
  if type(r.model) == "string" then out[#out + 1] = { "model", r.model } end
  if type(r.kind) == "string" then out[#out + 1] = { "kind", r.kind } end
  for k, v in pairs(type(r.params) == "table" and r.params or {}) do
    local t = type(v)
    if type(k) == "string" and #k <= MAX_NAME and (t == "number" or t == "string" or t == "boolean") then
      out[#out + 1] = { "params." .. k, t == "number" and M.round(v) or v }
    end
  end
  return out
end

local function finite_metrics(r)
  local out = {}
  for k, v in pairs(type(r.metrics) == "table" and r.metrics or {}) do
    if type(k) == "string" and #k <= MAX_NAME and type(v) == "number" and v == v and v ~= math.huge
        and v ~= -math.huge then
      out[#out + 1] = { keys.pack("s", k), v }
    end
  end
  return out
end

--- Adds run r to the aggregates of those of scopes that keep them, in acc
-- (a table by field value, flushed at the end of the transaction); typed
-- is the index's typed-value encoder.
function M.add(acc, scopes, r, typed)
  local mets, fields = finite_metrics(r), groupings(r)
  for _, g in ipairs(fields) do g[2] = typed(g[2]) end
  for _, scope in ipairs(scopes) do
    if M.kept(scope) then
      for _, g in ipairs(fields) do
        if g[2] then
          local e = entry(acc, cached_prefix(scope, g[1]) .. g[2])
          e.runs = e.runs + 1
          for _, m in ipairs(mets) do
            local st = e.metrics[m[1]]
            if not st then
              st = M.new_stats()
              e.metrics[m[1]] = st
            end
            M.observe(st, m[2])
          end
        end
      end
    end
  end
end

local function put_merged(tx, db, key, s)
  local old = tx:get(db, key)
  tx:put(db, key, format(old and M.merge(M.parse(old), s) or s))
end

--- Folds acc into the stored aggregates (inside tx, in db).
function M.flush(tx, db, acc)
  for base, e in pairs(acc) do
    put_merged(tx, db, base .. M.RUNS, { n = e.runs, mean = 0, m2 = 0, min = 0, max = 0 })
    for name, s in pairs(e.metrics) do put_merged(tx, db, base .. name, s) end
  end
end

return M
