local tycho = require "tycho"
local testing = require "tycho.testing"
local features, frame, timeutil = tycho.features, tycho.frame, require "tycho.timeutil"
local json_null = require("tycho.util.json").null

describe("feature store", function()
  local home, fs
  before_each(function()
    home = testing.tmpdir()
    fs = assert(features.open({ home = home }))
    fs:entity { name = "user", join_key = "user_id" }
  end)
  after_each(function()
    fs.store:close()
    testing.rmrf(home)
  end)

  local function csv(name, text) return testing.write(home .. "/" .. name, text) end

  describe("definitions", function()
    it("versions a compatible change and refuses an incompatible one", function()
      assert(fs:feature_view { name = "v", entity = "user", schema = { a = "int" } })
      assert(fs:ingest("v", frame.new({ user_id = { "u1" }, event_time = { 100 }, a = { 7 } })))
      local v2 = assert(fs:feature_view { name = "v", entity = "user", schema = { a = "int", b = "float" } })
      assert.equal(2, v2.version)
      local got, why, code = fs:feature_view { name = "v", entity = "user", schema = { a = "string", b = "float" } }
      assert.is_nil(got)
      assert.matches("feature 'a' changes type from int to string", why, 1, true)
      assert.equal("conflict", code)
      got, why = fs:feature_view { name = "v", entity = "user", schema = { b = "float" } }
      assert.is_nil(got)
      assert.matches("feature 'a' would be removed", why, 1, true)
      -- A row written under version 1 still reads, with b null.
      local out = assert(fs:historical(frame.new({ user_id = { "u1" }, event_time = { 200 } }), { "v:*" }))
      assert.equal(7, out:col("a"):get(1))
      assert.is_nil(out:col("b"):get(1))
    end)

    it("refuses an unknown entity and reports unknown views and features", function()
      local got, why, code = fs:feature_view { name = "x", entity = "nobody", schema = { a = "int" } }
      assert.is_nil(got)
      assert.matches("unknown entity 'nobody'", why, 1, true)
      assert.equal("not_found", code)
      assert(fs:feature_view { name = "x", entity = "user", schema = { a = "int" } })
      local _, e1 = fs:online({ "nope:a" }, { user_id = { "u" } })
      assert.matches("unknown feature view 'nope'", e1, 1, true)
      local _, e2 = fs:online({ "x:zzz" }, { user_id = { "u" } })
      assert.matches("view 'x' has no feature 'zzz'", e2, 1, true)
      local _, e3 = fs:ingest("nope", csv("a.csv", "user_id,event_time\n"))
      assert.matches("unknown feature view", e3)
    end)

    it("lists by owner, tag and text, and flags duplicated definitions", function()
      fs:feature_view { name = "a", entity = "user", owner = "ads", tags = { "core" }, source = "events",
                        schema = { clicks = "int" } }
      fs:feature_view { name = "b", entity = "user", owner = "growth", source = "events", schema = { clicks = "int" } }
      assert.equal(1, #fs:list { owner = "ads" })
      assert.equal(1, #fs:list { tag = "core" })
      assert.equal(2, #fs:list { search = "" })
      local a = fs:list { owner = "ads" }[1]
      assert.same({ "clicks = b:clicks" }, a.duplicates)
    end)
  end)

  describe("ingestion", function()
    before_each(function()
      assert(fs:feature_view { name = "stats", entity = "user", ttl = "2d",
        schema = { clicks = { type = "int", min = 0 }, kind = { type = "string", values = { "a", "b" } },
                   spend = { type = "float", nullable = false } } })
    end)

    it("lands good rows, quarantines bad ones with line and reason, and reports", function()
      local path = csv("s.csv", table.concat({
        "user_id,event_time,clicks,kind,spend",
        "u1,2024-01-01T00:00:00Z,1,a,1.5",     -- 2 good
        "u2,2024-01-01T00:00:00+01:00,2,b,2",  -- 3 good (23:00Z the day before)
        ",2024-01-01,1,a,1",                   -- 4 no entity
        "u3,yesterday,1,a,1",                  -- 5 bad time
        "u4,2024-01-01,-1,a,1",                -- 6 below min
        "u5,2024-01-01,1,c,1",                 -- 7 not allowed
        "u6,2024-01-01,1,a,",                  -- 8 required
        "u1,2024-01-01T00:00:00Z,9,a,9",       -- 9 duplicate of line 2
        "u7,2024-01-01,1,a",                   -- 10 ragged
        "u8,1704067200000,4,b,4",              -- 11 good, epoch millis
      }, "\n") .. "\n")
      local rep = assert(fs:ingest("stats", path))
      assert.same({ 10, 3, 7, 1 }, { rep.rows_read, rep.landed, rep.rejected, rep.duplicates })
      local reasons = {}
      for _, is in ipairs(rep.issues) do reasons[is.line] = is.reason end
      assert.matches("missing entity key", reasons[4])
      assert.matches("bad event time", reasons[5])
      assert.matches("below min 0", reasons[6])
      assert.matches("not one of the allowed values", reasons[7])
      assert.matches("'spend' is required", reasons[8])
      assert.matches("duplicate of line 2", reasons[9])
      assert.matches("expected 5 fields", reasons[10])
      local q = assert(io.open(rep.quarantine)):read("*a")
      local n = select(2, q:gsub("\n", ""))
      assert.equal(7, n)
      assert.same({ "2023-12-31T23:00:00Z", "2024-01-01T00:00:00Z" }, rep.time_range)
    end)

    it("is idempotent: ingesting the same file twice changes nothing", function()
      local path = csv("s.csv", "user_id,event_time,clicks,kind,spend\nu1,100,1,a,1\nu2,200,2,b,2\n")
      local first = assert(fs:ingest("stats", path))
      local second = assert(fs:ingest("stats", path))
      assert.equal(2, first.landed)
      assert.equal(2, second.unchanged)
      assert.equal(2, fs:export("stats"):nrows())
    end)

    it("reads JSONL and frames, and refuses a binary file", function()
      local jl = testing.write(home .. "/s.jsonl",
        '{"user_id":"u1","event_time":"2024-01-01T00:00:00Z","clicks":1,"kind":"a","spend":1}\n{oops\n')
      local rep = assert(fs:ingest("stats", jl))
      assert.same({ 1, 1 }, { rep.landed, rep.rejected })
      local f = frame.new({ user_id = { "u9" }, event_time = { 1704067200 }, clicks = { 3 }, kind = { "b" }, spend = { 1 } })
      assert.equal(1, assert(fs:ingest("stats", f)).landed)
      local _, err = fs:ingest("stats", testing.write(home .. "/x.bin", "\0\1\2\3binary"))
      assert.matches("not a CSV or JSONL file", err)
    end)

    it("a crash mid-ingest leaves the whole batch or none of it", function()
      fs:feature_view { name = "big", entity = "user", schema = { x = "float" } }
      fs:entity { name = "e", join_key = "id" }
      fs:feature_view { name = "big", entity = "e", schema = { x = "float" } }
      local child = testing.spawn({ "--home", home, "run", "tests/lua/fixtures/big_ingest.lua", "60000" })
      testing.run_until(function() return child.stdout():find("validating", 1, true) ~= nil end, 20000)
      testing.run_until(function() return false end, 400)  -- deliberate: the kill lands mid-ingest, not at a condition
      child:kill("sigkill")
      child:wait(5000)
      local n = fs:export("big"):nrows()
      assert.is_true(n == 0 or n == 60000, "half a batch landed: " .. n)
      -- Run again, it completes: every row once, whatever the first run left.
      local code, out = testing.run({ "--home", home, "run", "tests/lua/fixtures/big_ingest.lua", "60000" },
        { timeout = 60000 })
      assert.equal(0, code)
      assert.matches("landed " .. (60000 - n), out, 1, true)
      assert.equal(60000, fs:export("big"):nrows())
    end)
  end)

  it("stores times in UTC whatever the input format", function()
    assert(fs:feature_view { name = "t", entity = "user", schema = { x = "int" } })
    local f = frame.new({ user_id = { "a", "b", "c", "d" },
      event_time = { "2024-03-01T12:00:00Z", "2024-03-01T14:00:00+02:00", "1709294400", "1709294400000" },
      x = { 1, 2, 3, 4 } }, { types = { event_time = "string" } })
    assert(fs:ingest("t", f))
    local out = fs:export("t")
    for i = 1, 4 do assert.equal("2024-03-01T12:00:00Z", out:col("event_time"):get(i)) end
  end)

  it("joins point in time exactly like a brute-force reference on random data", function()
    assert(fs:feature_view { name = "r", entity = "user", ttl = 500, schema = { x = "float", k = "int" } })
    assert(fs:entity { name = "shop", join_key = "shop_id" })
    assert(fs:feature_view { name = "s", entity = "shop", schema = { y = "int" } })
    local seed = 12345
    local function rand(n)
      seed = seed * 48271 % 2147483647
      return seed % n
    end
    local hist = { user_id = {}, event_time = {}, x = {}, k = {} }
    local shist = { shop_id = {}, event_time = {}, y = {} }
    local used = {}
    for i = 1, 600 do
      local u, t = "u" .. rand(15), rand(5000)
      if not used[u .. t] then
        used[u .. t] = true
        local n = #hist.user_id + 1
        hist.user_id[n], hist.event_time[n], hist.x[n], hist.k[n] = u, t, i + 0.25, rand(3) == 0 and nil or i
      end
      local sh, st = "s" .. rand(4), rand(5000)
      if not used[sh .. st] then
        used[sh .. st] = true
        local n = #shist.shop_id + 1
        shist.shop_id[n], shist.event_time[n], shist.y[n] = sh, st, i
      end
    end
    assert(fs:ingest("r", frame.new(hist, { n = #hist.user_id, types = { k = "int" } })))
    assert(fs:ingest("s", frame.new(shist)))
    local spine = { user_id = {}, shop_id = {}, event_time = {} }
    for i = 1, 400 do
      spine.user_id[i], spine.shop_id[i], spine.event_time[i] = "u" .. rand(17), "s" .. rand(5), rand(5600)
    end
    local out = assert(fs:historical(frame.new(spine), { "r:x", "r:k", "s:y" }))
    -- Reference: scan every history row for every spine row.
    local function latest(h, key, keycol, t, ttl)
      local best
      for j = 1, #h[keycol] do
        local ht = h.event_time[j]
        if h[keycol][j] == key and ht <= t and (not ttl or t - ht <= ttl) and (not best or ht > h.event_time[best]) then
          best = j
        end
      end
      return best
    end
    local checked = 0
    for i = 1, 400 do
      local t = spine.event_time[i]
      local j = latest(hist, spine.user_id[i], "user_id", t, 500)
      assert.equal(j and hist.x[j] or nil, out:col("x"):get(i))
      assert.equal(j and hist.k[j] or nil, out:col("k"):get(i))
      local js = latest(shist, spine.shop_id[i], "shop_id", t)
      assert.equal(js and shist.y[js] or nil, out:col("y"):get(i))
      if j then checked = checked + 1 end
    end
    assert.is_true(checked > 50, "too few matches to mean anything: " .. checked)
    local fp = out:fingerprint()
    assert.same({ r = 1, s = 1 }, fp.views)
    assert.equal(400, fp.rows)
    assert.matches("^%x+$", fp.content_hash)
  end)

  it("joins a spine of many parts as the reference does, integer keys and string features too", function()
    -- 30,000 spine rows: the join walks them in parts of some thousand rows
    -- on the pool's threads; asked for with the string feature, one part.
    assert(fs:entity { name = "acct", join_key = "acct_id" })
    assert(fs:feature_view { name = "p", entity = "acct", ttl = 900, schema = { x = "float", tag = "string" } })
    local seed = 777
    local function rand(n)
      seed = seed * 48271 % 2147483647
      return seed % n
    end
    local hist, by_key = { acct_id = {}, event_time = {}, x = {}, tag = {} }, {}
    for i = 1, 6000 do
      local key, t = rand(700), rand(20000)
      by_key[key] = by_key[key] or {}
      if not by_key[key][t] then
        local x, tag = rand(5) > 0 and i + 0.5 or nil, rand(4) > 0 and ("t" .. rand(9)) or nil
        by_key[key][t] = { x = x, tag = tag }
        local n = #hist.acct_id + 1
        hist.acct_id[n], hist.event_time[n], hist.x[n], hist.tag[n] = key, t, x, tag
      end
    end
    assert(fs:ingest("p", frame.new(hist, { n = #hist.acct_id, types = { acct_id = "int", tag = "string" } })))
    local times_of = {}
    for key, rows in pairs(by_key) do
      local ts = {}
      for t in pairs(rows) do ts[#ts + 1] = t end
      table.sort(ts)
      times_of[key] = ts
    end
    local spine = { acct_id = {}, event_time = {} }
    for i = 1, 30000 do spine.acct_id[i], spine.event_time[i] = rand(750), rand(21000) end
    local spine_frame = frame.new(spine, { types = { acct_id = "int" } })
    local parts = assert(fs:historical(spine_frame, { "p:x" }))
    local serial = assert(fs:historical(spine_frame, { "p:x", "p:tag" }))
    local found = 0
    for i = 1, 30000 do
      local key, t = spine.acct_id[i], spine.event_time[i]
      local best
      for _, ht in ipairs(times_of[key] or {}) do
        if ht <= t then best = ht else break end
      end
      local row = best and t - best <= 900 and by_key[key][best]
      assert.equal(row and row.x or nil, parts:col("x"):get(i), "row " .. i)
      assert.equal(row and row.x or nil, serial:col("x"):get(i), "row " .. i)
      assert.equal(row and row.tag or nil, serial:col("tag"):get(i), "row " .. i)
      if row then found = found + 1 end
    end
    assert.is_true(found > 5000, "too few matches to mean anything: " .. found)
  end)

  describe("online store", function()
    before_each(function()
      assert(fs:feature_view { name = "o", entity = "user", ttl = "1h", schema = { x = "int", note = "string" } })
    end)

    it("answers with values, statuses and event times in Feast's shape", function()
      local now = timeutil.now() / 1e6
      assert(fs:push("o", { user_id = { "fresh", "stale", "empty" }, event_time = { now - 10, now - 7200, now },
                            x = { 1, 2, nil }, note = { "n", "m", nil } }))
      local res = assert(fs:online({ "o:x" }, { user_id = { "fresh", "stale", "empty", "ghost" } }))
      assert.same({ "user_id", "o:x" }, res.metadata.feature_names)
      local col = res.results[2]
      assert.same({ "PRESENT", "OUTSIDE_MAX_AGE", "NULL_VALUE", "NOT_FOUND" }, col.statuses)
      assert.equal(1, col.values[1])
      assert.matches("Z$", col.event_timestamps[1])
    end)

    it("reads keys that hold NUL bytes or prefix each other, and numbers as their text, by both readers", function()
      local ids = { "a\0b", "a", "a\0", "42", "\0" }
      assert(fs:push("o", { user_id = ids, event_time = { 1, 2, 3, 4, 5 }, x = { 1, 2, 3, 4, 5 } }))
      local res = assert(fs:online({ "o:x" }, { user_id = { "a\0", "a\0b", 42, "\0", "a", "a\0\0" } }))
      assert.same({ 3, 1, 4, 5, 2, json_null }, res.results[2].values)
      assert.same("NOT_FOUND", res.results[2].statuses[6])
      local reader = assert(fs:reader({ "o:x" }))
      for i, id in ipairs(ids) do assert.same({ i }, (reader:get(id))) end
      assert.same({ 4 }, (reader:get(42)))
      assert.is_nil(reader:get("b"))
    end)

    it("overwrites an earlier answer given as opts.into when the shape repeats, and only then", function()
      assert(fs:push("o", { user_id = { "a", "b" }, event_time = { 10, 20 }, x = { 1, 2 }, note = { "n", nil } }))
      local first = assert(fs:online({ "o:x", "o:note" }, { user_id = { "a" } }, { now = 30e6 }))
      local again = assert(fs:online({ "o:x", "o:note" }, { user_id = { "b" } }, { now = 30e6, into = first }))
      assert.equal(first, again)  -- the same tables, refilled
      assert.same({ "user_id", "o:x", "o:note" }, again.metadata.feature_names)
      assert.same({ "b" }, again.results[1].values)
      assert.same({ 2 }, again.results[2].values)
      assert.same({ "NULL_VALUE" }, again.results[3].statuses)
      -- Another entity count or other refs: a new answer; the old one is left as it was.
      local two = assert(fs:online({ "o:x", "o:note" }, { user_id = { "a", "ghost" } }, { now = 30e6, into = first }))
      assert.are_not.equal(first, two)
      assert.same({ "PRESENT", "NOT_FOUND" }, two.results[2].statuses)
      assert.same({ 2 }, first.results[2].values)
      local other = assert(fs:online({ "o:x" }, { user_id = { "a" } }, { now = 30e6, into = first }))
      assert.are_not.equal(first, other)
      assert.same({ 1 }, other.results[2].values)
      -- A changed definition makes a new answer too.
      assert(fs:feature_view { name = "o", entity = "user", ttl = "1h", schema = { x = "int", note = "string", y = "float" } })
      local after = assert(fs:online({ "o:x", "o:note" }, { user_id = { "a" } }, { now = 30e6, into = first }))
      assert.are_not.equal(first, after)
      assert.same({ "n" }, after.results[3].values)
    end)

    it("refuses bad pushed rows one by one: not an object, an entity key that is no text or too long", function()
      local r = assert(fs:push("o", { 1, { user_id = "fine", event_time = 1000, x = 1 } }))
      assert.same({ 1, 1 }, { r.landed, r.rejected })
      assert.equal("a row must be an object of columns", r.issues[1].reason)
      r = assert(fs:push("o", { user_id = { ("u"):rep(600), {}, "ok" }, event_time = { 1, 1, 1 }, x = { 1, 2, 3 } }))
      assert.same({ 1, 2, 3 }, { r.landed, r.rejected, r.rows_read })
      assert.matches("longer than 256 bytes", r.issues[1].reason)
      assert.matches("must be text or a number", r.issues[2].reason)
    end)

    it("never replaces a newer value with an older one, by any path", function()
      assert(fs:push("o", { user_id = { "u" }, event_time = { 2000 }, x = { 2 } }, "online_and_offline"))
      assert(fs:push("o", { user_id = { "u" }, event_time = { 1000 }, x = { 1 } }, "online_and_offline"))
      assert(fs:ingest("o", frame.new({ user_id = { "u" }, event_time = { 1500 }, x = { 15 } })))
      assert.equal(0, fs:materialize("o"))  -- the online value (2000) is already the newest
      local res = fs:online({ "o:x" }, { user_id = { "u" } }, { now = 2000e6 })
      assert.equal(2, res.results[2].values[1])
      assert(fs:push("o", { user_id = { "u" }, event_time = { 3000 }, x = { 3 } }))
      res = fs:online({ "o:x" }, { user_id = { "u" } }, { now = 3000e6 })
      assert.equal(3, res.results[2].values[1])
    end)

    it("materializes offline history into the online store", function()
      assert(fs:ingest("o", frame.new({ user_id = { "a", "a", "b" }, event_time = { 10, 20, 30 }, x = { 1, 2, 3 } }),
        { to = "offline" }))
      local res = fs:online({ "o:x" }, { user_id = { "a" } })
      assert.equal("NOT_FOUND", res.results[2].statuses[1])
      assert.equal(1, fs:materialize("o", 0, 25))
      res = fs:online({ "o:x" }, { user_id = { "a", "b" } }, { now = 30e6 })
      assert.same({ "PRESENT", "NOT_FOUND" }, res.results[2].statuses)
      assert.equal(2, res.results[2].values[1])
      assert.equal(1, fs:materialize("o"))
      res = fs:online({ "o:x" }, { user_id = { "b" } }, { now = 30e6 })
      assert.equal(3, res.results[2].values[1])
    end)
  end)

  it("joins several views at once, naming clashing features view__feature", function()
    for _, name in ipairs({ "a", "b" }) do
      assert(fs:feature_view { name = name, entity = "user", schema = { x = "float" } })
    end
    local users, times, xa, xb = {}, {}, {}, {}
    for i = 1, 200 do users[i], times[i], xa[i], xb[i] = "u" .. i % 7, i * 10, i + 0.5, -i end
    assert(fs:ingest("a", frame.new({ user_id = users, event_time = times, x = xa })))
    assert(fs:ingest("b", frame.new({ user_id = users, event_time = times, x = xb })))
    local spine = frame.new({ user_id = { "u1", "u3", "u9", "u0" }, event_time = { 15, 1000, 500, 2001 } })
    local both = assert(fs:historical(spine, { "a:x", "b:x" }))
    local alone_a = assert(fs:historical(spine, { "a:x" }))
    local alone_b = assert(fs:historical(spine, { "b:x" }))
    assert.is_false(both:has("x"))
    for i = 1, 4 do
      assert.equal(alone_a:col("x"):get(i), both:col("a__x"):get(i))
      assert.equal(alone_b:col("x"):get(i), both:col("b__x"):get(i))
    end
    assert.equal(1.5, both:col("a__x"):get(1))
    assert.is_nil(both:col("b__x"):get(3))
  end)

  it("stores PII only as keyed hashes and never exports it in clear", function()
    assert(fs:feature_view { name = "p", entity = "user", pii = { "email" }, schema = { email = "string", n = "int" } })
    assert(fs:ingest("p", frame.new({ user_id = { "u1" }, event_time = { 5 }, email = { "ada@example.com" }, n = { 1 } })))
    local exported = fs:export("p"):col("email"):get(1)
    assert.matches("^pii:%x+$", exported)
    local hist = fs:historical(frame.new({ user_id = { "u1" }, event_time = { 9 } }), { "p:email" })
    assert.equal(exported, hist:col("email"):get(1))
    assert.equal(exported, fs:online({ "p:email" }, { user_id = { "u1" } }).results[2].values[1])
    fs.store:close()
    local raw = assert(io.open(home .. "/data.mdb", "rb")):read("*a")
    assert.is_nil(raw:find("ada@example.com", 1, true), "the clear value is in the store file")
    fs = assert(features.open({ home = home }))
  end)

  it("computes on-demand features identically for training and serving", function()
    assert(fs:feature_view { name = "d", entity = "user", schema = { a = "float", b = "float" },
      transforms = { ratio = "function(r) return r.a and r.b and r.b ~= 0 and r.a / r.b or nil end" } })
    local now = timeutil.now() / 1e6
    assert(fs:ingest("d", frame.new({ user_id = { "x", "y" }, event_time = { now - 5, now - 5 }, a = { 3, 1 }, b = { 4, 0 } })))
    local hist = fs:historical(frame.new({ user_id = { "x", "y" }, event_time = { now, now } }), { "d:ratio" })
    local online = fs:online({ "d:ratio" }, { user_id = { "x", "y" } })
    assert.equal(0.75, hist:col("ratio"):get(1))
    assert.equal(hist:col("ratio"):get(1), online.results[2].values[1])
    assert.is_nil(hist:col("ratio"):get(2))
    assert.equal("NULL_VALUE", online.results[2].statuses[2])
  end)

  it("follows a JSONL file with a checkpoint: restarts neither lose nor double lines", function()
    assert(fs:feature_view { name = "f", entity = "user", schema = { n = "int" } })
    local path = home .. "/events.jsonl"
    local out = assert(io.open(path, "w"))
    out:write('{"user_id":"a","event_time":1,"n":1}\n{"user_id":"b","event_time":2,"n":2}\n{"user_id":"c","event')
    out:close()
    assert.equal(2, assert(fs:follow_once("f", path)).landed)
    out = assert(io.open(path, "a"))
    out:write('_time":3,"n":3}\nnot json\n')
    out:close()
    fs.store:close()
    fs = assert(features.open({ home = home }))  -- a restart
    local rep = assert(fs:follow_once("f", path))
    assert.same({ 1, 1 }, { rep.landed, rep.rejected })
    assert.equal(0, assert(fs:follow_once("f", path)).landed)
    assert.equal(3, fs:export("f"):nrows())
    local gone, ferr, fcode = fs:follow_once("f", home .. "/no-such.jsonl")
    assert.is_nil(gone)
    assert.matches("cannot open", ferr, 1, true)
    assert.equal("not_found", fcode)
  end)

  it("shows views on the command line", function()
    assert(fs:feature_view { name = "cli_view", entity = "user", owner = "ops", schema = { n = "int" } })
    assert(fs:ingest("cli_view", frame.new({ user_id = { "a" }, event_time = { 1 }, n = { 4 } })))
    fs.store:close()
    local code, out = testing.run({ "--home", home, "features", "list" })
    assert.equal(0, code)
    assert.matches("cli_view%s+user%s+ops", out)
    code, out = testing.run({ "--home", home, "features", "show", "cli_view" })
    assert.equal(0, code)
    assert.matches("1 rows, about 1 entities", out, 1, true)
    code = testing.run({ "--home", home, "features", "show", "missing" })
    assert.equal(1, code)
    fs = assert(features.open({ home = home }))
  end)
end)
