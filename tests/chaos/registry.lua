-- Chaos fixture: registers versions in a loop, killed with SIGKILL by
-- tests/chaos/run.sh.
--
--   tycho --home H run tests/chaos/registry.lua loop K
--       fits a small gbt pipeline, then K times: registers it as the next
--       version of "chaos" and promotes that version to "production" (and
--       every other one to "staging"); prints "registered V" and
--       "promoted V ALIAS" after each call returns (acknowledged).
--   tycho --home H run tests/chaos/registry.lua check ACKS
--       (a fresh process, after the kill; ACKS is the killed process's stdout)
--       checks the registry and registers one more version; exit 0 when
--       consistent, 3 when not ("INCONSISTENT: ..." on stdout).
local tycho = require "tycho"
local json = require "tycho.json"
local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local say = common.say

local NAME = "chaos"
local mode = arg[1]

if mode == "loop" then
  local pipe = common.pipeline()
  local reg = assert(tycho.registry.open())
  say("trained")
  for i = 1, tonumber(arg[2] or 30) do
    local v = assert(reg:register(NAME, pipe, { metrics = { auc = 0.9 + i / 1000 } }))
    say("registered ", v)
    assert(reg:promote(NAME, v, "production"))
    say("promoted ", v, " production")
    if i % 2 == 0 then
      assert(reg:promote(NAME, v, "staging"))
      say("promoted ", v, " staging")
    end
  end
  say("done")
  return
end

assert(mode == "check" and arg[2], "usage: registry.lua loop K | check ACKS")
local problems = {}
local function bad(fmt, ...) problems[#problems + 1] = string.format(fmt, ...) end
local function patch(v) return tonumber(v:match("^1%.0%.(%d+)$")) end

-- What the killed process was told had committed.
local acked, last_promoted = 0, {}
for line in io.lines(arg[2]) do
  local v = line:match("^registered (%S+)$")
  if v then acked = math.max(acked, patch(v) + 1) end
  local pv, alias = line:match("^promoted (%S+) (%S+)$")
  if pv then last_promoted[alias] = patch(pv) end
end

local reg = assert(tycho.registry.open())
local versions = reg:versions(NAME)
local listed = {}
if versions then for i, m in ipairs(versions) do listed[i] = m.version end end
local model = reg.store:view(function(tx) return tx:get_json("registry", "model/" .. NAME) end)

-- Versions: 1.0.0 .. 1.0.(n-1), every acknowledged one among them, at most
-- one more (registered, killed before it said so).
for i, v in ipairs(listed) do
  if v ~= string.format("1.0.%d", i - 1) then
    bad("version %d is %s: not contiguous (%s)", i, v, table.concat(listed, ","))
    break
  end
end
local n = #listed
if n < acked then bad("%d versions listed but %d were acknowledged", n, acked) end
if n > acked + 1 then bad("%d versions listed, only %d acknowledged: more than one unacknowledged", n, acked) end
if model and model.latest ~= listed[n] then bad("latest is %s, newest listed %s", tostring(model.latest), tostring(listed[n])) end

-- No half-written version: version and artifact records match the list exactly.
local metas, arts = {}, {}
reg.store:view(function(tx)
  for k in tx:scan("registry", { prefix = "version/" .. NAME .. "/" }) do metas[#metas + 1] = k:match("[^/]+$") end
  for k in tx:scan("registry", { prefix = "artifact/" .. NAME .. "/" }) do arts[#arts + 1] = k:match("[^/]+$") end
end)
if #metas ~= n or #arts ~= n then bad("%d versions listed, %d metadata records, %d artifacts", n, #metas, #arts) end

-- Every listed version loads (checksummed artifact) and predicts like the others.
local want
for _, v in ipairs(listed) do
  local p, err = reg:load(NAME, v)
  if not p then bad("version %s does not load: %s", v, tostring(err))
  else
    local out = {}
    for i, row in ipairs(common.probe) do out[i] = assert(p:predict(row)).probability end
    local got = table.concat(out, ",")
    want = want or got
    if got ~= want then bad("version %s predicts %s, others %s", v, got, want) end
  end
end

-- Aliases point at listed versions, no older than the last acknowledged promotion.
local exists = {}
for _, v in ipairs(listed) do exists[v] = true end
for alias, v in pairs(model and model.aliases or {}) do
  if not exists[v] then bad("alias %s points at %s, which is not a version", alias, tostring(v)) end
  if last_promoted[alias] and (patch(v) or -1) < last_promoted[alias] then
    bad("alias %s is at %s but 1.0.%d was acknowledged", alias, v, last_promoted[alias])
  end
  local p, err = reg:load(NAME, alias)
  if not p then bad("alias %s does not load: %s", alias, tostring(err)) end
end
for alias, pv in pairs(last_promoted) do
  if not (model and model.aliases[alias]) then bad("acknowledged alias %s (1.0.%d) is missing", alias, pv) end
end
-- Alias history: sequence numbers 1..history_seq, each naming a listed version.
local hist = reg:history(NAME) or {}
if model and #hist ~= (model.history_seq or 0) then
  bad("history has %d moves, history_seq is %s", #hist, tostring(model.history_seq))
end
for i, h in ipairs(hist) do
  if not exists[h.to] then bad("history move %d goes to %s, not a version", i, tostring(h.to)) end
end

say(string.format("after kill: %d versions (%d acknowledged), aliases %s", n, acked, json.encode(model and model.aliases or {})))

-- The registry keeps working: the next version is the next number.
local pipe = common.pipeline()
local v, err = reg:register(NAME, pipe)
if v ~= string.format("1.0.%d", n) then bad("next registration gave %s (%s), want 1.0.%d", tostring(v), tostring(err), n)
elseif not reg:load(NAME, v) then bad("new version %s does not load", v) end

if #problems > 0 then
  say("INCONSISTENT: " .. table.concat(problems, "; "))
  os.exit(3)
end
say("consistent")
