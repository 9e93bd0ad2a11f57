-- Prints the Lua API reference (docs/API.md) from the doc comments in the
-- source: every public function and method of the modules users require,
-- with its definition line and comment. tests/lua/unit/api_reference_spec.lua
-- regenerates it and fails when docs/API.md differs or a public function
-- has no doc comment, so the reference cannot drift from the code.
--   tycho run tools/api_reference.lua > docs/API.md
local tycho = require "tycho"
local doc = require "tycho.util.doc"

local home = os.tmpname()
os.remove(home)

-- Each entry: a title, how to reach it, and the table whose functions it lists.
local function classes()
  local frame = tycho.frame.new({ a = { 1 } })
  local fs = assert(tycho.features.open({ home = home }))
  local out = {
    { "tycho.frame", "module", tycho.frame },
    { "frame (f:method)", "methods of a frame", getmetatable(frame).__index },
    { "tycho.models", "module", tycho.models },
    { "model (m:method)", "methods of a model", getmetatable(tycho.models.gbt {}).__index },
    { "tycho.pipeline", "module", require "tycho.ml.pipeline" },
    { "pipeline (p:method)", "methods of a pipeline", getmetatable(tycho.pipeline { model = tycho.models.gbt {} }).__index },
    { "tycho.metrics", "module", tycho.metrics },
    { "tycho.tune", "module", tycho.tune },
    { "tycho.automl", "module", tycho.automl },
    { "tycho.features", "module", tycho.features },
    { "feature store (fs:method)", "methods of tycho.features.open()", getmetatable(fs).__index },
    { "tycho.registry", "module", tycho.registry },
    { "registry (reg:method)", "methods of tycho.registry.open()",
      getmetatable(assert(tycho.registry.open({ store = fs.store }))).__index },
    { "tycho.runs", "module", tycho.runs },
    { "tycho.xgboost", "module", tycho.xgboost },
    { "tycho.experiments", "module", tycho.experiments },
    { "tycho.monitor", "module", tycho.monitor },
    { "tycho.dag", "module", tycho.dag },
    { "tycho.cron", "module", tycho.cron },
    { "tycho.stats", "module", tycho.stats },
    { "tycho.http", "module", tycho.http },
    { "app (app:method)", "methods of tycho.app()", getmetatable(tycho.app()).__index },
    { "tycho.json", "module", tycho.json },
  }
  return out, fs
end

local entries, fs = classes()
local lines = { "# Tycho Lua API reference", "",
  "Generated from the doc comments by `tycho run tools/api_reference.lua > docs/API.md`;",
  "`tests/lua/unit/api_reference_spec.lua` fails when this file and the code disagree.", "" }
local missing = {}
for _, e in ipairs(entries) do
  local title, what, t = e[1], e[2], e[3]
  local names = {}
  for k, v in pairs(t) do
    if type(k) == "string" and type(v) == "function" and not k:match("^_") then names[#names + 1] = k end
  end
  table.sort(names)
  lines[#lines + 1] = "## " .. title
  lines[#lines + 1] = ""
  lines[#lines + 1] = "(" .. what .. ")"
  lines[#lines + 1] = ""
  for _, name in ipairs(names) do
    local text, signature = doc.of_function(t[name])
    if text then
      local comment = text:sub(#signature + 3)
      lines[#lines + 1] = "### `" .. name .. "`"
      lines[#lines + 1] = ""
      lines[#lines + 1] = "    " .. signature
      lines[#lines + 1] = ""
      lines[#lines + 1] = comment
      lines[#lines + 1] = ""
    elseif signature then  -- a Lua function without a doc comment
      missing[#missing + 1] = title .. "." .. name .. " (" .. signature .. ")"
    end
  end
end
fs.store:close()
os.execute("rm -rf '" .. home .. "'")
if #missing > 0 then
  io.stderr:write("public functions without a doc comment:\n  ", table.concat(missing, "\n  "), "\n")
  os.exit(1)
end
io.write(table.concat(lines, "\n"), "\n")
