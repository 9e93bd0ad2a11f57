-- A retraining DAG scheduled inside `tycho serve`: the scheduler starts it
-- as a child process, it promotes a better model, and the running server
-- serves the new version without a restart.
local testing = require "tycho.testing"
local hist = require "tycho.daghistory"

local FIX = "tests/lua/fixtures/dags/"

describe("a DAG scheduled in tycho serve", function()
  local home, srv
  setup(function()
    home = testing.tmpdir()
    -- A weak production model (one stump) for the DAG to beat.
    local script = testing.write(home .. "/weak.lua", [[
      local tycho = require "tycho"
      local f = assert(tycho.frame.read_csv("../shared/data/breast_cancer.csv"))
      local tr, te = f:split { mask = "../shared/data/breast_cancer.split" }
      local pipe = assert(tycho.pipeline { model = tycho.models.gbt { rounds = 1, depth = 1 } }
        :fit(tr, { label = "label", quiet = true }))
      local reg = assert(tycho.registry.open())
      local v = assert(reg:register("m", pipe, { metrics = pipe:evaluate(te) }))
      assert(reg:promote("m", v, "production"))]])
    local code, _, err = testing.run({ "--home", home, "run", script })
    assert(code == 0, err)
  end)
  teardown(function()
    if srv then srv:stop() end
    testing.rmrf(home)
  end)

  local function dag_processes()
    local p = io.popen("pgrep -f 'dag (run|_task) .*retrain.lua' 2>/dev/null")
    local out = p:read("*a")
    p:close()
    return out
  end

  it("retrains, promotes and is served live, and stops with the server", function()
    -- The first slot comes 2 seconds after start, so the weak model is seen first.
    local start = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() + 2)
    srv = testing.serve(FIX .. "retrain_app.lua", {}, { env = { "TYCHO_HOME=" .. home, "DAG_START=" .. start,
      "DAG_DATA=" .. require("luv").cwd() .. "/../shared/data" } })
    local _, _, _, doc = testing.request(srv.port, "GET", "/v1/models/m")
    assert.equal("1.0.0", doc.version)
    local seen
    local switched = testing.run_until(function()
      local _, _, _, d = testing.request(srv.port, "GET", "/v1/models/m")
      seen = d and d.version
      return seen == "1.0.1"
    end, 15000)
    assert.is_true(switched, "still serving " .. tostring(seen) .. "\n" .. srv.proc.stderr())
    assert.is_nil(srv.proc.code)  -- the same server, never restarted
    local row = assert(require("tycho.frame").read_csv("../shared/data/breast_cancer.csv")):row(1)
    row.label = nil
    local status, _, _, pred = testing.request(srv.port, "POST", "/v1/models/m:predict",
      { body = { instances = { row } } })
    assert.equal(200, status)
    assert.equal("1.0.1", pred.model_version)

    local st = assert(require("tycho.store").open(home))
    local runs = hist.history("retrain", { store = st, limit = 50 })
    st:close()
    local last = runs[#runs]
    assert.equal("success", last.status)
    assert.equal("scheduled", last.trigger)
    assert.is_true(last.ts >= require("tycho.timeutil").parse(start) / 1e6)
    local train = last.tasks[2]
    assert.same({ "train", "1.0.1" }, { train.task, train.output.promoted })
    assert.is_true(train.output.auc > 0.95)
    for _, run in ipairs(runs) do assert.is_true(run.status == "success" or run.status == "running", run.status) end
    assert.matches("%[dag retrain%] retrain .*: success", srv.proc.stderr())

    assert.equal(0, (srv:stop()))
    srv = nil
    assert.equal("", dag_processes())
  end)
end)
