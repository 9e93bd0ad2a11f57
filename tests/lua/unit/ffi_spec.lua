-- The one C boundary: only lua/tycho/core/ declares C (ffi.cdef) or reaches
-- ffi.C, and every declaration there matches the C core: each tz_ function
-- resolves in the binary with the header's return and argument types, and
-- each struct layout Lua reads (ffi.sizeof / ffi.offsetof) is the one the C
-- compiler gives. A header change that Lua did not follow fails here, not
-- as corrupted memory in production.
local ffi = require "ffi"
local internal = require "tycho.internal"

local LUA_DIR = internal.lua_dir .. "/tycho"
local CORE_C = internal.lua_dir .. "/../core"

local function read(path) return assert(io.open(path)):read("*a") end

local function lines_of(cmd)
  local p = assert(io.popen(cmd))
  local out = {}
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

local function strip_comments(src)
  return (src:gsub("/%*.-%*/", " "):gsub("//[^\n]*", " "):gsub("\n%s*#[^\n]*", "\n"))
end

local function squash(s)
  s = s:gsub("%s+", " "):gsub("%s*%*%s*", "*"):gsub("%s*([%(%),])%s*", "%1")
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

local TYPE_WORDS = { void = true, char = true, short = true, int = true, long = true, float = true, double = true,
                     signed = true, unsigned = true, const = true, volatile = true, struct = true }

local function is_type_word(w)
  return TYPE_WORDS[w] or w:match("_t$") or w:match("^tz_") or w:match("^MDB_") or w:match("^uv_")
end

-- Splits at the commas outside parentheses.
local function split_params(s)
  local out, depth, start = {}, 0, 1
  for i = 1, #s do
    local c = s:sub(i, i)
    if c == "(" then depth = depth + 1 elseif c == ")" then depth = depth - 1
    elseif c == "," and depth == 0 then out[#out + 1] = s:sub(start, i - 1) start = i + 1 end
  end
  out[#out + 1] = s:sub(start)
  return out
end

-- A parameter's type: its name (if any) left out.
local function param_type(p)
  p = squash(p)
  if p:find("%(%*") then return (p:gsub("%(%*[%w_]*%)", "(*)")) end
  local body, last = p:match("^(.-)([%a_][%w_]*)$")
  if last and body ~= "" and not is_type_word(last) then p = body end
  return squash(p)
end

local function signature(ret, params)
  local types = {}
  for _, p in ipairs(split_params(params)) do types[#types + 1] = param_type(p) end
  local args = table.concat(types, ",")
  if args == "void" then args = "" end
  ret = squash((ret:gsub("^%s*static%s+", ""):gsub("^%s*inline%s+", ""):gsub("^%s*extern%s+", "")))
  return ret .. "(" .. args .. ")"
end

-- The text of the balanced parentheses starting at i (exclusive), and the index after.
local function balanced(s, i)
  local depth = 0
  for j = i, #s do
    local c = s:sub(j, j)
    if c == "(" then depth = depth + 1
    elseif c == ")" then
      depth = depth - 1
      if depth == 0 then return s:sub(i + 1, j - 1), j + 1 end
    end
  end
end

-- Function declarations of a C text: name -> signature.
local function functions_of(text)
  local out = {}
  text = strip_comments(text)
  for start, name, open in text:gmatch("()([%a_][%w_]*)%s*()%(") do
    local params, after = balanced(text, open)
    local stmt_start = 1
    for k = start - 1, 1, -1 do
      local c = text:sub(k, k)
      if c == ";" or c == "{" or c == "}" then stmt_start = k + 1 break end
    end
    local ret = text:sub(stmt_start, start - 1)
    local tail = params and text:match("^%s*([;{])", after)
    if tail and ret:match("[%w_%*]%s*$") and not ret:find("[=%(%)]") and not ret:match("^%s*typedef")
       and not ret:match("^%s*return") then
      out[name] = signature(ret, params)
    end
  end
  return out
end

-- Struct bodies declared in a cdef block: name -> list of field names.
local function structs_of(block)
  local out = {}
  for body, name in strip_comments(block):gmatch("typedef%s+struct%s+[%w_]*%s*(%b{})%s*([%w_]+)%s*;") do
    local fields = {}
    for decl in body:sub(2, -2):gmatch("[^;]+") do
      decl = decl:gsub("%b[]", "")
      if decl:find("%(%*") then
        fields[#fields + 1] = decl:match("%(%*%s*([%w_]+)%s*%)")
      else
        -- "size_t n_rows, n_cols": each declarator's name ends its part.
        for part in decl:gmatch("[^,]+") do fields[#fields + 1] = part:match("([%w_]+)%s*$") end
      end
    end
    out[name] = fields
  end
  return out
end

local function lua_files()
  return lines_of("find " .. LUA_DIR .. " -name '*.lua' | sort")
end

describe("the C boundary", function()
  local cdefs, lua_functions, lua_structs = {}, {}, {}
  setup(function()
    for _, file in ipairs(lua_files()) do
      if file:find("/tycho/core/", 1, true) then
        local src = read(file)
        require("tycho.core." .. file:match("([%w_]+)%.lua$"))
        for block in src:gmatch("ffi%.cdef%s*%[(%b[])%]") do
          cdefs[#cdefs + 1] = { file = file, text = block:sub(2, -2) }
          for name, sig in pairs(functions_of(block:sub(2, -2))) do lua_functions[name] = { sig = sig, file = file } end
          for name, fields in pairs(structs_of(block:sub(2, -2))) do lua_structs[name] = fields end
        end
      end
    end
  end)

  it("is crossed only in lua/tycho/core/", function()
    local outside = {}
    for _, file in ipairs(lua_files()) do
      if not file:find("/tycho/core/", 1, true) then
        local src = read(file)
        -- Nor a C function by its tz_ name through some namespace the
        -- core handed out: the faces export Lua names.
        if src:find("ffi%.cdef") or src:find("ffi%.C[^%w_]") or src:find("[%w_%]]%.tz_[%w_]") then
          outside[#outside + 1] = file
        end
      end
    end
    assert.same({}, outside)
  end)

  it("declares only functions the binary exports", function()
    local n = 0
    for name, f in pairs(lua_functions) do
      assert(pcall(function() return ffi.C[name] end), name .. " (declared in " .. f.file .. ") is not in the binary")
      n = n + 1
    end
    assert.is_true(n >= 120, "found only " .. n .. " declarations")
  end)

  it("declares every tz_ function with its header's return and argument types", function()
    local headers = {}
    for _, h in ipairs(lines_of("find " .. CORE_C .. " -name 'tz_*.h' | sort")) do
      for name, sig in pairs(functions_of(read(h))) do headers[name] = { sig = sig, file = h } end
    end
    local checked, wrong = 0, {}
    for name, f in pairs(lua_functions) do
      if name:match("^tz_") then
        local h = headers[name]
        if not h then
          wrong[#wrong + 1] = name .. ": declared in " .. f.file .. " but in no core header"
        elseif h.sig ~= f.sig then
          wrong[#wrong + 1] = name .. ": Lua " .. f.sig .. " vs header " .. h.sig
        end
        checked = checked + 1
      end
    end
    assert.same({}, wrong)
    assert.is_true(checked >= 120, "checked only " .. checked)
  end)

  it("lays out every struct Lua reads as the C compiler does", function()
    local names = {}
    for name in pairs(lua_structs) do names[#names + 1] = name end
    table.sort(names)
    assert.is_true(#names >= 15, "found only " .. #names .. " structs")
    local src = { "#include <stddef.h>", "#include <stdio.h>" }
    -- The plain C modules' headers (core/lua and core/runtime need lua.h).
    for _, h in ipairs(lines_of("cd " .. CORE_C .. " && find ./util ./store ./frame ./kernels ./io -name 'tz_*.h' | sort")) do
      src[#src + 1] = '#include "' .. h:sub(3) .. '"'
    end
    src[#src + 1] = "int main(void) {"
    for _, name in ipairs(names) do
      src[#src + 1] = string.format('  printf("%s %%zu\\n", sizeof(%s));', name, name)
      for _, field in ipairs(lua_structs[name]) do
        src[#src + 1] = string.format('  printf("%s.%s %%zu\\n", offsetof(%s, %s));', name, field, name, field)
      end
    end
    src[#src + 1] = "  return 0;\n}"
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    local c = dir .. "/layout.c"
    local f = assert(io.open(c, "w"))
    f:write(table.concat(src, "\n"))
    f:close()
    local cc = os.getenv("CC") or "cc"
    local built = os.execute(string.format("%s -std=gnu11 -I%s -o %s/layout %s 2>%s/cc.log", cc, CORE_C, dir, c, dir))
    local log = read(dir .. "/cc.log")
    assert.equal(0, built, "the layout probe did not compile:\n" .. log)
    local wrong = {}
    for _, line in ipairs(lines_of(dir .. "/layout")) do
      local what, n = line:match("^(%S+) (%d+)$")
      local struct, field = what:match("^([%w_]+)%.([%w_]+)$")
      local lua_n = field and ffi.offsetof(struct, field) or ffi.sizeof(what)
      if lua_n ~= tonumber(n) then wrong[#wrong + 1] = what .. ": Lua " .. tostring(lua_n) .. ", C " .. n end
    end
    os.execute("rm -rf " .. dir)
    assert.same({}, wrong)
  end)
end)
