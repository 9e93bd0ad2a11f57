-- Loads a copied home into the page cache the way a serving worker would
-- have it: every page of the databases the experiment legs use, read
-- through the map without readahead (store.lua: random_access), so each
-- page is cached on its own and not in the large folios that readahead
-- or cp would make (see fresh_cache in experiment_run).
local store = require "tycho.store"
local st = assert(store.open(nil, { random_access = true }))
local entries = 0
st:view(function(tx)
  for _, db in ipairs { "predictions", "experiments", "outcomes" } do
    for _ in tx:scan(db, {}) do entries = entries + 1 end  -- an absent database scans empty
  end
end)
assert(st:random_access(), "warm_home: the home was already open with readahead")
print(string.format("warm_home: %d entries read", entries))
