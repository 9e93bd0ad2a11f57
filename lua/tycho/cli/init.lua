--- The commands written in Lua (core/runtime/main.c dispatches here): score,
-- experiments and monitor here; features, models, runs and completion in
-- their own files.
local M = {}

local function usage(text)
  io.stderr:write(text, "\n")
  return 2
end


local out = require "tycho.cli.output"
local options = out.options

--- `tycho features ...` (cli/features.lua).
function M.features(...) return require("tycho.cli.features").main(...) end

local function fail(msg, cmd)
  io.stderr:write(cmd or "tycho models", ": ", msg, "\n")
  return 1
end


-- ---- batch scoring ---------------------------------------------------------------------

local function is_terminal() return require("luv").guess_handle(2) == "tty" end

-- The row path of `tycho score`: each row assembled as serving does it
-- (an entity key fetches its online features) and predicted alone. The
-- scored frame, the skipped rows and the count scored; or nil, message.
local function score_rows(version, input, fill)
  local frame, serving = require "tycho.core.frame", require "tycho.serve.hosted"
  local n, out_rows, skipped, tty = input:nrows(), {}, {}, is_terminal()
  local now = require("tycho.util.timeutil").now()
  for r = 1, n do
    local inst = input:row(r)
    local row, missing = serving.assemble(version, inst, now)
    if missing and not fill then
      skipped[#skipped + 1] = r
    else
      local pred, perr = version.pipe:predict(row)
      if not pred then
        local message = "row " .. r .. ": " .. tostring(perr)
        return nil, message
      end
      for k, v in pairs(pred) do inst[k] = v end
      out_rows[#out_rows + 1] = inst
    end
    if tty and (r % 500 == 0 or r == n) then io.stderr:write(string.format("\rscored %d/%d", r, n)) end
  end
  if tty then io.stderr:write("\n") end
  if #out_rows == 0 then return input:head(0), skipped, 0 end
  local order = input:names()
  order[#order + 1] = "prediction"
  if out_rows[1].probability ~= nil then order[#order + 1] = "probability" end
  return frame.from_rows(out_rows, { order = order }), skipped, #out_rows
end

-- What the CSV stream of `tycho score` says when done (serve/hosted.lua's
-- score_csv): the records refused and the rows skipped on stderr, by line,
-- then the summary (on stderr too when the rows went to stdout).
local function streamed_summary(result, name, version, ref, output)
  local function lines_of(list, line_of)
    local first = {}
    for i = 1, math.min(5, #list) do first[i] = line_of(list[i]) end
    return table.concat(first, ", ")
  end
  local function count(n, what) return n .. " " .. what .. (n == 1 and "" or "s") end
  if result.n_refused > 0 then
    io.stderr:write(string.format("tycho score: refused %s (%s%s)\n", count(result.n_refused, "record"),
      lines_of(result.refused, function(is)
        return string.format("line %d%s: %s", is.line, is.column > 0 and (", field " .. is.column) or "", is.message)
      end), result.n_refused > 5 and "; ..." or ""))
  end
  if result.n_skipped > 0 then
    io.stderr:write(string.format("tycho score: skipped %s with missing inputs (an empty field; %s %s%s); "
      .. "--missing fill scores them with filled-in values\n", count(result.n_skipped, "row"),
      result.n_skipped == 1 and "line" or "lines", lines_of(result.skipped, tostring),
      result.n_skipped > 5 and ", ..." or ""))
  end
  if result.scored == 0 then return fail("no row could be scored", "tycho score") end
  local to_stdout = output == "-"
  local summary = string.format("scored %d rows with %s %s (%s)%s", result.scored, name, version, ref,
    to_stdout and "" or (" into " .. output))
  if to_stdout then io.stderr:write(summary, "\n") else print(summary) end
  return 0
end

--- `tycho score NAME[@ALIAS|VERSION] --input FILE --output FILE [--to-view VIEW]`:
-- scores a CSV or JSONL file with the registered pipeline (entity keys in a
-- row fetch its online features, as in serving), writes the rows with their
-- prediction (and probability), and with --to-view pushes the predictions
-- into a feature view so the online store serves them by key.
function M.score(target, ...)
  local args = { ... }
  local version_arg = args[1] and args[1]:sub(1, 1) ~= "-" and table.remove(args, 1) or nil
  local opts, code = options("tycho score", args, { ["--input"] = "input", ["--output"] = "output",
                                                     ["--to-view"] = "view", ["--missing"] = "missing" })
  if not opts then return code end
  local to_stdout = opts.output == "-"
  if not target or not opts.input or not (opts.output or opts.view) or
     (opts.missing and opts.missing ~= "skip" and opts.missing ~= "fill") then
    return usage("usage: tycho score NAME[@ALIAS|VERSION] --input FILE (--output FILE | --to-view VIEW) " ..
                 "[--missing skip|fill]")
  end
  local name, ref = target:match("^([^@]+)@?(.*)$")
  if ref == "" then ref = version_arg or "production" end
  local frame, json, serving = require "tycho.core.frame", require "tycho.util.json", require "tycho.serve.hosted"
  local version, err = serving.load_version(name, ref)
  if not version then return fail(err) end
  local jsonl_input = opts.input:match("%.jsonl$") or opts.input:match("%.ndjson$")
  if not jsonl_input and opts.output and not opts.view and not opts.output:match("%.jsonl$") then
    -- On a terminal, a line that counts the rows as the blocks go by.
    local progress = is_terminal() and function(r) io.stderr:write(string.format("\rscored %d rows", r.scored)) end
    local streamed, serr = serving.score_csv(version, opts.input, opts.output, opts.missing == "fill", progress or nil)
    if progress then io.stderr:write("\n") end
    if serr then return fail(serr) end
    if streamed then return streamed_summary(streamed, name, version.version, ref, opts.output) end
  end
  local input, rep
  if jsonl_input then input, rep = frame.read_jsonl(opts.input)
  else input, rep = frame.read_csv(opts.input) end
  if not input then return fail(rep) end
  -- A key with no stored features would be scored as an "average" item by
  -- the fill steps: such rows are skipped and named unless --missing fill.
  local result, skipped = serving.score_frame(version, input, opts.missing == "fill")
  local scored = result and result:nrows()
  if not result then result, skipped, scored = score_rows(version, input, opts.missing == "fill") end
  if not result then return fail(skipped) end
  if #skipped > 0 then
    local first = {}
    for i = 1, math.min(5, #skipped) do first[i] = tostring(skipped[i]) end
    io.stderr:write(string.format("tycho score: skipped %d rows with missing inputs (no stored features for the key,"
      .. " or an empty field; rows %s%s); "
      .. "--missing fill scores them with filled-in values\n", #skipped, table.concat(first, ", "),
      #skipped > 5 and ", ..." or ""))
  end
  if scored == 0 then return fail("no row could be scored", "tycho score") end
  if opts.output then
    local ok, werr
    if to_stdout then
      -- Through a file: stdout may be a pipe or a socket, which a path
      -- like /dev/stdout cannot always reopen.
      local tmp = os.tmpname()
      ok, werr = result:write_csv(tmp)
      local f = ok and io.open(tmp, "rb")
      if f then
        io.stdout:write(f:read("*a"))
        f:close()
      end
      os.remove(tmp)
    elseif opts.output:match("%.jsonl$") then
      local f = io.open(opts.output, "w")
      if not f then return fail("cannot write " .. opts.output) end
      for r = 1, result:nrows() do f:write(json.encode(result:row(r)), "\n") end
      f:close()
      ok = true
    else
      ok, werr = result:write_csv(opts.output)
    end
    if not ok then return fail(werr) end
  end
  if opts.view then
    local fs = assert(require("tycho.features").open())
    local view, verr = fs:view(opts.view)
    if not view then return fail(verr) end
    if not result:has(view.timestamp) then
      local scored_at = os.time()
      result = result:with_column(view.timestamp, function() return scored_at end)
    end
    local report, perr = fs:push(opts.view, result, "online_and_offline")
    if not report then return fail(perr) end
    print(string.format("pushed %d predictions to %s (%d rejected)", report.landed, opts.view, report.rejected))
  end
  -- The summary goes to stderr when the rows themselves go to stdout.
  local summary = string.format("scored %d rows with %s %s (%s)%s", scored, name, version.version, ref,
    opts.output and not to_stdout and (" into " .. opts.output) or "")
  if to_stdout then io.stderr:write(summary, "\n") else print(summary) end
  return 0
end

--- `tycho models ...` (cli/models.lua).
function M.models(...) return require("tycho.cli.models").main(...) end

-- ---- experiments and monitoring -----------------------------------------------------

local experiment_commands = {
  list = function(...)
    local flags, err = out.parse({ ... }, {}, { ["--json"] = true })
    if not flags then return usage("tycho experiments list: " .. err) end
    local list = require("tycho.experiments").list()
    if flags.json then return out.json({ experiments = #list > 0 and list or require("tycho.util.json").empty_array }) end
    if #list == 0 then print("no experiments") return 0 end
    print(string.format("%-24s %-15s %-9s %-14s %-14s %s", "EXPERIMENT", "KIND", "STATUS", "UNIT", "METRIC", "VARIANTS"))
    for _, e in ipairs(list) do
      local names = {}
      for i, v in ipairs(e.variants) do names[i] = v.name .. (v.model and ("=" .. v.model) or "") end
      print(string.format("%-24s %-15s %-9s %-14s %-14s %s", e.name, e.kind, e.status, e.unit, e.metric,
        table.concat(names, " ")))
    end
    return 0
  end,
  show = function(...)
    local flags, positional = out.parse({ ... }, {}, { ["--json"] = true })
    if not flags then return usage("tycho experiments show: " .. positional) end
    local name = positional[1]
    if not name then return usage("usage: tycho experiments show NAME [--json]") end
    local experiments = require "tycho.experiments"
    local e, err = experiments.load(name)
    if not e then return fail(err, "tycho experiments") end
    if flags.json then return out.json(e:results()) end
    print(experiments.format_results(e:results()))
    return 0
  end,
  stop = function(name, ...)
    if not name then return usage("usage: tycho experiments stop NAME [--winner VARIANT]") end
    local opts, code = options("tycho experiments stop", { ... }, { ["--winner"] = "winner" })
    if not opts then return code end
    local e, err = require("tycho.experiments").load(name)
    if not e then return fail(err, "tycho experiments") end
    local rec, serr = e:stop(opts.winner)
    if not rec then return fail(serr, "tycho experiments") end
    print(string.format("stopped %s: every unit gets %s", name, rec.winner))
    return 0
  end,
}

--- `tycho experiments list | show NAME | stop NAME [--winner V]`.
function M.experiments(sub, ...)
  local cmd = experiment_commands[sub or ""]
  if not cmd then return usage("usage: tycho experiments list | show NAME | stop NAME [--winner VARIANT]") end
  return cmd(...)
end

--- `tycho monitor NAME [--window 1h] [--json]`: exit 1 for a model that
-- is not registered; a window is a number with its unit (30s, 15m, 1h, 7d).
function M.monitor(name, ...)
  if not name or name:sub(1, 1) == "-" then return usage("usage: tycho monitor NAME [--window 1h] [--json]") end
  local flags, err = out.parse({ ... }, { ["--window"] = true }, { ["--json"] = true })
  if not flags then return usage("tycho monitor: " .. err) end
  local window = flags.window or "1h"
  local n, unit = window:match("^(%d+%.?%d*)(%a+)$")
  if not n or not ({ ms = true, s = true, m = true, h = true, d = true, w = true })[unit] then
    return usage("tycho monitor: --window is a number with a unit (30s, 15m, 1h, 7d), got '" .. window .. "'")
  end
  local reg, rerr = require("tycho.registry").open()
  if not reg then return fail(rerr, "tycho monitor") end
  local _, merr = reg:versions(name)
  if merr then return fail(merr, "tycho monitor") end
  local monitor = require "tycho.monitor"
  local ok, s = pcall(monitor.summary, name, { window = window })
  if not ok then return fail(tostring(s), "tycho monitor") end
  if flags.json then return out.json(monitor.to_json(s)) end
  print(monitor.format(s))
  return 0
end

--- `tycho runs list | show ID | compare ID ID...` (cli/runs.lua).
function M.runs(...) return require("tycho.cli.runs").main(...) end

--- `tycho completion bash` (cli/completion.lua).
function M.completion(...) return require("tycho.cli.completion").main(...) end

return M
