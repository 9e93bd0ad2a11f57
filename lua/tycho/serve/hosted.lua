--- Hosted models for `tycho serve`: registry aliases followed live, online
-- features fetched by entity key, canary and shadow versions. What they
-- predict goes to the prediction log (serve/log.lua).
local json = require "tycho.util.json"
local uv = require "luv"
local experiments = require "tycho.experiments"
local errors = require "tycho.util.errors"
local timeutil = require "tycho.util.timeutil"
local dense = require "tycho.ml.dense"

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
-- reader, names (pipeline inputs it fills) } } and the set of their join
-- keys (nil without views); or nil, message, code.
function M.load_version(name, alias)
  local meta, err, code = reg():get(name, alias)
  if not meta then return nil, err, code end
  local pipe, perr, pcode = reg():load(name, meta.version)
  if not pipe then return nil, perr, pcode end
  local sources = {}
  for _, ref in ipairs(pipe.features or {}) do
    local vname = ref:match("^(.-):")
    if vname and not sources[vname] then
      local view, verr, vcode = fs():view(vname)
      if not view then return nil, verr, vcode end
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
      sources[vname] = { join_key = view.join_key, reader = reader, names = names, ttl_us = (view.ttl or 0) * 1e6 }
    end
  end
  local join_keys
  for _, src in pairs(sources) do
    join_keys = join_keys or {}
    join_keys[src.join_key] = true
  end
  return { pipe = pipe, version = meta.version, sources = sources, join_keys = join_keys }
end

--- Hosts `name` following `opts.alias` (default "production"), with
-- optional canary = {alias, percent} and shadow = {alias}. strict = true
-- refuses (400) an instance with a missing input or a stale feature
-- instead of predicting from what is there, and (503) one whose stored
-- features could not be read now (their Redis node down or failing over).
function M.host(name, opts)
  opts = opts or {}
  return setmetatable({ name = name, alias = opts.alias or "production", canary = opts.canary,
                        shadow = opts.shadow, strict = opts.strict, live = {}, errors = {},
                        with_missing = 0, with_stale = 0 }, Hosted)
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
  if current and current.version == meta.version then
    self.errors[slot] = nil  -- back where it serves: an earlier refusal is settled
    return
  end
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

-- Versions and aliases asked for by name (TF Serving's /versions/{v} and
-- /labels/{l}, V2's /versions/{v}) are loaded on first use and kept, up to
-- this many per hosted model.
local MAX_PINNED = 16

--- The loaded version for ref (a version or an alias of this model),
-- loading it on first use; or nil, message, code.
function Hosted:pinned(ref)
  if type(ref) ~= "string" or #ref == 0 or #ref > 128 then return errors.fail("invalid", "bad version or label") end
  local slot = "pin:" .. ref
  if not self.live[slot] then
    self.pins = self.pins or {}
    if not self.pins[ref] then
      local n = 0
      for _ in pairs(self.pins) do n = n + 1 end
      if n >= MAX_PINNED then
        return errors.fail("busy", "model " .. self.name .. " already serves " .. MAX_PINNED .. " pinned versions")
      end
    end
    self:refresh_one(slot, ref)
    if not self.live[slot] then
      return errors.fail("not_found", "model " .. self.name .. " has no loadable version or label '" .. ref .. "'"
        .. (self.errors[slot] and (": " .. self.errors[slot]) or ""))
    end
    self.pins[ref] = true
  end
  return self.live[slot]
end

--- The aliases this host follows, as { slot, model, alias }: its own, its
-- canary's and shadow's, its experiment variants' (what a cluster's
-- published moves are read for, serve/follow.lua; pinned refs are not
-- followed there, being asked for by hand).
function Hosted:followed()
  local out = { { slot = "main", model = self.name, alias = self.alias } }
  if self.canary then out[#out + 1] = { slot = "canary", model = self.name, alias = self.canary.alias } end
  if self.shadow then out[#out + 1] = { slot = "shadow", model = self.name, alias = self.shadow.alias } end
  for _, v in ipairs(self.experiment and self.experiment.variants or {}) do
    local model, alias = experiments.parse_model_ref(v.model)
    out[#out + 1] = { slot = "variant:" .. v.name, model = model, alias = alias }
  end
  return out
end

function Hosted:refresh()
  for _, f in ipairs(self:followed()) do self:refresh_one(f.slot, f.alias, f.model) end
  for ref in pairs(self.pins or {}) do self:refresh_one("pin:" .. ref, ref) end
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

-- The features of src the request left to the store, when the store
-- could not be read (nil for none): added to list.
local function unreadable(src, row, list)
  for _, name in ipairs(src.names) do
    if row[name] == nil then
      list = list or {}
      list[#list + 1] = name
    end
  end
  return list
end

-- Fills an instance's row: online features for each entity key present,
-- request fields as given (a request value wins). Returns the row, the
-- pipeline inputs it lacks (from the request and the store alike), the
-- stored features older than their view's ttl, and those the store could
-- not be read for now (a cluster node down; nil for none).
function M.assemble(version, inst, now)
  local row, missing, stale, unavailable = {}, nil, nil, nil
  for k, v in pairs(inst) do if v ~= json.null then row[k] = v end end
  for _, src in pairs(version.sources) do
    local key = inst[src.join_key]
    if key ~= nil and src.reader then
      local values, t = src.reader:get(key)
      if values == nil and t == errors.unavailable then unavailable = unreadable(src, row, unavailable) end
      local old = values ~= nil and src.ttl_us > 0 and now - t > src.ttl_us
      for i, name in ipairs(src.names) do
        local v = values and values[i]
        if v ~= nil and row[name] == nil then
          row[name] = v
          if old then
            stale = stale or {}
            stale[#stale + 1] = name
          end
        end
      end
    end
  end
  local inputs = version.pipe.inputs
  for i = 1, #inputs do
    if row[inputs[i]] == nil then
      missing = missing or {}
      missing[#missing + 1] = inputs[i]
    end
  end
  return row, missing, stale, unavailable
end

--- Batch scoring of frame f with a loaded version, columns at a time
-- (ml/dense.lua's score_frame): the scored frame and the rows skipped for
-- a null input, or nil when the rows must go one by one through assemble
-- (an entity key in f fetches online features, or the pipeline needs the
-- general path).
function M.score_frame(version, f, fill)
  for _, src in pairs(version.sources) do
    if f:has(src.join_key) then return nil end
  end
  return dense.score_frame(version.pipe, f, fill)
end

--- tycho score's stream for a CSV file with a loaded version (ml/dense.lua's
-- score_csv: a block at a time, each row written as the input has it, then
-- its prediction): its counts, nil when the file must be read whole for
-- score_frame or the row path, or nil, message. progress: as score_csv's.
function M.score_csv(version, input, output, fill, progress)
  local keys = {}
  for _, src in pairs(version.sources) do keys[#keys + 1] = src.join_key end
  return dense.score_csv(version.pipe, input, output, { fill = fill, avoid = keys, progress = progress })
end

local function predict_one(version, inst, now)
  local row, missing, stale, unavailable = M.assemble(version, inst, now)
  local started = uv.hrtime()
  local out, err = version.pipe:predict(row)
  return out, err, missing, row, tonumber(uv.hrtime() - started) / 1e6, stale, unavailable
end

-- Why a strict host refuses instance i, or nil.
local function strict_refusal(i, missing, stale)
  if not missing and not stale then return nil end
  local parts = {}
  if missing then parts[#parts + 1] = "missing " .. table.concat(missing, ", ") end
  if stale then parts[#parts + 1] = "stale (older than their view's ttl) " .. table.concat(stale, ", ") end
  return "instance " .. i .. ": " .. table.concat(parts, "; ")
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
    local sout, _, _, srow, sms = predict_one(shadow, inst, timeutil.now())
    if sout and log then
      log { model = self.name, version = shadow.version, inputs = srow, output = sout, ms = sms, role = "shadow" }
    end
  end)
end

local function any_listed(lists)
  for i = 1, #lists do if lists[i] ~= json.empty_array then return true end end
  return false
end

--- Predicts every instance. Returns the response table, or nil, message,
-- code (tycho.util.errors) for a request-level error. `log` receives each
-- prediction. pin: a version or alias every instance goes to (no canary, no
-- experiment), as TF Serving's /versions/{v} and /labels/{l} ask.
function Hosted:predict(instances, log, req, pin)
  local main = self.live.main
  if pin then
    local pinned, perr, pcode = self:pinned(pin)
    if not pinned then return nil, perr, pcode end
    main = pinned
  end
  if not main then
    return errors.fail("unavailable", "model " .. self.name .. " has no loadable version: " .. tostring(self.errors.main))
  end
  local preds, ids, missing_all, stale_all, versions, variants = {}, {}, {}, {}, {}, {}
  local unavailable_all = {}
  local now = timeutil.now()
  local e = self.experiment
  local split = not pin and e ~= nil and self:experiment_ready()
  for i, inst in ipairs(instances) do
    if type(inst) ~= "table" then return errors.fail("invalid", "instance " .. i .. " is not an object") end
    if split then
      local unit = inst[e.unit]
      if (type(unit) == "string" or type(unit) == "number") and #tostring(unit) > experiments.MAX_UNIT_BYTES then
        return errors.fail("invalid", string.format("instance %d: %s is longer than %d bytes", i, e.unit,
          experiments.MAX_UNIT_BYTES))
      end
    end
    local version, variant, unit = main, nil, nil
    if not pin then version, variant, unit = self:route(inst, req, split) end
    local out, err, missing, row, ms, stale, unavailable = predict_one(version, inst, now)
    if self.strict then
      -- Unreadable now, not absent: 503, to be asked again (Retry-After).
      if unavailable then
        return errors.fail("unavailable", "instance " .. i .. ": stored features not readable now (their cluster node"
          .. " did not answer): " .. table.concat(unavailable, ", "))
      end
      local refusal = strict_refusal(i, missing, stale)
      if refusal then return errors.fail("invalid", refusal) end
    end
    if not out then
      if log then log { model = version.model or self.name, version = version.version, error = tostring(err) } end
      return errors.fail("invalid", "instance " .. i .. ": " .. tostring(err))
    end
    preds[i], versions[i] = out, version.version
    variants[i] = variant or json.null
    missing_all[i], stale_all[i] = missing or json.empty_array, stale or json.empty_array
    unavailable_all[i] = unavailable or json.empty_array
    if missing then self.with_missing = self.with_missing + 1 end
    if stale then self.with_stale = self.with_stale + 1 end
    -- id, at and role are filled in by log(): named here so that the table
    -- is made with room for them (adding them to a full one rehashes it).
    ids[i] = log and log { model = version.model or self.name, version = version.version, inputs = row, output = out,
                           ms = ms, experiment = unit and e.name, variant = unit and variant, unit = unit,
                           id = false, at = false, role = "live" } or nil
    if not pin and self.shadow and self.live.shadow then self:shadow_later(inst, log) end
  end
  -- Every row names the version that served it; the top-level
  -- model_version only when one version served them all.
  local res = { predictions = preds, prediction_ids = ids, model_versions = versions,
                experiment = split and e.name or nil, variants = split and variants or nil }
  local one = versions[1]
  for i = 2, #versions do if versions[i] ~= one then one = nil break end end
  res.model_version = one
  if any_listed(missing_all) then res.missing_features = missing_all end
  if any_listed(stale_all) then res.stale_features = stale_all end
  if any_listed(unavailable_all) then res.unavailable_features = unavailable_all end
  return res
end

local function predict_timed(plan, r, into)
  local started = uv.hrtime()
  local out = plan:predict(r, into)
  return out, tonumber(uv.hrtime() - started) / 1e6
end

-- (One entry table, refilled: the log encodes and counts an entry as it
-- takes it, and a table per row was most of a batch request's garbage.)
local function log_dense(self, version, plan, log, r, out, ms)
  plan.current = r
  local e = self.dense_entry
  if not e then
    e = {}
    self.dense_entry = e
  end
  e.model, e.version, e.inputs, e.output, e.ms, e.id, e.at, e.role =
    version.model or self.name, version.version, plan.inputs_row, out, ms, false, false, "live"
  return log(e)
end

--- The fast path of predict for a request body whose instances are all
-- full and numeric (ml/dense.lua): the predictions, their log ids and the
-- version that served them; or nil when the body, the pipeline or this
-- host (experiment, canary, shadow, a version not loaded yet) needs the
-- general path, which then answers the request as if this was not tried.
-- body: a string, or a pointer to len bytes (Plan:parse).
function Hosted:predict_dense(body, len, log, pin, limit)
  if self.experiment or (self.canary and self.live.canary) or (self.shadow and self.live.shadow) then return nil end
  local version = pin and self.live["pin:" .. pin] or (not pin and self.live.main)
  if not version then return nil end
  local plan = dense.plan(version.pipe)
  local n = plan and plan:parse(body, limit, true, len)
  if not n then return nil end
  -- An entity key among the other keys: the general path fetches its features.
  if version.join_keys and plan:extras_hold(version.join_keys) then return nil end
  -- One instance (the usual request) without a loop: a loop that LuaJIT
  -- sees run once per call is left on every try, and stops its traces.
  -- Its tables are this host's, refilled: the caller writes the answer
  -- before the next request runs, and the log encodes an entry as it
  -- takes it.
  if n == 1 then
    local one = self.dense_one
    if not one then
      one = { preds = {}, ids = {}, out = {} }
      self.dense_one = one
    end
    local out, took = predict_timed(plan, 0, one.out)
    if not out then return nil end  -- the general path reports it
    local preds, ids = one.preds, one.ids
    preds[1], ids[1] = out, nil
    if log then ids[1] = log_dense(self, version, plan, log, 0, out, took) end
    return preds, ids, version
  end
  -- Several: one kernel call for all, each row logged with its share of
  -- the call's time.
  local started = uv.hrtime()
  local preds, ids = plan:predict_all(n), {}
  if not preds then return nil end
  local share = tonumber(uv.hrtime() - started) / 1e6 / n
  if log then
    for r = 1, n do ids[r] = log_dense(self, version, plan, log, r - 1, preds[r], share) end
  end
  return preds, ids, version
end

-- The loaded pipeline of model@version among this host's slots, or nil.
function Hosted:pipeline_of(model, version)
  for _, slot in pairs(self.live) do
    if (slot.model or self.name) == model and slot.version == version then return slot.pipe end
  end
end

local function same_value(a, b)
  if a == b then return true end
  return type(a) ~= type(b) and type(a) ~= "boolean" and type(b) ~= "boolean" and tostring(a) == tostring(b)
end

--- Why outcome does not fit what pipe predicts, or nil: a classifier's
-- outcome is one of its classes (true/false stand for 1/0 when those are
-- the classes), a regression's a finite number.
function M.outcome_problem(pipe, outcome)
  local task, classes = pipe.model.task, pipe.model.classes
  if task == "regression" then
    if type(outcome) ~= "number" then return "outcome must be a number for a regression model" end
    return nil
  end
  if (task ~= "binary" and task ~= "multiclass") or type(classes) ~= "table" then return nil end
  if type(outcome) == "boolean" and #classes == 2 and classes[1] == 0 and classes[2] == 1 then return nil end
  local shown = {}
  for i, c in ipairs(classes) do
    if same_value(c, outcome) then return nil end
    shown[i] = type(c) == "string" and json.encode(c) or tostring(c)
  end
  return string.format("outcome %s is not a class of this model: allowed %s",
    type(outcome) == "string" and json.encode(outcome) or tostring(outcome), table.concat(shown, ", "))
end

function Hosted:describe()
  local main = self.live.main
  return { name = self.name, version = main and main.version or json.null, ready = main ~= nil,
           alias = self.alias, canary = self.live.canary and self.live.canary.version or nil,
           shadow = self.live.shadow and self.live.shadow.version or nil, error = self.errors.main }
end

return M
