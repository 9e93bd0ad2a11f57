-- Batch scoring columns at a time (ml/dense.lua score_frame, what
-- `tycho score` runs): each row's prediction and probability are exactly
-- pipe:predict(row)'s, rows with a null input are skipped (or scored with
-- --missing fill), and pipelines the fast path cannot run are declined.
local tycho = require "tycho"
local hosted = require "tycho.serve.hosted"
local frame, step = tycho.frame, tycho.step

local function blank(f, cells)
  local rows = {}
  for i in f:rows() do
    local r = f:row(i)  -- its own table: rows() reuses one
    for _, cell in ipairs(cells) do if cell[1] == i then r[cell[2]] = nil end end
    rows[i] = r
  end
  return frame.from_rows(rows, { order = f:names() })
end

local function same_as_rows(pipe, f, scored, skipped)
  local j, skip = 0, {}
  for _, r in ipairs(skipped) do skip[r] = true end
  for i, row in f:rows() do
    if not skip[i] then
      j = j + 1
      local want = assert(pipe:predict(row))
      assert.equal(want.prediction, scored:col("prediction"):get(j), "row " .. i)
      if want.probability ~= nil then assert.equal(want.probability, scored:col("probability"):get(j), "row " .. i) end
    end
  end
  assert.equal(j, scored:nrows())
end

describe("batch scoring a frame", function()
  local all = assert(frame.read_csv("../shared/data/spam.csv"))
  local every = {}
  for i = 1, all:nrows(), 8 do every[#every + 1] = i end
  local spam = all:take(every)
  local x = spam:drop("label")

  it("gives a binary pipeline's own numbers, skipping or filling rows with a null input", function()
    local pipe = assert(tycho.pipeline {
      name = "s", steps = { step.fill_missing { "median" }, step.log1p { columns = { "capitalTotal" } },
                            step.standardize {}, step.clip { min = -3, max = 3 } },
      model = tycho.models.gbt { rounds = 8, depth = 4 },
    }:fit(spam, { label = "label" }))
    local holes = blank(x, { { 3, "make" }, { 10, "capitalTotal" }, { 10, "free" } })
    local version = { pipe = pipe, sources = {} }
    local before = { make = holes:col("make"):to_table(), address = holes:col("address"):to_table() }
    local scored, skipped = assert(hosted.score_frame(version, holes, false))
    -- The steps ran on copies: the frame's own columns are as they were.
    assert.same(before, { make = holes:col("make"):to_table(), address = holes:col("address"):to_table() })
    assert.same({ 3, 10 }, skipped)
    assert.equal(holes:ncols() + 2, scored:ncols())
    same_as_rows(pipe, holes, scored, skipped)
    scored, skipped = assert(hosted.score_frame(version, holes, true))
    assert.same({}, skipped)
    same_as_rows(pipe, holes, scored, skipped)
    -- In blocks (the last one short), as a large file is scored.
    local dense = require "tycho.ml.dense"
    local block = dense.SCORE_BLOCK
    dense.SCORE_BLOCK = 100
    local ok, err = pcall(function()
      scored, skipped = assert(hosted.score_frame(version, holes, false))
      assert.same({ 3, 10 }, skipped)
      same_as_rows(pipe, holes, scored, skipped)
    end)
    dense.SCORE_BLOCK = block
    assert(ok, err)
  end)

  it("names string classes and the winning class's probability for multiclass", function()
    local letters = assert(frame.read_csv("../shared/data/letter.csv")):head(800)
    letters = letters:with_column("label", function(r) return "class " .. r.label end, "string")
    local pipe = assert(tycho.pipeline { name = "l", model = tycho.models.logistic {} }
      :fit(letters, { label = "label" }))
    local f = letters:drop("label")
    local scored, skipped = assert(hosted.score_frame({ pipe = pipe, sources = {} }, f, false))
    assert.equal("string", scored:col("prediction").type)
    same_as_rows(pipe, f, scored, skipped)
  end)

  it("declines what needs the row path: an entity key, a string input, a missing column", function()
    local pipe = assert(tycho.pipeline { name = "r", model = tycho.models.linear {} }
      :fit(spam, { label = "label" }))
    assert.is_nil(hosted.score_frame({ pipe = pipe, sources = { { join_key = "make" } } }, x, false))
    assert.is_nil(hosted.score_frame({ pipe = pipe, sources = {} }, x:drop("free"), false))
    local texts = x:with_column("make", function(r) return tostring(r.make) end, "string")
    assert.is_nil(hosted.score_frame({ pipe = pipe, sources = {} }, texts, false))
    local scored = assert(hosted.score_frame({ pipe = pipe, sources = {} }, x, false))
    assert.is_false(scored:has("probability"))
    same_as_rows(pipe, x, scored, {})
  end)
end)
