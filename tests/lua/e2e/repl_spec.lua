-- `tycho repl` through a real pseudo-terminal: tmux runs it, send-keys types,
-- capture-pane reads the screen.
local testing = require "tycho.testing"

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("*a")
  p:close()
  return out
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

describe("tycho repl in a terminal", function()
  local home, sock, screen_before
  local function tmux(args) return sh("tmux -L " .. sock .. " " .. args) end
  local function screen() return tmux("capture-pane -p -t repl -S -200") end
  local function type_line(text) tmux("send-keys -t repl -l " .. q(text)) tmux("send-keys -t repl Enter") end
  local function key(k) tmux("send-keys -t repl " .. k) end
  local function count(text, pattern)
    local n, pos = 0, 1
    while true do
      local s, e = text:find(pattern, pos, true)
      if not s then return n end
      n, pos = n + 1, e + 1
    end
  end
  -- Waits until `pattern` (plain text) appears once more than it did at the
  -- previous expectation.
  local function expect(pattern, timeout_ms)
    local before = count(screen_before, pattern)
    local found = testing.run_until(function() return count(screen(), pattern) > before end, timeout_ms or 5000)
    assert(found, "expected '" .. pattern .. "' on the screen:\n" .. screen())
    screen_before = screen()
  end

  setup(function()
    home = testing.tmpdir()
    sock = "tycho-spec-" .. require("luv").os_getpid()
    tmux(string.format("new-session -d -s repl -x 120 -y 50 'env HOME=%s TYCHO_HOME=%s/home %s repl; sleep 30'",
      home, home, testing.exe))
    screen_before = ""
    expect("tycho>")
  end)
  teardown(function()
    tmux("kill-server")
    testing.rmrf(home)
  end)

  it("prints the value of an expression", function()
    type_line("1 + 41")
    expect("42")
  end)

  it("continues an unfinished chunk on a `..` prompt", function()
    type_line("function double(x)")
    expect("..")
    type_line("  return x * 2")
    type_line("end")
    type_line("double(21.5)")
    expect("43")
  end)

  it("pretty-prints nested tables and cycles", function()
    type_line("t = { name = 'ada', tags = { 'x', 'y' } }; t.me = t")
    type_line("t")
    expect('name = "ada"')
    assert.matches("me = <cycle>", screen(), 1, true)
  end)

  it("shows errors and stays alive", function()
    type_line("error('kaboom')")
    expect("kaboom")
    type_line("local x = = 1")
    expect("unexpected symbol")
    type_line("'still here'")
    expect('"still here"')
  end)

  it("has the tycho module loaded", function()
    type_line("tycho.version")
    expect('"' .. require("tycho").version .. '"')
  end)

  it("completes names, fields and methods with Tab (issue 21)", function()
    tmux("send-keys -t repl -l " .. q("tycho.mo"))
    key("Tab")
    key("Tab")
    expect("tycho.models")
    assert.matches("tycho.monitor", screen(), 1, true)
    key("C-u")
    type_line("df = tycho.frame.new({ a = { 1, 2, 3 } })")
    tmux("send-keys -t repl -l " .. q("df:des"))
    key("Tab")
    type_line("()")
    expect("p25")  -- df:describe() ran
  end)

  it("completes model and view names inside a string", function()
    type_line("fs = tycho.features.open(); fs:entity { name = 'u', join_key = 'uid' }; "
      .. "fs:feature_view { name = 'clicks_daily', entity = 'u', schema = { n = 'int' } }")
    tmux("send-keys -t repl -l " .. q("fs:view('clicks_d"))
    key("Tab")
    type_line("').name")
    expect('"clicks_daily"')
  end)

  it("shows documentation with help(x) and ?x, and every module with `tycho`", function()
    type_line("help(tycho.models.gbt)")
    expect("function M.gbt(opts)")
    assert.matches("early_stopping_rounds", screen(), 1, true)
    type_line("?tycho.tune.bayes")
    expect("Bayesian optimisation")
    type_line("tycho")
    expect("registry     The model registry")
    type_line("tycho.json.null")
    expect("\nnull")
  end)

  it("shows progress during a tune on the terminal", function()
    type_line("f = tycho.frame.new({ x = { 1, 2, 3, 4, 5, 6, 7, 8 }, y = { 0, 1, 0, 1, 0, 1, 0, 1 } })")
    type_line("r = tycho.tune.random { model = function(p) return tycho.models.gbt { rounds = p.r } end, "
      .. "space = { r = { 2, 3, 4 } }, data = f, label = 'y', metric = 'accuracy', holdout = 0.5, trials = 3 }")
    expect("tune: trial 3/3, best accuracy")
  end)

  it("cancels the current input on Ctrl-C", function()
    type_line("for i = 1, 3 do")
    expect("..")
    key("C-c")
    expect("^C")
    type_line("'fresh prompt'")
    expect('"fresh prompt"')
  end)

  it("interrupts a running evaluation on Ctrl-C", function()
    type_line("io.write('spin' .. 'ning\\n') io.flush() while true do end")
    expect("spinning")  -- the loop has started
    key("C-c")
    expect("interrupted")
    type_line("'alive'")
    expect('"alive"')
  end)

  it("shows :help", function()
    type_line(":help")
    expect("Ctrl-C cancels")
  end)

  it("recalls history with the up arrow and keeps it in ~/.tycho_history", function()
    type_line("100 + 23")
    expect("123")
    key("Up")
    key("Enter")
    expect("123")
    local f = assert(io.open(home .. "/.tycho_history"))
    local history = f:read("*a")
    f:close()
    assert.matches("100 + 23", history, 1, true)
    assert.matches("function double(x)\n  return x * 2\nend", history, 1, true)
  end)

  it("exits on Ctrl-D", function()
    key("C-d")
    -- The pane's shell goes on to `sleep` once the REPL has exited.
    local gone = testing.run_until(function()
      return tmux("list-panes -t repl -F '#{pane_current_command}'"):match("sleep") ~= nil
    end, 5000)
    assert.is_true(gone)
  end)
end)
