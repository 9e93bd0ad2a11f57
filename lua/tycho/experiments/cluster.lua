--- Experiments shared by every home on a Redis Cluster (TYCHO_CLUSTER, or
-- `tycho --cluster URL`): definitions and status, a bandit's counters, the
-- variant each unit first got and its outcomes live on the cluster, so
-- that every node decides from all traffic and stops when any node stops.
-- Each home's `experiments` database keeps a copy (records.lua's layout),
-- which stays the read path: the per-request status read, a bandit's
-- counters, the results and their hourly history read it as without a cluster.
--
--   local sh = cluster.of(store)         -- nil without a cluster
--   sh:before_read(store)                -- a script's read: changed definitions copied in first
--   sh:publish(store, e)                 -- define.lua's save; sh:stop(store, e, winner): events.lua's
--   sh:stick(e, unit, proposal)          -- a bandit's new unit: the variant every node gives it
--   sh:push(e, pairs, faults, token)     -- a flush's exposures (assign.lua): totals back
--   sh:record(e, triples, opts, token)   -- outcome events and feedback credits
--   sh:check(store, ms), sh:refresh(store, list)  -- serve/experiments_follow.lua's poll
--
-- Keys under the URL's ns; one experiment's all carry the hash tag
-- {exp:NAME}, so they share a slot and one script moves them together:
--   <ns>{exp:NAME}:def  hash: rec (the definition's JSON), status (the word
--                       of records.lua's "s" key), winner, started_at, stopped_at (µs)
--   <ns>{exp:NAME}:c    hash: units:V, exposures:V, sum:V, sumsq:V per variant V
--   <ns>{exp:NAME}:f    hash: target_errors, rejected_events, cluster_fallbacks
--   <ns>{exp:NAME}:u    hash: unit -> the variant it first got (HSETNX: the first node wins)
--   <ns>{exp:NAME}:o    hash: unit -> "sum count" of its outcomes
--   <ns>{exp:NAME}:done:TOKEN  what a counting script answered under TOKEN (a day)
-- and the index, in a slot of its own, that a poll reads in one GET:
--   <ns>{experiments}:epoch    INCR by every definition or status change
--   <ns>{experiments}:changes  sorted set: names, scored by the epoch that last changed them
--
-- A unit counts where its HSETNX succeeds (a bandit's first request, or an
-- A/B unit's first flush), an exposure for the variant the cluster holds.
-- When the cluster does not answer within the URL's read_ms (0: a node
-- that cannot answer now is not waited for), a new bandit unit gets this
-- worker's own choice, counted as a cluster_fallback; exposures, faults
-- and credits stay buffered for the next flush; stop refuses (503).
--
-- The scripts that count (exposures, faults, outcomes) run once per token:
-- the client sends a command again when its connection dropped after the
-- write, and a flush whose answer was lost goes again under the same token
-- (assign.lua, push_credits), so the cluster answers a repeat from what it
-- kept instead of counting it twice.
local json = require "tycho.util.json"
local errors = require "tycho.util.errors"
local timeutil = require "tycho.util.timeutil"
local online_redis = require "tycho.features.online_redis"
local records = require "tycho.experiments.records"

local M = {}
local Shared = {}
Shared.__index = Shared

-- µs between attempts to connect to a cluster that did not answer; pairs
-- (or triples) per script call, the client taking 1024 arguments.
local RETRY_US, CHUNK = 1e6, 300

local SAVE = [[
redis.call('HSET', KEYS[1], 'rec', ARGV[1])
redis.call('HSETNX', KEYS[1], 'status', 'running')
redis.call('HSETNX', KEYS[1], 'started_at', ARGV[2])
return redis.call('HGETALL', KEYS[1])
]]

-- The first stop's time stays (as a home's own stop keeps it).
local STOP = [[
redis.call('HSETNX', KEYS[1], 'rec', ARGV[3])
local s = redis.call('HGET', KEYS[1], 'status')
if not s or s:sub(1, 8) ~= 'stopped:' then redis.call('HSET', KEYS[1], 'stopped_at', ARGV[2]) end
redis.call('HSET', KEYS[1], 'status', 'stopped:' .. ARGV[1], 'winner', ARGV[1])
return redis.call('HGETALL', KEYS[1])
]]

local ANNOUNCE = [[
local e = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], e, ARGV[1])
return e
]]

-- The epoch, then the names changed after epoch ARGV[1].
local CHANGES = [[
local e = redis.call('GET', KEYS[1]) or '0'
local out = { e }
if e == ARGV[1] then return out end
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')) do out[#out + 1] = name end
return out
]]

local STICK = [[
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'units:' .. ARGV[2], 1)
  return ARGV[2]
end
return redis.call('HGET', KEYS[1], ARGV[1])
]]

-- A counting script's guard (KEYS[1]: its done key): a repeat answers what
-- the first run did.
local ONCE = [[
local done = redis.call('GET', KEYS[1])
if done then return cjson.decode(done) end
]]
local KEEP = [[
redis.call('SET', KEYS[1], cjson.encode(out), 'EX', 86400)
return out
]]

-- Exposures (unit, variant pairs): the variant each unit holds, in order.
local FLUSH = ONCE .. [[
local out = {}
for i = 1, #ARGV, 2 do
  local v = ARGV[i + 1]
  if redis.call('HSETNX', KEYS[2], ARGV[i], v) == 1 then
    redis.call('HINCRBY', KEYS[3], 'units:' .. v, 1)
  else
    v = redis.call('HGET', KEYS[2], ARGV[i])
  end
  redis.call('HINCRBY', KEYS[3], 'exposures:' .. v, 1)
  out[#out + 1] = v
end
]] .. KEEP

-- Fault counts (field, count pairs).
local FAULTS = ONCE .. [[
for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]) end
local out = { 1 }
]] .. KEEP

-- Outcomes (unit, variant, value triples after ARGV[1] binary and ARGV[2]
-- the events refused before: "" for feedback credits, whose variant must
-- be the unit's): 1 per triple applied, 0 for a unit the cluster does not
-- hold (or holds under another variant). An event for an unknown unit is
-- a rejected event.
local OUTCOMES = ONCE .. [[
local binary, out, rejected = ARGV[1] == '1', {}, tonumber(ARGV[2])
for i = 3, #ARGV, 3 do
  local v = redis.call('HGET', KEYS[2], ARGV[i])
  if not v or (ARGV[i + 1] ~= '' and ARGV[i + 1] ~= v) then
    out[#out + 1] = 0
    if rejected then rejected = rejected + 1 end
  else
    local s, n = 0, 0
    local o = redis.call('HGET', KEYS[3], ARGV[i])
    if o then
      local a, b = string.match(o, '^(%S+) (%S+)$')
      s, n = tonumber(a), tonumber(b)
    end
    local before = binary and (s > 0 and 1 or 0) or s
    s, n = s + tonumber(ARGV[i + 2]), n + 1
    local after = binary and (s > 0 and 1 or 0) or s
    redis.call('HSET', KEYS[3], ARGV[i], string.format('%.17g %d', s, n))
    if after ~= before then
      redis.call('HINCRBYFLOAT', KEYS[4], 'sum:' .. v, string.format('%.17g', after - before))
      redis.call('HINCRBYFLOAT', KEYS[4], 'sumsq:' .. v, string.format('%.17g', after * after - before * before))
    end
    out[#out + 1] = 1
  end
end
if rejected and rejected > 0 then redis.call('HINCRBY', KEYS[5], 'rejected_events', rejected) end
]] .. KEEP

-- The shared state of each store open in this process (false: no
-- cluster); weak, so that a closed store takes its entry along.
local states = setmetatable({}, { __mode = "k" })
local on_reads = true

local function new_state(url)
  return setmetatable({ url = url, names = {}, unpublished = {}, credits = {}, credit_doubt = {}, seen = -1,
                        said = {}, signatures = {} }, Shared)
end

--- The shared experiments of store: those of TYCHO_CLUSTER unless attach
-- said otherwise; nil without a cluster. Connecting waits for the first use.
function M.of(store)
  local s = states[store]
  if s == nil then
    local url = os.getenv("TYCHO_CLUSTER")
    s = url and url ~= "" and new_state(url) or false
    states[store] = s
  end
  return s or nil
end

--- Shares store's experiments on the cluster of url (false: none, the
-- home's own as without a cluster), whatever TYCHO_CLUSTER says. Returns
-- the shared state, or nil.
function M.attach(store, url)
  states[store] = url and new_state(url) or false
  return states[store] or nil
end

--- Whether a script's reads of definitions check the cluster first (true);
-- a serving worker, whose poll copies them in, says false.
function M.check_on_reads(on) on_reads = on end

local function failed(what, r, err, code)
  local why = err or tostring(type(r) == "table" and r.err or r)
  return errors.fail(err and code or errors.unavailable, "experiments on the cluster: " .. what .. ": " .. why)
end

-- The connected backend (features/online_redis.lua's, one per process and
-- URL), or nil, message, code: a cluster that did not answer is tried
-- again a second later, not on every request.
function Shared:client()
  if self.cl then return self.cl end
  local now = timeutil.now()
  if self.tried and now - self.tried < RETRY_US then return failed("connecting", nil, self.why, errors.unavailable) end
  self.tried = now
  local be, err, code = online_redis.connect(self.url)
  if not be then
    self.why = err
    return failed("connecting", nil, err, code)
  end
  self.ns, self.read_ms, self.batch = be.ns, be.read_ms, be.cl:batch()
  self.index = { be.ns .. "{experiments}:epoch", be.ns .. "{experiments}:changes" }
  self.islot = be.cl:slot(self.index[1])
  self.cl = be.cl
  return self.cl
end

--- t[i..j] as a new list (too long for unpack).
function M.slice(t, i, j)
  local out = {}
  for x = i, j do out[#out + 1] = t[x] end
  return out
end

-- Tokens unique to this process's calls (host, pid, start time, counter).
local token_prefix, token_count

--- A new token for push or record: a flush sent again under its token is
-- counted once.
function Shared.token(_)
  if not token_prefix then
    local uv = require "luv"
    token_prefix, token_count = string.format("%s-%x-%x-", uv.os_gethostname(), uv.os_getpid(), timeutil.now()), 0
  end
  token_count = token_count + 1
  return token_prefix .. token_count
end

-- An experiment's keys and slot.
function Shared:keys(name)
  local k = self.names[name]
  if not k then
    local p = self.ns .. "{exp:" .. name .. "}:"
    k = { p = p, def = p .. "def", c = p .. "c", f = p .. "f", u = p .. "u", o = p .. "o", slot = self.cl:slot(p) }
    self.names[name] = k
  end
  return k
end

-- Runs the batch (within budget_ms: the client's retry_ms when nil); the
-- batch, or nil, message, code when it or one of its replies failed.
function Shared:run(what, budget_ms)
  local b = self.batch
  local ok, err, code = self.cl:exec(b, budget_ms)
  if not ok then return failed(what, nil, err, code) end
  for i = 1, b:count() do
    local r = b:value(i)
    if type(r) == "table" and r.err then return failed(what, r) end
  end
  return b
end

local function fields(list)
  local f = {}
  for i = 1, #list, 2 do f[list[i]] = list[i + 1] end
  return f
end

-- A stored record (define.lua's) and status word from the def hash's HGETALL.
local function definition_of(h)
  local f = fields(h)
  if not f.rec then return nil end
  local rec = json.decode(f.rec)
  local word = f.status or "running"
  rec.status = word == "running" and "running" or "stopped"
  rec.winner = f.winner or rec.winner
  rec.started_at, rec.stopped_at = tonumber(f.started_at), tonumber(f.stopped_at)
  return { rec = rec, word = word }
end

-- Copies definitions into store, with zero counters for variants it lacks.
local function copy_definitions(store, defs)
  if #defs == 0 then return end
  store:update(function(tx)
    for _, d in ipairs(defs) do
      local name = d.rec.name
      tx:put_json("experiments", records.def_key(name), d.rec)
      tx:put("experiments", records.status_key(name), d.word)
      for _, v in ipairs(d.rec.variants or {}) do
        if not tx:get("experiments", records.counter_key(name, v.name)) then
          records.put_counters(tx, name, v.name, { units = 0, exposures = 0, sum = 0, sumsq = 0 })
        end
      end
    end
  end)
end

local function now_text() return string.format("%.0f", timeutil.now()) end

-- Writes a definition by script (SAVE or STOP), announces the change on
-- the index once it stands, and copies the result in: the stored record,
-- or nil, message, code.
function Shared:change(store, name, script, ...)
  local ok, err, code = self:client()
  if not ok then return nil, err, code end
  local k = self:keys(name)
  self.batch:clear()
  self.batch:add(k.slot, "EVAL", script, 1, k.def, ...)
  local b, berr, bcode = self:run("writing " .. name)
  if not b then return nil, berr, bcode end
  local d = definition_of(b:value(1))
  b:clear()
  b:add(self.islot, "EVAL", ANNOUNCE, 2, self.index[1], self.index[2], name)
  b, berr, bcode = self:run("announcing " .. name)
  if not b then return nil, berr, bcode end
  copy_definitions(store, { d })
  return d.rec
end

--- Publishes e's definition (the cluster's status, start and winner
-- stay), copied into store. The stored record, or nil, message, code; a
-- serving worker's poll publishes it again (publish_pending).
function Shared:publish(store, e)
  local rec, err, code = self:change(store, e.name, SAVE, json.encode(e:record()), now_text())
  self.unpublished[e] = not rec and store or nil
  return rec, err, code
end

--- Publishes what publish could not (declared while the cluster was away).
-- true, or nil, message, code.
function Shared:publish_pending()
  for e, store in pairs(self.unpublished) do
    local ok, err, code = self:publish(store, e)
    if not ok then return nil, err, code end
  end
  return true
end

--- Stops e on every home: every unit gets target. The stored record, or
-- nil, message, "unavailable" when the cluster did not take it.
function Shared:stop(store, e, target)
  return self:change(store, e.name, STOP, target, now_text(), json.encode(e:record()))
end

--- Copies into store the definitions changed since the last check (all,
-- the first time, or when the cluster's epoch went back). budget_ms: what
-- a read may wait (nil: the client's retry_ms). true, or nil, message, code.
function Shared:check(store, budget_ms)
  local ok, err, code = self:client()
  if not ok then return nil, err, code end
  local b = self.batch
  b:clear()
  b:add(self.islot, "EVAL", CHANGES, 2, self.index[1], self.index[2], self.seen)
  local got, gerr, gcode = self:run("reading the index", budget_ms)
  if not got then return nil, gerr, gcode end
  local r = b:value(1)
  local epoch = tonumber(r[1])
  if epoch < self.seen then
    self.seen = -1
    return self:check(store, budget_ms)
  end
  if #r > 1 then
    b:clear()
    for i = 2, #r do b:add(self:keys(r[i]).slot, "HGETALL", self:keys(r[i]).def) end
    got, gerr, gcode = self:run("reading definitions", budget_ms)
    if not got then return nil, gerr, gcode end
    local defs = {}
    for i = 1, b:count() do defs[#defs + 1] = definition_of(b:value(i)) end
    copy_definitions(store, defs)
  end
  self.seen = epoch
  return true
end

-- Says msg on stderr once until it changes (key: what it is about).
function Shared:say(key, msg)
  if self.said[key] == msg then return end
  self.said[key] = msg
  if msg then io.stderr:write("tycho: ", msg, "\n") end
end

--- check, before a script reads a definition or a status (unless
-- check_on_reads(false)), within read_ms. A cluster that does not answer
-- leaves the copy as it is.
function Shared:before_read(store)
  if not on_reads then return end
  local ok, err = self:check(store, self.read_ms)
  self:say("read", not ok and (err .. "; reading this home's copy") or nil)
end

--- The variant the cluster holds for a bandit's unit, recorded as proposal
-- (and counted) when it holds none: one round trip within read_ms. nil
-- when the cluster did not answer.
function Shared:stick(e, unit, proposal)
  if not self:client() then return nil end
  local k = self:keys(e.name)
  local b = self.batch
  b:clear()
  b:add(k.slot, "EVAL", STICK, 2, k.u, k.c, unit, proposal)
  local ok = self.cl:exec(b, self.read_ms)
  local r = b:value(1)
  if not ok or type(r) ~= "string" then return nil end
  return r
end

-- Every variant's counters, and the faults, from HGETALL replies.
local function totals(e, c, f)
  c, f = fields(c), fields(f)
  local out = {}
  for _, v in ipairs(e.variants) do
    local n = v.name
    out[n] = { units = tonumber(c["units:" .. n]) or 0, exposures = tonumber(c["exposures:" .. n]) or 0,
               sum = tonumber(c["sum:" .. n]) or 0, sumsq = tonumber(c["sumsq:" .. n]) or 0 }
  end
  local faults = {}
  for name, x in pairs(f) do faults[name] = tonumber(x) end
  return out, faults
end

-- Adds the commands reading e's totals to the batch.
local function add_totals(b, k)
  b:add(k.slot, "HGETALL", k.c)
  b:add(k.slot, "HGETALL", k.f)
end

-- The done key of a token's part.
local function done_key(k, token, part) return k.p .. "done:" .. token .. ":" .. part end

--- Sends a flush under token (Shared:token; the same token again for a
-- flush whose answer was lost, with the same pairs and faults): pairs
-- (flat unit, variant) and faults { field = count }. { variants = the
-- variant each unit holds, in order; counters = totals; faults }, or nil,
-- message, code (nothing to tell what the cluster took).
function Shared:push(e, pairs_, faults, token)
  local ok, err, code = self:client()
  if not ok then return nil, err, code end
  local k, b = self:keys(e.name), self.batch
  b:clear()
  for i = 1, #pairs_, 2 * CHUNK do
    local args = { "EVAL", FLUSH, 3, done_key(k, token, i), k.u, k.c }
    for j = i, math.min(i + 2 * CHUNK - 1, #pairs_) do args[#args + 1] = pairs_[j] end
    b:add_list(k.slot, args)
  end
  local flushes = b:count()
  local fargs = { "EVAL", FAULTS, 2, done_key(k, token, "f"), k.f }
  for field, n in pairs(faults) do fargs[#fargs + 1], fargs[#fargs + 2] = field, n end
  if #fargs > 5 then b:add_list(k.slot, fargs) end
  add_totals(b, k)
  local got, gerr, gcode = self:run("flushing " .. e.name, self.read_ms)
  if not got then return nil, gerr, gcode end
  local variants = {}
  for i = 1, flushes do
    for _, v in ipairs(b:value(i)) do variants[#variants + 1] = v end
  end
  local counters, f = totals(e, b:value(b:count() - 1), b:value(b:count()))
  return { variants = variants, counters = counters, faults = f }
end

--- Applies outcomes under token (as push's): triples (flat unit, variant
-- or "" for any, value). opts.rejected: events already refused (counted as
-- rejected events, with the units the cluster does not hold); nil for
-- feedback credits. A list of 1 (applied) or 0 per triple, or nil,
-- message, code.
function Shared:record(e, triples, opts, token)
  local ok, err, code = self:client()
  if not ok then return nil, err, code end
  local k, b = self:keys(e.name), self.batch
  b:clear()
  local binary = e.metric_type == "binary" and "1" or "0"
  local rejected = opts.rejected and tostring(opts.rejected) or ""
  for i = 1, math.max(#triples, 1), 3 * CHUNK do
    local args = { "EVAL", OUTCOMES, 5, done_key(k, token or self:token(), i), k.u, k.o, k.c, k.f, binary,
                   i == 1 and rejected or (opts.rejected and "0" or "") }
    for j = i, math.min(i + 3 * CHUNK - 1, #triples) do
      local x = triples[j]
      args[#args + 1] = type(x) == "number" and string.format("%.17g", x) or x
    end
    b:add_list(k.slot, args)
  end
  local got, gerr, gcode = self:run("recording outcomes of " .. e.name, self.read_ms)
  if not got then return nil, gerr, gcode end
  local out = {}
  for i = 1, b:count() do
    for _, x in ipairs(b:value(i)) do out[#out + 1] = x end
  end
  return out
end

--- Queues feedback credits (unit, variant, value) for e, sent by
-- push_credits after the transaction that joined them commits.
function Shared:credit(e, unit, variant, value)
  local q = self.credits[e]
  if not q then
    q = {}
    self.credits[e] = q
  end
  if #q >= 3 * 100000 then return false end
  q[#q + 1], q[#q + 2], q[#q + 3] = unit, variant, value
  return true
end

--- Sends the queued credits; those the cluster did not take stay queued.
-- Credits whose answer was lost go again alone, under their token; those
-- queued since wait for the next push. true, or nil, message, code.
function Shared:push_credits()
  for e, q in pairs(self.credits) do
    local doubt = self.credit_doubt[e] or { n = #q, token = self:token() }
    local sent = q
    if doubt.n < #q then sent = M.slice(q, 1, doubt.n) end
    local ok, err, code = self:record(e, sent, {}, doubt.token)
    if not ok then
      self.credit_doubt[e] = doubt
      return nil, err, code
    end
    self.credit_doubt[e] = nil
    self.credits[e] = sent ~= q and M.slice(q, doubt.n + 1, #q) or nil
  end
  return true
end

--- refresh of e alone, before its results are read; a cluster that does
-- not answer leaves the copy as it is.
function Shared:before_results(store, e)
  local ok, err = self:refresh(store, { [e.name] = e })
  self:say("results", not ok and (err .. "; reading this home's copy") or nil)
end

-- Writes e's totals into tx: its counters (and this hour's snapshot) and faults.
local function write_totals(tx, e, counters, faults)
  for _, v in ipairs(e.variants) do records.put_counters(tx, e.name, v.name, counters[v.name]) end
  tx:put_json("experiments", records.fault_key(e.name), faults)
end
M.write_totals = write_totals

--- Copies the cluster's totals of the experiments in list (name -> e)
-- into store, those that changed since the last refresh. true, or nil,
-- message, code.
function Shared:refresh(store, list)
  local ok, err, code = self:client()
  if not ok then return nil, err, code end
  local b, order = self.batch, {}
  b:clear()
  for _, e in pairs(list) do
    order[#order + 1] = e
    add_totals(b, self:keys(e.name))
  end
  if #order == 0 then return true end
  local got, gerr, gcode = self:run("reading counters", self.read_ms)
  if not got then return nil, gerr, gcode end
  local changed = {}
  for i, e in ipairs(order) do
    local c, f = b:value(2 * i - 1), b:value(2 * i)
    local sig = table.concat(c, "\0") .. "\1" .. table.concat(f, "\0")
    if self.signatures[e.name] ~= sig then
      self.signatures[e.name] = sig
      local counters, faults = totals(e, c, f)
      changed[#changed + 1] = { e = e, counters = counters, faults = faults }
    end
  end
  if #changed == 0 then return true end
  store:update(function(tx)
    for _, x in ipairs(changed) do write_totals(tx, x.e, x.counters, x.faults) end
  end)
  return true
end

return M
