--- Pipeline steps: the built-in row transforms (fill_missing, standardize, minmax,
-- onehot, clip, log1p, select, drop, kmeans) and user Lua steps (sandboxed). Each
-- kind learns its state from training rows (fit) and applies it to one row at a
-- time (apply); the state travels in the pipeline's artifact.
local frame = require "tycho.core.frame"
local models = require "tycho.ml.models"
local sandbox = require "tycho.util.sandbox"
local kernels = require "tycho.core.kernels"
local options = require "tycho.util.options"

local M = {}
local step = {}

-- A step is { kind, opts, state } with fit(step, rows, columns) and
-- apply(step, row) over plain Lua row tables; state must be JSON.

local function numeric_columns(rows, columns)
  local out = {}
  for _, c in ipairs(columns) do
    for _, r in ipairs(rows) do
      local v = r[c]
      if v ~= nil then
        if type(v) == "number" then out[#out + 1] = c end
        break
      end
    end
  end
  return out
end

local function targets(s, rows, columns)
  if s.opts.columns then return s.opts.columns end
  return numeric_columns(rows, columns)
end

local function is_nan(v) return v ~= v end

local kinds = {}

kinds.fill_missing = {
  fit = function(s, rows, columns)
    local how = s.opts[1] or s.opts.strategy or (s.opts.value ~= nil and "constant") or "mean"
    s.state = { how = how, fill = {} }
    for _, c in ipairs(targets(s, rows, columns)) do
      local vals = {}
      for _, r in ipairs(rows) do
        local v = r[c]
        if v ~= nil and not is_nan(v) then vals[#vals + 1] = v end
      end
      local fill = s.opts.value
      if how == "mean" and #vals > 0 then
        local sum = 0
        for _, v in ipairs(vals) do sum = sum + v end
        fill = sum / #vals
      elseif how == "median" and #vals > 0 then
        table.sort(vals)
        fill = frame.quantile(vals, 0.5)
      end
      s.state.fill[c] = fill or 0
    end
  end,
  apply = function(s, r)
    for c, fill in pairs(s.state.fill) do
      local v = r[c]
      if v == nil or is_nan(v) then r[c] = fill end
    end
    return r
  end,
}

kinds.standardize = {
  fit = function(s, rows, columns)
    s.state = { mean = {}, scale = {} }
    for _, c in ipairs(targets(s, rows, columns)) do
      local n, sum, sq = 0, 0, 0
      for _, r in ipairs(rows) do
        local v = r[c]
        if type(v) == "number" and not is_nan(v) then n, sum = n + 1, sum + v end
      end
      local mean = n > 0 and sum / n or 0
      for _, r in ipairs(rows) do
        local v = r[c]
        if type(v) == "number" and not is_nan(v) then sq = sq + (v - mean) ^ 2 end
      end
      local sd = n > 0 and math.sqrt(sq / n) or 0
      s.state.mean[c], s.state.scale[c] = mean, sd > 0 and sd or 1
    end
  end,
  apply = function(s, r)
    for c, mean in pairs(s.state.mean) do
      local v = r[c]
      if type(v) == "number" then r[c] = (v - mean) / s.state.scale[c] end
    end
    return r
  end,
}

kinds.minmax = {
  fit = function(s, rows, columns)
    s.state = { lo = {}, span = {} }
    for _, c in ipairs(targets(s, rows, columns)) do
      local lo, hi
      for _, r in ipairs(rows) do
        local v = r[c]
        if type(v) == "number" and not is_nan(v) then
          lo, hi = math.min(lo or v, v), math.max(hi or v, v)
        end
      end
      s.state.lo[c], s.state.span[c] = lo or 0, (hi and hi > lo) and hi - lo or 1
    end
  end,
  apply = function(s, r)
    for c, lo in pairs(s.state.lo) do
      local v = r[c]
      if type(v) == "number" then r[c] = (v - lo) / s.state.span[c] end
    end
    return r
  end,
}

kinds.onehot = {
  fit = function(s, rows, columns)
    local cols = s.opts.columns or (type(s.opts[1]) == "string" and s.opts) or {}
    if #cols == 0 then
      for _, c in ipairs(columns) do
        for _, r in ipairs(rows) do
          if r[c] ~= nil then
            if type(r[c]) == "string" then cols[#cols + 1] = c end
            break
          end
        end
      end
    end
    s.state = { columns = {}, unknown = s.opts.unknown or "ignore" }
    for _, c in ipairs(cols) do
      local seen, levels = {}, {}
      for _, r in ipairs(rows) do
        local v = r[c]
        if v ~= nil and not seen[tostring(v)] then seen[tostring(v)] = true levels[#levels + 1] = tostring(v) end
      end
      table.sort(levels)
      s.state.columns[#s.state.columns + 1] = { name = c, levels = levels }
    end
  end,
  apply = function(s, r)
    for _, col in ipairs(s.state.columns) do
      local v = r[col.name]
      local known = false
      for _, level in ipairs(col.levels) do
        local hit = v ~= nil and tostring(v) == level
        r[col.name .. "=" .. level] = hit and 1 or 0
        known = known or hit
      end
      if v ~= nil and not known and s.state.unknown == "error" then
        error("onehot: unknown category '" .. tostring(v) .. "' in column " .. col.name, 0)
      end
      r[col.name] = nil
    end
    return r
  end,
}

kinds.clip = {
  fit = function(s, rows, columns)
    s.state = { columns = targets(s, rows, columns), lo = s.opts.min or s.opts[1], hi = s.opts.max or s.opts[2] }
  end,
  apply = function(s, r)
    for _, c in ipairs(s.state.columns) do
      local v = r[c]
      if type(v) == "number" then
        if s.state.lo and v < s.state.lo then v = s.state.lo end
        if s.state.hi and v > s.state.hi then v = s.state.hi end
        r[c] = v
      end
    end
    return r
  end,
}

kinds.log1p = {
  fit = function(s, rows, columns) s.state = { columns = targets(s, rows, columns) } end,
  apply = function(s, r)
    for _, c in ipairs(s.state.columns) do
      local v = r[c]
      if type(v) == "number" then r[c] = v > -1 and math.log(1 + v) or 0 / 0 end
    end
    return r
  end,
}

kinds.select = {
  fit = function(s) s.state = { keep = s.opts.columns or s.opts } end,
  apply = function(s, r)
    local out = {}
    for _, c in ipairs(s.state.keep) do out[c] = r[c] end
    return out
  end,
}

kinds.drop = {
  fit = function(s) s.state = { drop = s.opts.columns or s.opts } end,
  apply = function(s, r)
    for _, c in ipairs(s.state.drop) do r[c] = nil end
    return r
  end,
}

kinds.lua = {
  fit = function(s) s.state = { source = s.opts.source, name = s.opts.name } end,
  apply = function(s, r)
    local fn = s.fn
    if not fn then
      local err
      fn, err = sandbox.compile(s.state.source, s.state.name)
      if not fn then error("step " .. s.state.name .. ": " .. err, 0) end
      s.fn = fn
    end
    local ok, out = sandbox.call(s.state.name, fn, nil, r)
    sandbox.scrub(r)
    if not ok then error(out, 0) end
    if type(out) ~= "table" then error(s.state.name .. ": must return the row table", 0) end
    local plain, why = sandbox.check_value(out)
    if not plain then error(s.state.name .. ": returned " .. why .. "; a row holds plain values", 0) end
    return out
  end,
}

-- Cluster membership as features: k-means on the standardized columns;
-- apply() adds the nearest centre's index (`name`, 0-based) and the
-- distance to it (`name`_distance). Centres travel in the artifact.
kinds.kmeans = {
  fit = function(s, rows, columns)
    local cols = targets(s, rows, columns)
    local mean, scale = {}, {}
    for _, c in ipairs(cols) do
      local n, sum, sq = 0, 0, 0
      for _, r in ipairs(rows) do
        local v = r[c]
        if type(v) == "number" and not is_nan(v) then n, sum, sq = n + 1, sum + v, sq + v * v end
      end
      mean[c] = n > 0 and sum / n or 0
      local var = n > 1 and (sq - n * mean[c] ^ 2) / (n - 1) or 0
      scale[c] = var > 0 and math.sqrt(var) or 1
    end
    local data = {}
    for _, c in ipairs(cols) do
      local col = {}
      for i, r in ipairs(rows) do
        local v = r[c]
        col[i] = (type(v) == "number" and not is_nan(v)) and (v - mean[c]) / scale[c] or 0
      end
      data[c] = col
    end
    local k = s.opts.k or 8
    local km = models.kmeans { k = k, n_init = s.opts.n_init or 3, seed = s.opts.seed or 42 }
    assert(km:fit(frame.new(data, { order = cols }), { features = cols }))
    local raw, n_centers = kernels.kmeans.centroids(km.handle)
    local d, centers = #cols, {}
    for j = 1, n_centers do
      local center = {}
      for i = 1, d do center[i] = raw[(j - 1) * d + i - 1] end
      centers[j] = center
    end
    s.state = { columns = cols, mean = mean, scale = scale, centers = centers, name = s.opts.name or "cluster" }
  end,
  apply = function(s, r)
    local st = s.state
    local best, best_d = 0, math.huge
    for j, center in ipairs(st.centers) do
      local dist = 0
      for i, c in ipairs(st.columns) do
        local v = r[c]
        local z = (type(v) == "number" and not is_nan(v)) and (v - st.mean[c]) / st.scale[c] or 0
        dist = dist + (z - center[i]) ^ 2
      end
      if dist < best_d then best, best_d = j - 1, dist end
    end
    r[st.name], r[st.name .. "_distance"] = best, math.sqrt(best_d)
    return r
  end,
}

-- dense(step, pos, add): the step as operations on a row of doubles, for
-- the serving fast path (ml/dense.lua). pos maps each model input column to
-- its 0-based place; add(op, j, a, b) appends one operation, op one of
-- "fill" (a NaN becomes a), "affine" ((v - a) / b), "clip" (to [a, b]),
-- "log1p" and "missing" (the column becomes NaN: dropped, so absent, as nil
-- is to every step). Each does what apply() does to that column, with the
-- same arithmetic, so both paths give the same numbers. A kind without
-- dense (onehot, kmeans, lua), or one that returns false, keeps a pipeline
-- on the general path.
kinds.fill_missing.dense = function(s, pos, add)
  for c, fill in pairs(s.state.fill) do
    if pos[c] then
      if type(fill) ~= "number" then return false end
      add("fill", pos[c], fill)
    end
  end
  return true
end

kinds.standardize.dense = function(s, pos, add)
  for c, mean in pairs(s.state.mean) do
    if pos[c] then add("affine", pos[c], mean, s.state.scale[c]) end
  end
  return true
end

kinds.minmax.dense = function(s, pos, add)
  for c, lo in pairs(s.state.lo) do
    if pos[c] then add("affine", pos[c], lo, s.state.span[c]) end
  end
  return true
end

kinds.clip.dense = function(s, pos, add)
  for _, c in ipairs(s.state.columns) do
    if pos[c] then add("clip", pos[c], s.state.lo or -math.huge, s.state.hi or math.huge) end
  end
  return true
end

kinds.log1p.dense = function(s, pos, add)
  for _, c in ipairs(s.state.columns) do
    if pos[c] then add("log1p", pos[c]) end
  end
  return true
end

kinds.select.dense = function(s, pos, add)
  local keep = {}
  for _, c in ipairs(s.state.keep) do keep[c] = true end
  for c, j in pairs(pos) do
    if not keep[c] then add("missing", j) end
  end
  return true
end

kinds.drop.dense = function(s, pos, add)
  for _, c in ipairs(s.state.drop) do
    if pos[c] then add("missing", pos[c]) end
  end
  return true
end

-- What each step accepts: named options (util/options schemas), and what
-- its positional values may be (a list of column names, or values in
-- named order: fill_missing{"median"}, clip{0, 1}).
local COLUMNS = { type = "table" }
local STEP_OPTIONS = {
  fill_missing = { named = { strategy = { one_of = { "mean", "median", "constant" } }, value = { type = "any" },
                             columns = COLUMNS }, positional = { "strategy" } },
  standardize = { named = { columns = COLUMNS } },
  minmax = { named = { columns = COLUMNS } },
  log1p = { named = { columns = COLUMNS } },
  onehot = { named = { columns = COLUMNS, unknown = { one_of = { "ignore", "error" } } }, list = true },
  clip = { named = { columns = COLUMNS, min = { type = "number" }, max = { type = "number" } },
           positional = { "min", "max" } },
  select = { named = { columns = COLUMNS }, list = true },
  drop = { named = { columns = COLUMNS }, list = true },
  kmeans = { named = { columns = COLUMNS, k = { type = "int", min = 1 }, n_init = { type = "int", min = 1 },
                       seed = { type = "int", min = 0 }, name = { type = "string" } } },
}

-- Checks a step's options (raising at the user's call naming what is
-- wrong) and gives them back as they were written: fitted steps read them.
local function check_step(kind, opts)
  local where = "step." .. kind
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(where .. ": options must be a table", 3) end
  local spec, named = STEP_OPTIONS[kind], {}
  for key, v in pairs(opts) do
    if type(key) == "number" then
      local as = spec.positional and spec.positional[key]
      if as then
        named[as] = v
      elseif not spec.list or type(v) ~= "string" then
        error(where .. ": " .. (spec.list and "a list of column names" or "no positional values")
          .. " (value " .. key .. " is " .. tostring(v) .. ")", 3)
      end
    elseif named[key] ~= nil then
      error(where .. ": option '" .. key .. "' is given twice", 3)
    else
      named[key] = v
    end
  end
  options.check(where, spec.named, named, 3)
  return opts
end

local function make_step(kind)
  return function(opts) return { kind = kind, opts = check_step(kind, opts) } end
end
for kind in pairs(STEP_OPTIONS) do step[kind] = make_step(kind) end
step.standardise = step.standardize

local lua_steps = 0
--- A user step: a function(row) -> row, or its source text. The function's
-- text travels in the artifact and runs in a sandbox (no io, os, require).
function step.lua(fn, name)
  lua_steps = lua_steps + 1
  name = name or ("lua step " .. lua_steps)
  local src = fn
  if type(fn) == "function" then
    local err
    src, err = sandbox.source_of(fn)
    if not src then error("step.lua: " .. err, 2) end
  end
  local compiled, cerr = sandbox.compile(src, name)
  if not compiled then error("step.lua: " .. cerr, 2) end
  return { kind = "lua", opts = { source = src, name = name }, fn = compiled }
end

M.kinds = kinds
M.step = step

return M
