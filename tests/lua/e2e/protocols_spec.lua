-- Issue 22: the protocols users already speak, on a real server over the
-- spam recipe's models: TF Serving REST (versions, labels, metadata,
-- columnar inputs, classify/regress, unknown verbs), the Open Inference
-- Protocol (KServe V2: metadata, readiness, infer with row and column
-- tensors) and `tycho serve --model` with no app file.
local testing = require "tycho.testing"
local frame = require "tycho.frame"
local json = require "tycho.util.json"

describe("serving protocols", function()
  local home, srv, inputs, first_row
  setup(function()
    home = dofile("tests/lua/fixtures/spam_home.lua")({ "plain", "strict_plain" })
    srv = testing.serve("tests/lua/fixtures/hosted_app.lua", {}, { env = { "TYCHO_HOME=" .. home } })
    first_row = assert(frame.read_csv("../shared/data/spam.csv")):row(1)
  end)
  teardown(function()
    if srv then srv:stop() end
    testing.rmrf(home)
  end)

  local function post(path, body) return testing.request(srv.port, "POST", path, { body = body }) end
  local function get(path) return testing.request(srv.port, "GET", path) end

  it("answers V2 metadata and readiness", function()
    local status, _, _, doc = get("/v2")
    assert.equal(200, status)
    assert.equal("tycho", doc.name)
    status, _, _, doc = get("/v2/models/plain")
    assert.equal(200, status)
    assert.equal(57, #doc.inputs)
    assert.equal("FP64", doc.inputs[1].datatype)
    assert.same({ "prediction", "probability" }, { doc.outputs[1].name, doc.outputs[2].name })
    inputs = {}
    for i, t in ipairs(doc.inputs) do inputs[i] = t.name end
    assert.equal(200, (get("/v2/models/plain/ready")))
    assert.equal(404, (get("/v2/models/ghost")))
  end)

  it("infers V2 tensors in column and row form with V1's numbers", function()
    local _, _, _, v1 = post("/v1/models/plain:predict", { instances = { { email_id = "email-00001" } } })
    -- Column form: the entity key as a BYTES tensor fetches the stored features.
    local status, _, body, doc = post("/v2/models/plain/infer", { id = "r1", inputs = {
      { name = "email_id", shape = { 1 }, datatype = "BYTES", data = { "email-00001" } } } })
    assert.equal(200, status, body)
    assert.equal("r1", doc.id)
    assert.equal("plain", doc.model_name)
    assert.equal(v1.predictions[1].probability, doc.outputs[2].data[1])
    -- Row form: one [1, 57] FP64 tensor in the metadata's input order.
    local data = {}
    for i, name in ipairs(inputs) do data[i] = first_row[name] end
    status, _, body, doc = post("/v2/models/plain/infer", { inputs = {
      { name = "input-0", shape = { 1, #inputs }, datatype = "FP64", data = { data } } } })
    assert.equal(200, status, body)
    assert.near(v1.predictions[1].probability, doc.outputs[2].data[1], 1e-12)
    -- Shape and datatype are checked.
    status, _, _, doc = post("/v2/models/plain/infer", { inputs = {
      { name = "make", shape = { 2 }, datatype = "FP64", data = { 1 } } } })
    assert.equal(400, status)
    assert.matches("shape holds 2 values, data 1", doc.error.message, 1, true)
    status = post("/v2/models/plain/infer", { inputs = { { name = "make", shape = { 1 }, datatype = "INT64", data = { 0.5 } } } })
    assert.equal(400, status)
  end)

  it("serves TF Serving's versions, labels, metadata, columns, classify and status", function()
    local status, _, _, doc = post("/v1/models/spam/versions/1.0.1:predict", { instances = { { email_id = "email-00001" } } })
    assert.equal(200, status)
    assert.same({ "1.0.1" }, doc.model_versions)
    status, _, _, doc = post("/v1/models/spam/labels/staging:predict", { instances = { { email_id = "email-00002" } } })
    assert.equal(200, status)
    assert.equal("1.0.1", doc.model_version)
    assert.equal(404, (post("/v1/models/spam/versions/9.9.9:predict", { instances = { { email_id = "x" } } })))
    status, _, _, doc = get("/v1/models/plain/metadata")
    assert.equal(200, status)
    local sig = doc.metadata.signature_def.signature_def.serving_default
    assert.equal("DT_DOUBLE", sig.inputs.make.dtype)
    status, _, _, doc = get("/v1/models/spam/versions/1.0.0")
    assert.equal(200, status)
    assert.equal("AVAILABLE", doc.model_version_status[1].state)
    status, _, _, doc = post("/v1/models/plain:predict", { inputs = { email_id = { "email-00001", "email-04600" } } })
    assert.equal(200, status)
    assert.same({ 1, 0 }, doc.outputs.prediction)
    assert.equal(2, #doc.outputs.probability)
    status, _, _, doc = post("/v1/models/plain:classify", { examples = { { email_id = "email-00001" } } })
    assert.equal(200, status)
    assert.equal("1", doc.results[1][1][1])
    assert.equal(400, (post("/v1/models/plain:regress", { examples = { { email_id = "email-00001" } } })))
    status, _, _, doc = post("/v1/models/plain:explain", { instances = { {} } })
    assert.equal(404, status)
    assert.matches("unknown verb 'explain'", doc.error.message, 1, true)
  end)

  it("answers full numeric instances on the fast path with the pipeline's exact numbers", function()
    local pipe = assert(assert(require("tycho.registry").open({ home = home })):load("plain", "production"))
    local rows, plain = assert(frame.read_csv("../shared/data/spam.csv")), {}
    local instances, with_ids, nested = {}, {}, {}
    for i = 1, 40 do
      local r = rows:row(i * 97)
      r.label = nil
      instances[i], plain[i] = r, pipe:predict(r)
      local e, t = {}, {}
      for k, v in pairs(r) do e[k], t[k] = v, v end
      -- Scalar extras (ids, tags) stay on the fast path; a nested one does not.
      e.request_id, e.weight, e.vip, e.note = "req-" .. i, i / 4, i % 2 == 0, json.null
      t.tags = { "sends the request down the general path" }
      with_ids[i], nested[i] = e, t
    end
    local answers = {}
    for _, body in ipairs({ instances, with_ids, nested }) do
      local status, _, text, doc = post("/v1/models/plain:predict", { instances = body })
      assert.equal(200, status, text)
      answers[#answers + 1] = doc
    end
    for _, doc in ipairs(answers) do
      assert.equal(40, #doc.predictions)
      assert.equal(40, #doc.prediction_ids)
      assert.same(answers[1].model_versions, doc.model_versions)
      assert.equal(answers[1].model_version, doc.model_version)
      for i = 1, 40 do
        -- Exactly the pipeline's double (shortest round-trip text), whichever path.
        assert.equal(plain[i].probability, doc.predictions[i].probability)
        assert.equal(plain[i].prediction, doc.predictions[i].prediction)
      end
    end
    -- A null, a string or a missing feature is the general path's, with its report.
    instances[1].make = nil
    local status, _, text, general = post("/v1/models/plain:predict", { instances = { instances[1] } })
    assert.equal(200, status, text)
    assert.same({ { "make" } }, general.missing_features)
  end)

  it("serves registered models with no app file: tycho serve --model", function()
    local one = testing.serve({ "--model", "plain", "--model", "spam@staging" }, {}, { env = { "TYCHO_HOME=" .. home } })
    local status, _, _, doc = testing.request(one.port, "POST", "/v1/models/spam:predict",
      { body = { instances = { { email_id = "email-00001" } } } })
    assert.equal(200, status)
    assert.equal("1.0.1", doc.model_version)
    status = testing.request(one.port, "POST", "/v1/models/plain:predict",
      { body = { instances = { { email_id = "email-00001" } } } })
    assert.equal(200, status)
    assert.equal(0, one:stop())
  end)
end)
