-- luacheck configuration (Debian's lua-check): LuaJIT globals, busted specs.
std = "luajit"
max_line_length = 132
exclude_files = { "build", "build-*" }
files["tests/lua"] = { std = "+busted" }
-- Benchmarks drop references on purpose (x = nil) to free memory between runs.
files["bench"] = { ignore = { "211", "311" } }
-- A deliberately broken script, for the syntax-error test.
exclude_files[#exclude_files + 1] = "tests/lua/fixtures/syntax_error.lua"
-- FFI declarations are long C lines inside strings.
max_string_line_length = false
-- wrk's request scripts set fields of its global `wrk`.
files["bench/features/post.lua"] = { globals = { "wrk" } }
-- wrk calls a global done(summary, latency, requests) at the end of a run.
files["bench/serve/post.lua"] = { globals = { "wrk", "done", "request" }, unused_args = false }
-- bench/serve/experiment_run's wrk script: wrk's callbacks, the per-thread
-- counters done() reads back with thread:get, and tid (set by setup()).
files["bench/serve/experiment_post.lua"] = {
  globals = { "wrk", "setup", "init", "request", "response", "done", "predicts", "feedbacks", "accepted", "duplicate",
              "pending" },
  read_globals = { "tid" }, unused_args = false }
