-- Every name declared through ffi.cdef in lua/tycho must resolve in the
-- running binary, or the first call in production would fail.
local ffi = require "ffi"
local internal = require "tycho.internal"

describe("FFI declarations", function()
  it("resolve in the tycho binary", function()
    local checked = 0
    local p = io.popen("ls " .. internal.lua_dir .. "/tycho/*.lua")
    for file in p:lines() do
      local src = assert(io.open(file)):read("*a")
      for block in src:gmatch("ffi%.cdef%s*%[(%b[])%]") do
        for name in block:gmatch("[%w_%*]+%s+%**(tz_[%w_]+)%s*%(") do
          require("tycho." .. file:match("([%w_]+)%.lua$"))
          local ok = pcall(function() return ffi.C[name] end)
          assert(ok, name .. " (declared in " .. file .. ") is not exported by the binary")
          checked = checked + 1
        end
      end
    end
    p:close()
    assert.is_true(checked >= 15, "found only " .. checked .. " declarations")
  end)
end)
