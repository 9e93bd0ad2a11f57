local store = require "tycho.store"
local keys = require "tycho.keys"
local testing = require "tycho.testing"

describe("tycho.store", function()
  local dir, st
  before_each(function()
    dir = testing.tmpdir()
    st = assert(store.open(dir))
  end)
  after_each(function()
    st:close()
    testing.rmrf(dir)
  end)

  it("writes in a transaction and reads back", function()
    st:update(function(tx)
      tx:put("people", "ada", "1815")
      tx:put("people", "alan", "1912")
    end)
    assert.equal("1815", st:get("people", "ada"))
    assert.is_nil(st:get("people", "grace"))
    assert.is_nil(st:get("no-such-db", "x"))
    assert.equal(2, st:view(function(tx) return tx:count("people") end))
  end)

  it("appends keys that come last and puts the others where they belong", function()
    st:update(function(tx)
      for _, k in ipairs({ "b", "c", "e" }) do tx:append("log", k, k:upper()) end
      tx:append("log", "a", "A")  -- not after the last: put in place
      tx:append("log", "c", "C2") -- present: replaced, as put does
      tx:append("log", "f", "F")
    end)
    local seen = {}
    st:view(function(tx) for k, v in tx:scan("log") do seen[#seen + 1] = k .. "=" .. v end end)
    assert.same({ "a=A", "b=B", "c=C2", "e=E", "f=F" }, seen)
  end)

  it("puts a batch of keys where absent with put_new_many", function()
    st:put("u", "p:b;", "old")
    local added = st:update(function(tx)
      return tx:put_new_many("u", "p:", ";", { "a", "b", "c" }, { "1", "2", "3" })
    end)
    assert.same({ 1, 0, 1 }, { added[0], added[1], added[2] })
    assert.equal("1", st:get("u", "p:a;"))
    assert.equal("old", st:get("u", "p:b;"))
    -- Given out of order and with a key twice: put in order, each once.
    added = st:update(function(tx)
      return tx:put_new_many("u", "p:", ";", { "z", "d", "a", "d", "ab" }, { "z", "d1", "x", "d2", "ab" })
    end)
    assert.same({ 1, 0, 1, 1 }, { added[0], added[2], added[4], added[1] + added[3] })
    assert.is_truthy(({ d1 = true, d2 = true })[st:get("u", "p:d;")])
    assert.equal("1", st:get("u", "p:a;"))
    local order = {}
    st:view(function(tx) for k in tx:scan("u", { prefix = "p:" }) do order[#order + 1] = k end end)
    assert.same({ "p:a;", "p:ab;", "p:b;", "p:c;", "p:d;", "p:z;" }, order)
    assert.has_error(function() st:update(function(tx) tx:put_new_many("u", "p:", ";", { ("x"):rep(600) }, { "v" }) end) end)
    assert.has_error(function() st:view(function(tx) tx:put_new_many("u", "p:", ";", { "z" }, { "1" }) end) end)
  end)

  it("point readers see every commit, this process's and another's, and reuse an unchanged snapshot", function()
    local ffi = require "ffi"
    st:put("p", "k", "1")
    local read = st:point_reader("p")
    local function value(k)
      local ptr, n = read(k)
      return ptr and ffi.string(ptr, n)
    end
    assert.equal("1", value("k"))
    local v0 = st:version()
    assert.equal("1", value("k"))
    assert.equal(v0, st:version(), "a read commits nothing")
    st:put("p", "k", "2")
    assert.is_true(st:version() > v0)
    assert.equal("2", value("k"))
    local script = testing.write(dir .. "/writer.lua",
      'local s = assert(require("tycho.store").open(...)); s:put("p", "k", "3"); s:put("p", "new", "x")')
    local code, _, errs = testing.run({ "run", script, dir })
    assert.equal(0, code, errs)
    assert.equal("3", value("k"))
    assert.equal("x", value("new"))
  end)

  it("keeps a point reader's snapshot across loop turns only while it is the latest", function()
    local uv = require "luv"
    local ffi = require "ffi"
    -- One turn of the loop (an unreferenced handle alone would not make one).
    local function turn()
      local t = uv.new_timer()
      t:start(0, 0, function() t:close() end)
      uv.run("once")
    end
    st:put("p", "k", "1")
    local read = st:point_reader("p")
    assert.equal(0, st:open_readers())
    assert.is_truthy(read("k"))
    assert.equal(1, st:open_readers())
    turn()
    assert.equal(1, st:open_readers(), "nothing was committed: the snapshot is still the latest")
    st:put("p", "k", "2")
    turn()
    assert.equal(0, st:open_readers(), "a commit ends the snapshot at the next turn")
    local ptr, n = read("k")
    assert.equal("2", ffi.string(ptr, n))
    -- The map grows (and is mapped again) with no reader left open.
    local small = assert(store.open(dir .. "/small", { map_size = 256 * 1024 }))
    small:put("p", "k", "1")
    local sread = small:point_reader("p")
    assert.is_truthy(sread("k"))
    local before = small:map_size()
    small:update(function(tx) for i = 1, 200 do tx:put("p", "big" .. i, ("x"):rep(2000)) end end)
    assert.is_true(small:map_size() > before)
    assert.equal(0, small:open_readers())
    local _, size = sread("big200")
    assert.equal(2000, size)
    small:close()
  end)

  it("rolls back everything when the function raises", function()
    st:put("t", "kept", "1")
    assert.has_error(function()
      st:update(function(tx)
        tx:put("t", "half", "1")
        error("stop here")
      end)
    end)
    assert.is_nil(st:get("t", "half"))
    assert.equal("1", st:get("t", "kept"))
  end)

  it("runs on_commit functions after a commit only, once per committed transaction", function()
    local ran = {}
    st:update(function(tx) tx:on_commit(function() ran[#ran + 1] = "committed" end) end)
    assert.is_false(pcall(st.update, st, function(tx)
      tx:on_commit(function() ran[#ran + 1] = "rolled back" end)
      error("stop here")
    end))
    -- A full map repeats the function: only the try that commits counts.
    local tries = 0
    st:update(function(tx)
      tries = tries + 1
      tx:on_commit(function() ran[#ran + 1] = "try " .. tries end)
      if tries == 1 then error(store.MAP_FULL, 0) end
    end)
    -- One that raises is reported; the commit and the others stand.
    st:update(function(tx)
      tx:put("t", "oc", "1")
      tx:on_commit(function() error("late") end)
      tx:on_commit(function() ran[#ran + 1] = "after an error" end)
    end)
    assert.same({ "committed", "try 2", "after an error" }, ran)
    assert.equal("1", st:get("t", "oc"))
    assert.has_error(function() st:view(function(tx) tx:on_commit(function() end) end) end,
      "store: on_commit() in a read transaction")
  end)

  it("returns the function's values", function()
    local a, b = st:update(function(tx) tx:put("t", "k", "v") return "x", 2 end)
    assert.same({ "x", 2 }, { a, b })
  end)

  it("scans ranges, prefixes and in reverse, in key order", function()
    st:update(function(tx)
      for _, user in ipairs { "u1", "u2", "u10" } do
        for t = 1, 3 do tx:put("events", keys.pack("s u64", user, t * 100), user .. "@" .. t) end
      end
    end)
    local function collect(opts)
      return st:view(function(tx)
        local out = {}
        for _, v in tx:scan("events", opts) do out[#out + 1] = v end
        return out
      end)
    end
    assert.same({ "u1@1", "u1@2", "u1@3" }, collect({ prefix = keys.pack("s", "u1") }))
    assert.same({ "u2@3", "u2@2", "u2@1" }, collect({ prefix = keys.pack("s", "u2"), reverse = true }))
    local from, to = keys.pack("s u64", "u1", 150), keys.pack("s u64", "u1", 999)
    assert.same({ "u1@2", "u1@3" }, collect({ from = from, to = to }))
    assert.same({ "u1@1", "u1@2" }, collect({ limit = 2 }))
    assert.equal(9, #collect())
  end)

  it("grows the map when it fills, inside one update", function()
    local small = assert(store.open(dir .. "/small", { map_size = 256 * 1024 }))
    local before = small:map_size()
    local blob = string.rep("b", 8000)
    small:update(function(tx)
      for i = 1, 300 do tx:put("blobs", keys.pack("u32", i), blob) end
    end)
    assert.is_true(small:map_size() > before)
    assert.equal(300, small:view(function(tx) return tx:count("blobs") end))
    small:close()
  end)

  it("refuses a nested update instead of deadlocking", function()
    assert.has_error(function()
      st:update(function() st:update(function() end) end)
    end, "store: update() inside another update()")
  end)

  it("rejects bad keys and values as misuse", function()
    assert.has_error(function() st:put("t", "", "v") end, "store: key must be a string of 1 to 511 bytes")
    assert.has_error(function() st:put("t", string.rep("k", 512), "v") end)
    assert.has_error(function() st:put("t", "k", 5) end, "store: value must be a string")
    assert.has_error(function() st:view(function(tx) tx:put("t", "k", "v") end) end,
      "store: put() in a read transaction")
  end)

  it("reports a corrupt or unusable home as nil, message", function()
    local bad = dir .. "/bad"
    os.execute("mkdir " .. bad)
    testing.write(bad .. "/data.mdb", string.rep("garbage!", 4096))
    local s, err, code = store.open(bad)
    assert.is_nil(s)
    assert.equal("ECORRUPT", code)
    assert.matches("damaged", err)
    testing.write(dir .. "/afile", "x")
    s, err, code = store.open(dir .. "/afile")
    assert.is_nil(s)
    assert.equal("EIO", code)
    assert.matches("not a directory", err)
  end)
end)
