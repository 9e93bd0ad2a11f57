--- The one table of named codes for expected failures. Domain code returns
-- `nil, message, code` with a code from here (misuse raises instead); only
-- the HTTP layer turns a code into a status, through STATUS.
local M = {
  not_found = "not_found",      -- no such view, model, experiment, prediction
  invalid = "invalid",          -- the input breaks a rule: a type, a range, a length
  conflict = "conflict",        -- the state forbids it: a stopped experiment, a taken name
  gone = "gone",                -- it existed and has expired
  busy = "busy",                -- another process holds it: a lock, a port
  unavailable = "unavailable",  -- not ready yet, or the home refuses writes
  too_large = "too_large",      -- past a size or count limit
  forbidden = "forbidden",      -- a policy refuses it: a gate, a missing approval
}

M.STATUS = { not_found = 404, invalid = 400, conflict = 409, gone = 410, busy = 503, unavailable = 503,
             too_large = 413, forbidden = 403 }

--- nil, message, code: the shape of every expected failure.
function M.fail(code, message)
  if not M.STATUS[code] then error("errors.fail: unknown code '" .. tostring(code) .. "'", 2) end
  return nil, message, code
end

-- An expected failure raised where it cannot be returned: inside a store
-- transaction, whose rollback needs the raise. It prints as its message.
local RAISED = { __tostring = function(e) return e.message end }

--- Raises code and message (as fail would return them) through the caller's
-- callers, for M.caught to return again.
function M.raise(code, message)
  if not M.STATUS[code] then error("errors.raise: unknown code '" .. tostring(code) .. "'", 2) end
  error(setmetatable({ code = code, message = message }, RAISED), 0)
end

--- For a pcall's error e: nil, message, code when M.raise raised it; any
-- other error is raised again.
function M.caught(e)
  if getmetatable(e) == RAISED then return nil, e.message, e.code end
  error(e, 0)
end

return M
