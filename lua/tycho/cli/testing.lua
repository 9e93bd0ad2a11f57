--- `tycho test`: busted inside the runtime, and helpers for specs that need
-- a temporary home, a child tycho process or a live server on loopback.
local internal = require "tycho.internal"
local uv = require "luv"

local M = {}

--- Entry of `tycho test [PATHS] [BUSTED OPTIONS]` (default path: tests/lua).
function M.main(...)
  local args, has_path = { ... }, false
  for _, a in ipairs(args) do
    if a:sub(1, 1) ~= "-" then has_path = true end
  end
  if not has_path then args[#args + 1] = "tests/lua" end
  _G.arg = { [0] = "tycho test" }
  for i, a in ipairs(args) do _G.arg[i] = a end
  -- busted exits with its status; on failures under Lua 5.1 it raises a
  -- nil error instead, which means exit 1 with nothing more to say.
  local ok, err = pcall(require("busted.runner"), { standalone = false })
  M.stop_servers()
  if ok then return 0 end
  if err == nil then return 1 end
  error(err, 0)
end

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- A new empty directory under /tmp; removed by M.rmrf(path).
function M.tmpdir()
  return assert(uv.fs_mkdtemp("/tmp/tycho-spec-XXXXXX"))
end

function M.rmrf(path)
  assert(path:match("^/tmp/tycho%-spec%-"), "rmrf only removes spec directories")
  os.execute("rm -rf " .. shell_quote(path))
end

--- Writes text to path (creating it) and returns path.
function M.write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

--- What Prometheus's linter (promtool, Debian's prometheus package) says of
-- a metrics text: its output, ending "rc=N" with its exit status.
function M.promtool_check(text)
  local path = os.tmpname()
  M.write(path, text)
  local p = io.popen("promtool check metrics < '" .. path .. "' 2>&1; echo rc=$?")
  local verdict = p:read("*a")
  p:close()
  os.remove(path)
  return verdict
end

--- The tycho binary running these specs.
M.exe = internal.exe

local function collect(pipe, into)
  pipe:read_start(function(_, data)
    if data then into[#into + 1] = data else pipe:close() end
  end)
end

--- Starts `tycho ARGS...` as a child. opts: env (list "K=V"), cwd, stdin
-- (string). Returns a process table with pid, stdout/stderr (lists of chunks)
-- and :wait(timeout_ms) -> exit code, signal.
function M.spawn(args, opts)
  opts = opts or {}
  local stdin, stdout, stderr = uv.new_pipe(false), uv.new_pipe(false), uv.new_pipe(false)
  local p = { out = {}, err = {} }
  local env = opts.env
  if env then
    -- luv replaces the environment: keep the parent's too.
    local full = {}
    for _, kv in ipairs(env) do full[#full + 1] = kv end
    for _, k in ipairs { "PATH", "HOME", "LANG", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS" } do
      local v = os.getenv(k)
      if v then full[#full + 1] = k .. "=" .. v end
    end
    env = full
  end
  local handle, pid = uv.spawn(M.exe, { args = args, stdio = { stdin, stdout, stderr }, cwd = opts.cwd, env = env },
    function(code, signal)
      p.code, p.signal = code, signal
    end)
  assert(handle, pid)
  p.handle, p.pid = handle, pid
  collect(stdout, p.out)
  collect(stderr, p.err)
  if opts.stdin then stdin:write(opts.stdin) end
  stdin:shutdown(function() stdin:close() end)
  function p.stdout() return table.concat(p.out) end
  function p.stderr() return table.concat(p.err) end
  function p.wait(_, timeout_ms)
    M.run_until(function() return p.code ~= nil end, timeout_ms or 30000)
    if p.code == nil then
      uv.process_kill(handle, "sigkill")
      M.run_until(function() return p.code ~= nil end, 5000)
      error("child tycho did not exit in time: " .. table.concat(args, " ") .. "\n" .. p.stderr())
    end
    M.run_until(function() return stdout:is_closing() and stderr:is_closing() end, 2000)
    if not handle:is_closing() then handle:close() end
    return p.code, p.signal
  end
  function p.kill(_, sig) return uv.process_kill(handle, sig or "sigterm") end
  return p
end

--- Runs `tycho ARGS...` to completion: code, stdout, stderr.
function M.run(args, opts)
  local p = M.spawn(args, opts)
  local code = p:wait(opts and opts.timeout)
  return code, p.stdout(), p.stderr()
end

--- Turns the loop until done() is true or timeout_ms passes; returns what
-- done() said last.
function M.run_until(done, timeout_ms)
  -- The loop's clock stands still while Lua computes: after a long fit it
  -- is seconds behind, and a timer started from it would fire at once.
  uv.update_time()
  local timer = uv.new_timer()
  local expired = false
  timer:start(timeout_ms, 0, function() expired = true end)
  local tick = uv.new_timer()
  tick:start(5, 5, function() end)  -- wakes the loop to re-check done()
  -- What done() said last is the answer: checking once more after it held
  -- would fail a condition that flickers (one of two workers caught up).
  local ok = done()
  while not ok and not expired do
    uv.run("once")
    ok = done()
  end
  timer:close()
  tick:close()
  uv.run("nowait")
  return ok
end

--- The PIDs of a process's children, sorted (a server's workers).
function M.children(pid)
  local p = io.popen("pgrep -P " .. pid)
  local pids = {}
  for line in p:lines() do pids[#pids + 1] = tonumber(line) end
  p:close()
  table.sort(pids)
  return pids
end

--- A free TCP port on 127.0.0.1.
function M.free_port()
  return assert(internal.http_probe("127.0.0.1", 0))
end

--- Sends raw bytes to 127.0.0.1:port and returns everything read until the
-- server closes or timeout_ms passes (plus "timeout" as second value), or
-- until stop(text) is true.
function M.raw(port, bytes, timeout_ms, stop)
  local tcp = uv.new_tcp()
  local got, closed, failed = {}, false, nil
  tcp:connect("127.0.0.1", port, function(err)
    if err then failed, closed = err, true return end
    tcp:write(bytes)
    tcp:read_start(function(rerr, data)
      if data then
        got[#got + 1] = data
        if stop and stop(table.concat(got)) then closed = true end
      else
        closed = true
      end
      if rerr then failed = rerr end
    end)
  end)
  local done = M.run_until(function() return closed end, timeout_ms or 5000)
  if not tcp:is_closing() then tcp:close() end
  uv.run("nowait")
  if failed and #got == 0 then return nil, failed end
  return table.concat(got), (not done) and "timeout" or nil
end

--- Sends bytes to 127.0.0.1:port and, wait_ms after they are written,
-- closes without reading a byte of the answer: a client that hangs up.
function M.hang_up(port, bytes, wait_ms)
  local tcp = uv.new_tcp()
  local done = false
  tcp:connect("127.0.0.1", port, function(err)
    if err then done = true return end
    tcp:write(bytes, function()
      local t = uv.new_timer()
      t:start(wait_ms or 5, 0, function() t:close() tcp:close() done = true end)
    end)
  end)
  M.run_until(function() return done end, 5000)
end

--- Parses one HTTP response: status, headers (lower-case names), body.
function M.parse_response(text)
  if not text then return nil end
  local head, body = text:match("^(.-)\r\n\r\n(.*)$")
  if not head then return nil end
  local status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
  local headers = {}
  for k, v in head:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]*)") do headers[k:lower()] = v end
  local len = tonumber(headers["content-length"])
  if len then body = body:sub(1, len) end
  return status, headers, body
end

--- One request on a fresh connection: status, headers, body (and the body
-- decoded as JSON when it is JSON).
function M.request(port, method, path, opts)
  opts = opts or {}
  local body = opts.body or ""
  if type(body) == "table" then body = require("tycho.util.json").encode(body) end
  local lines = { string.format("%s %s HTTP/1.1", method, path), "Host: 127.0.0.1", "Connection: close",
                  "Content-Length: " .. #body }
  for k, v in pairs(opts.headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  local text = M.raw(port, table.concat(lines, "\r\n") .. "\r\n\r\n" .. body, opts.timeout)
  local status, headers, rbody = M.parse_response(text)
  local decoded = rbody and require("tycho.util.json").decode(rbody)
  return status, headers, rbody, decoded
end

-- Servers started by specs: a spec that fails before stopping its server
-- must not leave it running after the run.
local servers = {}

function M.stop_servers()
  for proc in pairs(servers) do
    if proc.code == nil then proc:kill("sigkill") end
    servers[proc] = nil
  end
end

--- Starts `tycho serve app` on a free port and waits until it is ready.
-- app: the app file, or a list of arguments ({"--model", "spam"}).
-- Returns a server table: port, proc, and :stop() -> exit code.
function M.serve(app, extra_args, opts)
  local port = M.free_port()
  local args = { "serve" }
  for _, a in ipairs(type(app) == "table" and app or { app }) do args[#args + 1] = a end
  args[#args + 1], args[#args + 2] = "--port", tostring(port)
  for _, a in ipairs(extra_args or {}) do args[#args + 1] = a end
  local proc = M.spawn(args, opts)
  servers[proc] = true
  local ready = M.run_until(function()
    if proc.code then return true end
    return M.request(port, "GET", "/v2/health/ready", { timeout = 500 }) == 200
  end, 15000)
  if not ready or proc.code then
    -- A server that never got ready is stopped here, not left behind.
    if proc.code == nil then
      proc:kill("sigterm")  -- the master stops its workers
      if proc:wait(5000) == nil then proc:kill("sigkill") end
    end
    servers[proc] = nil
    error("tycho serve did not start: " .. proc.stderr() .. proc.stdout())
  end
  local srv = { port = port, proc = proc }
  function srv.stop(_, sig)
    proc:kill(sig or "sigterm")
    return proc:wait(15000)
  end
  return srv
end

return M
