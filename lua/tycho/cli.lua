--- Subcommands written in Lua: `tycho features list | show VIEW`.
local M = {}

local function usage(text)
  io.stderr:write(text, "\n")
  return 2
end

local function open_fs()
  local fs, err = require("tycho.features").open()
  if not fs then
    io.stderr:write("tycho features: ", err, "\n")
    return nil
  end
  return fs
end

local function show_list(fs, args)
  local filter = {}
  local i = 1
  while args[i] do
    local opt, val = args[i], args[i + 1]
    if opt == "--owner" then filter.owner = val
    elseif opt == "--tag" then filter.tag = val
    elseif opt == "--search" then filter.search = val
    else return usage("tycho features list: unknown option '" .. opt .. "' (--owner, --tag, --search)") end
    if not val then return usage("tycho features list: " .. opt .. " needs a value") end
    i = i + 2
  end
  local views = fs:list(filter)
  if #views == 0 then print("no feature views") return 0 end
  print(string.format("%-24s %-12s %-10s %3s  %s", "VIEW", "ENTITY", "OWNER", "VER", "FEATURES"))
  for _, v in ipairs(views) do
    print(string.format("%-24s %-12s %-10s %3d  %s", v.name, v.entity or "", v.owner or "", v.version,
      table.concat(v.features, ", ")))
    for _, d in ipairs(v.duplicates) do print("    duplicate definition: " .. d) end
  end
  return 0
end

local function show_view(fs, name)
  if not name then return usage("usage: tycho features show VIEW") end
  local d, err = fs:describe(name)
  if not d then
    io.stderr:write("tycho features: ", err, "\n")
    return 1
  end
  print(string.format("view %s (version %d) of entity %s, join key %s", d.name, d.version, d.entity, d.join_key))
  if d.description then print(d.description) end
  print(string.format("owner %s; tags %s; ttl %ss; pii %s", d.owner or "-", table.concat(d.tags or {}, ","),
    d.ttl or 0, #d.pii > 0 and table.concat(d.pii, ",") or "none"))
  print(string.format("%d rows, %d entities, freshest event %s", d.rows, d.entities, d.freshness or "never"))
  print("")
  print(string.format("%-24s %-8s %8s %8s %12s %12s %12s", "FEATURE", "TYPE", "COUNT", "NULLS", "MEAN", "MIN", "MAX"))
  local stats = {}
  for _, s in ipairs(d.stats) do stats[s.column] = s end
  local function num(v) return v and string.format("%.6g", v) or "" end
  for _, f in ipairs(d.features) do
    local s = stats[f.name] or {}
    print(string.format("%-24s %-8s %8s %8s %12s %12s %12s", f.name, f.type, s.count or 0, s.nulls or 0,
      num(s.mean), num(s.min), num(s.max)))
  end
  for tname in pairs(d.transforms or {}) do print(string.format("%-24s %-8s (on demand)", tname, "lua")) end
  return 0
end

--- `tycho features list [--owner O] [--tag T] [--search S]` | `show VIEW`.
function M.features(sub, ...)
  local args = { ... }
  if sub ~= "list" and sub ~= "show" then
    return usage("usage: tycho features list [--owner O] [--tag T] [--search TEXT] | show VIEW")
  end
  local fs = open_fs()
  if not fs then return 1 end
  if sub == "list" then return show_list(fs, args) end
  return show_view(fs, args[1])
end

return M
