--- Experiments, results: per variant means with intervals, lift, p-values,
-- the probability to beat the control and the sample-ratio check.
local json = require "tycho.util.json"
local keys = require "tycho.util.keys"
local stats = require "tycho.experiments.stats"
local timeutil = require "tycho.util.timeutil"
local shared = require "tycho.experiments.records"
local Experiment = shared.Experiment
local st = shared.st
local def_key = shared.def_key
local fault_key = shared.fault_key
local cluster = require "tycho.experiments.cluster"
local definition = require "tycho.experiments.define"
local assignment = require "tycho.experiments.assign"
local mean_of = assignment.mean_of

local M = {}

local function variance(c)
  if c.units < 2 then return 0 end
  return math.max(0, (c.sumsq - c.units * mean_of(c) ^ 2) / (c.units - 1))
end

M.variance = variance

local function num_or_null(x) return (x == x and x ~= math.huge and x ~= -math.huge) and x or json.null end

--- Results per variant, as GET /v1/experiments/{name} answers them.
function Experiment:results(store)
  store = store or st()
  local sh = cluster.of(store)
  if sh then sh:before_results(store, self) end
  local c = self:read_counters(store, true)
  local rec, faults = store:view(function(tx)
    return tx:get_json("experiments", def_key(self.name)), tx:get_json("experiments", fault_key(self.name))
  end)
  rec = rec or self:record()
  local ctl = c[self:control().name]
  local cm, cv = mean_of(ctl), variance(ctl)
  local out = {}
  local observed, weights = {}, {}
  for i, v in ipairs(self.variants) do
    local k = c[v.name]
    local m, var = mean_of(k), variance(k)
    local lo, hi = stats.mean_ci(m, var, math.max(k.units, 1))
    local r = { name = v.name, model = v.model, weight = v.weight, units = k.units, exposures = k.exposures,
                mean = m, ci = { num_or_null(lo), num_or_null(hi) } }
    if i == 1 then
      r.control = true
    elseif k.units > 0 and ctl.units > 0 then
      r.lift = num_or_null(cm ~= 0 and (m - cm) / math.abs(cm) or (m == cm and 0 or 0 / 0))
      local test, prob, loss
      if self.metric_type == "binary" then
        test = stats.two_proportion(ctl.sum, ctl.units, k.sum, k.units)
        prob, loss = stats.beat_beta(1 + ctl.sum, 1 + ctl.units - ctl.sum, 1 + k.sum, 1 + k.units - k.sum)
      else
        test = (ctl.units > 1 and k.units > 1) and stats.welch(cm, cv, ctl.units, m, var, k.units) or { p_value = 0 / 0 }
        prob, loss = stats.beat_normal(cm, math.sqrt(cv / ctl.units), m, math.sqrt(var / k.units))
      end
      r.p_value, r.prob_beat_control, r.expected_loss = num_or_null(test.p_value), num_or_null(prob), num_or_null(loss)
    end
    out[i] = r
    observed[i], weights[i] = k.units, v.weight
  end
  local srm = json.null
  local total = 0
  for _, n in ipairs(observed) do total = total + n end
  if self.kind == "ab" and total > 0 then srm = num_or_null(stats.srm(observed, weights).p_value) end
  local pending = store:view(function(tx)
    local n = 0
    for _ in tx:scan("experiments", { prefix = keys.pack("s", "p") }) do n = n + 1 end
    return n
  end)
  return { name = self.name, kind = self.kind, unit = self.unit, metric = self.metric, metric_type = self.metric_type,
           pending_feedback = pending,
           status = rec.status or "running", winner = rec.winner or json.null,
           started_at = rec.started_at and timeutil.format(rec.started_at) or json.null,
           stopped_at = rec.stopped_at and timeutil.format(rec.stopped_at) or json.null,
           srm_p_value = srm, target_errors = (faults and faults.target_errors) or 0,
           rejected_events = (faults and faults.rejected_events) or 0, variants = out,
           -- With a cluster: new units that got a node's own choice because it did not answer.
           cluster_fallbacks = sh and ((faults and faults.cluster_fallbacks) or 0) or nil }
end

local fmt = require("tycho.util.pretty").number

--- Results as a readable table (the CLI and the REPL print this).
function M.format_results(r)
  local lines = {
    string.format("experiment %s (%s, unit %s, metric %s [%s]): %s%s", r.name, r.kind, r.unit, r.metric,
      r.metric_type, r.status, r.status == "stopped" and (", every unit gets " .. tostring(r.winner)) or ""),
    string.format("sample-ratio mismatch p = %s; target errors %d; rejected events %d", fmt(r.srm_p_value),
      r.target_errors, r.rejected_events),
    "",
    string.format("%-14s %8s %9s %10s %21s %9s %10s %10s %10s", "VARIANT", "UNITS", "EXPOSED", "MEAN", "95% CI",
      "LIFT", "P-VALUE", "P(BEAT)", "EXP.LOSS"),
  }
  for _, v in ipairs(r.variants) do
    lines[#lines + 1] = string.format("%-14s %8d %9d %10s %21s %9s %10s %10s %10s",
      v.name .. (v.control and "*" or ""), v.units, v.exposures, fmt(v.mean),
      "[" .. fmt(v.ci[1]) .. ", " .. fmt(v.ci[2]) .. "]", v.lift and fmt(v.lift * 100, "%+.2f%%") or "-",
      fmt(v.p_value, "%.3g"), fmt(v.prob_beat_control, "%.3f"), fmt(v.expected_loss, "%.3g"))
  end
  lines[#lines + 1] = "(* control)"
  return table.concat(lines, "\n")
end

--- Prints an experiment's results (for the REPL): tycho.experiments.show "spam-v2".
function M.show(name)
  local e, err, code = definition.load(name)
  if not e then return nil, err, code end
  print(M.format_results(e:results()))
end


return M
