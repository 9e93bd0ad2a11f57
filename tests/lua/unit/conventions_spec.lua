-- The error convention, practised: expected failures are `nil, message,
-- code` with a code from tycho.util.errors, only the HTTP layer (serve/)
-- speaks statuses, and no code decides by matching an error's text.
local internal = require "tycho.internal"

local function lua_files()
  local p = assert(io.popen("find " .. internal.lua_dir .. "/tycho -name '*.lua' | sort"))
  local out = {}
  for path in p:lines() do out[#out + 1] = path end
  p:close()
  return out
end

describe("the error convention", function()
  it("keeps HTTP statuses out of domain modules", function()
    local offenders = {}
    for _, path in ipairs(lua_files()) do
      if not path:find("/tycho/serve/", 1, true) then
        local src = assert(io.open(path)):read("*a")
        if src:find("return nil, [1-5]%d%d[,%s]") then offenders[#offenders + 1] = path end
      end
    end
    assert.same({}, offenders)
  end)

  -- (Reading a library's own message is another matter: Lua's parser says
  -- "<eof>" for an unfinished line, cjson names no code.)
  it("never picks a status by an error's text", function()
    local offenders = {}
    for _, path in ipairs(lua_files()) do
      local src = path:find("/tycho/serve/", 1, true) and assert(io.open(path)):read("*a") or ""
      if src:find("err:match%(") or src:find("err:find%(") then offenders[#offenders + 1] = path end
    end
    assert.same({}, offenders)
  end)

  it("maps every named code to one status, and refuses unknown codes", function()
    local errors = require "tycho.util.errors"
    for name, code in pairs(errors) do
      if type(code) == "string" then assert.is_number(errors.STATUS[code], name) end
    end
    assert.has_error(function() errors.fail("teapot", "x") end)
    assert.same({ nil, "gone away", "gone" }, { errors.fail("gone", "gone away") })
  end)
end)
