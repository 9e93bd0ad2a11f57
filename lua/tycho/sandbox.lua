--- Loading user Lua that arrives inside artifacts: an allow-list of
-- globals (no io, os, require, load, debug, package, setfenv), a private
-- environment per function, and an instruction budget per call so a runaway
-- loop errors instead of hanging a server.
local M = {}

local SAFE = { "assert", "error", "ipairs", "next", "pairs", "pcall", "select", "tonumber", "tostring", "type",
               "unpack", "xpcall", "rawequal", "rawget", "rawlen", "rawset", "setmetatable", "getmetatable" }
local LIBS = { "math", "string", "table", "bit" }

local function environment()
  local env = {}
  for _, name in ipairs(SAFE) do env[name] = _G[name] end
  for _, lib in ipairs(LIBS) do
    local copy = {}
    for k, v in pairs(_G[lib] or {}) do copy[k] = v end
    env[lib] = copy
  end
  env.string.dump = nil
  return env
end

--- Compiles source text of a function expression ("function(row) ... end")
-- in a fresh sandbox. Returns the function or nil, message.
function M.compile(src, name)
  if type(src) ~= "string" then return nil, "function source must be text" end
  local chunk, err = loadstring("return " .. src, "=" .. (name or "user function"))
  if not chunk then return nil, err end
  setfenv(chunk, environment())
  local ok, fn = pcall(chunk)
  if not ok then return nil, tostring(fn) end
  if type(fn) ~= "function" then return nil, "source must be one function expression" end
  -- Compiled traces never run debug hooks, so the instruction budget could
  -- not stop a runaway loop: user functions stay interpreted.
  jit.off(fn, true)
  return fn
end

--- Calls fn(...) with an instruction budget (default 10 million VM
-- instructions); returns ok, results... like pcall, errors naming `name`.
function M.call(name, fn, budget, ...)
  local limit = budget or 1e7
  local function stop() error("stopped: " .. name .. " ran past its instruction budget", 2) end
  debug.sethook(stop, "", limit)
  local res = { pcall(fn, ...) }
  debug.sethook()
  if not res[1] then return false, name .. ": " .. tostring(res[2]) end
  return unpack(res, 1, table.maxn(res))
end

--- The source text of a Lua function defined in a file (from its debug
-- info), so it can travel in an artifact; nil, reason when it cannot (a C
-- function, code typed into the REPL, or a function with upvalues, whose
-- values would not travel with it).
function M.source_of(fn)
  local info = debug.getinfo(fn, "S")
  local up = debug.getupvalue(fn, 1)
  if up then
    return nil, "the function uses the outside variable '" .. up .. "': pass it a constant or use step.lua(source_text)"
  end
  if info.what ~= "Lua" or not info.source:match("^@") then
    return nil, "only functions written in a file (or source text) can be saved"
  end
  local f = io.open(info.source:sub(2))
  if not f then return nil, "cannot read " .. info.source:sub(2) end
  local lines, n = {}, 0
  for line in f:lines() do
    n = n + 1
    if n >= info.linedefined and n <= info.lastlinedefined then lines[#lines + 1] = line end
  end
  f:close()
  local text = table.concat(lines, "\n")
  local start = text:find("function", 1, true)
  local last
  for pos in text:gmatch("()end") do last = pos end
  if not start or not last then return nil, "cannot find the function's text" end
  return text:sub(start, last + 2)
end

return M
