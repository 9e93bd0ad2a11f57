-- tycho score's stream (ml/dense.lua score_csv over core/frame's
-- tz_csv_blocks): a CSV file scored a block at a time, each row written
-- back as the input has it with its prediction after; a bad record is
-- refused alone, an empty input skipped, the counts add up, and the
-- output appears only when the run succeeds.
local tycho = require "tycho"
local dense = require "tycho.ml.dense"
local testing = require "tycho.testing"
local frame, step = tycho.frame, tycho.step

local function read_all(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function write_all(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
  return path
end

-- Records of CSV text that the quotes hold together (line feeds inside
-- quotes stay in their record).
local function records(text)
  local out, cur, open = {}, {}, false
  for i = 1, #text do
    local ch = text:sub(i, i)
    if ch == '"' then open = not open end
    if ch == "\n" and not open then
      out[#out + 1] = table.concat(cur)
      cur = {}
    else
      cur[#cur + 1] = ch
    end
  end
  if #cur > 0 then out[#out + 1] = table.concat(cur) end
  return out
end

describe("scoring a CSV file as a stream", function()
  local dir = testing.tmpdir()
  local train = {}
  for i = 1, 400 do
    local a, b = (i * 37 % 101) / 10, (i * 53 % 89) / 10
    train[i] = { a = a, b = b, y = (a + b > 9.5) and 1 or 0 }
  end
  local pipe = assert(tycho.pipeline {
    name = "stream", steps = { step.fill_missing { "median" }, step.clip { min = 0, max = 9 } },
    model = tycho.models.gbt { rounds = 6, depth = 3 },
  }:fit(frame.from_rows(train, { order = { "a", "b", "y" } }), { label = "y" }))

  -- n rows of a, b and a text column that needs quotes now and then,
  -- with CRLF endings and no line feed after the last record.
  local function file_of(n)
    local lines = { "id,a,note,b" }
    for i = 1, n do
      local note = i % 7 == 0 and '"two\nlines, ""quoted"""' or i % 5 == 0 and '"a, b"' or "n" .. i
      lines[#lines + 1] = string.format("%d,%s,%s,%s", i, tostring((i * 13 % 97) / 10), note, tostring((i * 29 % 83) / 10))
    end
    return table.concat(lines, "\r\n")
  end

  it("writes every row as the input has it, then pipe:predict's answer, block by block", function()
    local text = file_of(3000)
    local input = write_all(dir .. "/in.csv", text)
    local seen = {}
    local result = assert(dense.score_csv(pipe, input, dir .. "/out.csv", { block_bytes = 4096,
      progress = function(r) seen[#seen + 1] = r.scored end }))
    assert.is_true(#seen > 10, "a call a block")
    for i = 2, #seen do assert.is_true(seen[i] > seen[i - 1]) end
    assert.equal(3000, seen[#seen])
    assert.equal(3000, result.rows_read)
    assert.equal(3000, result.scored)
    assert.same({ "prediction", "probability" }, result.header)
    local ins, outs = records(text), records(read_all(dir .. "/out.csv"))
    assert.equal(#ins, #outs)
    assert.equal("id,a,note,b,prediction,probability", outs[1])
    local parsed = assert(frame.read_csv(dir .. "/out.csv"))
    for i = 2, #ins do
      local raw = ins[i]:gsub("\r$", "")
      assert.equal(raw, outs[i]:sub(1, #raw), "record " .. i)
      local want = assert(pipe:predict { a = parsed:col("a"):get(i - 1), b = parsed:col("b"):get(i - 1) })
      assert.equal(want.prediction, parsed:col("prediction"):get(i - 1))
      assert.equal(want.probability, parsed:col("probability"):get(i - 1))
    end
    -- One block or many: the same file.
    assert(dense.score_csv(pipe, input, dir .. "/one.csv", {}))
    assert.equal(read_all(dir .. "/out.csv"), read_all(dir .. "/one.csv"))
  end)

  it("refuses a record alone, skips a row with an empty input, and the counts add up", function()
    local input = write_all(dir .. "/bad.csv", table.concat({
      "a,b", "1,2", "x,3", "4,", "5,6", "7,8,9", "", "2.5,1e400", "3,4",
    }, "\n") .. "\n")
    local result = assert(dense.score_csv(pipe, input, dir .. "/bad_out.csv", { block_bytes = 8 }))
    assert.equal(3, result.scored)
    assert.equal(1, result.n_skipped)
    assert.same({ 4 }, result.skipped)
    assert.equal(3, result.n_refused)
    local lines = {}
    for i, issue in ipairs(result.refused) do lines[i] = issue.line end
    assert.same({ 3, 6, 8 }, lines)
    assert.equal(result.rows_read, result.scored + result.n_skipped + result.n_refused)
    local out = records(read_all(dir .. "/bad_out.csv"))
    assert.equal(4, #out)
    assert.equal("1,2,", out[2]:sub(1, 4))
    assert.equal("3,4,", out[4]:sub(1, 4))
    -- fill scores the row with the empty input.
    result = assert(dense.score_csv(pipe, input, dir .. "/bad_out.csv", { fill = true }))
    assert.equal(4, result.scored)
  end)

  it("leaves the output in place only when a row was scored, and may overwrite its input", function()
    local input = write_all(dir .. "/none.csv", "a,b\n,\nx,y\n")
    local result = assert(dense.score_csv(pipe, input, dir .. "/none_out.csv", {}))
    assert.equal(0, result.scored)
    assert.is_nil(io.open(dir .. "/none_out.csv"))
    local same = write_all(dir .. "/same.csv", "a,b\n1,2\n3,4\n")
    assert.equal(2, assert(dense.score_csv(pipe, same, same, {})).scored)
    assert.equal(3, #records(read_all(same)))
    -- No temporary file is left beside it.
    local p = io.popen("ls " .. dir)
    local listing = p:read("*a")
    p:close()
    assert.is_nil(listing:find("tycho-", 1, true))
  end)

  it("is what tycho score runs: rows to stdout, refusals and skips named on stderr", function()
    local home = dir .. "/home"
    local reg = assert(tycho.registry.open({ home = home }))
    local v = assert(reg:register("stream", pipe, {}))
    assert(reg:promote("stream", v, "production", { force = true, reason = "test" }))
    local input = write_all(dir .. "/cli.csv", "a,b\n1,2\nx,3\n4,\n3,4\n")
    local code, out, err = testing.run({ "--home", home, "score", "stream", "--input", input, "--output", "-" })
    assert.equal(0, code, err)
    local rows = records(out)
    assert.equal(3, #rows)
    assert.equal("a,b,prediction,probability", rows[1])
    assert.equal("1,2,", rows[2]:sub(1, 4))
    assert.matches("refused 1 record (line 3, field 1: column 'a'", err, 1, true)
    assert.matches("skipped 1 row with missing inputs (an empty field; line 4)", err, 1, true)
    assert.matches("scored 2 rows with stream", err, 1, true)
  end)

  it("leaves files it cannot stream to the frame path", function()
    local has_prediction = write_all(dir .. "/pred.csv", "a,b,prediction\n1,2,0\n")
    assert.is_nil(dense.score_csv(pipe, has_prediction, dir .. "/p_out.csv", {}))
    local lacks_b = write_all(dir .. "/lacks.csv", "a\n1\n")
    assert.is_nil(dense.score_csv(pipe, lacks_b, dir .. "/l_out.csv", {}))
    local keyed = write_all(dir .. "/keyed.csv", "a,b,email_id\n1,2,e1\n")
    assert.is_nil(dense.score_csv(pipe, keyed, dir .. "/k_out.csv", { avoid = { "email_id" } }))
    assert.is_nil(io.open(dir .. "/p_out.csv"))
    local _, err = dense.score_csv(pipe, dir .. "/nowhere.csv", dir .. "/n_out.csv", {})
    assert.matches("cannot open", err, 1, true)
  end)
end)
