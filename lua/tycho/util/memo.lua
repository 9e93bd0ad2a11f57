--- Strings remembered rather than made again: a request path that joins the
-- same parts for every request (a metrics key, a counter's name) makes
-- garbage each time, and each new string is hashed and interned.
local M = {}

--- A function join(a, b) -> a .. sep .. b, each joined string made once
-- and remembered by a, then b (no string made to look one up); at most max
-- of them (1024), then all are forgotten at once.
function M.joined(sep, max)
  max = max or 1024
  local by_a, n = {}, 0
  return function(a, b)
    local by_b = by_a[a]
    local text = by_b and by_b[b]
    if text then return text end
    if n >= max then by_a, n = {}, 0 end
    by_b = by_a[a] or {}
    by_a[a] = by_b
    text = a .. sep .. b
    by_b[b], n = text, n + 1
    return text
  end
end

return M
