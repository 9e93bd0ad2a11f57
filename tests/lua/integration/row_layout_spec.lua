-- The feature row layout is written by Lua (features/rowcodec.lua, for every
-- ingest and push) and read by both Lua (online reads) and C (the as-of
-- join, core/store/tz_asof.c). This property keeps the two readers to one
-- layout: random schemas (every type, nulls, strings of every length, a
-- schema change between versions) read back the same through both.
local tycho = require "tycho"
local testing = require "tycho.testing"
local features, frame = tycho.features, tycho.frame

local TYPES = { "float", "int", "bool", "string" }

local function random_value(t)
  if math.random() < 0.2 then return nil end
  if t == "float" then return (math.random() - 0.5) * 10 ^ math.random(-5, 12) end
  if t == "int" then return math.random(-2 ^ 31, 2 ^ 31) * (math.random() < 0.5 and 1 or 4096) end
  if t == "bool" then return math.random() < 0.5 end
  local n = math.random(0, 40)
  local b = {}
  for i = 1, n do b[i] = string.char(math.random(32, 126)) end
  return table.concat(b)
end

describe("the feature row layout", function()
  it("reads the same through Lua and C for random schemas and rows (property)", function()
    math.randomseed(19)
    for round = 1, 6 do
      local home = testing.tmpdir()
      local fs = assert(features.open({ home = home }))
      fs:entity { name = "e", join_key = "id" }
      local schema, names = {}, {}
      for j = 1, math.random(1, 12) do
        names[j] = "f" .. j
        schema[names[j]] = TYPES[math.random(#TYPES)]
      end
      assert(fs:feature_view { name = "v", entity = "e", schema = schema })
      local function rows(n, t0)
        local cols = { id = {}, event_time = {} }
        for _, name in ipairs(names) do cols[name] = {} end
        for i = 1, n do
          cols.id[i], cols.event_time[i] = "k" .. i, t0 + i
          for _, name in ipairs(names) do cols[name][i] = random_value(schema[name]) end
        end
        local types = { id = "string", event_time = "int" }
        for _, name in ipairs(names) do types[name] = schema[name] end
        local order = { "id", "event_time" }
        for _, name in ipairs(names) do order[#order + 1] = name end
        return frame.new(cols, { types = types, order = order, n = n })
      end
      local n = math.random(1, 60)
      assert.equal(n, assert(fs:ingest("v", rows(n, 1000))).landed)
      if round % 2 == 0 then  -- a new version: old rows keep their layout
        local extra = "g" .. round
        schema[extra] = TYPES[math.random(#TYPES)]
        names[#names + 1] = extra
        assert(fs:feature_view { name = "v", entity = "e", schema = schema })
        assert(fs:ingest("v", rows(math.ceil(n / 2), 5000)))
      end
      local refs, ids, times = {}, {}, {}
      for j, name in ipairs(names) do refs[j] = "v:" .. name end
      for i = 1, n do ids[i], times[i] = "k" .. i, 10 ^ 6 end
      local joined = assert(fs:historical(frame.new({ id = ids, event_time = times }), refs))
      local online = assert(fs:online(refs, { id = ids }))
      for j, name in ipairs(names) do
        for i = 1, n do
          local via_c = joined:col(name):get(i)
          local via_lua = online.results[j + 1].values[i]
          if via_lua == require("tycho.json").null then via_lua = nil end
          assert.same(via_lua, via_c, string.format("round %d, %s (%s), row %d", round, name, schema[name], i))
        end
      end
      fs.store:close()
      testing.rmrf(home)
    end
  end)
end)
