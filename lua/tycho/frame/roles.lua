--- Column roles: what a frame's columns are for, beyond being data. A
-- frame from fs:historical knows its entity keys and its event time (and a
-- label once one is named), so fit, tune and automl leave them out of the
-- features unless asked: a timestamp or an id is a leak, not a signal.
--
--   f:roles()                  -- { keys = {"patient_id"}, time = "event_time", label = "diabetes" } or nil
--   f:with_roles{ label = "y" } -- the same columns, with these roles added
--
-- Roles (and provenance) travel through the operations that keep columns
-- (select, drop, with_column, take, head, filter, attach, join, split,
-- kfold), naming only the columns the result still has.
local doc = require "tycho.util.doc"

return function(Frame, M)
  -- The roles restricted to the columns f has (nil when none is left).
  local function restricted(roles, f)
    local out, any = { keys = {} }, false
    for _, k in ipairs(roles.keys or {}) do
      if f:has(k) then out.keys[#out.keys + 1] = k any = true end
    end
    if roles.time and f:has(roles.time) then out.time, any = roles.time, true end
    if roles.label and f:has(roles.label) then out.label, any = roles.label, true end
    return any and out or nil
  end

  local function carry(from, to)
    if not M.is_frame(to) then return to end
    if from._roles and rawget(to, "_roles") == nil then to._roles = restricted(from._roles, to) end
    if from.provenance and rawget(to, "provenance") == nil then to.provenance = from.provenance end
    return to
  end

  local function carry_all(from, ...)
    local n = select("#", ...)
    local out = { ... }
    for i = 1, n do
      local v = out[i]
      if M.is_frame(v) then
        carry(from, v)
      elseif type(v) == "table" then  -- kfold: { {train =, test =}, ... }
        for _, fold in ipairs(v) do
          if type(fold) == "table" then carry(from, fold.train) carry(from, fold.test) end
        end
      end
    end
    return unpack(out, 1, n)
  end

  for _, name in ipairs { "select", "drop", "with_column", "take", "head", "filter", "attach", "join", "split", "kfold" } do
    local op = Frame[name]
    Frame[name] = doc.same_as(function(self, ...)
      if not rawget(self, "_roles") and not rawget(self, "provenance") then return op(self, ...) end
      return carry_all(self, op(self, ...))
    end, op)
  end

  --- The frame's column roles, or nil when it has none.
  function Frame:roles() return rawget(self, "_roles") end

  --- The same columns (shared) with roles added: keys (a list), time, label.
  function Frame:with_roles(roles)
    if type(roles) ~= "table" then error("with_roles: expected { keys =, time =, label = }", 2) end
    local merged = { keys = {} }
    local old = rawget(self, "_roles") or {}
    for _, k in ipairs(roles.keys or old.keys or {}) do merged.keys[#merged.keys + 1] = k end
    merged.time = roles.time or old.time
    merged.label = roles.label or old.label
    for _, c in ipairs(merged.keys) do
      if not self:has(c) then error("with_roles: no column '" .. tostring(c) .. "'", 2) end
    end
    for _, c in pairs { merged.time or false, merged.label or false } do
      if c and not self:has(c) then error("with_roles: no column '" .. tostring(c) .. "'", 2) end
    end
    local out = self:select(self:names())
    out._roles, out.provenance = merged, rawget(self, "provenance")
    return out
  end
end
