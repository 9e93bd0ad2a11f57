-- Shared by the chaos fixtures: loaded with dofile(dir .. "/common.lua").
local tycho = require "tycho"

local M = {}

--- Writes a line to stdout and flushes it: run.sh reads stdout of a process
-- it kills, and a line there means the step before it has returned.
function M.say(...)
  io.stdout:write(...)
  io.stdout:write("\n")
  io.stdout:flush()
end

--- A small generated binary-classification frame (x1, x2 in [0, 1); y =
-- x1 + x2 > 1), the same for every call.
function M.frame(n)
  n = n or 400
  local seed = 42
  local function rnd()
    seed = seed * 48271 % 2147483647
    return seed / 2147483647
  end
  local x1, x2, y = {}, {}, {}
  for i = 1, n do
    x1[i], x2[i] = rnd(), rnd()
    y[i] = (x1[i] + x2[i] > 1) and 1 or 0
  end
  return tycho.frame.new({ x1 = x1, x2 = x2, y = y }, { types = { y = "int" } })
end

--- A small fitted pipeline (gbt over x1, x2) and its training frame.
function M.pipeline()
  local f = M.frame()
  local pipe = assert(tycho.pipeline { steps = { tycho.step.standardize() }, model = tycho.models.gbt { rounds = 8, depth = 3 } }
    :fit(f, { label = "y", quiet = true }))
  return pipe, f
end

--- The rows every loaded version is checked against.
M.probe = { { x1 = 0.1, x2 = 0.2 }, { x1 = 0.9, x2 = 0.8 }, { x1 = 0.5, x2 = 0.6 } }

return M
