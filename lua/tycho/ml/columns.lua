--- Which columns a model trains on. Named features are taken as given;
-- otherwise every column but the label, leaving out the frame's entity keys
-- and event time (frame/roles.lua: a timestamp or an id is a leak, not a
-- signal). A text column is never dropped without a word: a bare model
-- refuses it by name (a pipeline's steps may encode it first).
local errors = require "tycho.util.errors"

local M = {}

local STRING = 3  -- tz_column type code of text

--- The feature list and what was left out ({ {name =, why =}, ... }), or
-- nil, why the frame cannot be trained on as it is, "invalid". text: "refuse" (a
-- model) or "keep" (a pipeline, whose steps see the text).
function M.choose(f, label, features, text)
  local left_out = {}
  if features then
    for _, name in ipairs(features) do
      if not f:has(name) then return errors.fail("invalid", "the frame has no feature column '" .. tostring(name) .. "'") end
    end
    return features, left_out
  end
  local roles = f:roles() or {}
  local why_not = {}
  for _, k in ipairs(roles.keys or {}) do why_not[k] = "entity key" end
  if roles.time then why_not[roles.time] = "event time" end
  local used = {}
  for _, name in ipairs(f:names()) do
    if name ~= label then
      if why_not[name] then
        left_out[#left_out + 1] = { name = name, why = why_not[name] }
      elseif text == "refuse" and f:col(name).code == STRING then
        return errors.fail("invalid", "column '" .. name .. "' is text: a model takes numbers. Encode it (tycho.step.onehot"
          .. " in a pipeline) or name the features to train on (features = {...})")
      else
        used[#used + 1] = name
      end
    end
  end
  return used, left_out
end

--- One line saying what was left out, or nil when nothing was.
function M.describe(who, used, left_out)
  if #left_out == 0 then return nil end
  local parts = {}
  for i, l in ipairs(left_out) do parts[i] = l.name .. " (" .. l.why .. ")" end
  return string.format("%s: training on %d features; left out %s (name them in features = {...} to use them)",
    who, #used, table.concat(parts, ", "))
end

return M
