--- Experiments: A/B tests and bandits on live traffic.
--
--   app:experiment { name = "spam-v2", unit = "email_id", kind = "ab",
--     variants = { { name = "control", model = "spam@production", weight = 0.5 },
--                  { name = "v2",      model = "spam@staging",    weight = 0.5 } },
--     metric = "correct", reward = "correct" }
--
-- The first variant is the control. kind: "ab" (a hash of salt and unit:
-- sticky across workers and restarts, nothing stored to decide), or a bandit
-- — "thompson" (Beta posteriors for binary metrics, normal for continuous),
-- "ucb1", "epsilon_greedy" — that decides from the per-variant outcome
-- counters in the home and keeps a unit on the variant it first got.
--
-- Layout in the home's `experiments` database (keys by tycho.keys):
--   "d" name              definition, status, winner (JSON)
--   "s" name              status word read on every assignment: "running",
--                         or "stopped" with the variant every unit now gets
--   "v" name variant      counters: units, exposures, sum, sumsq (JSON)
--   "u" name unit         the unit's variant: its name alone until the unit
--                         has an event, then {v, s, n} (JSON): variant,
--                         metric sum, event count
--   "c" name              fault counters: target errors, rejected events
--   "h" name variant hour the variant's counters as they stood at the end of
--                         that hour (Unix seconds, UTC): one record per hour
--                         with traffic, read by the results over time
--   "p" prediction id     feedback waiting for its prediction to be logged
-- A unit's value is the sum of its events (binary metrics: 1 once any event
-- is positive); units without events count as 0, as in GrowthBook.
--
-- Writes from the request path (exposures) are buffered and written in one
-- transaction every 200 ms; events and feedback are written at once.
--
-- With a cluster (TYCHO_CLUSTER, `tycho --cluster URL`) definitions,
-- status, counters, units' variants and outcomes are shared by every home
-- and this database is each home's copy, still the read path
-- (experiments/cluster.lua: its keys, and what happens when it is away).
--
-- The parts, beside this file: records.lua (the class, the layout, what
-- outcomes move), define.lua, assign.lua, events.lua (and stopping),
-- results.lua, timeline.lua (the results over time), cluster.lua; the feedback join
-- lives with monitoring (monitor/feedback.lua).
local shared = require "tycho.experiments.records"
local definition = require "tycho.experiments.define"
local assignment = require "tycho.experiments.assign"
require "tycho.experiments.events"  -- its methods join the Experiment class
require "tycho.experiments.timeline"  -- Experiment:timeline, the results over time
local results = require "tycho.experiments.results"
local feedback = require "tycho.monitor.feedback"

local M = {}

-- The public face: each name from the part that owns it.
M.define = definition.define
M.parse_model_ref = definition.parse_model_ref
M.load = definition.load
M.list = definition.list
M.flush = assignment.flush
M.format_results = results.format_results
M.show = results.show
M.feedback_in = feedback.feedback_in
M.has_pending = feedback.has_pending
M.reconcile = feedback.reconcile
M.log_key = feedback.log_key
M.unit_key = shared.unit_key
M.unit_hash = shared.unit_hash
M.MAX_NAME_BYTES = shared.MAX_NAME_BYTES
M.MAX_UNIT_BYTES = shared.MAX_UNIT_BYTES
M.Experiment = shared.Experiment

return M
