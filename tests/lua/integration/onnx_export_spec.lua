-- Issue 26.1: whole pipelines exported to ONNX give ONNX Runtime's answers
-- equal to Tycho's. On every shared data set and for each model family,
-- with built-in steps in front (and missing values in some columns, so the
-- trees' default directions matter): ONNX Runtime (npm's onnxruntime-node,
-- run by tools/onnx/run.js) gives the same labels and probabilities or
-- values within 1e-5 relative on every test row, and onnx.checker (Debian's
-- python3-onnx) accepts every file.
local tycho = require "tycho"
local testing = require "tycho.testing"
local json = require "tycho.util.json"
local frame, step, models = tycho.frame, tycho.step, tycho.models

local DATA = "../shared/data/"
local TOOLS = "tools/onnx"
local REL = 1e-5

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs a shell command: its standard output, whether it succeeded, and its
-- standard error.
local function sh(cmd)
  local errfile = os.tmpname()
  local p = assert(io.popen(cmd .. " 2>" .. errfile .. "; echo \"rc=$?\""))
  local out = p:read("*a")
  p:close()
  local fh = io.open(errfile)
  local err = fh and fh:read("*a") or ""
  if fh then fh:close() end
  os.remove(errfile)
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return (out:gsub("rc=%d+%s*$", "")), rc == 0, err
end

-- ONNX Runtime comes from tools/onnx's lockfile: installed here when absent.
local function ensure_runtime()
  if io.open(TOOLS .. "/node_modules/onnxruntime-node/package.json") then return end
  local out, ok, err = sh("cd " .. TOOLS .. " && npm ci --ignore-scripts --no-audit --no-fund")
  assert(ok, "npm ci in tools/onnx failed:\n" .. out .. err)
end

-- ---- data ---------------------------------------------------------------------------

-- Every 13th value of a column (shifted per column) becomes missing.
local function with_holes(f, columns)
  for j, c in ipairs(columns) do
    local col = f:col(c)
    f = f:with_column(c, function(_, i) if (i + 5 * j) % 13 ~= 0 then return col:get(i) end end, "float")
  end
  return f
end

local CUTS = { [0] = "Fair", "Good", "Very Good", "Premium", "Ideal" }

local DATASETS = {
  { name = "spam", label = "label",
    prepare = function(f) return with_holes(f, { "make", "address", "free", "charDollar", "capitalAve" }) end },
  { name = "letter", label = "label",
    -- Text class labels: A..Z.
    prepare = function(f)
      local col = f:col("label")
      return f:with_column("label", function(_, i) return string.char(65 + col:get(i)) end, "string")
    end },
  { name = "diamonds", label = "target",
    -- cut as text (OneHotEncoder), color and clarity as codes (Equal).
    prepare = function(f)
      local cut = f:col("cut")
      f = f:with_column("cut", function(_, i) return CUTS[cut:get(i)] end, "string")
      return with_holes(f, { "carat", "depth", "table" })
    end },
  { name = "breast_cancer", label = "label" },
  { name = "digits", label = "label" },
}

local SPAM_CAPS = { "capitalAve", "capitalLong", "capitalTotal" }

-- Per data set and family: the pipeline's steps and model (small: fast fits).
local PIPELINES = {
  spam = {
    gbt = function()
      return { steps = { step.fill_missing { columns = { "make" } }, step.log1p { columns = SPAM_CAPS },
                         step.clip { max = 5, columns = { "charExclamation", "charDollar" } },
                         step.kmeans { k = 3, columns = SPAM_CAPS, n_init = 1 }, step.drop { "num857" } },
               model = models.gbt { rounds = 20, depth = 4 } }
    end,
    forest = function()
      return { steps = { step.log1p { columns = SPAM_CAPS }, step.clip { 0, 3 } },
               model = models.forest { trees = 10, depth = 8 } }
    end,
    logistic = function()
      return { steps = { step.fill_missing { "median" }, step.log1p { columns = SPAM_CAPS }, step.standardize() },
               model = models.logistic {} }
    end,
    kmeans = function()
      return { steps = { step.fill_missing { "mean" }, step.standardize(),
                         step.select { "free", "charDollar", "charExclamation", "capitalAve", "capitalTotal", "remove" } },
               model = models.kmeans { k = 4, n_init = 1 } }
    end,
  },
  letter = {
    gbt = function()
      return { steps = { step.minmax(), step.onehot { "x.box" } }, model = models.gbt { rounds = 3, depth = 4 } }
    end,
    forest = function()
      return { steps = { step.clip { min = 1, max = 14 }, step.kmeans { k = 4, n_init = 1 } },
               model = models.forest { trees = 8, depth = 10 } }
    end,
    logistic = function()
      return { steps = { step.onehot { "high" }, step.standardize() }, model = models.logistic { max_iter = 40 } }
    end,
    kmeans = function()
      return { steps = { step.standardize() }, model = models.kmeans { k = 6, n_init = 1 } }
    end,
  },
  diamonds = {
    gbt = function()
      return { steps = { step.onehot { "cut", "color" }, step.log1p { columns = { "carat" } } },
               model = models.gbt { rounds = 20, depth = 5 } }
    end,
    forest = function()
      return { steps = { step.onehot { "cut" }, step.fill_missing { columns = { "depth" } },
                         step.standardize { columns = { "x", "y", "z" } } },
               model = models.forest { trees = 6, depth = 8 } }
    end,
    linear = function()
      return { steps = { step.onehot { "cut", "color", "clarity" }, step.fill_missing { "mean" }, step.minmax() },
               model = models.linear {} }
    end,
    kmeans = function()
      return { steps = { step.onehot { "cut" }, step.fill_missing { "median" }, step.standardize() },
               model = models.kmeans { k = 4, n_init = 1 } }
    end,
  },
  breast_cancer = {
    gbt = function()
      return { steps = { step.standardize(), step.kmeans { k = 3, n_init = 1 } },
               model = models.gbt { rounds = 20, depth = 3 }, post = { threshold = 0.7 } }
    end,
    forest = function()
      return { steps = { step.log1p { columns = { "mean_area", "worst_area" } } }, model = models.forest { trees = 20 } }
    end,
    logistic = function()
      return { steps = { step.standardize(), step.clip { -3, 3 } }, model = models.logistic {} }
    end,
    kmeans = function()
      return { steps = { step.standardize() }, model = models.kmeans { k = 2, n_init = 2 } }
    end,
  },
  digits = {
    gbt = function()
      return { steps = { step.minmax(), step.drop { "px0_0", "px0_7" } }, model = models.gbt { rounds = 4, depth = 3 } }
    end,
    forest = function()
      return { steps = { step.kmeans { k = 10, n_init = 1 } }, model = models.forest { trees = 10, depth = 10 } }
    end,
    logistic = function()
      return { steps = { step.standardize() }, model = models.logistic { max_iter = 40 } }
    end,
    kmeans = function()
      return { steps = {}, model = models.kmeans { k = 10, n_init = 1 } }
    end,
  },
}

local FAMILIES = { "gbt", "forest", "logistic", "linear", "kmeans" }

-- ---- ONNX Runtime ------------------------------------------------------------------

local function json_value(v)
  if v == nil or v ~= v then return "null" end
  if type(v) == "number" then return string.format("%.17g", v) end
  return json.encode(v)
end

-- Rows as a JSON array (numbers to the bit), the columns listed, each row
-- first through transform when given.
local function write_rows(path, f, columns, transform)
  local out = {}
  for i, r in f:rows() do
    if transform then r = transform(r) end
    local parts = {}
    for j, c in ipairs(columns or {}) do parts[j] = json.encode(c) .. ":" .. json_value(r[c]) end
    if not columns then
      for c, v in pairs(r) do parts[#parts + 1] = json.encode(c) .. ":" .. json_value(v) end
    end
    out[i] = "{" .. table.concat(parts, ",") .. "}"
  end
  local fh = assert(io.open(path, "w"))
  fh:write("[", table.concat(out, ",\n"), "]\n")
  fh:close()
end

local function ort_run(model_path, rows_path)
  local out, ok, err = sh("node " .. TOOLS .. "/run.js " .. shell_quote(model_path) .. " " .. shell_quote(rows_path))
  assert(ok, "ONNX Runtime failed on " .. model_path .. ":\n" .. err)
  return assert(json.decode(out)).outputs
end

-- ---- comparing ---------------------------------------------------------------------

local function rel_diff(a, b)
  if a == b then return 0 end
  return math.abs(a - b) / math.max(math.abs(a), math.abs(b))
end

-- Checks ONNX Runtime's outputs against pipe:predict (and the model's class
-- probabilities) on frame te; returns the largest relative difference.
local function compare(pipe, te, outputs, what)
  local pred = assert(pipe:predict(te))
  local n, task, worst = te:nrows(), pipe.model.task, 0
  local function near(a, b, where)
    local d = rel_diff(a, b)
    if d > worst then worst = d end
    assert(d <= REL, string.format("%s: %s differs: tycho %.17g, onnx %.17g (relative %.3g)", what, where, a, b, d))
  end
  local function labels_equal(want, got, i)
    assert(want == got, string.format("%s: row %d: label %s from tycho, %s from onnx", what, i, tostring(want),
      tostring(got)))
  end
  if task == "regression" then
    assert.equal(n, #outputs.value.data)
    for i = 1, n do near(pred:col("prediction"):get(i), outputs.value.data[i], "row " .. i .. " value") end
    return worst
  end
  assert.equal(n, #outputs.label.data)
  for i = 1, n do labels_equal(pred:col("prediction"):get(i), outputs.label.data[i], i) end
  if task == "clustering" then
    -- Distances to every centre, against the centroids in Lua.
    local x = pipe:_transform_frame(te, false)
    local m = pipe.model
    local centers, k = m.fam.centroids(m.handle)
    local p = #m.features
    assert.same({ n, k }, outputs.distances.dims)
    for i = 1, n do
      for c = 1, k do
        local d = 0
        for j, name in ipairs(m.features) do d = d + (x:col(name):get(i) - centers[(c - 1) * p + j - 1]) ^ 2 end
        near(math.sqrt(d), outputs.distances.data[(i - 1) * k + c], "row " .. i .. " distance " .. c)
      end
    end
    return worst
  end
  for i = 1, n do near(pred:col("probability"):get(i), outputs.probability.data[i], "row " .. i .. " probability") end
  -- Every class's probability, against the model's own (through the steps).
  local proba = assert(pipe.model:predict_proba(pipe:_transform_frame(te, false)))
  local k = #pipe.model.classes
  assert.same({ n, k }, outputs.probabilities.dims)
  for c, cls in ipairs(pipe.model.classes) do
    local col = proba:col("p_" .. tostring(cls))
    for i = 1, n do
      near(col:get(i), outputs.probabilities.data[(i - 1) * k + c], "row " .. i .. " P(" .. tostring(cls) .. ")")
    end
  end
  return worst
end

-- ---- the specs -----------------------------------------------------------------------

describe("ONNX export", function()
  local dir, data = nil, {}
  local exported, report = {}, {}  -- files for onnx.checker; lines for the summary

  setup(function()
    ensure_runtime()
    dir = testing.tmpdir()
  end)
  teardown(function()
    if #report > 0 then io.stderr:write("\nONNX export, max relative difference to Tycho:\n", table.concat(report, "\n"), "\n") end
    testing.rmrf(dir)
  end)

  local function load(ds)
    if not data[ds.name] then
      local f = assert(frame.read_csv(DATA .. ds.name .. ".csv"))
      local mask = {}
      for line in io.lines(DATA .. ds.name .. ".split") do mask[#mask + 1] = tonumber(line) end
      if ds.prepare then f = ds.prepare(f) end
      local tr, te = f:split { mask = mask }
      data[ds.name] = { tr = tr, te = te }
    end
    return data[ds.name].tr, data[ds.name].te
  end

  for _, ds in ipairs(DATASETS) do
    for _, family in ipairs(FAMILIES) do
      local make = PIPELINES[ds.name][family]
      if make then
        it(ds.name .. ": " .. family .. " with built-in steps answers in ONNX Runtime as in Tycho", function()
          local tr, te = load(ds)
          local def = make()
          def.name = ds.name .. "-" .. family
          local pipe = tycho.pipeline(def)
          assert(pipe:fit(tr, { label = ds.label, quiet = true }))
          local path = dir .. "/" .. def.name .. ".onnx"
          assert(pipe:export_onnx(path, { version = "7" }))
          exported[#exported + 1] = { path = path, pipe = pipe, name = def.name, version = "7" }
          local rows = dir .. "/" .. ds.name .. ".json"
          write_rows(rows, te, pipe.inputs)
          local worst = compare(pipe, te, ort_run(path, rows), def.name)
          report[#report + 1] = string.format("  %-14s %-9s %.3g (%d test rows)", ds.name, family, worst, te:nrows())
        end)
      end
    end
  end

  local ratio = function(r)
    r.ratio = r.capitalLong / (r.capitalAve + 1)
    return r
  end

  it("refuses a pipeline with a Lua step, naming the step", function()
    local tr = load(DATASETS[1])
    local pipe = assert(tycho.pipeline { steps = { step.fill_missing { "mean" }, step.lua(ratio, "caps ratio") },
                                         model = models.gbt { rounds = 3 } }:fit(tr, { label = "label", quiet = true }))
    local ok, err, code = pipe:export_onnx(dir .. "/refused.onnx")
    assert.is_nil(ok)
    assert.equal("invalid", code)
    assert.matches("step 2 ('caps ratio')", err, 1, true)
    assert.is_nil(io.open(dir .. "/refused.onnx"))
  end)

  it("exports what follows the last Lua step on request, its columns as inputs", function()
    local tr, te = load(DATASETS[1])
    local pipe = assert(tycho.pipeline {
      steps = { step.fill_missing { "mean" }, step.lua(ratio, "caps ratio"), step.standardize { columns = { "ratio" } },
                step.clip { max = 50, columns = { "ratio" } } },
      model = models.gbt { rounds = 10, depth = 3 } }:fit(tr, { label = "label", quiet = true }))
    local path = dir .. "/after_lua.onnx"
    assert(pipe:export_onnx(path, { after_lua = true }))
    exported[#exported + 1] = { path = path, pipe = pipe, after_lua = true }
    -- ONNX Runtime gets the rows as the Lua step leaves them.
    local fill = pipe.steps[1].state.fill
    local rows = dir .. "/after_lua.json"
    write_rows(rows, te, nil, function(r)
      for c, v in pairs(fill) do if r[c] == nil or r[c] ~= r[c] then r[c] = v end end
      return ratio(r)
    end)
    compare(pipe, te, ort_run(path, rows), "after lua")
  end)

  it("exports a pipeline loaded from the registry, its name and version in the metadata", function()
    local home = testing.tmpdir()
    local reg = assert(tycho.registry.open({ home = home }))
    local tr, te = load(DATASETS[1])
    local pipe = assert(tycho.pipeline(PIPELINES.spam.gbt()):fit(tr, { label = "label", quiet = true }))
    local v = assert(reg:register("spam", pipe))
    local loaded = assert(reg:load("spam", v))
    reg.store:close()
    testing.rmrf(home)
    local path = dir .. "/registry.onnx"
    assert(loaded:export_onnx(path, { name = "spam" }))
    exported[#exported + 1] = { path = path, pipe = loaded, name = "spam", version = v }
    local rows = dir .. "/registry.json"
    write_rows(rows, te, loaded.inputs)
    compare(loaded, te, ort_run(path, rows), "registry")
  end)

  it("gives text inputs' missing and unknown levels zeros, as Tycho does", function()
    local f = frame.new({ c = { "a,b", "b", "a,b", "b", "c", "b", "a,b", "c", "b", "c" },
                          x = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, y = { 0, 1, 0, 1, 1, 1, 0, 0, 1, 0 } })
    local pipe = assert(tycho.pipeline { name = "text", steps = { step.onehot { "c" }, step.standardize() },
                                         model = models.logistic {} }:fit(f, { label = "y", quiet = true }))
    local path = dir .. "/text.onnx"
    assert(pipe:export_onnx(path, { version = "1" }))
    exported[#exported + 1] = { path = path, pipe = pipe, name = "text", version = "1" }
    local te = frame.new({ c = { "a,b", "zzz", nil, "c" }, x = { 1, 2, 3, 4 } }, { types = { c = "string" }, n = 4 })
    local rows = dir .. "/text.json"
    write_rows(rows, te, pipe.inputs)
    compare(pipe, te, ort_run(path, rows), "text")
  end)

  it("refuses what ONNX cannot express, naming it", function()
    local f = frame.new({ x = { 1, 2, 3, 4, 5, 6 }, y = { 0, 1, 0, 1, 0, 1 } })
    local path = dir .. "/refused.onnx"
    local unfitted = tycho.pipeline { model = models.gbt { rounds = 2 } }
    assert.same({ nil, "onnx: the pipeline is not fitted", "conflict" }, { unfitted:export_onnx(path) })
    local post = assert(tycho.pipeline { model = models.gbt { rounds = 2 },
                                         post = function(out) out.extra = 1 return out end }:fit(f, { label = "y", quiet = true }))
    local ok, err, code = post:export_onnx(path)
    assert.is_nil(ok)
    assert.equal("invalid", code)
    assert.matches("post function", err, 1, true)
    local blend = assert(tycho.pipeline { model = models.blend { members = { models.gbt { rounds = 2 }, models.logistic {} } } }
      :fit(f, { label = "y", quiet = true }))
    ok, err, code = blend:export_onnx(path)
    assert.is_nil(ok)
    assert.equal("invalid", code)
    assert.matches("blend", err, 1, true)
    assert.has_error(function() post:export_onnx(path, { afterlua = true }) end)
    assert.is_nil(io.open(path))
  end)

  it("writes files onnx.checker accepts, with the name, version and feature order in the metadata", function()
    assert(#exported >= 20, "the exports above ran")
    local paths = {}
    for i, e in ipairs(exported) do paths[i] = shell_quote(e.path) end
    local script = table.concat({
      "import sys, json, onnx",
      "out = {}",
      "for path in sys.argv[1:]:",
      "    m = onnx.load(path)",
      "    try:",
      "        onnx.checker.check_model(m, full_check=True)",
      "        out[path] = {p.key: p.value for p in m.metadata_props}",
      "    except Exception as e:",
      "        out[path] = {'error': str(e)}",
      "print(json.dumps(out))",
    }, "\n")
    local out, ok, err = sh("/usr/bin/python3 -c " .. shell_quote(script) .. " " .. table.concat(paths, " "))
    assert(ok, "python3 with Debian's python3-onnx failed (apt-get install python3-onnx):\n" .. err)
    local verdicts = assert(json.decode(out))
    for _, e in ipairs(exported) do
      local meta = verdicts[e.path]
      assert.is_nil(meta.error, e.path .. ": " .. tostring(meta.error))
      assert.same(e.pipe.model_inputs, json.decode(meta["tycho.features"]))
      if not e.after_lua then
        assert.equal(e.name, meta["tycho.name"])
        assert.equal(e.version, meta["tycho.version"])
        local inputs = json.decode(meta["tycho.inputs"])
        for i, c in ipairs(e.pipe.inputs) do assert.equal(c, inputs[i].name) end
      end
    end
  end)
end)
