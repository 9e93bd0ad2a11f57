-- Serves the production spam model: POST /v1/models/spam:predict with
-- {"instances": [{"email_id": "email-00001"}, ...]}: each instance's email
-- statistics come from the online feature store, and the pipeline that the
-- registry's production alias points at makes the prediction.
local tycho = require "tycho"
local app = tycho.app()

local model, reader  -- per worker, opened on first use

local function load()
  if not model then
    local reg = assert(tycho.registry.open())
    model = assert(reg:load("spam", "production"))
    local refs = {}
    for _, name in ipairs(model.inputs) do refs[#refs + 1] = "email_stats:" .. name end
    reader = assert(assert(tycho.features.open()):reader(refs))
  end
  return model, reader
end

app:post("/v1/models/spam:predict", function(req)
  local body = req:json()
  if type(body.instances) ~= "table" then tycho.http.error(400, "bad_request", 'expected {"instances": [...]}') end
  local pipe, features = load()
  local predictions = {}
  for i, inst in ipairs(body.instances) do
    local row = {}
    if inst.email_id then
      local values = features:get(inst.email_id)
      if not values then tycho.http.error(404, "not_found", "instance " .. i .. ": no features for " .. inst.email_id) end
      for k, name in ipairs(pipe.inputs) do row[name] = values[k] end
    end
    for k, v in pairs(inst) do if k ~= "email_id" then row[k] = v end end
    local out, err = pipe:predict(row)
    if not out then tycho.http.error(400, "bad_instance", "instance " .. i .. ": " .. err) end
    predictions[i] = out
  end
  return { predictions = predictions, model_version = pipe.registry_version }
end)

return app
