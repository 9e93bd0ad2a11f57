-- luacheck configuration (Debian's lua-check): LuaJIT globals, busted specs.
std = "luajit"
max_line_length = 120
exclude_files = { "build", "build-*" }
files["tests/lua"] = { std = "+busted" }
files["bench"] = { ignore = { "211" } }
-- A deliberately broken script, for the syntax-error test.
exclude_files[#exclude_files + 1] = "tests/lua/fixtures/syntax_error.lua"
-- FFI declarations are long C lines inside strings.
max_string_line_length = false
