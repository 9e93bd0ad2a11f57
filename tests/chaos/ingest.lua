-- Chaos fixture: one big ingest, killed with SIGKILL by tests/chaos/run.sh.
--
--   tycho --home H run tests/chaos/ingest.lua ingest CSV   defines the entity and
--       view, ingests CSV in one fs:ingest, prints "landed N"
--   tycho --home H run tests/chaos/ingest.lua check CSV N  (a fresh process, after
--       the kill) prints what is visible, then ingests CSV again; exit 0 when
--       consistent, 3 when not (the reason on stdout, "INCONSISTENT: ...")
--
-- The CSV has one row per entity (id k000001.., event_time, x = row * 0.5), so
-- the offline and online stores each hold exactly N rows of the view after a
-- complete ingest, and zero before it.
local tycho = require "tycho"
local keys = require "tycho.keys"

local mode, csv, expected = arg[1], arg[2], tonumber(arg[3])
local VIEW = "chaos_rows"

local function say(...)
  io.stdout:write(...)
  io.stdout:write("\n")
  io.stdout:flush()
end

local function define(fs)
  assert(fs:entity { name = "chaos_key", join_key = "id" })
  assert(fs:feature_view { name = VIEW, entity = "chaos_key", schema = { x = "float" } })
end

if mode == "ingest" then
  local fs = assert(tycho.features.open())
  define(fs)
  say("defined")
  local rep = assert(fs:ingest(VIEW, csv))
  say("landed ", rep.landed)
  return
end

assert(mode == "check" and csv and expected, "usage: ingest.lua ingest CSV | check CSV N")
local problems = {}
local function bad(fmt, ...) problems[#problems + 1] = string.format(fmt, ...) end

-- 1. The home opens, and what the killed ingest left is all of it or none of it.
local fs = assert(tycho.features.open())
local offline, online = 0, 0
local v = fs:view(VIEW)
if v then
  offline, online = fs.store:view(function(tx)
    local prefix = keys.pack("u32", v.id)
    local a, b = 0, 0
    for _ in tx:scan("offline", { prefix = prefix }) do a = a + 1 end
    for _ in tx:scan("online", { prefix = prefix }) do b = b + 1 end
    return a, b
  end)
  -- Every row visible decodes to its value (export decodes each one).
  local f = assert(fs:export(VIEW))
  if f:nrows() ~= offline then bad("export gives %d rows, the offline scan %d", f:nrows(), offline) end
  local ids, xs = f:col("id"), f:col("x")
  for i = 1, f:nrows() do
    local n = tonumber(ids:get(i):match("^k(%d+)$"))
    if not n or xs:get(i) ~= n * 0.5 then
      bad("row %d: id %s has x %s", i, tostring(ids:get(i)), tostring(xs:get(i)))
      break
    end
  end
end
say(string.format("after kill: view %s, offline %d, online %d", v and "defined" or "absent", offline, online))
if not ((offline == 0 and online == 0) or (offline == expected and online == expected)) then
  bad("partial ingest visible: offline %d, online %d of %d", offline, online, expected)
end
if offline == expected then
  -- Spot-check the online store through the public API.
  local probe = { "k000001", string.format("k%06d", math.floor(expected / 2)), string.format("k%06d", expected) }
  local res = assert(fs:online({ VIEW .. ":x" }, { id = probe }))
  for i, id in ipairs(probe) do
    local want = tonumber(id:sub(2)) * 0.5
    if res.results[2].statuses[i] ~= "PRESENT" or res.results[2].values[i] ~= want then
      bad("online %s: %s %s (want %s)", id, tostring(res.results[2].statuses[i]), tostring(res.results[2].values[i]), want)
    end
  end
end

-- 2. A second full ingest succeeds and gives the exact full count.
define(fs)
local rep, err = fs:ingest(VIEW, csv)
if not rep then
  bad("second ingest failed: %s", tostring(err))
else
  -- Every row is landed or unchanged (counts add up); all unchanged when
  -- the first ingest had committed, all landed when it had not.
  if rep.landed + rep.unchanged ~= expected or rep.rejected ~= 0 then
    bad("second ingest landed %d, unchanged %d, rejected %d (want %d in all, 0 rejected)", rep.landed, rep.unchanged,
      rep.rejected, expected)
  end
  if offline == expected and rep.unchanged ~= expected then
    bad("second ingest over a complete one: %d unchanged of %d", rep.unchanged, expected)
  end
  if offline == 0 and rep.landed ~= expected then
    bad("second ingest over none: %d landed of %d", rep.landed, expected)
  end
  local n = fs:export(VIEW):nrows()
  local on = fs.store:view(function(tx)
    local c = 0
    for _ in tx:scan("online", { prefix = keys.pack("u32", fs:view(VIEW).id) }) do c = c + 1 end
    return c
  end)
  if n ~= expected or on ~= expected then
    bad("after the second ingest: offline %d, online %d (want %d)", n, on, expected)
  end
  say(string.format("second ingest: landed %d, unchanged %d, offline %d, online %d", rep.landed, rep.unchanged, n, on))
end
if #problems > 0 then
  say("INCONSISTENT: " .. table.concat(problems, "; "))
  os.exit(3)
end
say("consistent (", offline == 0 and "none" or "all", ")")
