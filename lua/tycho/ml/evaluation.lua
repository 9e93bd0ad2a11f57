--- A holdout evaluation small enough to keep with a registered version:
-- what the console's model page plots (ROC and precision-recall curves,
-- the confusion matrix, residuals, feature importance).
--
--   local ev = evaluation.of(model, x)   -- x: holdout rows through the steps, with the label
--   local ok, why, code = evaluation.check(ev)
--
-- Its size does not grow with the holdout: curves keep at most MAX_POINTS
-- points (picked here, so no reader ever sees the raw scores), the matrix
-- at most MAX_CLASSES classes, importance the TOP_FEATURES best, numbers
-- rounded to 4 decimals; check refuses a record past MAX_BYTES of JSON.
-- Record: { format = 1, task, rows, threshold, classes, roc = { fpr, tpr,
-- threshold, auc }, pr = { recall, precision, threshold, average_precision },
-- confusion = { labels, matrix }, residuals = { edges, counts, mean, std },
-- importance = { { feature, gain } } (best first), features }. Which parts
-- are there depends on the task: curves for binary classifiers, the matrix
-- for classifiers, residuals for regression, importance for tree models.
local ffi = require "ffi"
local json = require "tycho.util.json"
local errors = require "tycho.util.errors"
local metrics = require "tycho.ml.metrics"

local M = {}

M.MAX_POINTS = 200
M.MAX_CLASSES = 50
M.TOP_FEATURES = 20
M.RESIDUAL_BINS = 30
M.MAX_BYTES = 64 * 1024

local function r4(x) return math.floor(x * 1e4 + 0.5) / 1e4 end

-- Scores of the positive and of the negative rows, each sorted high to low.
local function split_scores(y, score, n)
  local pos, neg = {}, {}
  for i = 0, n - 1 do
    local list = y[i] == 1 and pos or neg
    list[#list + 1] = score[i]
  end
  local desc = function(a, b) return a > b end
  table.sort(pos, desc)
  table.sort(neg, desc)
  return pos, neg
end

-- ROC and PR points, lowering the threshold one distinct score at a time.
-- A point is kept when the curve has moved 2 / MAX_POINTS (in fpr + tpr,
-- a path of length 2 from (0,0) to (1,1)) since the last one kept, so
-- steep stretches keep their points whatever the class balance. Average
-- precision is summed over every threshold (sklearn's definition).
local function walk(pos, neg)
  local np, nn = #pos, #neg
  local roc = { fpr = { 0 }, tpr = { 0 }, threshold = { 1 } }
  local pr = { recall = { 0 }, precision = { 1 }, threshold = { 1 }, average_precision = 0 }
  local i, j, lf, lt = 1, 1, 0, 0
  local step = 2 / M.MAX_POINTS
  while i <= np or j <= nn do
    local s = math.max(pos[i] or -math.huge, neg[j] or -math.huge)
    local prev_recall = (i - 1) / np
    while pos[i] == s do i = i + 1 end
    while neg[j] == s do j = j + 1 end
    local tp, fp = i - 1, j - 1
    local fpr, tpr = fp / nn, tp / np
    pr.average_precision = pr.average_precision + (tpr - prev_recall) * tp / (tp + fp)
    if fpr - lf + tpr - lt >= step or (i > np and j > nn) then
      local k = #roc.fpr + 1
      roc.fpr[k], roc.tpr[k], roc.threshold[k] = r4(fpr), r4(tpr), r4(s)
      pr.recall[k], pr.precision[k], pr.threshold[k] = r4(tpr), r4(tp / (tp + fp)), r4(s)
      lf, lt = fpr, tpr
    end
  end
  pr.average_precision = r4(pr.average_precision)
  return roc, pr
end

--- ROC and precision-recall curves of scores against 0/1 labels (double
-- arrays of n values): { fpr, tpr, threshold } and { recall, precision,
-- threshold, average_precision }, from (0, 0) to (1, 1), at most
-- MAX_POINTS + 2 points each; nil when y holds a single class.
function M.curves(y, score, n)
  local pos, neg = split_scores(y, score, n)
  if #pos == 0 or #neg == 0 then return nil end
  return walk(pos, neg)
end

local function labels_of(model)
  local out = {}
  for i, c in ipairs(model.classes) do out[i] = tostring(c) end
  return out
end

local function confusion(model, y, pred, n)
  local k = #model.classes
  if k > M.MAX_CLASSES then return nil end
  return { labels = labels_of(model), matrix = metrics.confusion(y, pred, k, n) }
end

local function binary(model, x, raw, n, out)
  local y = metrics.label_codes(model, x)
  out.roc, out.pr = M.curves(y, raw, n)
  if out.roc then out.roc.auc = r4(metrics.auc(y, raw, n)) end
  local pred = ffi.new("double[?]", math.max(n, 1))
  for i = 0, n - 1 do pred[i] = raw[i] >= 0.5 and 1 or 0 end
  out.threshold, out.confusion = 0.5, confusion(model, y, pred, n)
end

local function multiclass(model, x, raw, k, n, out)
  local y = metrics.label_codes(model, x)
  local pred = ffi.new("double[?]", math.max(n, 1))
  for i = 0, n - 1 do
    local best = 0
    for c = 1, k - 1 do if raw[i * k + c] > raw[i * k + best] then best = c end end
    pred[i] = best
  end
  out.confusion = confusion(model, y, pred, n)
end

-- Residuals (truth - prediction) in RESIDUAL_BINS equal bins over their range.
local function regression(model, x, raw, n, out)
  local y = x:col(model.label):f64()
  local lo, hi, sum, sumsq = math.huge, -math.huge, 0, 0
  for i = 0, n - 1 do
    local r = y[i] - raw[i]
    lo, hi, sum, sumsq = math.min(lo, r), math.max(hi, r), sum + r, sumsq + r * r
  end
  if n == 0 then return end
  local bins = hi > lo and M.RESIDUAL_BINS or 1
  local width = hi > lo and (hi - lo) / bins or 1
  local counts, edges = {}, {}
  for b = 1, bins do counts[b] = 0 end
  for b = 0, bins do edges[b + 1] = lo + b * width end
  for i = 0, n - 1 do
    local b = math.min(bins, math.floor((y[i] - raw[i] - lo) / width) + 1)
    counts[b] = counts[b] + 1
  end
  local mean = sum / n
  out.residuals = { edges = edges, counts = counts, mean = mean, std = math.sqrt(math.max(0, sumsq / n - mean * mean)) }
end

-- The TOP_FEATURES largest split gains (tree models; others have none).
local function importance(model, out)
  local list = model.importance and model:importance()
  if not list then return end
  out.features, out.importance = #list, {}
  for i = 1, math.min(#list, M.TOP_FEATURES) do
    out.importance[i] = { feature = list[i].feature, gain = list[i].gain }
  end
end

--- The evaluation record of a fitted model on x, a frame of its inputs and
-- the label (a pipeline's holdout after its steps); nil for a model it does
-- not describe (clustering). Raises when x cannot be predicted.
function M.of(model, x)
  if model.task == "clustering" then return nil end
  local raw, k = model:predict_raw(x)
  if not raw then error("evaluation: " .. k, 2) end
  local n = x:nrows()
  local out = { format = 1, task = model.task, rows = n }
  if model.task == "binary" then
    binary(model, x, raw, n, out)
    out.classes = labels_of(model)
  elseif model.task == "regression" then
    regression(model, x, raw, n, out)
  else
    multiclass(model, x, raw, k, n, out)
    out.classes = #model.classes <= M.MAX_CLASSES and labels_of(model) or nil
  end
  importance(model, out)
  return out
end

--- Whether ev may be stored as an evaluation record: a table naming its
-- task, at most MAX_BYTES of JSON. Returns true, or nil, why, code
-- ("invalid", or "too_large").
function M.check(ev)
  if type(ev) ~= "table" or type(ev.task) ~= "string" then
    return errors.fail("invalid", "an evaluation is a table with its task (see tycho.ml.evaluation)")
  end
  local ok, text = pcall(json.encode, ev)
  if not ok then return errors.fail("invalid", "evaluation: " .. tostring(text)) end
  if #text > M.MAX_BYTES then
    return errors.fail("too_large", string.format("evaluation: %d bytes of JSON, more than %d", #text, M.MAX_BYTES))
  end
  return true
end

return M
