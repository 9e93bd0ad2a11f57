--- The interactive session behind `tycho repl`.
local internal = require "tycho.internal"
local pretty = require "tycho.util.pretty"
local doc = require "tycho.util.doc"

local M = {}

local PROMPT, CONTINUE = "tycho> ", "..     "

local HELP = [[
Type Lua; the value of every expression is printed. `tycho` is loaded:
type `tycho` for its modules. Tab completes names, fields and methods.
An unfinished statement continues on the next line (prompt `..`).
Globals persist between lines; `local` variables last one line, as in lua.
  help(x), ?x  the documentation of a function or module (?tycho.models.gbt)
  :help        this text
  :quit        leave (or Ctrl-D)
Ctrl-C cancels the current input or interrupts a running evaluation
(twice: quit, for a loop inside compiled library code).
History is kept in ~/.tycho_history.]]

local function print_results(n, ...)
  for i = 1, n do
    print(pretty.format((select(i, ...))))
  end
end

-- Compiles src as an expression first (so `1 + 1` prints 2), then as a
-- statement. Returns fn, or nil plus "incomplete" or the syntax error.
local function compile(src)
  local fn, err = loadstring("return " .. src, "=stdin")
  if not fn then fn, err = loadstring(src, "=stdin") end
  if fn then
    -- Typed code stays interpreted so that Ctrl-C's hook can stop its loops;
    -- library code it calls is still compiled.
    jit.off(fn, true)
    return fn
  end
  if err:find("'<eof>'$") then return nil, "incomplete" end
  return nil, err
end

local function run_chunk(fn)
  local function report(ok, ...)
    if ok then
      print_results(select("#", ...), ...)
    else
      print((...))
    end
  end
  report(internal.interruptible(fn))
end

-- Tab: the candidates for the word under the cursor. "tycho.mo" offers
-- the fields of tycho starting with "mo"; "df:des" the methods of df. Only
-- field lookups run (no calls), so completing never runs user code.
-- Inside a string: the names of the home's registered models and feature
-- views (what reg:load("..."), models.load or fs:online take).
local function home_names(word)
  local out, seen = {}, {}
  local function add(name)
    if type(name) == "string" and name:sub(1, #word) == word and not seen[name] then
      seen[name] = true
      out[#out + 1] = name
    end
  end
  local reg = require("tycho.registry").open()
  for _, m in ipairs(reg and reg:list() or {}) do add(m.name) end
  local fs = require("tycho.features").open()
  for _, v in ipairs(fs and fs:list() or {}) do add(v.name) end
  table.sort(out)
  return out
end

local function complete(word, line)
  local before = line and line:sub(1, #line - #word) or ""
  if before:match("[\"']$") then
    local ok, names = pcall(home_names, word)
    return ok and names or {}
  end
  local path, sep, partial = word:match("^(.-)([%.:])([%w_]*)$")
  local target
  if not path then
    target, partial, path, sep = _G, word, "", ""
  else
    target = _G
    for part in path:gmatch("[^%.:]+") do
      if type(target) ~= "table" and type(target) ~= "string" then return {} end
      local ok, v = pcall(function() return target[part] end)
      if not ok then return {} end
      target = v
    end
  end
  local out = {}
  for _, name in ipairs(doc.names(target)) do
    if name:sub(1, #partial) == partial then
      local ok, v = pcall(function() return target[name] end)
      if sep ~= ":" or (ok and type(v) == "function") then out[#out + 1] = path .. sep .. name end
    end
  end
  return out
end

--- help(x): the documentation of a function or module, printed.
local function help(v)
  print(doc.help(v))
end

local function command(line)
  local name = line:match("^:(%a+)")
  if name == "help" then print(HELP)
  elseif name == "quit" or name == "q" then return "quit"
  else print("unknown command " .. line .. " (try :help)") end
end

--- Runs the read-eval-print loop until Ctrl-D or :quit.
function M.run()
  _G.tycho = require "tycho"
  _G.help = help
  local home = os.getenv("HOME")
  local history = home and (home .. "/.tycho_history")
  if history then internal.history_load(history) end
  print(string.format("tycho %s — %s. :help for help, Ctrl-D to quit.", internal.version, jit.version))
  local buffer
  while true do
    local line = internal.readline(buffer and CONTINUE or PROMPT, complete)
    if line == nil then break end
    if line == false then
      buffer = nil
    elseif not buffer and line:match("^%s*%?") then
      local fn, err = compile(line:match("^%s*%?(.*)$"))
      if fn then
        local ok, v = internal.interruptible(fn)
        if ok then help(v) else print(v) end
      else
        print(err)
      end
    elseif not buffer and line:match("^%s*:") then
      if command(line:match("^%s*(.-)%s*$")) == "quit" then break end
    elseif buffer or line:match("%S") then
      local src = buffer and (buffer .. "\n" .. line) or line
      local fn, err = compile(src)
      if err == "incomplete" then
        buffer = src
      else
        buffer = nil
        if history then
          internal.history_add(src)
          internal.history_append(history, 1000)
        end
        if fn then run_chunk(fn) else print(err) end
      end
    end
  end
  return 0
end

return M
