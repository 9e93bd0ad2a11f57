--- Frame operations that need no C of their own: splits (seeded, or by a
-- mask file), k folds, joins, group-by aggregates, describe and to_matrix.
-- core/frame.lua installs them on the Frame class when it loads.
local ffi = require "ffi"
local bit = require "bit"

--- Adds the operations to the Frame class; M is tycho.frame (new, from_rows).
return function(Frame, M)
  local F64, I64, STR = M.types.float, M.types.int, M.types.string
  -- ---- splitting -----------------------------------------------------------------

  local function rng(seed)
    -- xorshift64*, seeded: the same seed gives the same split on every platform.
    local s = ffi.new("uint64_t[1]", (seed or 42) * 2654435761 + 1)
    return function(n)
      local x = s[0]
      x = bit.bxor(x, bit.rshift(x, 12))
      x = bit.bxor(x, bit.lshift(x, 25))
      x = bit.bxor(x, bit.rshift(x, 27))
      s[0] = x
      return tonumber((x * 2685821657736338717ULL) % n) + 1
    end
  end

  local function shuffled(n, seed)
    local idx, draw = {}, rng(seed)
    for i = 1, n do idx[i] = i end
    for i = n, 2, -1 do
      local j = draw(i)
      idx[i], idx[j] = idx[j], idx[i]
    end
    return idx
  end

  local function read_mask(path)
    local f, ferr = io.open(path)
    if not f then error("cannot read split mask " .. path .. ": " .. ferr, 3) end
    local mask = {}
    for line in f:lines() do
      if line:match("%S") then
        mask[#mask + 1] = tonumber(line) or error("bad mask line in " .. path .. ": " .. line, 3)
      end
    end
    f:close()
    return mask
  end

  --- Splits rows into train, test: {test = 0.2, seed = 42} (shuffled), or
  -- {mask = {0,1,...} or "file.split"} (1 = test row).
  function Frame:split(opts)
    opts = opts or {}
    local n = self:nrows()
    local train, test = {}, {}
    if opts.mask then
      local mask = type(opts.mask) == "string" and read_mask(opts.mask) or opts.mask
      if #mask ~= n then error(string.format("split mask has %d entries for %d rows", #mask, n), 2) end
      for i = 1, n do
        local t = (mask[i] == 1 or mask[i] == true) and test or train
        t[#t + 1] = i
      end
    else
      local frac = opts.test or 0.2
      if frac <= 0 or frac >= 1 then error("split: test must be a fraction between 0 and 1", 2) end
      local idx = shuffled(n, opts.seed)
      local n_test = math.ceil(n * frac)
      for i = 1, n do
        local t = i <= n_test and test or train
        t[#t + 1] = idx[i]
      end
      table.sort(train)
      table.sort(test)
    end
    return self:take(train), self:take(test)
  end

  --- k folds: a list of {train = frame, test = frame}, shuffled by seed.
  function Frame:kfold(k, opts)
    k = k or 5
    local n = self:nrows()
    if k < 2 or k > n then error("kfold: k must be between 2 and the row count", 2) end
    local idx = shuffled(n, opts and opts.seed)
    local folds = {}
    for f = 1, k do
      local train, test = {}, {}
      for pos = 1, n do
        local t = (pos - 1) % k + 1 == f and test or train
        t[#t + 1] = idx[pos]
      end
      table.sort(train)
      table.sort(test)
      folds[f] = { train = self:take(train), test = self:take(test) }
    end
    return folds
  end

  -- ---- joins and aggregates ------------------------------------------------------

  local function key_of(cols, i)
    if #cols == 1 then return cols[1]:get(i) end
    local parts = {}
    for k, c in ipairs(cols) do
      local v = c:get(i)
      if v == nil then return nil end
      parts[k] = tostring(v)
    end
    return table.concat(parts, "\0")
  end

  --- Hash join: opts.on = "key" or {"k1", "k2"} (same names both sides), or
  -- opts.left_on / opts.right_on; opts.how = "inner" (default) or "left".
  -- Right-side columns that clash with left ones get the suffix "_right".
  function Frame:join(other, opts)
    opts = opts or {}
    local lkeys = opts.left_on or opts.on
    local rkeys = opts.right_on or opts.on
    if type(lkeys) == "string" then lkeys = { lkeys } end
    if type(rkeys) == "string" then rkeys = { rkeys } end
    if not lkeys or not rkeys or #lkeys ~= #rkeys then
      error("join: give on, or left_on and right_on of equal length", 2)
    end
    local lcols, rcols = {}, {}
    for k = 1, #lkeys do lcols[k], rcols[k] = self:col(lkeys[k]), other:col(rkeys[k]) end
    local index = {}
    for i = 1, other:nrows() do
      local key = key_of(rcols, i)
      if key ~= nil then
        local list = index[key]
        if list then list[#list + 1] = i else index[key] = { i } end
      end
    end
    local left_rows, right_rows = {}, {}
    for i = 1, self:nrows() do
      local matches = index[key_of(lcols, i)]
      if matches then
        for _, j in ipairs(matches) do left_rows[#left_rows + 1], right_rows[#right_rows + 1] = i, j end
      elseif opts.how == "left" then
        left_rows[#left_rows + 1], right_rows[#right_rows + 1] = i, false
      end
    end
    local out = self:take(left_rows)
    local skip = {}
    for _, k in ipairs(rkeys) do skip[k] = true end
    local lnames = {}
    for _, n in ipairs(self:names()) do lnames[n] = true end
    for _, name in ipairs(other:names()) do
      if not skip[name] then
        local col, values = other:col(name), {}
        for r, j in ipairs(right_rows) do values[r] = j and col:get(j) or nil end
        out = out:with_column(lnames[name] and name .. "_right" or name, values, col.type)
      end
    end
    return out
  end

  --- The q-quantile (q in 0..1) of an ascending-sorted Lua array of numbers,
  -- interpolating linearly between neighbours as numpy's default; nil when
  -- the array is empty. Sort first: the values are not sorted here.
  local function quantile(sorted, q)
    local n = #sorted
    if n == 0 then return nil end
    local pos = 1 + (n - 1) * q  -- linear interpolation, as numpy's default
    local lo = math.floor(pos)
    local frac = pos - lo
    if lo >= n then return sorted[n] end
    return sorted[lo] + (sorted[lo + 1] - sorted[lo]) * frac
  end
  M.quantile = quantile

  local function summarize(values, how, q)
    local n = #values
    if how == "count" then return n end
    if n == 0 then return nil end
    if how == "sum" or how == "mean" then
      local s = 0
      for i = 1, n do s = s + values[i] end
      return how == "sum" and s or s / n
    end
    if how == "min" or how == "max" then
      local m = values[1]
      for i = 2, n do
        if (how == "min" and values[i] < m) or (how == "max" and values[i] > m) then m = values[i] end
      end
      return m
    end
    if how == "median" or how == "quantile" then
      table.sort(values)
      return quantile(values, how == "median" and 0.5 or q)
    end
    error("unknown aggregate '" .. tostring(how) .. "' (count, sum, mean, min, max, median, quantile)", 4)
  end

  local Grouped = {}
  Grouped.__index = Grouped

  --- Groups rows by key columns: f:group_by("user"):agg { n = "count",
  -- spend = {"sum", "amount"}, p90 = {"quantile", "amount", 0.9} }.
  function Frame:group_by(...)
    local keys = select("#", ...) == 1 and type(...) == "table" and ... or { ... }
    return setmetatable({ frame = self, keys = keys }, Grouped)
  end

  function Grouped:agg(spec)
    local f = self.frame
    local kcols = {}
    for k, name in ipairs(self.keys) do kcols[k] = f:col(name) end
    local groups, order = {}, {}
    for i = 1, f:nrows() do
      local key = key_of(kcols, i)
      if key ~= nil then
        local g = groups[key]
        if not g then
          g = { first = i, rows = {} }
          groups[key] = g
          order[#order + 1] = key
        end
        g.rows[#g.rows + 1] = i
      end
    end
    local out_names = {}
    for name in pairs(spec) do out_names[#out_names + 1] = name end
    table.sort(out_names)
    local cols = {}
    for k, name in ipairs(self.keys) do
      cols[name] = {}
      for gi, key in ipairs(order) do cols[name][gi] = kcols[k]:get(groups[key].first) end
    end
    for _, name in ipairs(out_names) do
      local s = spec[name]
      local how, src, q = s, nil, nil
      if type(s) == "table" then how, src, q = s[1], s[2], s[3] end
      local col = src and f:col(src)
      cols[name] = {}
      for gi, key in ipairs(order) do
        local values = {}
        for _, i in ipairs(groups[key].rows) do
          local v = col and col:get(i)
          if col == nil then values[#values + 1] = true elseif v ~= nil then values[#values + 1] = v end
        end
        cols[name][gi] = summarize(values, how, q)
      end
    end
    local names = {}
    for _, k in ipairs(self.keys) do names[#names + 1] = k end
    for _, n in ipairs(out_names) do names[#names + 1] = n end
    return M.new(cols, { order = names, n = #order })
  end

  --- Per-column statistics as a frame: column, type, count, nulls, mean, std,
  -- min, 25%, 50%, 75%, max, and top (most frequent values) for strings/bools.
  function Frame:describe()
    local rows = {}
    for _, name in ipairs(self:names()) do
      local col = self:col(name)
      local r = { column = name, type = col.type, count = col.n - col:nulls(), nulls = col:nulls() }
      if col.code == F64 or col.code == I64 then
        local ptr, vals, s, s2 = col:f64(), {}, 0, 0
        for i = 0, col.n - 1 do
          local v = ptr[i]
          if v == v then vals[#vals + 1] = v s = s + v end
        end
        local n = #vals
        if n > 0 then
          local mean = s / n
          for i = 1, n do s2 = s2 + (vals[i] - mean) ^ 2 end
          table.sort(vals)
          r.mean, r.std = mean, n > 1 and math.sqrt(s2 / (n - 1)) or 0
          r.min, r.max = vals[1], vals[n]
          r.p25, r.p50, r.p75 = quantile(vals, 0.25), quantile(vals, 0.5), quantile(vals, 0.75)
        end
      else
        local counts = {}
        for i = 1, col.n do
          local v = col:get(i)
          if v ~= nil then counts[tostring(v)] = (counts[tostring(v)] or 0) + 1 end
        end
        local top = {}
        for v, c in pairs(counts) do top[#top + 1] = { v, c } end
        table.sort(top, function(a, b) return a[2] > b[2] or (a[2] == b[2] and a[1] < b[1]) end)
        local parts = {}
        for i = 1, math.min(3, #top) do parts[i] = top[i][1] .. " (" .. top[i][2] .. ")" end
        r.top = table.concat(parts, ", ")
      end
      rows[#rows + 1] = r
    end
    return M.from_rows(rows, { order = { "column", "type", "count", "nulls", "mean", "std", "min", "p25", "p50",
                                        "p75", "max", "top" },
                               types = { mean = "float", std = "float", min = "float", p25 = "float", p50 = "float",
                                         p75 = "float", max = "float", top = "string" } })
  end

  --- Dense matrix of the named columns (default all numeric): {columns=,
  -- type = "float64"|"float32", order = "row"|"col"}. Returns the cdata
  -- array, rows, cols. Nulls become NaN.
  function Frame:to_matrix(opts)
    opts = opts or {}
    local names = opts.columns
    if not names then
      names = {}
      for _, n in ipairs(self:names()) do
        if self:col(n).code ~= STR then names[#names + 1] = n end
      end
    end
    local n, p = self:nrows(), #names
    local ctype = (opts.type or "float64") == "float32" and "float" or "double"
    local m = ffi.new(ctype .. "[?]", math.max(n * p, 1))
    local by_row = (opts.order or "row") == "row"
    for j, name in ipairs(names) do
      local src = self:col(name):f64()
      for i = 0, n - 1 do
        if by_row then m[i * p + j - 1] = src[i] else m[(j - 1) * n + i] = src[i] end
      end
    end
    return m, n, p
  end
end
