-- The demo pipeline script: writes a few rows into the home's store under
-- ordered composite keys, reads them back by range, and prints them.
--   tycho --home /tmp/demo run examples/demo.lua
local tycho = require "tycho"
local keys = tycho.keys

local store = assert(tycho.store.open())
print("home: " .. tycho.home())

-- Events of two users, keyed (user, time) so each user's history is one range.
local events = {
  { "ada", 1700000000, "signup" }, { "alan", 1700000100, "signup" },
  { "ada", 1700000500, "login" },  { "ada", 1700003600, "purchase" },
  { "alan", 1700007200, "login" },
}
store:update(function(tx)
  for _, e in ipairs(events) do
    tx:put("demo_events", keys.pack("s u64", e[1], e[2]), tycho.json.encode({ user = e[1], t = e[2], what = e[3] }))
  end
end)

local function history(user)
  return store:view(function(tx)
    local out = {}
    for _, v in tx:scan("demo_events", { prefix = keys.pack("s", user) }) do
      out[#out + 1] = tycho.json.decode(v)
    end
    return out
  end)
end

for _, user in ipairs { "ada", "alan" } do
  local rows = history(user)
  print(string.format("%s: %d events", user, #rows))
  for _, r in ipairs(rows) do print(string.format("  %d  %s", r.t, r.what)) end
end
print(tycho.pretty.format(history("alan")[1]))
