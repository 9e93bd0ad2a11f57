local serving = require "tycho.serve.log"
local keys = require "tycho.keys"
local store = require "tycho.store"
local testing = require "tycho.testing"

describe("prediction log retention", function()
  it("prunes entries older than the cut, keeping the newer ones", function()
    local dir = testing.tmpdir()
    local st = assert(store.open(dir))
    st:update(function(tx)
      for t = 1, 10 do tx:put("predictions", keys.pack("i64 s", t * 1e6, "id" .. t), "{}") end
    end)
    local removed = st:update(function(tx) return serving.prune(tx, 4e6) end)
    assert.equal(3, removed)
    assert.equal(7, st:view(function(tx) return tx:count("predictions") end))
    local first = st:view(function(tx) return tx:scan("predictions", { limit = 1 })() end)
    assert.equal(4e6, (keys.unpack("i64 s", first)))
    st:close()
    testing.rmrf(dir)
  end)

  it("prunes a bounded batch per call, with the outcomes of what it prunes", function()
    local dir = testing.tmpdir()
    local st = assert(store.open(dir))
    st:update(function(tx)
      for t = 1, 25 do
        tx:put("predictions", keys.pack("i64 s", t * 1e6, "id" .. t), "{}")
        tx:put("outcomes", "id" .. t, "{}")
      end
    end)
    assert.equal(10, st:update(function(tx) return serving.prune(tx, 21e6, 10) end))
    assert.equal(10, st:update(function(tx) return serving.prune(tx, 21e6, 10) end))
    assert.equal(0, st:update(function(tx) return serving.prune(tx, 21e6, 10) end))
    st:view(function(tx)
      assert.equal(5, tx:count("predictions"))
      assert.equal(5, tx:count("outcomes"))
      assert.is_nil(tx:get("outcomes", "id20"))
      assert.is_not_nil(tx:get("outcomes", "id21"))
    end)
    st:close()
    testing.rmrf(dir)
  end)
end)

describe("prediction log group commit", function()
  local uv = require "luv"

  -- Runs the loop until every done(ok, res) has come, or 2 s.
  local function run_until(state, want)
    local guard = uv.new_timer()
    guard:start(2000, 0, function() uv.stop() end)
    local poll = uv.new_timer()
    poll:start(1, 1, function() if #state >= want then uv.stop() end end)
    uv.run()
    guard:close()
    poll:close()
  end

  it("answers each write after the commit it joined; one that raises fails alone", function()
    local _, flush, commit = serving.prediction_log { interval_ms = 60000, group_ms = 20, group_max = 100 }
    local st = assert(store.open())
    local done = {}
    uv.update_time()  -- the loop's clock has not moved since the last spec ran it
    -- Measured on the loop's own clock, which its timers follow (a loaded
    -- machine may run the loop late, never its timers early).
    local started = uv.now()
    commit(function(tx) tx:put("t", "a", "1") return "first" end, function(ok, res)
      -- Already committed: another transaction sees it.
      done[#done + 1] = { ok, res, st:view(function(tx) return tx:get("t", "a") end) }
    end)
    commit(function() error("deliberate") end, function(ok, res) done[#done + 1] = { ok, tostring(res) } end)
    commit(function() return "callback raises" end, function() error("deliberate, in a callback") end)
    commit(function(tx) tx:put("t", "b", "2") return "third" end, function(ok, res) done[#done + 1] = { ok, res } end)
    run_until(done, 3)
    local ms = uv.now() - started
    assert.same({ true, "first", "1" }, done[1])
    assert.is_false(done[2][1])
    assert.matches("deliberate", done[2][2])
    assert.same({ true, "third" }, done[3])
    assert.is_true(ms >= 15, "committed before the window: " .. ms .. " ms")
    assert.equal("2", st:get("t", "b"))
    flush()
  end)

  it("lets a full map through: the map grows and the whole flush runs again", function()
    local _, _, commit = serving.prediction_log { interval_ms = 60000, group_ms = 1, group_max = 100 }
    local calls, done = 0, {}
    commit(function(tx)
      calls = calls + 1
      if calls == 1 then error(store.MAP_FULL, 0) end  -- as a put into a full map raises
      tx:put("t", "grown", "1")
      return "second try"
    end, function(ok, res) done[#done + 1] = { ok, res } end)
    run_until(done, 1)
    assert.same({ { true, "second try" } }, done)
    assert.equal(2, calls)
    assert.equal("1", assert(store.open()):get("t", "grown"))
  end)

  it("commits on the next loop turn when every client waits", function()
    local _, _, commit = serving.prediction_log { interval_ms = 60000, group_ms = 1000, group_max = 100,
                                                  all_waiting = function() return true end }
    local done = {}
    uv.update_time()
    local started = uv.hrtime()
    commit(function(tx) tx:put("t", "lone", "1") return "lone" end, function(ok, res) done[#done + 1] = { ok, res } end)
    run_until(done, 1)
    assert.same({ { true, "lone" } }, done)
    local ms = tonumber(uv.hrtime() - started) / 1e6
    assert.is_true(ms < 500, "waited for the window: " .. ms .. " ms")
  end)

  it("commits on the next loop turn once group_max writes wait", function()
    local _, _, commit = serving.prediction_log { interval_ms = 60000, group_ms = 1000, group_max = 4 }
    local done = {}
    local started = uv.hrtime()
    for i = 1, 4 do
      commit(function(tx) tx:put("t", "k" .. i, "v") return i end, function(ok, res) done[#done + 1] = { ok, res } end)
    end
    run_until(done, 4)
    local ms = tonumber(uv.hrtime() - started) / 1e6
    assert.same({ { true, 1 }, { true, 2 }, { true, 3 }, { true, 4 } }, done)
    assert.is_true(ms < 500, "waited for the window: " .. ms .. " ms")
  end)
end)

describe("prediction log written behind the loop", function()
  local uv = require "luv"
  local rollup = require "tycho.monitor.rollup"
  local timeutil = require "tycho.timeutil"

  local function counts(st)
    local traffic = st:view(function(tx) return rollup.traffic(tx, "m", rollup.span(600, timeutil.now()))[1] end)
    return { st:view(function(tx) return tx:count("predictions") end), traffic and traffic.volume or 0 }
  end

  -- Runs the loop until done() holds, or 5 s.
  local function run_until(done)
    local guard, poll = uv.new_timer(), uv.new_timer()
    guard:start(5000, 0, function() uv.stop() end)
    poll:start(2, 2, function() if done() then uv.stop() end end)
    uv.run()
    guard:close()
    poll:close()
  end

  -- fn(st) on a store of its own (opened with opts), closed and removed after.
  local function in_new_store(opts, fn)
    local dir = testing.tmpdir()
    local st = assert(store.open(dir, opts))
    fn(st)
    st:close()
    testing.rmrf(dir)
  end

  local function log_n(log, n, inputs)
    for i = 1, n do log({ model = "m", version = "1.0.0", output = i, ms = 1, inputs = inputs }) end
  end

  it("lands predictions while the loop goes on, and counts each once when the loop flushes", function()
    in_new_store(nil, function(st)
      uv.update_time()
      local started = uv.now()
      local log, flush = serving.prediction_log { store = st, interval_ms = 50 }
      log_n(log, 1234)
      -- In batches of 500, or what the timer finds: all landed with no flush
      -- on this thread; their rollups wait for the loop's flush, due a
      -- second after the last.
      run_until(function() return counts(st)[1] == 1234 end)
      local landed = counts(st)
      assert.equal(1234, landed[1])
      if uv.now() - started < 900 then assert.equal(0, landed[2]) end
      flush()
      assert.same({ 1234, 1234 }, counts(st))
      log_n(log, 600)
      flush()
      assert.same({ 1834, 1834 }, counts(st))
    end)
  end)

  it("lets two logs of one store share its writer, each batch landing once", function()
    in_new_store(nil, function(st)
      local log_a, flush_a = serving.prediction_log { store = st, interval_ms = 60000 }
      local log_b, flush_b = serving.prediction_log { store = st, interval_ms = 60000 }
      log_n(log_a, 500)  -- sent behind the loop
      log_n(log_b, 700)  -- the writer is A's until A has heard back: B writes on the loop
      log_n(log_a, 501)
      flush_b()
      flush_a()
      assert.same({ 1701, 1701 }, counts(st))
    end)
  end)

  it("writes on the loop, once, a batch the writer behind found no room for", function()
    in_new_store({ map_size = 2 ^ 20 }, function(st)
      local log, flush = serving.prediction_log { store = st, interval_ms = 60000, sample_every = 1 }
      log_n(log, 600, { blob = string.rep("x", 3000) })  -- 1.8 MB of inputs: more than the map
      flush()
      assert.same({ 600, 600 }, counts(st))
      assert.is_true(st:map_size() > 2 ^ 20)
    end)
  end)
end)

describe("prediction log entries", function()
  local entry = require "tycho.monitor.entry"

  it("read back as written, numbers exact, and still read when written as JSON", function()
    local e = { model = "spam", version = "1.0.0", id = "0005f-1-2", at = 1765000000000123, role = "live",
                ms = 0.1 + 0.2, output = { prediction = "spam", probability = 1 / 3 }, inputs = { x = 0 / 0 } }
    local back = assert(entry.decode(entry.encode(e)))
    assert.equal(1 / 3, back.output.probability)
    assert.equal(0.1 + 0.2, back.ms)
    assert.equal(1765000000000123, back.at)
    assert.is_true(back.inputs.x ~= back.inputs.x)
    local old = assert(entry.decode('{"model":"spam","version":"1.0.0","ms":0.5,"output":{"prediction":1}}'))
    assert.equal("spam", old.model)
    assert.equal(1, old.output.prediction)
    assert.is_nil(entry.decode(""))
    assert.is_nil(entry.decode("\1\2garbage"))
    assert.is_nil(entry.decode("{not json"))
  end)
end)

describe("prediction log rollups", function()
  local rollup = require "tycho.monitor.rollup"
  local timeutil = require "tycho.timeutil"

  -- n entries of model m, one a second ending at now_s, written through the log's batch.
  local function log_seconds(st, n, now_s, fields)
    st:update(function(tx)
      local batch = serving.batch()
      for i = 1, n do
        local at = (now_s - n + i) * 1e6
        local e = { model = "m", version = "1.0.0", ms = i, error = i % 10 == 0 and "bad" or nil }
        for k, v in pairs(fields or {}) do e[k] = v end
        batch:add(e, at, serving.entry_id(at, 1, i))
      end
      batch:write(tx)
    end)
  end

  it("count every entry per second, minute and hour, with percentiles within 2.2 %", function()
    local dir = testing.tmpdir()
    local st = assert(store.open(dir))
    local now = timeutil.now()
    log_seconds(st, 1000, math.floor(now / 1e6))
    log_seconds(st, 100, math.floor(now / 1e6), { role = "shadow" })
    for _, window in ipairs { 1800, 7200, 3 * 86400 } do
      local span = rollup.span(window, now, 60)
      local groups = st:view(function(tx) return rollup.traffic(tx, "m", span, true) end)
      local live = groups[1].role == "live" and groups[1] or groups[2]
      local want = math.min(1000, window)
      assert.same({ want, want / 10 }, { live.volume, live.errors }, "window " .. window)
      local sum = 0
      for _, n in ipairs(live.series.volume) do sum = sum + n end
      assert.equal(want, sum)
      -- ms = 1..1000: the p50 of the last `want` is 1000 - want / 2, the p99 1000 - want / 100.
      assert.near(1000 - want / 2, live.latency_ms.p50, (1000 - want / 2) * 0.022)
      assert.near(1000 - want / 100, live.latency_ms.p99, (1000 - want / 100) * 0.022)
    end
    st:close()
    testing.rmrf(dir)
  end)

  it("reads a window in periods of at most a 60th of it, in at most `buckets` equal slices", function()
    local now = 1765000000.5e6
    local function shape(window, buckets)
      local s = rollup.span(window, now, buckets)
      return { s.level, s.width, s.buckets }
    end
    assert.same({ 1, 15, 60 }, shape(900, 60))
    assert.same({ 60, 60, 60 }, shape(3600, 60))
    assert.same({ 60, 1440, 60 }, shape(86400, 60))
    assert.same({ 3600, 10800, 56 }, shape(7 * 86400, 60))
    assert.same({ 60, 60, 180 }, shape(3 * 3600, 500))  -- not 10,800 seconds
    local s = rollup.span(3600, now, 60)
    assert.is_true(s.from <= now / 1e6 - 3600 + 60 and s.from + 3600 > now / 1e6)
  end)

  it("counts a batch kept after a failed flush once, with what was added since, from one reused entry table", function()
    local dir = testing.tmpdir()
    local st = assert(store.open(dir))
    local now = timeutil.now()
    local entry = {}
    local function fill(batch, n, from)
      for i = 1, n do
        entry.model, entry.version, entry.output, entry.ms, entry.role = "m", "1.0.0", i, 2, nil
        batch:add(entry, now, "b" .. from + i)
      end
    end
    local earlier, kept, later = serving.batch(), serving.batch(), serving.batch()
    fill(earlier, 5, 100)
    st:update(function(tx) earlier:write(tx) end)
    fill(kept, 30, 0)
    fill(later, 12, 30)
    -- The first flush fails after its rollups were written: rolled back.
    assert.is_false(pcall(st.update, st, function(tx)
      kept:write(tx)
      error("the disk is full")
    end))
    kept:append(later)
    st:update(function(tx) kept:write(tx) end)
    local span = rollup.span(600, now)
    local traffic = st:view(function(tx) return rollup.traffic(tx, "m", span)[1] end)
    assert.same({ 47, 47 }, { traffic.volume, st:view(function(tx) return tx:count("predictions") end) })
    st:close()
    testing.rmrf(dir)
  end)

  it("merges what later flushes add, and prunes seconds past 2 h and the rest past the log's retention", function()
    local dir = testing.tmpdir()
    local st = assert(store.open(dir))
    local now_s = math.floor(timeutil.now() / 1e6)
    log_seconds(st, 10, now_s - 3 * 3600)  -- too old for seconds: never written
    log_seconds(st, 10, now_s)
    log_seconds(st, 10, now_s)
    -- The start times of model m's records of a level.
    local function starts(level)
      return st:view(function(tx)
        local out = {}
        for k in tx:scan(rollup.DB, { prefix = keys.pack("s u32", "m", level) }) do
          out[#out + 1] = select(3, keys.unpack("s u32 i64 s s", k))
        end
        return out
      end)
    end
    assert.equal(10, #starts(1))
    local span = rollup.span(600, now_s * 1e6)
    assert.equal(20, st:view(function(tx) return rollup.traffic(tx, "m", span)[1].volume end))
    local cut = now_s - 3600
    assert.is_true(starts(60)[1] < cut and starts(3600)[1] < cut)
    assert.is_true(st:update(function(tx) return rollup.prune(tx, { m = true }, cut) end) >= 2)
    for _, level in ipairs { 1, 60, 3600 } do
      local left = starts(level)
      assert.is_true(#left > 0 and left[1] >= math.floor(cut / level) * level, "level " .. level)
    end
    st:close()
    testing.rmrf(dir)
  end)
end)
