--- The serving protocols users already speak, over the hosted models, built
-- into every app beside KServe V1's `:predict` (serve/http.lua):
--
-- TF Serving REST and KServe V1: POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict
-- with "instances" (rows) or "inputs" (columns; answered as "outputs"),
-- :classify and :regress with "examples", GET .../metadata (the signature
-- from the pipeline's input schema) and GET /v1/models/{name}/versions/{v}
-- (model_version_status). An unknown verb is 404.
--
-- Open Inference Protocol (KServe V2) REST: GET /v2, GET
-- /v2/models/{name}[/versions/{v}][/ready], POST .../infer with named
-- tensors (FP32, FP64, INT8..INT64, UINT8..UINT64, BOOL, BYTES; flat or
-- nested data; one tensor per input column, or one [N, inputs] tensor in
-- the order the metadata lists), answered with "prediction" and, for
-- classifiers, "probability" tensors.
local json = require "tycho.util.json"
local internal = require "tycho.internal"
local base = require "tycho.core.base"
local http_answer = require "tycho.core.http"

local M = {}

local DTYPE_V2 = { float = "FP64", int = "INT64", bool = "BOOL", string = "BYTES" }
local DTYPE_TF = { float = "DT_DOUBLE", int = "DT_INT64", bool = "DT_BOOL", string = "DT_STRING" }
local NUMERIC_V2 = { FP16 = true, FP32 = true, FP64 = true, INT8 = true, INT16 = true, INT32 = true, INT64 = true,
                     UINT8 = true, UINT16 = true, UINT32 = true, UINT64 = true }
local INTEGER_V2 = { INT8 = true, INT16 = true, INT32 = true, INT64 = true, UINT8 = true, UINT16 = true,
                     UINT32 = true, UINT64 = true }

local function hosted(app, http, name)
  return app.hosted[name] or http.error(404, "not_found", "no hosted model '" .. name .. "'")
end

-- The loaded version a request names (pin), or the hosted one.
local function version_of(http, h, pin)
  if pin then
    local v, msg, code = h:pinned(pin)
    if not v then http.fail(msg, code) end
    return v
  end
  return h.live.main or http.error(503, "unavailable", "model " .. h.name .. " has no loadable version")
end

-- Predictions for instances, counted in /metrics like V1's.
local function predict(app, http, req, h, instances, pin)
  http.check_count(app, #instances, "items", "instances")
  local res, msg, code = h:predict(instances, app.log, req, pin)
  if not res then http.fail(msg, code) end
  local counts = app.metrics.predictions
  for _, version in ipairs(res.model_versions) do
    local key = h.name .. "\0" .. version
    counts[key] = (counts[key] or 0) + 1
  end
  return res
end

-- ---- TF Serving ------------------------------------------------------------------

-- "inputs": { column = {values...} } -> instances; or a list of rows.
local function instances_of_columns(http, inputs)
  if #inputs > 0 then return inputs end
  local n, rows = nil, {}
  for name, values in pairs(inputs) do
    if type(values) ~= "table" then http.error(400, "bad_request", "inputs." .. tostring(name) .. " must be a list") end
    if n and #values ~= n then http.error(400, "bad_request", "inputs columns have different lengths") end
    n = #values
  end
  for i = 1, n or 0 do rows[i] = {} end
  for name, values in pairs(inputs) do
    for i = 1, n do rows[i][name] = values[i] end
  end
  return rows
end

--- TF Serving's columnar form: body.inputs (columns, or a list of rows),
-- answered with "outputs" (one list per output). pin: a version or label.
function M.predict_columns(app, http, req, body, pin)
  if type(body.inputs) ~= "table" or next(body.inputs) == nil then
    http.error(400, "bad_request", 'expected {"instances": [...]} or {"inputs": {...}}')
  end
  local rows = instances_of_columns(http, body.inputs)
  if #rows == 0 then http.error(400, "bad_request", "inputs hold no rows") end
  http.check_count(app, #rows, "items", "instances")
  local h = hosted(app, http, req.params.name)
  local res = predict(app, http, req, h, rows, pin)
  -- Columnar in, columnar out: one list per output.
  local outputs = { prediction = {} }
  for i, p in ipairs(res.predictions) do
    outputs.prediction[i] = p.prediction
    if p.probability ~= nil then
      outputs.probability = outputs.probability or {}
      outputs.probability[i] = p.probability
    end
  end
  res.outputs, res.predictions = outputs, nil
  return 200, http.JSON_HEADERS, json.encode_exact(res)
end

-- The fast path's answer is written into one buffer, reused: a string
-- for each prediction, number and part of the answer, each hashed and
-- interned, was most of the garbage a request made.
local answer_out = require("string.buffer").new(512)
local put_number = base.put_json_number

-- A prediction as JSON: class labels as given (numbers, strings),
-- numbers in their shortest exact form (not lua-cjson's 14 digits).
local function put_prediction(out, p)
  local v = p.prediction
  out:put('{"prediction":')
  if type(v) == "number" then put_number(out, v) else out:put(json.encode(v)) end
  if p.probability ~= nil then
    out:put(',"probability":')
    put_number(out, p.probability)
  end
  out:put("}")
end

-- A version's JSON text, remembered (bounded).
local version_texts, n_version_texts = {}, 0
local function version_json(version)
  local text = version_texts[version]
  if text then return text end
  if n_version_texts >= 1024 then version_texts, n_version_texts = {}, 0 end
  text = json.encode(version)
  version_texts[version], n_version_texts = text, n_version_texts + 1
  return text
end

-- The answer of the fast path, as json.encode would write the general
-- path's table (one version served every row: no experiment, no canary),
-- in a buffer reused by every answer. One prediction takes no loop:
-- LuaJIT's trace would leave it on its first turn.
local function write_answer(preds, ids, version)
  local out, v, n = answer_out, version_json(version), #preds
  out:reset()
  out:put('{"predictions":[')
  if n == 1 then put_prediction(out, preds[1])
  else
    for i = 1, n do
      if i > 1 then out:put(",") end
      put_prediction(out, preds[i])
    end
  end
  out:put('],"model_version":', v, ',"model_versions":[')
  if n == 1 then out:put(v) else out:put(string.rep(v, n, ",")) end
  out:put('],"prediction_ids":[')
  if #ids == 1 then out:put('"', ids[1], '"')
  elseif #ids > 1 then out:put('"', table.concat(ids, '","'), '"') end
  out:put("]}")
  return out
end

-- The metrics' key of a model's version: "name\0version".
local count_key = require("tycho.util.memo").joined("\0")

-- Full numeric instances straight from the body (Hosted:predict_dense; a
-- string, or a pointer to len bytes): the answer's buffer, or nil: the
-- general path then answers the request.
local function predict_dense(app, name, body, len, pin)
  local h = app.hosted[name]
  if not h then return nil end
  local preds, ids, version = h:predict_dense(body, len, app.log, pin, app.limits.items)
  if not preds then return nil end
  local counts, key = app.metrics.predictions, count_key(h.name, version.version)
  counts[key] = (counts[key] or 0) + #preds
  return write_answer(preds, ids, version.version)
end

--- The fast path's answer to a `:predict` body for hosted model name (the
-- direct route's bytes: a pointer and a length): true once sent from the
-- answer's buffer (tycho.core.http), else its JSON text; nil when the
-- request needs the general path, M.predict: what a direct route
-- (App:direct_routes) answers without the router.
function M.predict_direct(app, name, body, len)
  local out = predict_dense(app, name, body, len, nil)
  if not out then return nil end
  if http_answer.direct_answer(out) then return true end
  -- (Not a tail call: a trace cannot return from a tail-called builtin.)
  local text = out:tostring()
  return text
end

--- KServe V1 / TF Serving `:predict` (rows as "instances", or columns as
-- "inputs"); pin: the version or label the path names, if any.
function M.predict(app, http, req, pin)
  local answer = predict_dense(app, req.params.name, req.body, #req.body, pin)
  if answer then return 200, http.JSON_HEADERS, answer:tostring() end
  local body = req:json()
  if type(body) ~= "table" then http.error(400, "bad_request", 'expected {"instances": [...]} or {"inputs": {...}}') end
  if type(body.instances) == "table" and #body.instances > 0 then
    -- Bounded before anything else is looked at (a huge body costs nothing more).
    http.check_count(app, #body.instances, "items", "instances")
    local res = predict(app, http, req, hosted(app, http, req.params.name), body.instances, pin)
    return 200, http.JSON_HEADERS, json.encode_exact(res)
  end
  return M.predict_columns(app, http, req, body, pin)
end

-- :classify -> {"results": [[[label, score]], ...]}; :regress -> {"results": [value, ...]}.
local function tf_classify_or_regress(app, http, req, kind)
  local h = hosted(app, http, req.params.name)
  local body = req:json()
  if type(body) ~= "table" or type(body.examples) ~= "table" or #body.examples == 0 then
    http.error(400, "bad_request", 'expected {"examples": [{...}, ...]}')
  end
  local task = version_of(http, h).pipe.model.task
  local classifier = task == "binary" or task == "multiclass"
  if (kind == "classify") ~= classifier then
    http.error(400, "bad_request", "model " .. h.name .. " is a " .. tostring(task) .. " model: use :"
      .. (classifier and "classify" or "regress"))
  end
  local res = predict(app, http, req, h, body.examples)
  local results = {}
  for i, p in ipairs(res.predictions) do
    results[i] = classifier and { { tostring(p.prediction), p.probability } } or p.prediction
  end
  return 200, http.JSON_HEADERS,
    json.encode_exact({ results = results, model_versions = res.model_versions, prediction_ids = res.prediction_ids })
end

local function tf_metadata(app, http, req)
  local h = hosted(app, http, req.params.name)
  local v = version_of(http, h, req.params.version)
  local inputs = {}
  for _, c in ipairs(v.pipe.inputs) do
    inputs[c] = { name = c, dtype = DTYPE_TF[(v.pipe.input_types or {})[c]] or "DT_DOUBLE",
                  tensor_shape = { dim = { { size = "-1" } } } }
  end
  local outputs = { prediction = { name = "prediction", dtype = "DT_DOUBLE", tensor_shape = { dim = { { size = "-1" } } } } }
  if v.pipe.model.classes then
    outputs.prediction.dtype = type(v.pipe.model.classes[1]) == "string" and "DT_STRING" or "DT_DOUBLE"
    outputs.probability = { name = "probability", dtype = "DT_DOUBLE", tensor_shape = { dim = { { size = "-1" } } } }
  end
  return { model_spec = { name = h.name, signature_name = "", version = v.version },
           metadata = { signature_def = { signature_def = { serving_default = {
             inputs = inputs, outputs = outputs, method_name = "tensorflow/serving/predict" } } } } }
end

local function tf_status(app, http, req)
  local h = hosted(app, http, req.params.name)
  local v = version_of(http, h, req.params.version)
  return { model_version_status = { { version = v.version, state = "AVAILABLE",
                                      status = { error_code = "OK", error_message = "" } } } }
end

-- ---- Open Inference Protocol (V2) --------------------------------------------------

local function v2_metadata(app, http, req)
  local h = hosted(app, http, req.params.name)
  local v = version_of(http, h, req.params.version)
  local inputs = {}
  for i, c in ipairs(v.pipe.inputs) do
    inputs[i] = { name = c, datatype = DTYPE_V2[(v.pipe.input_types or {})[c]] or "FP64", shape = { -1 } }
  end
  local classes = v.pipe.model.classes
  local outputs = { { name = "prediction", datatype = classes and type(classes[1]) == "string" and "BYTES" or "FP64",
                      shape = { -1 } } }
  if classes then outputs[2] = { name = "probability", datatype = "FP64", shape = { -1 } } end
  local versions = {}
  for ref in pairs(h.pins or {}) do versions[#versions + 1] = h.live["pin:" .. ref] and h.live["pin:" .. ref].version end
  versions[#versions + 1] = v.version
  return { name = h.name, versions = versions, platform = "tycho", inputs = inputs, outputs = outputs }
end

-- A tensor's data as a flat list (nested lists are row-major), checked
-- against its shape and datatype; or raises a 400 naming the tensor.
local function flat_data(http, t)
  local name = tostring(t.name)
  if type(t.shape) ~= "table" or #t.shape == 0 then http.error(400, "bad_request", "input " .. name .. ": no shape") end
  local count = 1
  for _, d in ipairs(t.shape) do
    if type(d) ~= "number" or d < 0 or d % 1 ~= 0 then http.error(400, "bad_request", "input " .. name .. ": bad shape") end
    count = count * d
  end
  local dtype = t.datatype
  if not (NUMERIC_V2[dtype] or dtype == "BOOL" or dtype == "BYTES") then
    http.error(400, "bad_request", "input " .. name .. ": unsupported datatype " .. tostring(dtype))
  end
  if type(t.data) ~= "table" then http.error(400, "bad_request", "input " .. name .. ": data must be a list") end
  local out = {}
  local function walk(list, depth)
    if depth > 8 then http.error(400, "bad_request", "input " .. name .. ": data nested too deeply") end
    for _, v in ipairs(list) do
      if type(v) == "table" then walk(v, depth + 1)
      else
        local ok = (NUMERIC_V2[dtype] and type(v) == "number" and (not INTEGER_V2[dtype] or v % 1 == 0))
          or (dtype == "BOOL" and type(v) == "boolean") or (dtype == "BYTES" and type(v) == "string")
        if not ok then
          http.error(400, "bad_request", string.format("input %s: %s is not %s", name, tostring(v), dtype))
        end
        out[#out + 1] = v
      end
    end
  end
  walk(t.data, 1)
  if #out ~= count then
    http.error(400, "bad_request", string.format("input %s: shape holds %d values, data %d", name, count, #out))
  end
  return out, count
end

-- Instances from V2 input tensors: one per column (shape [N] or [N, 1]),
-- or a single [N, F] tensor whose F columns are the model's inputs in order.
local function v2_instances(http, inputs, order)
  if type(inputs) ~= "table" or #inputs == 0 then
    http.error(400, "bad_request", 'expected {"inputs": [{"name", "shape", "datatype", "data"}, ...]}')
  end
  local rows = {}
  if #inputs == 1 and type(inputs[1].shape) == "table" and #inputs[1].shape == 2 and inputs[1].shape[2] == #order
      and #order > 1 then
    local data = flat_data(http, inputs[1])
    local n, f = inputs[1].shape[1], #order
    for i = 1, n do
      local r = {}
      for j = 1, f do r[order[j]] = data[(i - 1) * f + j] end
      rows[i] = r
    end
    return rows
  end
  local n
  for _, t in ipairs(inputs) do
    if type(t) ~= "table" or type(t.name) ~= "string" then http.error(400, "bad_request", "every input needs a name") end
    local data, count = flat_data(http, t)
    if #t.shape == 2 and t.shape[2] ~= 1 then
      http.error(400, "bad_request", "input " .. t.name .. ": a column tensor has shape [N] or [N, 1]")
    end
    if n and count ~= n then http.error(400, "bad_request", "inputs hold different numbers of rows") end
    n = count
    for i = 1, count do
      rows[i] = rows[i] or {}
      rows[i][t.name] = data[i]
    end
  end
  return rows
end

local function v2_infer(app, http, req)
  local h = hosted(app, http, req.params.name)
  local v = version_of(http, h, req.params.version)
  local body = req:json()
  if type(body) ~= "table" then http.error(400, "bad_request", "expected an inference request object") end
  local rows = v2_instances(http, body.inputs, v.pipe.inputs)
  if #rows == 0 then http.error(400, "bad_request", "inputs hold no rows") end
  local res = predict(app, http, req, h, rows, req.params.version)
  local pred, prob, all_numbers = {}, nil, true
  for i, p in ipairs(res.predictions) do
    pred[i] = p.prediction
    if type(p.prediction) ~= "number" then all_numbers = false end
    if p.probability ~= nil then
      prob = prob or {}
      prob[i] = p.probability
    end
  end
  if not all_numbers then for i, p in ipairs(pred) do pred[i] = tostring(p) end end
  local outputs = { { name = "prediction", datatype = all_numbers and "FP64" or "BYTES", shape = { #pred }, data = pred } }
  if prob then outputs[2] = { name = "probability", datatype = "FP64", shape = { #prob }, data = prob } end
  return 200, http.JSON_HEADERS, json.encode_exact({
    model_name = h.name, model_version = res.model_version, id = type(body.id) == "string" and body.id or nil,
    outputs = outputs, parameters = { prediction_ids = res.prediction_ids, model_versions = res.model_versions,
                                      missing_features = res.missing_features } })
end

local function v2_ready(app, http, req)
  local h = hosted(app, http, req.params.name)
  local ok = req.params.version and h:pinned(req.params.version) or h.live.main
  if not ok then return 503, { name = h.name, ready = false } end
  return { name = h.name, ready = true }
end

--- Adds the protocols' routes to app (http: the router module, for its
-- errors and limits). Called when the app is made, after V1's routes.
function M.add(app, http)
  local function tf(pin_param)
    return function(req) return M.predict(app, http, req, pin_param and req.params[pin_param]) end
  end
  app:post("/v1/models/{name}/versions/{version}:predict", tf("version"))
  app:post("/v1/models/{name}/labels/{label}:predict", tf("label"))
  app:post("/v1/models/{name}:classify", function(req) return tf_classify_or_regress(app, http, req, "classify") end)
  app:post("/v1/models/{name}:regress", function(req) return tf_classify_or_regress(app, http, req, "regress") end)
  app:get("/v1/models/{name}/metadata", function(req) return tf_metadata(app, http, req) end)
  app:get("/v1/models/{name}/versions/{version}/metadata", function(req) return tf_metadata(app, http, req) end)
  app:get("/v1/models/{name}/versions/{version}", function(req) return tf_status(app, http, req) end)
  app:post("/v1/models/{name}:{verb}", function(req)
    http.error(404, "not_found", "unknown verb '" .. req.params.verb .. "' (predict, classify, regress)")
  end)  -- a POST like any other: without the token, 401 comes first
  app:get("/v2", function() return { name = "tycho", version = internal.version, extensions = json.empty_array } end)
  app:get("/v2/models/{name}", function(req) return v2_metadata(app, http, req) end)
  app:get("/v2/models/{name}/versions/{version}", function(req) return v2_metadata(app, http, req) end)
  app:get("/v2/models/{name}/ready", function(req) return v2_ready(app, http, req) end)
  app:get("/v2/models/{name}/versions/{version}/ready", function(req) return v2_ready(app, http, req) end)
  app:post("/v2/models/{name}/infer", function(req) return v2_infer(app, http, req) end)
  app:post("/v2/models/{name}/versions/{version}/infer", function(req) return v2_infer(app, http, req) end)
end

return M
