-- The module graph of lua/tycho has no cycle: every `require "tycho.X"` in
-- a module (at the top or inside a function) is an edge, and the walk fails
-- naming the first cycle it finds. Old public names (tycho/aliases.lua)
-- resolve to the modules they stand for.
local internal = require "tycho.internal"

local LUA_DIR = internal.lua_dir

local function module_of(path)
  local name = path:sub(#LUA_DIR + 2):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
  return name
end

describe("the Lua module graph", function()
  it("has no require cycle", function()
    local aliases = require "tycho.aliases"
    local edges, files = {}, {}
    local p = assert(io.popen("find " .. LUA_DIR .. "/tycho -name '*.lua' | sort"))
    for path in p:lines() do files[#files + 1] = path end
    p:close()
    for _, path in ipairs(files) do
      local name = module_of(path)
      local src = assert(io.open(path)):read("*a"):gsub("%-%-%[%[.-%]%]", ""):gsub("%-%-[^\n]*", "")
      edges[name] = {}
      for dep in src:gmatch('require%s*%(?%s*"(tycho[%w_%.]*)"') do
        dep = aliases[dep] or dep
        if dep ~= "tycho.internal" and dep ~= name then edges[name][#edges[name] + 1] = dep end
      end
    end
    local state, stack = {}, {}
    local function visit(n)
      if state[n] == "done" then return end
      if state[n] == "open" then
        local from = 1
        for i, m in ipairs(stack) do if m == n then from = i end end
        local cycle = { unpack(stack, from) }
        cycle[#cycle + 1] = n
        error("require cycle: " .. table.concat(cycle, " -> "), 0)
      end
      state[n] = "open"
      stack[#stack + 1] = n
      for _, d in ipairs(edges[n] or {}) do visit(d) end
      stack[#stack] = nil
      state[n] = "done"
    end
    local names = {}
    for n in pairs(edges) do names[#names + 1] = n end
    table.sort(names)
    assert.is_true(#names >= 35)
    for _, n in ipairs(names) do visit(n) end
  end)
end)
