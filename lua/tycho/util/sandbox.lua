--- Running user Lua that arrives inside artifacts and feature views.
--
-- What user code gets: an allow-list of globals (no io, os, require, load,
-- debug, package, setfenv, coroutine, collectgarbage), its own copies of
-- math, string, table and bit, and a getmetatable that shows strings the
-- sandbox's string table rather than the host's.
--
-- What bounds it, on every entry (the load that runs the source, each call):
-- an instruction budget that a pcall inside user code cannot catch, a
-- memory cap, and pattern functions that refuse a pattern whose worst case
-- on its subject is past PATTERN_WORK steps (a C matcher cannot be stopped
-- by the budget). The limits are set by TYCHO_SANDBOX_INSTRUCTIONS (10
-- million), TYCHO_SANDBOX_MS (1000) and TYCHO_SANDBOX_MEMORY_MB (64). Errors never go through a metamethod of the
-- user's, and what comes back is checked (`M.check_value`) before the host
-- touches it: no metatables, no functions.
local internal = require "tycho.internal"

local M = {}

M.instructions = tonumber(os.getenv("TYCHO_SANDBOX_INSTRUCTIONS")) or 1e7
M.memory = (tonumber(os.getenv("TYCHO_SANDBOX_MEMORY_MB")) or 64) * 1048576
M.milliseconds = tonumber(os.getenv("TYCHO_SANDBOX_MS")) or 1000
local MAX_SOURCE = 1048576
local PATTERN_WORK = 1e8
local MAX_DEPTH, MAX_ENTRIES = 16, 1e6

local SAFE = { "assert", "error", "ipairs", "next", "pairs", "pcall", "select", "tonumber", "tostring", "type",
               "unpack", "rawequal", "rawget", "rawset", "setmetatable" }
local LIBS = { "math", "table", "bit" }

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- The end of the item that starts at i of a pattern (a class, a set, an
-- escape or one character), so a quantifier after it can be seen.
local function item_end(pat, i)
  local c = pat:sub(i, i)
  if c == "%" then
    local e = pat:sub(i + 1, i + 1)
    if e == "b" then return i + 3 end
    if e == "f" then return item_end(pat, i + 2) end
    return i + 1
  end
  if c == "[" then
    local j = i + 1
    if pat:sub(j, j) == "^" then j = j + 1 end
    repeat  -- a ']' right after '[' or '[^' is a member
      if pat:sub(j, j) == "%" then j = j + 1 end
      j = j + 1
    until j > #pat or pat:sub(j, j) == "]"
    return j
  end
  return i
end

--- Worst-case steps of a backtracking match of pat over a subject of n
-- bytes: each variable-length item (*, +, -) can be tried at every length,
-- each optional one (?) two ways, at every start unless anchored.
function M.pattern_work(pat, n)
  local i, anchored, variable, optional = 1, false, 0, 0
  if pat:sub(1, 1) == "^" then anchored, i = true, 2 end
  while i <= #pat do
    local e = item_end(pat, i)
    local q = pat:sub(e + 1, e + 1)
    local c = pat:sub(i, i)
    if c ~= "(" and c ~= ")" and (q == "*" or q == "+" or q == "-") then
      variable, e = variable + 1, e + 1
    elseif c ~= "(" and c ~= ")" and q == "?" then
      optional, e = optional + 1, e + 1
    end
    i = e + 1
  end
  local m = math.max(n, 1)
  return (anchored and 1 or m) * m ^ variable * 2 ^ optional
end

local function checked_pattern(name, fn, plain_arg)
  return function(s, pat, ...)
    if type(s) == "string" and type(pat) == "string" and not (plain_arg and select(plain_arg - 2, ...)) then
      local work = M.pattern_work(pat, #s)
      if work > PATTERN_WORK then
        error(string.format("string.%s: pattern %q is too costly for a subject of %d bytes (worst case %.3g steps);"
          .. " simplify the pattern or split the text", name, #pat > 40 and pat:sub(1, 40) .. "..." or pat, #s, work), 2)
      end
    end
    return fn(s, pat, ...)
  end
end

local function string_library()
  local lib = copy(string)
  lib.dump = nil
  lib.find = checked_pattern("find", string.find, 4)
  lib.match = checked_pattern("match", string.match)
  lib.gmatch = checked_pattern("gmatch", string.gmatch)
  lib.gsub = checked_pattern("gsub", string.gsub)
  local rep = string.rep
  lib.rep = function(s, n, ...)
    if type(s) == "string" and type(n) == "number" and #s * n > M.memory then
      error(string.format("string.rep: a result of %.0f bytes is past the memory cap", #s * n), 2)
    end
    return rep(s, n, ...)
  end
  return lib
end

local function environment()
  local env = {}
  for _, name in ipairs(SAFE) do env[name] = _G[name] end
  for _, lib in ipairs(LIBS) do env[lib] = copy(_G[lib]) end
  env.string = string_library()
  -- The handler runs after the failed call returns, never as an error
  -- handler: code inside error handling is where a stop could be swallowed.
  env.xpcall = function(f, handler, ...)
    local res = { pcall(f, ...) }
    if res[1] then return unpack(res, 1, table.maxn(res)) end
    return false, handler(res[2])
  end
  local string_view = { __index = env.string }
  env.getmetatable = function(v)
    if type(v) == "string" then return string_view end
    return getmetatable(v)
  end
  return env
end

-- The string table each compiled function sees, by function.
local strings_of = setmetatable({}, { __mode = "k" })

--- Runs fn(...) as user code, in the sandbox whose strings it was compiled
-- with: ok, results... or false, message naming `name`, and a reason
-- ("budget", "memory" or "error").
function M.call(name, fn, budget, ...)
  local strings = strings_of[fn]
  if not strings then error("sandbox.call: " .. name .. " was not compiled by the sandbox", 2) end
  local res = { internal.sandbox_run(budget or M.instructions, M.memory, M.milliseconds, strings, fn, ...) }
  if not res[1] then return false, name .. ": " .. res[2], res[3] end
  return unpack(res, 1, table.maxn(res))
end

--- Compiles source text of a function expression ("function(row) ... end")
-- in a fresh sandbox, running it under the same limits as any call.
-- Returns the function or nil, message.
function M.compile(src, name)
  name = name or "user function"
  if type(src) ~= "string" then return nil, "function source must be text" end
  if #src > MAX_SOURCE then return nil, name .. ": source is larger than " .. MAX_SOURCE .. " bytes" end
  local chunk, err = loadstring("return " .. src, "=" .. name)
  if not chunk then return nil, err end
  local env = environment()
  setfenv(chunk, env)
  -- Compiled traces never run debug hooks, so the instruction budget could
  -- not stop a runaway loop: user code stays interpreted.
  jit.off(chunk, true)
  strings_of[chunk] = env.string
  local ok, fn, extra = M.call(name, chunk)
  if not ok then return nil, fn end
  if type(fn) ~= "function" or extra ~= nil then return nil, name .. ": source must be one function expression" end
  jit.off(fn, true)
  strings_of[fn] = env.string
  return fn
end

local function check(v, depth, seen)
  local t = type(v)
  if t == "nil" or t == "boolean" or t == "string" or t == "number" then return true end
  if t ~= "table" then return nil, "a " .. t .. " value" end
  if debug.getmetatable(v) ~= nil then return nil, "a table with a metatable" end
  if depth > MAX_DEPTH then return nil, "tables nested deeper than " .. MAX_DEPTH end
  if seen[v] then return nil, "a table that contains itself" end
  seen[v] = true
  local n = 0
  for k, x in next, v do
    n = n + 1
    if n > MAX_ENTRIES then return nil, "a table of more than " .. MAX_ENTRIES .. " entries" end
    local ok, why = check(k, depth + 1, seen)
    if ok then ok, why = check(x, depth + 1, seen) end
    if not ok then return nil, why end
  end
  seen[v] = nil
  return true
end

--- Checks a value that user code returned before the host reads it: plain
-- data only (nil, booleans, numbers, strings, tables of those without
-- metatables), so no user metamethod ever runs outside the sandbox.
-- Returns true or nil, what was wrong.
function M.check_value(v)
  return check(v, 0, {})
end

--- Hands tables back clean after user code had them: a metatable it set on
-- an argument is removed, raw, so the host never runs it.
function M.scrub(...)
  for i = 1, select("#", ...) do
    local t = select(i, ...)
    if type(t) == "table" and debug.getmetatable(t) ~= nil then debug.setmetatable(t, nil) end
  end
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
