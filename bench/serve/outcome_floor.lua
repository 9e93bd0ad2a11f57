-- bench/serve/outcome_floor.lua: what one outcome costs in-process, on a
-- copy of a home with a prediction history under the A/B experiment (the
-- one experiment_run makes), measured in this thread's CPU time:
--   full     experiments.feedback_in, FEEDBACK_BATCH outcomes a write
--            transaction committed lazily, as serving's group commit does;
--   storage  only the store calls an outcome cannot do without: its
--            record's insert (the duplicate check), the read of its logged
--            prediction, the read and the write of its unit's record, and
--            the same commits (the entry's fields by pattern, no JSON);
--   reads    only the two reads, then the same reads again (warm).
-- The difference between full and storage is what Tycho's own code adds;
-- storage is what the data model costs on this machine's memory and disk.
--
-- usage: tycho --home COPY run bench/serve/outcome_floor.lua
-- env:   IDS_FILE (prediction ids, one a line), MODE (full), FEEDBACK_BATCH (50)
-- prints: FLOOR mode outcomes us_per_outcome minor_faults_per_outcome
local ffi = require "ffi"
local experiments = require "tycho.experiments"
local store = require "tycho.store"
local uv = require "luv"

ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } floor_timespec;
int clock_gettime(int clock, floor_timespec *ts);
]]
-- This thread's CPU time: os.clock and getrusage add up every thread's,
-- and OpenBLAS's idle threads spin.
local CLOCK_THREAD_CPUTIME_ID = 3
local ts = ffi.new("floor_timespec")
local function thread_cpu()
  ffi.C.clock_gettime(CLOCK_THREAD_CPUTIME_ID, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local mode = os.getenv("MODE") or "full"
local batch = tonumber(os.getenv("FEEDBACK_BATCH") or "50")
local ids = {}
for line in io.lines(os.getenv("IDS_FILE") or error("IDS_FILE is not set")) do
  if line ~= "" then ids[#ids + 1] = line end
end

-- Serving's workers read the home without readahead.
local st = assert(store.open(nil, { random_access = true }))

-- A string field of a log entry, by plain finds (a pattern with a capture
-- would cost more than the read it follows).
local function field(raw, name)
  local at = raw:find('"' .. name .. '":"', 1, true)
  if not at then return nil end
  local from = at + #name + 4
  return raw:sub(from, raw:find('"', from, true) - 1)
end

local function unit_key_of(raw)
  local exp, unit = field(raw, "experiment"), field(raw, "unit")
  return exp and unit and experiments.unit_key(exp, unit)
end

-- Units found by storage and reads: none means the ids or the key layout
-- are not the history's, and the figures would time misses.
local units_found = 0

-- Each function does ids[from..to] in one transaction. full keeps the
-- loaded experiments across transactions, as a server's app does.
local loaded = {}
local function full(from, to)
  local items = {}
  for i = from, to do items[#items + 1] = { prediction_id = ids[i], outcome = i % 2 } end
  st:update_lazy(function(tx) return experiments.feedback_in(tx, items, { experiments = loaded }) end)
end

local function storage(from, to)
  st:update_lazy(function(tx)
    for i = from, to do
      if tx:put_new("outcomes", ids[i], '{"outcome":1,"at":0}') then
        local raw = tx:get("predictions", (experiments.log_key(ids[i])))
        local ukey = raw and unit_key_of(raw)
        if ukey and tx:get("experiments", ukey) then
          units_found = units_found + 1
          tx:put("experiments", ukey, '{"v":"control","s":1,"n":1}')
        end
      end
    end
  end)
end

local function reads(from, to)
  st:view(function(tx)
    for i = from, to do
      local raw = tx:get("predictions", (experiments.log_key(ids[i])))
      local ukey = raw and unit_key_of(raw)
      if ukey and tx:get("experiments", ukey) then units_found = units_found + 1 end
    end
  end)
end

local function pass(label, fn)
  local faults, started = uv.getrusage().minflt, thread_cpu()
  for from = 1, #ids, batch do fn(from, math.min(from + batch - 1, #ids)) end
  local cpu = thread_cpu() - started
  print(string.format("FLOOR %s %d %.2f %.3f", label, #ids, cpu * 1e6 / #ids, (uv.getrusage().minflt - faults) / #ids))
end

local modes = { full = full, storage = storage, reads = reads }
pass(mode, modes[mode] or error("MODE is full, storage or reads"))
if mode == "reads" then pass("reads-warm", reads) end
if mode ~= "full" and units_found == 0 then error("outcome_floor: no unit of these ids is in the home") end
