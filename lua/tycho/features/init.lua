--- The feature store (Feast's vocabulary) on the home's LMDB store.
--
--   local fs = tycho.features.open()
--   fs:entity { name = "user", join_key = "user_id" }
--   fs:feature_view { name = "user_stats", entity = "user", ttl = "30d",
--                     schema = { clicks = "int", spend = { type = "float", min = 0 } } }
--   local report = fs:ingest("user_stats", "stats.csv")     -- validated, quarantined
--   local train = fs:historical(spine, { "user_stats:*" })  -- point-in-time correct
--   fs:online({ "user_stats:spend" }, { user_id = { "u1", "u2" } })
--
-- The store's methods live beside this file, by concern: catalog.lua
-- (entities, views; catalog_shared.lua when a cluster shares them),
-- validate.lua (rows against schemas), layout.lua (the
-- row layout in LMDB, defined once), ingest.lua (batch and push), refs.lua
-- (feature references, transforms), offline.lua (point-in-time joins,
-- materialisation, export), online.lua (latest values, the serving reader),
-- stream.lua (followed JSONL files, the push stream applied), duplicates.lua (features that hold the
-- same values in different views), quality.lua (data-quality metadata),
-- search.lua (views found across teams, a page at a time).
local store_mod = require "tycho.core.store"
local internal = require "tycho.internal"
local errors = require "tycho.util.errors"
local layout = require "tycho.features.layout"
local push_stream = require "tycho.features.push_stream"
local catalog_shared = require "tycho.features.catalog_shared"

local M = {}

local FS = {}
FS.__index = FS

--- Opens the feature store of a home (default: this process's home).
-- opts: home, store (an open tycho.store), quarantine_dir, cluster (a Redis
-- Cluster URL "redis://h:p[,h:p...]" for the online store; default
-- $TYCHO_CLUSTER, which `tycho --cluster URL` sets; false: the home's LMDB).
-- With a cluster, online writes (push, ingest, materialize) and reads
-- (fs:online, fs:reader) go to it (features/online_redis.lua) instead of the
-- home's online db, for every feature store of this process on that home;
-- pushes bound for the offline store go to the cluster's push stream
-- (features/push_stream.lua), which fs:drain_stream applies on the home
-- that keeps the offline store; and the feature catalog is the cluster's,
-- shared by every home on it (features/catalog_shared.lua: the home keeps
-- a copy, joined and brought up to date here).
-- nil, message, "unavailable" when the home or the cluster cannot be
-- opened, "conflict" when the home's own definitions disagree with the
-- cluster's catalog.
function M.open(opts)
  opts = opts or {}
  local st, e = store_mod.from(opts)
  if not st then return errors.fail("unavailable", e) end
  local home = opts.home or st.path or internal.home
  local cluster = opts.cluster
  if cluster == nil then cluster = os.getenv("TYCHO_CLUSTER") end
  local backend, shared
  if cluster and cluster ~= "" then
    local be, ce, code = require("tycho.features.online_redis").connect(cluster)
    if not be then return nil, ce, code end
    backend = be
    shared, ce, code = catalog_shared.attach(st, backend)
    if not shared then return nil, ce, code end
  end
  layout.set_online_backend(st, backend)
  return setmetatable({ store = st, home = home, checks = {}, compiled = {}, view_cache = {},
                        refs_cache = {}, refs_cached = 0, online_backend = backend, shared = shared,
                        stream = backend and push_stream.new(backend),
                        quarantine_dir = opts.quarantine_dir or (home .. "/quarantine") }, FS)
end

-- The store's methods, by concern, each in its own file beside this one.
for _, part in ipairs { "catalog", "validate", "ingest", "refs", "offline", "online", "stream", "duplicates", "quality",
                        "search" } do
  for name, fn in pairs(require("tycho.features." .. part).methods) do FS[name] = fn end
end

return M
