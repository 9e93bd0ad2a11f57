-- Crafted artifacts: user code inside a pipeline (a Lua step, a post
-- function) that tries to hang the process, eat its memory, escape the
-- sandbox or change the host. Each artifact below carries a valid checksum,
-- as an attacker who can write the registry would make it; each must be
-- refused at load or stopped within its budget, and leave the host as it was.
local tycho = require "tycho"
local sandbox = require "tycho.sandbox"
local pipeline = require "tycho.pipeline"
local frame, step = tycho.frame, tycho.step

local WITHIN = 5  -- seconds: any payload must be refused or stopped well before

local rows = frame.new({ x = { 1, 2, 3, 4, 5, 6 }, y = { 0, 1, 0, 1, 0, 1 } })

-- A fitted pipeline whose Lua step (or post function) source is replaced
-- by `source` and whose artifact is re-sealed with a valid sha256.
local function crafted(source, where)
  local pipe = assert(tycho.pipeline { steps = { step.lua("function(r) return r end", "payload") },
                                       model = tycho.models.logistic {} }:fit(rows, { label = "y" }))
  if where == "post" then pipe.post = { lua = source } else pipe.steps[1].state.source = source end
  return assert(pipe:to_bytes())
end

-- Loads and predicts once: "refused" | "stopped" | "ran", the message, seconds.
local function attempt(source, where)
  local t0 = os.clock()
  local p, err = pipeline.from_bytes(crafted(source, where))
  if not p then return "refused", err, os.clock() - t0 end
  local out, perr = p:predict({ x = 3 })
  if not out then return "stopped", perr, os.clock() - t0 end
  return "ran", out, os.clock() - t0
end

local HANGS = {
  load_time_loop = "function(r) return r end, (function() while true do end end)()",
  loop = "function(r) while true do end end",
  loop_in_pcall = "function(r) while true do pcall(function() while true do end end) end end",
  pcall_error_storm = "function(r) for i = 1, 1e12 do pcall(error) end end",
  xpcall_handler_loop = "function(r) while true do xpcall(error, function() while true do end end) end end",
  error_tostring_loop = "function(r) error(setmetatable({}, { __tostring = function() while true do end end })) end",
  returned_index_loop = "function(r) return setmetatable({}, { __index = function() while true do end end }) end",
  nested_index_loop = "function(r) r.x = setmetatable({}, { __index = function() while true do end end }) return r end",
  argument_index_loop = [[function(r) setmetatable(r, { __index = function() while true do end end }) return {} end]],
  pattern_bomb = "function(r) return ('a'):rep(3000):find('.-.-.-.-.-.-b') end",
  pattern_bomb_lib = "function(r) return string.match(string.rep('a', 3000), '.-.-.-.-.-.-b') end",
  pattern_bomb_quadratic = "function(r) return ('a'):rep(1e6):find('.-b') end",
  rep_2gib = "function(r) return #string.rep('x', 2^31) end",
  table_growth = "function(r) local t = {} for i = 1, 1e9 do t[i] = i end end",
  concat_growth = "function(r) local s = ('x'):rep(2^20) local t = {} for i = 1, 4096 do t[i] = s end return table.concat(t) end",
  recursion = "function(r) local function f(n) return f(n + 1) + 1 end return f(1) end",
  gc_metamethod = "function(r) r.x = setmetatable({}, { __gc = function() while true do end end }) return r end",
}

describe("hostile artifacts", function()
  for name, source in pairs(HANGS) do
    for _, where in ipairs { "step", "post" } do
      it("are refused or stopped within budget: " .. name .. " in a " .. where, function()
        local outcome, msg, seconds = attempt(source, where)
        -- A post function may answer {}: what matters is that the row it
        -- poisoned came back without the metatable.
        if name ~= "argument_index_loop" then assert.are_not.equal("ran", outcome, name .. " ran to the end") end
        assert.is_true(seconds < WITHIN, name .. " took " .. seconds .. " s")
        if outcome ~= "ran" then assert.is_string(msg) end
      end)
    end
  end

  it("never reach the host's string library", function()
    local host_byte, host_format, host_index = string.byte, string.format, getmetatable("").__index
    local spy = [[function(r)
      local lib = getmetatable("").__index
      lib.byte = function() return 0 end
      lib.format = function() return "pwned" end
      string.format = function() return "pwned" end
      r.saw_host = lib.dump ~= nil or ("").dump ~= nil
      return r
    end]]
    local outcome, out = attempt(spy)
    assert.equal("ran", outcome)
    assert.is_nil(out.saw_host)  -- the step's extra field is not an output; its run changed nothing either
    assert.equal(host_byte, string.byte)
    assert.equal(host_format, string.format)
    assert.equal(host_index, getmetatable("").__index)
    assert.equal(string, getmetatable("").__index)
    assert.equal("5", string.format("%d", 5))
    assert.equal(104, ("h"):byte())
  end)

  it("find none of the host's escapes", function()
    local env_names = {}
    local fn = assert(sandbox.compile([[function()
      local seen = {}
      for _, k in ipairs { "os", "io", "require", "load", "loadstring", "dofile", "debug", "jit", "package",
                           "getfenv", "setfenv", "_G", "collectgarbage", "newproxy", "coroutine", "module", "gcinfo" } do
        seen[#seen + 1] = k .. "=" .. type(({ os = os, io = io, require = require, load = load, loadstring = loadstring,
          dofile = dofile, debug = debug, jit = jit, package = package, getfenv = getfenv, setfenv = setfenv, _G = _G,
          collectgarbage = collectgarbage, newproxy = newproxy, coroutine = coroutine, module = module,
          gcinfo = gcinfo })[k])
      end
      return table.concat(seen, ","), string.dump, ("").dump
    end]], "probe"))
    local ok, seen, dump, method_dump = sandbox.call("probe", fn)
    assert.is_true(ok)
    for pair in seen:gmatch("[^,]+") do env_names[#env_names + 1] = pair end
    for _, pair in ipairs(env_names) do assert.matches("=nil$", pair) end
    assert.is_nil(dump)
    assert.is_nil(method_dump)
  end)

  it("damaged anywhere, load as an error or as a working pipeline, never a crash", function()
    local pipe = assert(tycho.pipeline { steps = { step.standardize(), step.lua("function(r) return r end", "id") },
                                         model = tycho.models.gbt { rounds = 5 } }:fit(rows, { label = "y" }))
    local good = assert(pipe:to_bytes())
    local seed, refused, loaded = 42, 0, 0
    local function rand(n) seed = seed * 16807 % 2147483647 return seed % n end
    for _ = 1, 3000 do
      local b = { good:byte(1, -1) }
      for _ = 1, 1 + rand(4) do
        if #b == 0 then break end
        local at = 1 + rand(#b)
        local how = rand(3)
        if how == 0 then b[at] = rand(256)
        elseif how == 1 then for k = #b, at, -1 do b[k] = nil end
        else table.insert(b, at, rand(256)) end
      end
      local bytes = #b > 0 and string.char(unpack(b)) or ""
      local p = pipeline.from_bytes(bytes)
      if p then
        loaded = loaded + 1
        p:predict({ x = 3 })
      else
        refused = refused + 1
      end
    end
    assert.equal(3000, refused + loaded)
    assert.is_true(refused > 2900, refused .. " refused")  -- the checksum catches nearly every change
  end)

  it("refuse source past the size limit", function()
    local big = "function(r) return r end --" .. ("x"):rep(2 * 1048576)
    assert.equal("refused", (attempt(big)))
  end)

  it("leave the budget working for the next call", function()
    for _ = 1, 3 do
      for _, name in ipairs { "loop_in_pcall", "xpcall_handler_loop", "error_tostring_loop", "table_growth" } do
        attempt(HANGS[name])
      end
    end
    local outcome, msg, seconds = attempt(HANGS.loop)
    assert.equal("stopped", outcome)
    assert.matches("instruction budget", msg)
    assert.is_true(seconds < WITHIN)
    local ok = sandbox.call("plain", assert(sandbox.compile("function() return ('x'):rep(1000) end")))
    assert.is_true(ok)
  end)

  it("stop at the memory cap, and leave the host's allocations uncapped", function()
    local hog = assert(sandbox.compile("function() local t = {} for i = 1, 1e7 do t[i] = { i } end return #t end"))
    for _ = 1, 2 do
      local ok, msg, reason = sandbox.call("hog", hog, 1e9)
      assert.is_false(ok)
      assert.equal("memory", reason)
      assert.matches("memory cap", msg)
    end
    -- Past the cap's size, outside any sandboxed call.
    local host = {}
    for i = 1, 2e6 do host[i] = { i } end
    assert.equal(2e6, #host)
  end)

  it("keep working for honest code: patterns, string methods, pcall, error values", function()
    local fn = assert(sandbox.compile([[function(s)
      local trimmed = s:match("^%s*(.-)%s*$")
      local ok, err = pcall(error, { code = 7 })
      local words = 0
      for _ in ("a b c"):gmatch("%a+") do words = words + 1 end
      return trimmed:upper(), err.code, words, select(2, xpcall(error, function(e) return "handled " .. e end, "x"))
    end]], "honest"))
    local ok, up, code, words, handled = sandbox.call("honest", fn, nil, "  hi there  ")
    assert.is_true(ok)
    assert.equal("HI THERE", up)
    assert.equal(7, code)
    assert.equal(3, words)
    assert.matches("handled", handled)
  end)
end)

describe("feature view transforms", function()
  local testing = require "tycho.testing"
  local home, fs
  before_each(function()
    home = testing.tmpdir()
    fs = tycho.features.open({ home = home })
    fs:entity { name = "user", join_key = "user_id" }
  end)
  after_each(function()
    fs.store:close()
    testing.rmrf(home)
  end)

  it("run in the sandbox: a loop gives no value, the host's string library is untouched", function()
    local host_format = string.format
    fs:feature_view { name = "u", entity = "user", schema = { clicks = "int" }, transforms = {
      spin = "function(r) while true do end end",
      hijack = "function(r) string.format = function() return 'pwned' end getmetatable('').__index.rep = nil return 1 end",
      doubled = "function(r) return (r.clicks or 0) * 2 end" } }
    assert(fs:push("u", { { user_id = "a", clicks = 21, event_time = "2025-01-01T00:00:00Z" } }))
    local t0 = os.clock()
    local got = fs:online({ "u:spin", "u:hijack", "u:doubled" }, { user_id = { "a" } })
    assert.is_true(os.clock() - t0 < WITHIN)
    assert.equal(host_format, string.format)
    assert.equal("xx", ("x"):rep(2))
    local values = {}
    for i, name in ipairs(got.metadata.feature_names) do values[name] = got.results[i].values[1] end
    assert.equal(42, values["u:doubled"])
    assert.equal(1, values["u:hijack"])
    assert.equal(require("tycho.json").null, values["u:spin"])
  end)
end)
