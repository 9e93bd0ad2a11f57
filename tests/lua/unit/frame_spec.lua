local frame = require "tycho.frame"
local testing = require "tycho.testing"

local DATA = "../shared/data/"

describe("tycho.frame", function()
  local dir
  setup(function() dir = testing.tmpdir() end)
  teardown(function() testing.rmrf(dir) end)

  local function csv(name, text) return testing.write(dir .. "/" .. name, text) end

  describe("read_csv", function()
    it("infers int, float, bool and string columns with nulls", function()
      local f, rep = frame.read_csv(csv("types.csv",
        "id,score,ok,name\n1,0.5,true,ada\n2,,false,\"lovelace, ada\"\n3,1e3,TRUE,NA\n"))
      assert.equal(3, f:nrows())
      assert.same({ id = "int", score = "float", ok = "bool", name = "string" }, f:types())
      assert.same({ 1, 0.5, true, "ada" }, { f:col("id"):get(1), f:col("score"):get(1), f:col("ok"):get(1),
                                             f:col("name"):get(1) })
      assert.is_nil(f:col("score"):get(2))
      assert.equal(1000, f:col("score"):get(3))
      assert.equal("lovelace, ada", f:col("name"):get(2))
      assert.is_nil(f:col("name"):get(3))
      assert.equal(1, f:col("name"):nulls())
      assert.equal(0, rep.rows_bad)
    end)

    it("handles quotes, doubled quotes, newlines in quotes, CRLF and a BOM", function()
      local f = frame.read_csv(csv("quotes.csv",
        "\239\187\191a,b\r\n\"x \"\"quoted\"\"\",\"two\nlines\"\r\n\"\",plain\r\n"))
      assert.same({ "a", "b" }, f:names())
      assert.equal('x "quoted"', f:col("a"):get(1))
      assert.equal("two\nlines", f:col("b"):get(1))
      assert.equal(2, f:nrows())
    end)

    it("quarantines bad rows with their line and column and keeps the good ones", function()
      -- Types come from the first rows (infer_rows); later misfits are rejected.
      local f, rep = frame.read_csv(csv("bad.csv", "a,b\n1,2\n3\n4,five\n6,7,8\n9,10\n"), { infer_rows = 1 })
      assert.equal(2, f:nrows())
      assert.same({ 1, 9 }, f:col("a"):to_table())
      assert.equal(5, rep.rows_read)
      assert.equal(3, rep.rows_bad)
      assert.same({ line = 3, column = 0, message = "expected 2 fields, found 1" }, rep.issues[1])
      assert.equal(4, rep.issues[2].line)
      assert.equal(2, rep.issues[2].column)
      assert.matches("column 'b': \"five\" is not an integer", rep.issues[2].message, 1, true)
      assert.equal(5, rep.issues[3].line)
    end)

    it("fails on the first bad row in strict mode, naming file, line and field", function()
      local path = csv("strict.csv", "a,b\n1,2\n4,five\n")
      local f, msg = frame.read_csv(path, { strict = true, infer_rows = 1 })
      assert.is_nil(f)
      assert.equal(path .. ":3: field 2, column 'b': \"five\" is not an integer", msg)
    end)

    it("widens an int column that meets a decimal later", function()
      local f = frame.read_csv(csv("widen.csv", "x\n1\n2\n2.5\n"), { infer_rows = 2 })
      assert.equal("float", f:types().x)
      assert.same({ 1, 2, 2.5 }, f:col("x"):to_table())
    end)

    it("refuses empty files, unterminated quotes and missing files clearly", function()
      local f, msg = frame.read_csv(csv("empty.csv", ""))
      assert.is_nil(f)
      assert.matches("is empty", msg)
      f, msg = frame.read_csv(csv("open.csv", 'a,b\n1,"never closed\n2,3\n'))
      assert.is_nil(f)
      assert.matches("open.csv:2: unterminated quoted field", msg, 1, true)
      f, msg = frame.read_csv(dir .. "/absent.csv")
      assert.is_nil(f)
      assert.matches("cannot open", msg)
    end)

    it("takes a delimiter, an explicit schema, NA markers and no header", function()
      local f = frame.read_csv(csv("semi.csv", "k;v\n007;x\n008;-\n"),
        { delimiter = ";", schema = { k = "string" }, na = { "-" } })
      assert.equal("007", f:col("k"):get(1))
      assert.is_nil(f:col("v"):get(2))
      local g = frame.read_csv(csv("nohead.csv", "1,2\n3,4\n"), { header = false })
      assert.same({ "column_1", "column_2" }, g:names())
      assert.equal(2, g:nrows())
    end)

    it("refuses infinities in float columns by name, and reads NaN as missing", function()
      local f, rep = frame.read_csv(csv("inf.csv", "x\n1.5\ninf\n-Infinity\nNaN\n1e999\n"))
      local x = f:col("x")
      assert.equal(2, f:nrows())
      assert.equal(1.5, x:get(1))
      assert.is_nil(x:get(2))  -- NaN is a missing marker, as in pandas
      assert.equal(3, rep.rows_bad)
      assert.matches("not a finite number", rep.issues[1].reason or rep.issues[1].message)
    end)

    it("reads the shared datasets with every row and the right shape", function()
      local f, rep = frame.read_csv(DATA .. "letter.csv")
      assert.equal(20000, f:nrows())
      assert.equal(17, f:ncols())
      assert.equal(0, rep.rows_bad)
      local spam = frame.read_csv(DATA .. "spam.csv")
      assert.same({ 4601, 58 }, { spam:nrows(), spam:ncols() })
      assert.equal("float", spam:types().make)
      assert.equal("int", spam:types().label)
    end)
  end)

  it("writes CSV that reads back the same", function()
    local f = frame.new({ a = { 1, 2, 3 }, s = { "x", "has,comma", 'q"uote' }, d = { 0.1, 1 / 3, 2 ^ 60 } })
    f = f:with_column("n", { 1.5, nil, 3 })
    assert.is_true(f:write_csv(dir .. "/out.csv"))
    local g = frame.read_csv(dir .. "/out.csv")
    for _, name in ipairs(f:names()) do assert.same(f:col(name):to_table(), g:col(name):to_table()) end
  end)

  it("reads JSON Lines and quarantines lines that are not objects", function()
    local path = testing.write(dir .. "/rows.jsonl", '{"a":1,"b":"x"}\nnot json\n{"a":2,"b":null}\n')
    local f, rep = frame.read_jsonl(path)
    assert.equal(2, f:nrows())
    assert.same({ 1, 2 }, f:col("a"):to_table())
    assert.is_nil(f:col("b"):get(2))
    assert.equal(1, rep.rows_bad)
    assert.equal(2, rep.issues[1].line)
  end)

  describe("operations", function()
    local f
    before_each(function()
      f = frame.new({ user = { "a", "b", "a", "c", "a" }, amount = { 10, 20, 30, 40, 50 }, flag = { true, false,
        true, false, true } }, { order = { "user", "amount", "flag" } })
    end)

    it("selects and drops columns without copying", function()
      assert.same({ "amount", "user" }, f:select("amount", "user"):names())
      assert.same({ "user", "flag" }, f:drop("amount"):names())
    end)

    it("filters, maps and adds columns", function()
      local big = f:filter(function(r) return r.amount > 25 end)
      assert.same({ 30, 40, 50 }, big:col("amount"):to_table())
      local doubled = f:map(function(r) return { user = r.user, twice = r.amount * 2 } end)
      assert.same({ 20, 40, 60, 80, 100 }, doubled:col("twice"):to_table())
      local g = f:with_column("big", function(r) return r.amount > 25 end)
      assert.same({ false, false, true, true, true }, g:col("big"):to_table())
      assert.is_false(f:has("big"))
    end)

    it("splits by seed reproducibly and by a mask file", function()
      local a1, b1 = f:split { test = 0.4, seed = 7 }
      local a2, b2 = f:split { test = 0.4, seed = 7 }
      assert.same(b1:col("amount"):to_table(), b2:col("amount"):to_table())
      assert.equal(2, b1:nrows())
      assert.equal(3, a1:nrows() + 0 * a2:nrows())
      local spam = frame.read_csv(DATA .. "spam.csv")
      local train, test = spam:split { mask = DATA .. "spam.split" }
      assert.same({ 3680, 921 }, { train:nrows(), test:nrows() })
      assert.has_error(function() f:split { mask = { 1, 0 } } end, "split mask has 2 entries for 5 rows")
    end)

    it("makes k folds that partition the rows", function()
      local folds = f:kfold(5, { seed = 1 })
      local seen = {}
      for _, fold in ipairs(folds) do
        assert.equal(1, fold.test:nrows())
        assert.equal(4, fold.train:nrows())
        seen[fold.test:col("amount"):get(1)] = true
      end
      assert.same({ [10] = true, [20] = true, [30] = true, [40] = true, [50] = true }, seen)
    end)

    it("hash-joins on keys, inner and left", function()
      local users = frame.new({ user = { "a", "b" }, name = { "Ada", "Bob" } })
      local j = f:join(users, { on = "user" })
      assert.equal(4, j:nrows())
      assert.same({ "Ada", "Bob", "Ada", "Ada" }, j:col("name"):to_table())
      local l = f:join(users, { on = "user", how = "left" })
      assert.equal(5, l:nrows())
      assert.is_nil(l:col("name"):get(4))
    end)

    it("groups and aggregates", function()
      local g = f:group_by("user"):agg { n = "count", total = { "sum", "amount" }, avg = { "mean", "amount" },
        hi = { "max", "amount" }, med = { "quantile", "amount", 0.5 } }
      assert.same({ "a", "b", "c" }, g:col("user"):to_table())
      assert.same({ 3, 1, 1 }, g:col("n"):to_table())
      assert.same({ 90, 20, 40 }, g:col("total"):to_table())
      assert.same({ 30, 20, 40 }, g:col("avg"):to_table())
      assert.same({ 30, 20, 40 }, g:col("med"):to_table())
    end)

    it("describes columns like pandas (sample std, linear quantiles)", function()
      local d = f:describe()
      local amount = d:row(2)
      assert.equal("amount", amount.column)
      assert.equal(30, amount.mean)
      assert.near(15.8113883, amount.std, 1e-6)
      assert.same({ 10, 20, 30, 40, 50 }, { amount.min, amount.p25, amount.p50, amount.p75, amount.max })
      assert.equal("a (3), b (1), c (1)", d:row(1).top)
    end)

    it("builds row- and column-major matrices", function()
      local m, n, p = f:to_matrix { columns = { "amount", "flag" } }
      assert.same({ 5, 2 }, { n, p })
      assert.same({ 10, 1, 20, 0 }, { m[0], m[1], m[2], m[3] })
      local c = f:to_matrix { columns = { "amount", "flag" }, order = "col", type = "float32" }
      assert.same({ 10, 20, 30 }, { c[0], c[1], c[2] })
    end)

    it("prints as an aligned table with shape and types", function()
      local text = tostring(f)
      assert.matches("^frame: 5 rows x 3 columns\n", text)
      assert.matches("user%s+amount%s+flag", text)
      assert.matches("<string>%s+<int>%s+<bool>", text)
    end)

    it("refuses writes to a shared column", function()
      local view = f:select("amount")
      assert.has_error(function() view:col("amount"):set(1, 5) end)
    end)
  end)
end)
