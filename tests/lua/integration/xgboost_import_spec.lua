-- Issue 26 (import): XGBoost JSON models (Booster.save_model) become Tycho
-- pipelines that answer as XGBoost does. Debian's python3-xgboost trains
-- small models on the shared spam (binary), letter (multiclass) and
-- diamonds (regression) sets with tests/python/xgb_train.py, blanks some
-- test cells, and writes its own predict() output; every test row must
-- agree within 1e-6, in process and through `tycho serve --model`. Crafted
-- and foreign files are refused with a message, never a crash or a hang.
local tycho = require "tycho"
local testing = require "tycho.testing"
local xgboost = require "tycho.ml.xgboost"
local json = require "tycho.util.json"
local frame = tycho.frame

local PYTHON = "/usr/bin/python3"
local SCRIPT = "tests/python/xgb_train.py"
local DATA = "../shared/data/"
local TOL = 1e-6

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function shell(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"exit=$?\""))
  local text = p:read("*a")
  p:close()
  local code = tonumber(text:match("exit=(%d+)%s*$"))
  return code, text
end

-- Trains into root/name with the python script; returns that directory.
local function train(root, name, data, label, objective, args)
  local out = root .. "/" .. name
  local cmd = { PYTHON, SCRIPT, "--data", DATA .. data .. ".csv", "--split", DATA .. data .. ".split",
                "--label", label, "--objective", objective, "--out", out }
  for _, a in ipairs(args or {}) do cmd[#cmd + 1] = a end
  for i, a in ipairs(cmd) do cmd[i] = quote(a) end
  local code, text = shell("nice " .. table.concat(cmd, " "))
  assert(code == 0, "xgb_train.py failed: " .. text)
  return out
end

-- xgboost's predictions: one list of numbers per test row.
local function read_preds(dir)
  local rows = {}
  for line in io.lines(dir .. "/pred.csv") do
    local r = {}
    for v in line:gmatch("[^,]+") do r[#r + 1] = assert(tonumber(v)) end
    rows[#rows + 1] = r
  end
  return rows
end

local function read_test(dir) return assert(frame.read_csv(dir .. "/test.csv")) end

-- Value k of every row of xgboost's predictions.
local function column(want, k)
  local out = {}
  for i, r in ipairs(want) do out[i] = r[k] end
  return out
end

local function count_nulls(f)
  local n = 0
  for _, r in f:rows() do
    for _, name in ipairs(f:names()) do if r[name] == nil then n = n + 1 end end
  end
  return n
end

-- Asserts |got(i) - want[i]| <= TOL on every row; returns the largest gap.
local function assert_close(what, n, got, want)
  local worst, at = 0, 0
  for i = 1, n do
    local d = math.abs(got(i) - want[i])
    if d > worst or d ~= d then worst, at = d, i end
  end
  assert(worst <= TOL, string.format("%s: row %d differs by %.3g from xgboost's", what, at, worst))
  return worst
end

describe("importing XGBoost models", function()
  local root, dirs = nil, {}
  setup(function()
    local code, text = shell(PYTHON .. " -c 'import xgboost'")
    assert(code == 0, "these specs need Debian's python3-xgboost (apt-get install python3-xgboost): " .. text)
    root = testing.tmpdir()
    dirs.spam = train(root, "spam", "spam", "label", "binary:logistic",
      { "--rounds", "30", "--depth", "5", "--base-score", "0.3" })
    dirs.letter = train(root, "letter", "letter", "label", "multi:softprob", { "--rounds", "20", "--depth", "4" })
    dirs.softmax = train(root, "softmax", "letter", "label", "multi:softmax", { "--rounds", "4", "--depth", "3" })
    dirs.diamonds = train(root, "diamonds", "diamonds", "target", "reg:squarederror", { "--rounds", "40", "--depth", "6" })
  end)
  teardown(function() if root then testing.rmrf(root) end end)

  it("spam (binary:logistic, base_score 0.3): P(spam) of every test row within 1e-6 of xgboost's", function()
    local pipe, info = assert(xgboost.import(dirs.spam .. "/m.json"))
    assert.equal("binary:logistic", info.objective)
    assert.equal(30, info.trees)
    assert.matches("^%d+%.%d+%.%d+$", info.xgboost_version)
    assert.equal(0.3, tonumber(string.format("%.7g", info.base_score)))
    local test, want = read_test(dirs.spam), read_preds(dirs.spam)
    assert.is_true(count_nulls(test) > 1000, "the test rows have missing values")
    local out = assert(pipe:predict(test))
    local prob = out:col("probability")
    assert_close("spam", test:nrows(), function(i) return prob:get(i) end, column(want, 1))
    -- One row at a time (the serving path) gives the batch's numbers.
    for i = 1, 25 do
      local one = assert(pipe:predict(test:row(i)))
      assert.equal(prob:get(i), one.probability)
      assert.equal(out:col("prediction"):get(i), one.prediction)
    end
    assert.is_true(pipe.model:importance()[1].gain > 0)
  end)

  it("letter (multi:softprob): all 26 class probabilities within 1e-6, and xgboost's class", function()
    local pipe, info = assert(xgboost.import(dirs.letter .. "/m.json"))
    assert.equal(26, info.classes)
    assert.same({ 20 * 26, 20 }, { info.trees, info.rounds })
    local test, want = read_test(dirs.letter), read_preds(dirs.letter)
    assert.is_true(count_nulls(test) > 1000)
    local proba = assert(pipe.model:predict_proba(test))
    for k = 0, 25 do
      local col = proba:col("p_" .. k)
      assert_close("letter p_" .. k, test:nrows(), function(i) return col:get(i) end, column(want, k + 1))
    end
    local labels = assert(pipe:predict(test)):col("prediction")
    for i, r in ipairs(want) do
      local best = 1
      for k = 2, 26 do if r[k] > r[best] then best = k end end
      assert.equal(best - 1, labels:get(i))
    end
  end)

  it("letter (multi:softmax): the class xgboost predicts, on every test row", function()
    local pipe = assert(xgboost.import(dirs.softmax .. "/m.json", { classes = { "A", "B", "C", "D", "E", "F", "G",
      "H", "I", "J", "K", "L", "M", "N", "O", "P", "Q", "R", "S", "T", "U", "V", "W", "X", "Y", "Z" } }))
    local test, want = read_test(dirs.softmax), read_preds(dirs.softmax)
    local labels = assert(pipe:predict(test)):col("prediction")
    for i, r in ipairs(want) do assert.equal(string.char(65 + r[1]), labels:get(i)) end
  end)

  it("diamonds (reg:squarederror): every test row's price within 1e-6 (float32 sums, as XGBoost's)", function()
    local pipe, info = assert(xgboost.import(dirs.diamonds .. "/m.json", { label = "target" }))
    assert.equal("reg:squarederror", info.objective)
    local test, want = read_test(dirs.diamonds), read_preds(dirs.diamonds)
    assert.is_true(count_nulls(test) > 1000)
    local pred = assert(pipe:predict(test)):col("prediction")
    assert_close("diamonds", test:nrows(), function(i) return pred:get(i) end, column(want, 1))
    assert.same({ "carat", "cut", "color", "clarity", "depth", "table", "x", "y", "z" }, pipe.inputs)
    assert.is_true(pipe:evaluate(test).rmse < 1000)
  end)

  it("registers with provenance and serves: POST /v1/models/NAME:predict agrees with xgboost", function()
    local home = testing.tmpdir()
    local reg = assert(tycho.registry.open({ home = home }))
    for _, m in ipairs({ { "xgb_spam", "spam" }, { "xgb_letter", "letter" }, { "xgb_diamonds", "diamonds" } }) do
      local v = assert(reg:import(dirs[m[2]] .. "/m.json", { name = m[1], format = "xgboost" }))
      assert.equal("1.0.0", v)
      assert(reg:promote(m[1], v, "production"))
    end
    local meta = assert(reg:get("xgb_spam"))
    local _, sum = shell("sha256sum " .. quote(dirs.spam .. "/m.json"))
    assert.equal(sum:match("^(%x+)"), meta.provenance.sha256)
    assert.equal("xgboost", meta.provenance.source)
    assert.matches("^imported from xgboost %d+%.%d+$", meta.provenance.note)
    assert.equal(meta.provenance.note, meta.description)
    assert.equal("binary:logistic", meta.params.objective)
    assert.equal(57, #meta.inputs)
    local missing, err, code = reg:import(root .. "/nothing.json", { name = "ghost" })
    assert.is_nil(missing)
    assert.equal("not_found", code, err)
    assert.is_nil(reg:get("ghost"))

    local srv = testing.serve({ "--model", "xgb_spam", "--model", "xgb_letter", "--model", "xgb_diamonds" }, {},
      { env = { "TYCHO_HOME=" .. home } })
    local ok, failure = pcall(function()
      for _, case in ipairs({ { "xgb_spam", "spam", "label" }, { "xgb_letter", "letter", "label" },
                              { "xgb_diamonds", "diamonds", "target" } }) do
        local name, dir, label = case[1], dirs[case[2]], case[3]
        local test, want = read_test(dir), read_preds(dir)
        -- Rows with missing values: as JSON null in odd instances, left out in even ones.
        local instances, rows = {}, {}
        for i, r in test:rows() do
          if #instances == 8 then break end
          local inst, holes = {}, 0
          for _, c in ipairs(test:names()) do
            if c ~= label then
              if r[c] ~= nil then inst[c] = r[c]
              else
                holes = holes + 1
                if #instances % 2 == 0 then inst[c] = json.null end
              end
            end
          end
          if holes > 0 then instances[#instances + 1], rows[#rows + 1] = inst, i end
        end
        local status, _, body, doc = testing.request(srv.port, "POST", "/v1/models/" .. name .. ":predict",
          { body = { instances = instances } })
        assert.equal(200, status, body)
        assert.equal(#rows, #doc.predictions)
        for j, i in ipairs(rows) do
          local p, w = doc.predictions[j], want[i]
          if case[2] == "spam" then
            assert.is_true(math.abs(p.probability - w[1]) <= TOL, body)
          elseif case[2] == "diamonds" then
            assert.is_true(math.abs(p.prediction - w[1]) <= TOL, body)
          else
            local best = 1
            for k = 2, #w do if w[k] > w[best] then best = k end end
            assert.equal(best - 1, p.prediction)
            assert.is_true(math.abs(p.probability - w[best]) <= TOL, body)
          end
        end
      end
    end)
    assert.equal(0, srv:stop())
    testing.rmrf(home)
    assert(ok, failure)
  end)

  it("imports and exports from the command line", function()
    local home = testing.tmpdir()
    local code, stdout, stderr = testing.run({ "--home", home, "models", "import", dirs.spam .. "/m.json",
      "--name", "churn" })
    assert.equal(0, code, stderr)
    assert.matches("imported .* as churn 1.0.0 %(imported from xgboost", stdout)
    code, stdout = testing.run({ "--home", home, "models", "show", "churn" })
    assert.equal(0, code)
    assert.matches("provenance:", stdout, 1, true)
    assert.matches("source%s+xgboost", stdout)
    code, stdout, stderr = testing.run({ "--home", home, "models", "import", root .. "/spam/test.csv", "--name", "bad" })
    assert.equal(1, code, stdout)
    assert.matches("not a usable XGBoost model", stderr, 1, true)
    code = testing.run({ "--home", home, "models", "import", dirs.spam .. "/m.json" })
    assert.equal(2, code)
    code, stdout, stderr = testing.run({ "--home", home, "models", "export", "churn", "-o", home .. "/churn.onnx" })
    assert.equal(0, code, stderr)
    assert.matches("exported churn 1.0.0", stdout, 1, true)
    local f = assert(io.open(home .. "/churn.onnx", "rb"))
    assert.is_true(#f:read("*a") > 1000)
    f:close()
    testing.rmrf(home)
  end)
end)

-- A small valid model to break: one split on a < 0.1 (float32), two leaves.
local function tiny(edit)
  local doc = {
    version = { 1, 7, 4 },
    learner = {
      feature_names = { "a", "b" }, feature_types = { "float", "float" },
      objective = { name = "reg:squarederror" },
      learner_model_param = { base_score = "5E-1", num_class = "0", num_feature = "2", num_target = "1" },
      gradient_booster = { name = "gbtree", model = {
        gbtree_model_param = { num_trees = "1", num_parallel_tree = "1" },
        tree_info = { 0 },
        trees = { {
          tree_param = { num_nodes = "3", num_feature = "2", size_leaf_vector = "0" },
          left_children = { 1, -1, -1 }, right_children = { 2, -1, -1 }, parents = { 2147483647, 0, 0 },
          split_indices = { 0, 0, 0 }, split_conditions = { 0.1, -1, 2 }, default_left = { 1, 0, 0 },
          base_weights = { 0, -1, 2 }, loss_changes = { 5, 0, 0 }, sum_hessian = { 2, 1, 1 },
          split_type = { 0, 0, 0 },
        } },
      } },
    },
  }
  if edit then edit(doc, doc.learner.gradient_booster.model.trees[1], doc.learner) end
  return json.encode(doc)
end

-- A chain of splits: split k (node 2k) sends a < k + 0.5 to a leaf worth k.
local function chain(m)
  local t = { left_children = {}, right_children = {}, split_indices = {}, split_conditions = {}, default_left = {} }
  local n = 2 * m + 1
  for i = 1, n do t.left_children[i], t.right_children[i], t.split_indices[i], t.default_left[i] = -1, -1, 0, 0 end
  for k = 0, m - 1 do
    t.left_children[2 * k + 1], t.right_children[2 * k + 1] = 2 * k + 1, 2 * k + 2
    t.split_conditions[2 * k + 1], t.split_conditions[2 * k + 2] = k + 0.5, k
  end
  t.split_conditions[n] = m
  t.tree_param = { num_nodes = tostring(n) }
  return tiny(function(doc) doc.learner.gradient_booster.model.trees[1] = t end)
end

describe("importing crafted XGBoost files", function()
  it("compares as XGBoost does: float32 values against float32 thresholds, NaN by default_left", function()
    local pipe = assert(xgboost.from_json(tiny()))
    -- 0.1 is below float32(0.1) as a double, but equal to it as a float32: right.
    assert.equal(2.5, pipe:predict({ a = 0.1, b = 0 }).prediction)
    assert.equal(-0.5, pipe:predict({ a = 0.0999999, b = 0 }).prediction)
    assert.equal(-0.5, pipe:predict({ b = 0 }).prediction)          -- missing: default left
    assert.equal(-0.5, pipe:predict({ a = 0 / 0, b = 0 }).prediction)
    assert.equal(2.5, pipe:predict({ a = 1e300, b = 0 }).prediction)
    -- Each threshold is the largest double whose float32 is below XGBoost's.
    local ffi = require "ffi"
    local box = ffi.new("float[1]")
    local function f32(x) box[0] = x return box[0] end
    local cases = { 0, -0.0, 1, -1, 2 ^ -149, -2 ^ -149, 2 ^ -126, (2 - 2 ^ -23) * 2 ^ 127, -(2 - 2 ^ -23) * 2 ^ 127 }
    for i = 1, 2000 do cases[#cases + 1] = f32((i % 2 == 0 and 1 or -1) * math.random() * 2 ^ math.random(-140, 120)) end
    for _, c in ipairs(cases) do
      local t = xgboost.threshold_for(c)
      assert(f32(t) < c, c)
      local up = t + math.abs(t) * 2 ^ -52 + 2 ^ -1074  -- a double above t
      assert(f32(up) >= c, c)
    end
  end)

  it("walks deep trees without recursion", function()
    local pipe = assert(xgboost.from_json(chain(20000)))
    assert.equal(0.5 + 12345, pipe:predict({ a = 12345, b = 0 }).prediction)
    assert.equal(0.5 + 20000, pipe:predict({ a = 1e9, b = 0 }).prediction)
  end)

  it("takes feature names from opts.features when the model has none", function()
    local text = tiny(function(_, _, learner) learner.feature_names = json.empty_array end)
    local p, err, code = xgboost.from_json(text)
    assert.is_nil(p)
    assert.equal("invalid", code)
    assert.matches("no feature names", err, 1, true)
    p = assert(xgboost.from_json(text, { features = { "x", "y" } }))
    assert.same({ "x", "y" }, p.inputs)
    assert.equal(2.5, p:predict({ x = 0.5, y = 0 }).prediction)
  end)

  local function refused(text, fragment, want_code, opts)
    local p, err, code = xgboost.from_json(text, opts)
    assert.is_nil(p, fragment)
    assert.equal(want_code or "invalid", code, err)
    assert.matches(fragment, err, 1, true)
  end

  it("refuses what is not an XGBoost model", function()
    refused("{\"learner\": ", "not valid JSON")
    refused("\0\1UBJ\255", "not valid JSON")
    refused(string.rep("[", 100000), "not valid JSON")
    refused("[]", "no 'learner' object")
    refused("{\"learner\": {}}", "version")
    refused(tiny(function(doc) doc.version = nil end), "version")
    refused(tiny(function(_, _, l) l.gradient_booster.name = "gblinear" end), "gblinear booster is not supported")
    refused(tiny(function(_, _, l) l.gradient_booster.name = "dart" end), "dart booster is not supported")
    refused(tiny(function(_, _, l) l.objective.name = "rank:pairwise" end), "objective 'rank:pairwise' is not supported")
    refused(tiny(function(_, _, l) l.objective = nil end), "objective 'nil' is not supported")
  end)

  it("refuses XGBoost's other boosters, as Debian's xgboost writes them", function()
    local root = testing.tmpdir()
    for _, booster in ipairs({ "gblinear", "dart" }) do
      local dir = train(root, booster, "breast_cancer", "label", "binary:logistic",
        { "--rounds", "2", "--depth", "2", "--booster", booster })
      local p, err, code = xgboost.import(dir .. "/m.json")
      assert.is_nil(p)
      assert.equal("invalid", code)
      assert.matches("the " .. booster .. " booster is not supported", err, 1, true)
    end
    testing.rmrf(root)
  end)

  it("refuses inconsistent, out-of-range and non-finite contents", function()
    refused(tiny(function(_, t) t.right_children = { 2, -1 } end), "must each hold num_nodes (3) entries")
    refused(tiny(function(_, t) t.base_weights = { 1 } end), "base_weights has the wrong length")
    refused(tiny(function(_, t) t.tree_param.num_nodes = "1000000000" end), "num_nodes is not a count")
    refused(tiny(function(_, t) t.left_children[1] = 7 end), "children out of range")
    refused(tiny(function(_, t) t.left_children[1] = 0 end), "children out of range")
    refused(tiny(function(_, t) t.right_children[2] = 2 end), "has a right child but no left one")
    refused(tiny(function(_, t) t.split_indices[1] = 2 end), "splits on feature 2 of 2")
    refused(tiny(function(_, t) t.split_indices[1] = -1 end), "splits on feature -1 of 2")
    refused(tiny(function(_, t) t.default_left[1] = 3 end), "default_left[0] is not 0 or 1")
    refused(tiny(function(_, t) t.split_conditions[2] = "x" end), "split_conditions[1] is not a number")
    refused(tiny(function(_, t) t.split_conditions[1] = 1e39 end), "past float32's range")
    refused(tiny():gsub("0%.1", "1e999"), "not a finite")
    refused(tiny():gsub("0%.1", "NaN"), "not a finite")
    refused(tiny(function(doc) doc.learner.gradient_booster.model.tree_info = { 1 } end), "tree_info[0] is not a class")
    refused(tiny(function(doc) doc.learner.gradient_booster.model.tree_info = { 0, 0 } end), "tree_info must hold")
    refused(tiny(function(doc) doc.learner.gradient_booster.model.gbtree_model_param.num_trees = "2" end),
      "num_trees says 2")
    refused(tiny(function(_, _, l) l.learner_model_param.num_feature = "0" end), "num_feature")
    refused(tiny(function(_, _, l) l.learner_model_param.num_feature = "3" end), "2 feature names for num_feature 3")
    refused(tiny(function(_, _, l) l.learner_model_param.base_score = "NaN" end), "base_score")
    refused(tiny(function(_, _, l) l.learner_model_param.num_target = "2" end), "several targets")
    refused(tiny(function(_, _, l) l.objective.name = "binary:logistic" l.learner_model_param.base_score = "1.5" end),
      "base_score in (0, 1)")
    refused(tiny(function(_, _, l) l.objective.name = "multi:softprob" l.learner_model_param.num_class = "1" end),
      "num_class in 2..")
    refused(tiny(function(_, _, l) l.feature_names = { "a", "a" } end), "appears twice")
    refused(tiny(function(_, _, l) l.feature_names = { "a", "b\n" } end), "is not a name")
    refused(tiny(function(_, _, l) l.objective.name = "binary:logistic" end), "opts.classes has 3 classes, the model 2",
      "invalid", { classes = { 1, 2, 3 } })
  end)

  it("refuses categorical splits and vector leaves", function()
    refused(tiny(function(_, t) t.split_type = { 1, 0, 0 } end), "categorical split")
    refused(tiny(function(_, _, l) l.feature_types = { "c", "float" } end), "categorical")
    refused(tiny(function(_, t) t.tree_param.size_leaf_vector = "3" end), "vector leaves")
  end)

  it("refuses trees that loop or share nodes, without hanging", function()
    local function five(left, right)
      return tiny(function(_, t)
        t.tree_param.num_nodes = "5"
        t.left_children, t.right_children = left, right
        t.split_indices, t.split_conditions, t.default_left = { 0, 1, 0, 0, 0 }, { 1, 2, 0, 0, 0 }, { 0, 0, 0, 0, 0 }
        t.base_weights, t.loss_changes, t.sum_hessian, t.split_type, t.parents = nil, nil, nil, nil, nil
      end)
    end
    refused(five({ 1, 3, -1, -1, -1 }, { 2, 1, -1, -1, -1 }), "node 1 is reached twice")   -- 1 -> 1
    refused(five({ 1, 2, 1, -1, -1 }, { 2, 3, 4, -1, -1 }), "reached twice")             -- 1 -> 2 -> 1
    refused(five({ 1, 3, 3, -1, -1 }, { 2, 4, 4, -1, -1 }), "node 3 is reached twice")   -- shared leaves
  end)

  it("survives random damage: every mutation loads or is refused, none raises", function()
    local function copy(v)
      if type(v) ~= "table" or v == json.empty_array then return v end
      local out = {}
      for k, x in pairs(v) do out[k] = copy(x) end
      return out
    end
    local paths = {}
    local function collect(v, path)
      if type(v) ~= "table" then return end
      for k, x in pairs(v) do
        local p = { unpack(path) }
        p[#p + 1] = k
        paths[#paths + 1] = p
        collect(x, p)
      end
    end
    local doc = json.decode(tiny())
    collect(doc, {})
    local values = { json.null, "x", "", -1, 0, 1, 2, 3, 2 ^ 31, -2 ^ 31, 1e308, -1e308, 0.5, 1e39, true, false,
                     { 1, 2 }, { a = 1 }, json.empty_array, { -1, -1, -1 }, { 0, 0, 0 }, "1e9", "[0.5]" }
    math.randomseed(26)
    local loaded, refused_n = 0, 0
    for _ = 1, 600 do
      local d = copy(doc)
      for _ = 1, math.random(1, 3) do
        local path = paths[math.random(#paths)]
        local t = d
        for i = 1, #path - 1 do t = type(t) == "table" and t[path[i]] or nil end
        if type(t) == "table" then
          local v = math.random(#values + 1)
          t[path[#path]] = v <= #values and copy(values[v]) or nil
        end
      end
      local ok, p, err, code = pcall(xgboost.from_json, json.encode(d))
      assert(ok, p)
      if p then
        loaded = loaded + 1
        assert(pcall(p.predict, p, { a = 0.3, b = 1 }))
      else
        refused_n = refused_n + 1
        assert(type(err) == "string" and (code == "invalid" or code == "too_large"), tostring(err))
      end
    end
    local text = tiny()
    for cut = 1, #text - 1, 7 do
      local ok, p, _, code = pcall(xgboost.from_json, text:sub(1, cut))
      assert(ok and p == nil and code == "invalid", text:sub(1, cut))
    end
    assert.is_true(loaded > 0 and refused_n > 300, loaded .. " loaded, " .. refused_n .. " refused")
  end)

  it("refuses sizes past its limits", function()
    local saved = { xgboost.MAX_TREES, xgboost.MAX_FILE_BYTES, xgboost.MAX_NODES }
    local ok, failure = pcall(function()
      xgboost.MAX_TREES = 0
      refused(tiny(), "more than 0 trees", "too_large")
      xgboost.MAX_TREES, xgboost.MAX_NODES = saved[1], 2
      refused(tiny(), "num_nodes is not a count")
      xgboost.MAX_NODES = saved[3]
      xgboost.MAX_FILE_BYTES = 100
      refused(tiny(), "larger than 100 bytes", "too_large")
      local path = testing.write(testing.tmpdir() .. "/m.json", tiny())
      local p, err, code = xgboost.import(path)
      assert.is_nil(p)
      assert.equal("too_large", code, err)
      testing.rmrf(path:match("^(.*)/"))
    end)
    xgboost.MAX_TREES, xgboost.MAX_FILE_BYTES, xgboost.MAX_NODES = saved[1], saved[2], saved[3]
    assert(ok, failure)
    refused(tiny(function(_, _, l) l.learner_model_param.num_feature = "2000000" end), "num_feature must be")
  end)
end)
