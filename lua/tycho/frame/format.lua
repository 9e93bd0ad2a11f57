--- Frames as text: an aligned table of the shape, the column types and the
-- first rows (what the REPL and print show). Installed on the Frame class
-- by core/frame.lua.
return function(Frame, M)
  local F64, STR = M.types.float, M.types.string

  -- ---- printing ------------------------------------------------------------------

  local function cell(col, i)
    local v = col:get(i)
    if v == nil then return "null" end
    if col.code == F64 then
      if v ~= v then return "NaN" end
      return string.format("%.6g", v)
    end
    return (tostring(v):gsub("[\r\n\t]", { ["\r"] = "\\r", ["\n"] = "\\n", ["\t"] = "\\t" }))
  end

  --- An aligned table: shape, column types, the first rows.
  function Frame:format(max_rows, max_width)
    max_rows, max_width = max_rows or 10, max_width or 120
    local n, names = self:nrows(), self:names()
    local shown = math.min(n, max_rows)
    local columns, width = {}, 0
    for _, name in ipairs(names) do
      local col = self:col(name)
      local cells, w = {}, math.max(#name, #col.type + 2)
      for i = 1, shown do
        cells[i] = cell(col, i)
        if #cells[i] > 24 then cells[i] = cells[i]:sub(1, 21) .. "..." end
        w = math.max(w, #cells[i])
      end
      if width + w + 2 > max_width and #columns > 0 then break end
      width = width + w + 2
      columns[#columns + 1] = { name = name, type = "<" .. col.type .. ">", cells = cells, w = w,
                                right = col.code ~= STR }
    end
    local function pad(s, w, right) return right and string.rep(" ", w - #s) .. s or s .. string.rep(" ", w - #s) end
    local lines = { string.format("frame: %d rows x %d columns", n, #names) }
    local function line(get)
      local parts = {}
      for k, c in ipairs(columns) do parts[k] = pad(get(c), c.w, c.right) end
      lines[#lines + 1] = table.concat(parts, "  ")
    end
    line(function(c) return c.name end)
    line(function(c) return c.type end)
    for i = 1, shown do line(function(c) return c.cells[i] end) end
    if shown < n then lines[#lines + 1] = string.format("... %d more rows", n - shown) end
    if #columns < #names then lines[#lines + 1] = string.format("... %d more columns", #names - #columns) end
    return table.concat(lines, "\n")
  end

  Frame.__tostring = function(self) return self:format() end
end
