--- Documentation from the source: the `---` comment above a function (and
-- the line that defines it), or the comment at the head of a module. What
-- `help(x)` and `?x` print in the REPL, and what the README's API reference
-- is checked against, so the two cannot drift.
local M = {}

local file_cache = {}

local function lines_of(path)
  local cached = file_cache[path]
  if cached then return cached end
  local f = io.open(path)
  if not f then return nil end
  local lines = {}
  for l in f:lines() do lines[#lines + 1] = l end
  f:close()
  file_cache[path] = lines
  return lines
end

local function strip(comment) return (comment:gsub("^%s*%-%-%-?%s?", "")) end

--- The comment block that ends right above line n of a file, as text
-- (without the dashes), or nil.
local function comment_above(lines, n)
  local first = n
  while first > 1 and lines[first - 1]:match("^%s*%-%-") do first = first - 1 end
  if first == n then return nil end
  local out = {}
  for i = first, n - 1 do out[#out + 1] = strip(lines[i]) end
  return table.concat(out, "\n")
end

--- The module name a loaded table is known by (the shortest), or nil.
function M.module_name(t)
  local best
  for name, mod in pairs(package.loaded) do
    if mod == t and type(name) == "string" and (not best or #name < #best) then best = name end
  end
  return best
end

local function module_doc(name)
  local path = package.searchpath(name, package.path)
  local lines = path and lines_of(path)
  if not lines then return nil end
  local out = {}
  for _, l in ipairs(lines) do
    if not l:match("^%-%-") then break end
    out[#out + 1] = strip(l)
  end
  return #out > 0 and table.concat(out, "\n") or nil
end

--- The first line of module `name`'s head comment (without loading it), or "".
function M.first_line(name)
  local text = module_doc(name)
  return text and text:match("^[^\n]*"):gsub("%.%s*$", "") or ""
end

-- Functions made by other functions (a wrapper, a generated method) and
-- the function whose documentation they carry, or their own text.
local documented_as = setmetatable({}, { __mode = "k" })

--- Declares that fn is documented by `like` (a function whose comment
-- applies: the one fn wraps) or by the text `like`. Returns fn.
function M.same_as(fn, like)
  documented_as[fn] = like
  return fn
end

--- The function's definition line and its doc comment, or nil when it has
-- none (a C function, or one defined without a comment).
function M.of_function(fn)
  local like = documented_as[fn]
  if type(like) == "function" then return M.of_function(like) end
  if type(like) == "string" then return like:match("^[^\n]*") .. "\n\n" .. like:gsub("^[^\n]*\n?", ""),
    like:match("^[^\n]*") end
  local info = debug.getinfo(fn, "S")
  if info.what ~= "Lua" or info.source:sub(1, 1) ~= "@" then return nil end
  local lines = lines_of(info.source:sub(2))
  if not lines or not lines[info.linedefined] then return nil end
  local comment = comment_above(lines, info.linedefined)
  local signature = lines[info.linedefined]:match("^%s*(.-)%s*$")
  return comment and (signature .. "\n\n" .. comment) or nil, signature
end

--- Help text for any value: a function's doc comment, a module's head
-- comment and its public names, or what the value is.
function M.help(v)
  if type(v) == "function" then
    local text, signature = M.of_function(v)
    return text or ((signature or "a C function") .. "\n\n(no documentation)")
  end
  if type(v) == "table" then
    local mt = getmetatable(v)
    local name = M.module_name(v)
    local parts = {}
    if name then parts[#parts + 1] = (module_doc(name) or ("module " .. name)) end
    if not name and mt and type(mt.__call) == "function" then parts[#parts + 1] = M.help(mt.__call) end
    local names = M.names(v)
    if #names > 0 then parts[#parts + 1] = "fields: " .. table.concat(names, ", ") end
    if #parts == 0 then return "a table" end
    return table.concat(parts, "\n\n")
  end
  return type(v) .. ": " .. tostring(v)
end

--- The names a value offers: its own string keys, those of the tables its
-- metatable's __index chain leads to (methods), and a module's lazily
-- loaded submodules (`names()`), sorted.
function M.names(v)
  local seen, out = {}, {}
  local function add(k)
    if type(k) == "string" and not seen[k] and k:match("^[%a_][%w_]*$") then
      seen[k] = true
      out[#out + 1] = k
    end
  end
  local t, depth = v, 0
  while type(t) == "table" and depth < 8 do
    for k in pairs(t) do add(k) end
    local mt = getmetatable(t)
    if mt and type(mt.__names) == "function" then for _, k in ipairs(mt.__names()) do add(k) end end
    t = mt and type(mt.__index) == "table" and mt.__index or nil
    depth = depth + 1
  end
  if type(v) == "string" then for k in pairs(string) do add(k) end end
  table.sort(out)
  return out
end

return M
