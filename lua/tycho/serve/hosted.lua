--- Hosted models for `tycho serve`: registry aliases followed live, online
-- features fetched by entity key, canary and shadow versions, and a
-- prediction log written off the request path in batches.
local json = require "tycho.util.json"
local keys = require "tycho.util.keys"
local timeutil = require "tycho.util.timeutil"
local uv = require "luv"
local experiments = require "tycho.experiments"
local errors = require "tycho.util.errors"

local M = {}

local Hosted = {}
Hosted.__index = Hosted

local registry, feature_store

local function reg()
  if not registry then registry = assert(require("tycho.registry").open()) end
  return registry
end

local function fs()
  if not feature_store then feature_store = assert(require("tycho.features").open()) end
  return feature_store
end

-- ---- one loaded version ------------------------------------------------------------

-- A pipeline plus the readers of its feature views: { view = { join_key,
-- reader, names (pipeline inputs it fills) } }.
function M.load_version(name, alias)
  local meta, err = reg():get(name, alias)
  if not meta then return nil, err end
  local pipe, perr = reg():load(name, meta.version)
  if not pipe then return nil, perr end
  local sources = {}
  for _, ref in ipairs(pipe.features or {}) do
    local vname = ref:match("^(.-):")
    if vname and not sources[vname] then
      local view, verr = fs():view(vname)
      if not view then return nil, verr end
      local names, refs = {}, {}
      local wanted = {}
      for _, inp in ipairs(pipe.inputs) do wanted[inp] = true end
      for _, f in ipairs(view.features) do
        if wanted[f.name] then names[#names + 1], refs[#refs + 1] = f.name, vname .. ":" .. f.name end
      end
      for tname in pairs(view.transforms or {}) do
        if wanted[tname] then names[#names + 1], refs[#refs + 1] = tname, vname .. ":" .. tname end
      end
      local reader = #refs > 0 and assert(fs():reader(refs)) or nil
      sources[vname] = { join_key = view.join_key, reader = reader, names = names }
    end
  end
  return { pipe = pipe, version = meta.version, sources = sources }
end

--- Hosts `name` following `opts.alias` (default "production"), with
-- optional canary = {alias, percent} and shadow = {alias}.
function M.host(name, opts)
  opts = opts or {}
  return setmetatable({ name = name, alias = opts.alias or "production", canary = opts.canary,
                        shadow = opts.shadow, live = {}, errors = {} }, Hosted)
end

--- Splits this model's traffic by an experiment whose variants name
-- model versions ("spam@staging", "spam_lr@production").
function Hosted:attach(experiment)
  self.experiment = experiment
  -- The live slot of each variant, named once (the predict path looks them up).
  self.variant_slots = {}
  for _, v in ipairs(experiment.variants) do self.variant_slots[v.name] = "variant:" .. v.name end
end

-- (Re)loads the version an alias of `model` (default: this one) points at
-- when it moved; a version that fails to load leaves the previous one
-- serving and records why.
function Hosted:refresh_one(slot, alias, model)
  model = model or self.name
  local meta = reg():get(model, alias)
  local current = self.live[slot]
  if not meta then
    if not current then self.errors[slot] = "no version for alias " .. model .. "@" .. alias end
    return
  end
  if current and current.version == meta.version then return end
  -- Slots on the same version share one loaded copy (an experiment's
  -- control is usually the hosted version itself): memory, and caches.
  for _, other in pairs(self.live) do
    if other.model == model and other.version == meta.version then
      self.live[slot], self.errors[slot] = other, nil
      return
    end
  end
  local loaded, err = M.load_version(model, meta.version)
  if loaded then
    loaded.model = model
    self.live[slot], self.errors[slot] = loaded, nil
  else
    self.errors[slot] = "version " .. meta.version .. " of " .. model .. " failed to load: " .. tostring(err)
    io.stderr:write("tycho serve: ", self.name, " ", self.errors[slot], "\n")
  end
end

function Hosted:refresh()
  self:refresh_one("main", self.alias)
  if self.canary then self:refresh_one("canary", self.canary.alias) end
  if self.shadow then self:refresh_one("shadow", self.shadow.alias) end
  if self.experiment then
    for _, v in ipairs(self.experiment.variants) do
      local model, alias = experiments.parse_model_ref(v.model)
      self:refresh_one("variant:" .. v.name, alias, model)
    end
  end
end

-- An experiment splits traffic only while every variant's model is loaded;
-- until then all units get the hosted version and none is counted.
function Hosted:experiment_ready()
  local e = self.experiment
  if not e then return false end
  for _, v in ipairs(e.variants) do
    if not self.live[self.variant_slots[v.name]] then return false end
  end
  return true
end

function Hosted:ready() return self.live.main ~= nil end

-- Stable hash of a unit into [0, 100).
local function bucket(unit)
  local h = 2166136261
  for i = 1, #unit do h = bit.band(bit.bxor(h, unit:byte(i)) * 16777619, 0x7fffffff) end
  return h % 100
end

-- Fills an instance's row: online features for each entity key present,
-- request fields as given. Returns row, missing feature names.
function M.assemble(version, inst)
  local row, missing = {}, {}
  for k, v in pairs(inst) do if v ~= json.null then row[k] = v end end
  for _, src in pairs(version.sources) do
    local key = inst[src.join_key]
    if key ~= nil and src.reader then
      local values = src.reader:get(key)
      for i, name in ipairs(src.names) do
        local v = values and values[i]
        if v == nil then missing[#missing + 1] = name elseif row[name] == nil then row[name] = v end
      end
    end
  end
  return row, missing
end

local function predict_one(version, inst)
  local row, missing = M.assemble(version, inst)
  local started = uv.hrtime()
  local out, err = version.pipe:predict(row)
  return out, err, missing, row, tonumber(uv.hrtime() - started) / 1e6
end

-- The version an instance goes to: canary by a stable hash of its unit,
-- or, when split (the experiment is ready, checked once per request), the
-- variant the experiment assigns. Returns version, the experiment's
-- variant, and the unit when it is counted in the experiment.
function Hosted:route(inst, req, split)
  local main = self.live.main
  if split then
    local e = self.experiment
    local unit = inst[e.unit]
    local v, counted = e:assign(unit, req, nil, inst)
    return self.live[self.variant_slots[v.name]], v.name, counted and tostring(unit) or nil
  end
  if self.canary and self.live.canary then
    local unit = inst[next(main.sources) and main.sources[next(main.sources)].join_key or ""] or inst.id
    unit = unit and tostring(unit) or tostring(uv.hrtime())
    if bucket(unit) < (self.canary.percent or 0) then return self.live.canary end
  end
  return main
end

-- Off the request path: the shadow answer is computed after this response
-- and only logged. (A function of its own: a closure in predict's loop
-- would stop LuaJIT's trace there on every instance.)
function Hosted:shadow_later(inst, log)
  local shadow = self.live.shadow
  local t = uv.new_timer()
  t:start(0, 0, function()
    t:close()
    local sout, _, _, srow, sms = predict_one(shadow, inst)
    if sout and log then
      log { model = self.name, version = shadow.version, inputs = srow, output = sout, ms = sms, role = "shadow" }
    end
  end)
end

--- Predicts every instance. Returns the response table, or nil, message,
-- code (tycho.util.errors) for a request-level error. `log` receives each prediction.
function Hosted:predict(instances, log, req)
  local main = self.live.main
  if not main then
    return errors.fail("unavailable", "model " .. self.name .. " has no loadable version: " .. tostring(self.errors.main))
  end
  local preds, ids, missing_all, versions, variants = {}, {}, {}, {}, {}
  local e = self.experiment
  local split = e ~= nil and self:experiment_ready()
  for i, inst in ipairs(instances) do
    if type(inst) ~= "table" then return errors.fail("invalid", "instance " .. i .. " is not an object") end
    if split then
      local unit = inst[e.unit]
      if (type(unit) == "string" or type(unit) == "number") and #tostring(unit) > experiments.MAX_UNIT_BYTES then
        return errors.fail("invalid", string.format("instance %d: %s is longer than %d bytes", i, e.unit,
          experiments.MAX_UNIT_BYTES))
      end
    end
    local version, variant, unit = self:route(inst, req, split)
    local out, err, missing, row, ms = predict_one(version, inst)
    if not out then
      if log then log { model = version.model or self.name, version = version.version, error = tostring(err) } end
      return errors.fail("invalid", "instance " .. i .. ": " .. tostring(err))
    end
    preds[i], versions[i] = out, version.version
    variants[i] = variant or json.null
    if #missing > 0 then missing_all[i] = missing end
    -- id, at and role are filled in by log(): named here so that the table
    -- is made with room for them (adding them to a full one rehashes it).
    ids[i] = log and log { model = version.model or self.name, version = version.version, inputs = row, output = out,
                           ms = ms, experiment = unit and e.name, variant = unit and variant, unit = unit,
                           id = false, at = false, role = "live" } or nil
    if self.shadow and self.live.shadow then self:shadow_later(inst, log) end
  end
  local res = { predictions = preds, model_version = main.version, prediction_ids = ids,
                experiment = split and e.name or nil, variants = split and variants or nil }
  if next(missing_all) then res.missing_features = missing_all end
  local mixed = false
  for _, v in ipairs(versions) do if v ~= main.version then mixed = true end end
  if mixed then res.model_versions = versions end
  return res
end

function Hosted:describe()
  local main = self.live.main
  return { name = self.name, version = main and main.version or json.null, ready = main ~= nil,
           alias = self.alias, canary = self.live.canary and self.live.canary.version or nil,
           shadow = self.live.shadow and self.live.shadow.version or nil, error = self.errors.main }
end

-- ---- the prediction log ------------------------------------------------------------

--- Deletes up to `limit` (10000) prediction log entries logged before
-- `before` (µs), with their outcomes; their keys start with the time, so
-- they are the first ones in order. The bound keeps one flush short: a
-- large backlog goes over several flushes. Returns the count.
function M.prune(tx, before, limit)
  local old = {}
  for k, v in tx:scan("predictions", { to = keys.pack("i64", before), limit = limit or 10000 }) do
    old[#old + 1] = { k, v }
  end
  for _, kv in ipairs(old) do
    tx:delete("predictions", kv[1])
    local _, id = keys.unpack("i64 s", kv[1])
    tx:delete("outcomes", id)
  end
  return #old
end

--- A logger that buffers predictions and writes them in one transaction
-- every interval_ms (200) or 500 entries. Every prediction's id, model,
-- version, output and latency are kept; its inputs only for one in
-- sample_every (20) predictions, which is enough for drift statistics and
-- keeps the log small. opts.retain (a duration, default "7d") bounds the
-- log: every flush deletes a bounded batch of entries older than that.
-- opts.on_flush(tx) runs in each flush's transaction (experiment
-- exposures, pending feedback); opts.has_work() asks whether an idle log
-- should still flush for it.
-- Returns log(entry) -> prediction id, where entry = { model, version,
-- inputs, output, ms, role ("live"/"shadow"), error, experiment, variant,
-- unit }; flush(); and commit(write, done), the group commit: write(tx)
-- joins the next flush, at most group_ms (5) away, and done(ok, result)
-- runs once that flush has committed and is on disk (or failed: ok false).
-- Writes that arrive together share one commit and its disk flushes. The group
-- closes early once opts.group_max (32) wait or opts.all_waiting() (the
-- HTTP server: every client waits for an answer) is true.
function M.prediction_log(opts)
  opts = opts or {}
  local buffer, counter = {}, 0
  local waiting = {}  -- flat pairs: write, done
  local retain_us = timeutil.duration(opts.retain or "7d") * 1e6
  local sample_every = opts.sample_every or 20
  local pid = uv.os_getpid()
  local st
  local flush_max = 500
  local group_ms, group_max = opts.group_ms or 5, opts.group_max or 32
  local group_timer = uv.new_timer()
  group_timer:unref()
  -- Runs the waiting writes in tx, each under its own pcall so that one
  -- that raises fails alone; returns their outcomes as flat pairs. A full
  -- map is raised on: the update grows it and runs everything again. (A
  -- write whose LMDB call failed otherwise leaves the transaction unusable:
  -- its commit fails and every write in it is answered with that failure.)
  local MAP_FULL = require("tycho.core.store").MAP_FULL
  local function run_waiting(tx, list)
    local out = {}
    for i = 1, #list, 2 do
      out[i], out[i + 1] = pcall(list[i], tx)
      if out[i + 1] == MAP_FULL then error(MAP_FULL, 0) end
    end
    return out
  end
  -- Every waiting write hears back, even if an earlier callback raises:
  -- with its outcome, or with failure `why` when outcomes is nil.
  local function answer(joined, outcomes, why)
    for i = 2, #joined, 2 do
      local dok, derr
      if outcomes then dok, derr = pcall(joined[i], outcomes[i - 1], outcomes[i])
      else dok, derr = pcall(joined[i], false, why) end
      if not dok then io.stderr:write("tycho serve: group commit callback: ", tostring(derr), "\n") end
    end
  end
  -- flush(): one transaction for the buffered entries, the on_flush hook
  -- and the waiting group-commit writes; returns ok, error. An idle log
  -- writes nothing unless opts.has_work() says the hook has work.
  -- The commit flushes the data to disk but leaves its meta page to the
  -- next commit or to the sync that the waiting writes are answered after
  -- (Store:update_lazy): one disk flush on the event loop per commit instead
  -- of two, and none for the sync. Entries in the buffer were never durable,
  -- so a log commit undone by an OS crash loses nothing that was promised.
  local function flush()
    local joined = waiting
    if #buffer == 0 and #joined == 0 and not (opts.has_work and opts.has_work()) then return true end
    local batch = buffer
    buffer, waiting = {}, {}
    group_timer:stop()
    local outcomes
    st = st or assert(require("tycho.core.store").open())
    local ok, res = pcall(st.update_lazy, st, function(tx)
      for _, e in ipairs(batch) do tx:put("predictions", e[1], e[2]) end
      M.prune(tx, timeutil.now() - retain_us, 1000)
      if opts.on_flush then opts.on_flush(tx) end
      if #joined > 0 then outcomes = run_waiting(tx, joined) end
    end)
    if not ok then
      io.stderr:write("tycho serve: prediction log: ", tostring(res), "\n")
      -- Kept for the next flush (bounded: a store that keeps failing must
      -- not take the worker's memory with it).
      if #buffer + #batch <= 100000 then
        local n = #batch
        for i, e in ipairs(buffer) do batch[n + i] = e end
        buffer = batch
      end
    end
    if #joined > 0 then
      if ok then st:sync(function(sok, serr) answer(joined, sok and outcomes, serr) end)
      else answer(joined, nil, res) end
    end
    return ok, res
  end
  local timer = uv.new_timer()
  timer:start(opts.interval_ms or 200, opts.interval_ms or 200, flush)
  timer:unref()  -- the log never keeps a draining worker alive
  -- The waiting writes commit group_ms after the first, or on the next
  -- loop turn once group_max wait or once opts.all_waiting() says that
  -- every client waits for one of them (waiting longer would only add
  -- latency): a burst of outcomes is not held back by the window, a lone
  -- outcome is committed at once, and a steady trickle beside predictions
  -- shares commits.
  local function commit(write, done)
    local n = #waiting
    waiting[n + 1], waiting[n + 2] = write, done
    if n + 2 == 2 * group_max or (opts.all_waiting and opts.all_waiting()) then
      group_timer:start(0, 0, flush)
    elseif n == 0 then
      group_timer:start(group_ms, 0, flush)
    end
  end
  local function log(entry)
    counter = counter + 1
    local now = timeutil.now()
    -- Time-ordered and unique across workers: µs, pid, counter.
    local id = string.format("%016x-%x-%x", now, pid, counter)
    entry.id, entry.at, entry.role = id, now, entry.role or "live"
    if counter % sample_every ~= 1 % sample_every then entry.inputs = nil end
    buffer[#buffer + 1] = { keys.pack("i64 s", now, id), json.encode(entry) }
    if #buffer >= flush_max then flush() end
    return id
  end
  return log, flush, commit
end

return M
