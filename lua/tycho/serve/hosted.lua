--- Hosted models for `tycho serve`: registry aliases followed live, online
-- features fetched by entity key, canary and shadow versions. What they
-- predict goes to the prediction log (serve/log.lua).
local json = require "tycho.util.json"
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

return M
