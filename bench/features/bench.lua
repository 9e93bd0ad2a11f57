-- Feature store throughput through the Lua API (lua/tycho/features.lua), run
-- by bench/features/run, one phase per process, all on the same home:
--
--   tycho --home H run bench/features/bench.lua ingest NAME FILE.csv REPEATS
--       fs:ingest of a CSV (key `id`, time `event_time`, every other column a
--       float feature) into a fresh view per repeat; one line per repeat:
--       "ingest NAME ROWS SECONDS LANDED REJECTED BYTES"
--   tycho --home H run bench/features/bench.lua pit DIR OUT.csv REPEATS
--       ingests DIR/hist.csv into view v (key `entity`, time `t`, x float,
--       k int, ttl 0) -- "pit_ingest ROWS SECONDS LANDED REJECTED" -- then
--       times fs:historical(spine, {"v:x"}) over DIR/spine.csv REPEATS times
--       ("pit_join ROWS SECONDS NULLS" each) and writes the joined x per spine
--       row (spine order) of the last to OUT.csv
--   tycho --home H run bench/features/bench.lua online N ENTITIES
--       pushes ENTITIES rows of a 10-feature view `o` (key `key`), then times
--       N single-entity fs:online calls for all 10 features:
--       "online N SECONDS"; where fs:reader exists (the prepared hot-path
--       reader), also N reader:get calls: "online_reader N SECONDS"
--
-- Wall clock from luv's hrtime; data are read before the clock starts.
local tycho = require "tycho"
local frame = require "tycho.frame"
local uv = require "luv"

local function now() return tonumber(uv.hrtime()) / 1e9 end
local function fail(msg) io.stderr:write("bench/features: ", tostring(msg), "\n") os.exit(1) end

local fs = assert(tycho.features.open())
local phase = arg[1]

if phase == "ingest" then
  local name, path, repeats = arg[2], arg[3], tonumber(arg[4]) or 1
  local f = assert(io.open(path, "rb"))
  local header = f:read("*l")
  local bytes = f:seek("end")
  f:close()
  local schema = {}
  for col in header:gmatch("[^,]+") do
    if col ~= "id" and col ~= "event_time" then schema[col] = "float" end
  end
  fs:entity { name = "rec", join_key = "id" }
  for r = 1, repeats do
    local view = name .. "_" .. r
    assert(fs:feature_view { name = view, entity = "rec", schema = schema, timestamp = "event_time", ttl = 0 })
    collectgarbage()
    local t0 = now()
    local rep, err = fs:ingest(view, path)
    local secs = now() - t0
    if not rep then fail(err) end
    print(string.format("ingest %s %d %.6f %d %d %d", name, rep.rows_read, secs, rep.landed, rep.rejected, bytes))
  end

elseif phase == "pit" then
  local dir, out, repeats = arg[2], arg[3], tonumber(arg[4]) or 1
  fs:entity { name = "ent", join_key = "entity" }
  assert(fs:feature_view { name = "v", entity = "ent", timestamp = "t", ttl = 0,
                           schema = { x = "float", k = "int" } })
  collectgarbage()
  local t0 = now()
  local rep, err = fs:ingest("v", dir .. "/hist.csv")
  local secs = now() - t0
  if not rep then fail(err) end
  print(string.format("pit_ingest %d %.6f %d %d", rep.rows_read, secs, rep.landed, rep.rejected))
  if rep.rejected > 0 then
    io.stderr:write("bench/features: first rejection: ", tycho.json.encode(rep.issues[1]), "\n")
  end
  local spine, serr = frame.read_csv(dir .. "/spine.csv", { schema = { entity = "string", t = "int" } })
  if not spine then fail(serr) end
  rep = nil
  local joined
  for _ = 1, repeats do
    joined = nil
    collectgarbage()
    collectgarbage()
    t0 = now()
    local jerr
    joined, jerr = fs:historical(spine, { "v:x" }, { timestamp = "t" })
    secs = now() - t0
    if not joined then fail(jerr) end
    print(string.format("pit_join %d %.6f %d", joined:nrows(), secs, joined:col("x"):nulls()))
    io.stdout:flush()
  end
  assert(joined:select("x"):write_csv(out))

elseif phase == "online" then
  local n, n_ent = tonumber(arg[2]) or 200000, tonumber(arg[3]) or 10000
  fs:entity { name = "user", join_key = "key" }
  local schema, refs = {}, {}
  for j = 1, 10 do
    schema["f" .. j] = "float"
    refs[j] = "o:f" .. j
  end
  assert(fs:feature_view { name = "o", entity = "user", schema = schema, ttl = 0 })
  local cols = { key = {}, event_time = {} }
  for j = 1, 10 do cols["f" .. j] = {} end
  for i = 1, n_ent do
    cols.key[i] = "k" .. i
    cols.event_time[i] = 1600000000 + i
    for j = 1, 10 do cols["f" .. j][i] = i + j / 16 end
  end
  local order = { "key", "event_time" }
  for j = 1, 10 do order[#order + 1] = "f" .. j end
  local rep, err = fs:push("o", frame.new(cols, { order = order, types = { key = "string" } }), "online_and_offline")
  if not rep then fail(err) end
  if rep.landed ~= n_ent then fail("push landed " .. rep.landed .. " of " .. n_ent) end
  -- Random keys (MINSTD, fixed seed), made before the clock starts: as
  -- strings, each call building its entities' table as a caller does.
  -- (200,000 prepared key tables, live through the loops, were the
  -- benchmark's own heap for every GC cycle to sweep: fresh single-entity
  -- calls measured 95k/s with them and 137-149k/s without, same build.)
  local ks, s = {}, 12345
  for i = 1, n do
    s = s * 48271 % 2147483647
    ks[i] = "k" .. (s % n_ent + 1)
  end
  -- Check one answer before timing.
  local res = assert(fs:online(refs, { key = { "k7" } }))
  for j = 1, 10 do
    local col = res.results[j + 1]
    if col.statuses[1] ~= "PRESENT" or col.values[1] ~= 7 + j / 16 then
      fail("online read of k7 f" .. j .. ": " .. tostring(col.statuses[1]) .. " " .. tostring(col.values[1]))
    end
  end
  collectgarbage()
  local t0 = now()
  for i = 1, n do
    local r = fs:online(refs, { key = { ks[i] } })
    if not r then fail("online read failed") end
  end
  local secs = now() - t0
  print(string.format("online %d %.6f", n, secs))
  -- 100 entities a call (Feast's batch shape): the same n entity-rows.
  local batches = {}
  for b = 1, math.floor(n / 100) do
    local list = {}
    for j = 1, 100 do list[j] = ks[(b - 1) * 100 + j] end
    batches[b] = list
  end
  collectgarbage()
  t0 = now()
  for b = 1, #batches do
    local r = fs:online(refs, { key = batches[b] })
    if not r or #r.results[2].values ~= 100 then fail("online batch read failed") end
  end
  print(string.format("online_batch %d %.6f", #batches * 100, now() - t0))
  -- The same two loops refilling the previous answer (opts.into).
  collectgarbage()
  t0 = now()
  local last
  for i = 1, n do last = fs:online(refs, { key = { ks[i] } }, { into = last }) end
  print(string.format("online_into %d %.6f", n, now() - t0))
  collectgarbage()
  t0 = now()
  last = nil
  for b = 1, #batches do last = fs:online(refs, { key = batches[b] }, { into = last }) end
  print(string.format("online_batch_into %d %.6f", #batches * 100, now() - t0))
  -- The prepared hot-path reader, where this tycho has one (fs:reader).
  if fs.reader then
    local reader, rerr = fs:reader(refs)
    if not reader then fail("fs:reader: " .. tostring(rerr)) end
    local vals = reader:get("k7")
    for j = 1, 10 do
      if not vals or vals[j] ~= 7 + j / 16 then fail("reader:get of k7 f" .. j .. ": " .. tostring(vals and vals[j])) end
    end
    local keys1 = {}
    for i = 1, n do keys1[i] = ks[i] end
    collectgarbage()
    t0 = now()
    for i = 1, n do
      if not reader:get(keys1[i]) then fail("reader:get failed") end
    end
    secs = now() - t0
    print(string.format("online_reader %d %.6f", n, secs))
  end

else
  fail("unknown phase '" .. tostring(phase) .. "' (ingest, pit, online)")
end
