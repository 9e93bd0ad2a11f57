--- Evaluation metrics over core/kernels/tz_metrics (scikit-learn's
-- definitions). Plain functions take Lua tables or double arrays plus n:
--   metrics.accuracy(y_true, y_pred), metrics.auc(y_true, score),
--   metrics.log_loss(y_true, p), metrics.rmse / mae / r2(y_true, y_pred),
--   metrics.f1 / precision / recall(y_true, y_pred, pos_label or "macro"),
--   metrics.confusion(y_true, y_pred, k)
-- Labels for classification metrics are class indices 0..K-1.
-- metrics.evaluate(model, frame) gives the metrics suited to the model's task.
local ffi = require "ffi"
local kernels = require "tycho.core.kernels"
local base = require "tycho.core.base"

local M = {}
local err = base.err
local K = kernels.metrics
local out = ffi.new("double[1]")

local function array(v, n)
  if type(v) == "table" then
    n = n or #v
    local a = ffi.new("double[?]", math.max(n, 1))
    for i = 1, n do a[i - 1] = v[i] end
    return a, n
  end
  return v, n
end

local function call(fn, y, p, n, ...)
  local ya, yn = array(y, n)
  local pa = array(p, yn)
  if fn(ya, pa, yn, ...) ~= 0 then error("metrics: " .. ffi.string(err.msg), 3) end
  return out[0]
end

--- Fraction of rows where p (the predictions) equals y (the truth). As for
-- every metric here, y and p are Lua tables or double arrays and n their
-- length (#y by default, needed for arrays); raises on no rows or a NaN.
function M.accuracy(y, p, n) return call(K.accuracy, y, p, n, out, err) end
--- ROC AUC of scores s against 0/1 labels y (sklearn's roc_auc_score, ties
-- averaged); raises when y holds a single class.
function M.auc(y, s, n) return call(K.auc, y, s, n, out, err) end
--- Binary log loss of p, the probability of class 1, against 0/1 labels;
-- p is clipped to [1e-15, 1 - 1e-15] as sklearn does, so 0 and 1 are finite.
function M.log_loss(y, p, n) return call(K.log_loss, y, p, n, out, err) end
--- Root mean squared error of predictions p against truth y.
function M.rmse(y, p, n) return call(K.rmse, y, p, n, out, err) end
--- Mean absolute error of predictions p against truth y.
function M.mae(y, p, n) return call(K.mae, y, p, n, out, err) end
--- Coefficient of determination (sklearn's r2_score): 1 is exact, 0 is no
-- better than the mean, and it can go negative. A constant y gives 1 when
-- predicted exactly, else 0.
function M.r2(y, p, n) return call(K.r2, y, p, n, out, err) end

--- Multiclass log loss: prob is an n x k row-major array.
function M.log_loss_multi(y, prob, n, k)
  local ya = array(y, n)
  if K.log_loss_multi(ya, prob, n, k, out, err) ~= 0 then error("metrics: " .. ffi.string(err.msg), 2) end
  return out[0]
end

local prf = ffi.new("tz_metrics_prf_result")
local function prf_of(y, p, pos, n)
  local ya, yn = array(y, n)
  local pa = array(p, yn)
  local label = (pos == nil or pos == "macro") and -1 or pos
  if K.prf(ya, pa, yn, label, prf, err) ~= 0 then error("metrics: " .. ffi.string(err.msg), 3) end
  return prf
end
--- Precision: of the rows predicted pos, the fraction truly pos. pos is a
-- class index, or nil / "macro" for the unweighted mean over the classes
-- seen in either array (unlike sklearn, nil means macro, not class 1); 0 when
-- nothing is predicted pos.
function M.precision(y, p, pos, n) return prf_of(y, p, pos, n).precision end
--- Recall: of the rows truly pos, the fraction predicted pos; pos as for
-- precision (a class index, or nil / "macro"). 0 when there are none.
function M.recall(y, p, pos, n) return prf_of(y, p, pos, n).recall end
--- F1, the harmonic mean of precision and recall; pos as for precision
-- (macro averages the per-class F1s, as sklearn's average="macro").
function M.f1(y, p, pos, n) return prf_of(y, p, pos, n).f1 end

--- k x k confusion matrix as a Lua table of rows (true class) of counts.
function M.confusion(y, p, k, n)
  local ya, yn = array(y, n)
  local pa = array(p, yn)
  local counts = ffi.new("uint64_t[?]", k * k)
  if K.confusion(ya, pa, yn, k, counts, err) ~= 0 then error("metrics: " .. ffi.string(err.msg), 2) end
  local rows = {}
  for t = 1, k do
    rows[t] = {}
    for q = 1, k do rows[t][q] = tonumber(counts[(t - 1) * k + q - 1]) end
  end
  return rows
end

local LOWER_IS_BETTER = { rmse = true, mae = true, log_loss = true, inertia = true }
--- Whether a larger value of the metric named name is better: false for
-- rmse, mae, log_loss and inertia, true for every other name, unknown ones
-- included. Tuning, run sorting and registry gates rank by it.
function M.higher_is_better(name) return not LOWER_IS_BETTER[name] end

--- Class codes (0..K-1, a double array) of frame f's label column by the
-- model's classes, and the row count; raises on a label the model does not
-- know.
function M.label_codes(model, f)
  local col = f:col(model.label)
  local n, y = f:nrows(), ffi.new("double[?]", math.max(f:nrows(), 1))
  local index = {}
  for k, v in ipairs(model.classes) do index[v] = k - 1 end
  for i = 1, n do
    local code = index[col:get(i)]
    if code == nil then error("evaluate: label value " .. tostring(col:get(i)) .. " unknown to the model", 3) end
    y[i - 1] = code
  end
  return y, n
end

--- Metrics for model on frame f (which holds the label column):
-- binary: auc, accuracy, log_loss, precision, recall, f1;
-- multiclass: accuracy, log_loss, f1 (macro); regression: rmse, mae, r2;
-- clustering: inertia (of f under the model), silhouette (sampled).
function M.evaluate(model, f)
  local raw, k = model:predict_raw(f)
  if not raw then error("evaluate: " .. k, 2) end
  local n = f:nrows()
  if model.task == "regression" then
    local y = f:col(model.label):f64()
    return { rmse = M.rmse(y, raw, n), mae = M.mae(y, raw, n), r2 = M.r2(y, raw, n), rows = n }
  end
  if model.task == "clustering" then
    local x = select(1, require("tycho.ml.models")._data(f, model.features))
    local centers, kk = kernels.kmeans.centroids(model.handle)
    local res = { rows = n }
    if K.inertia(x, raw, centers, kk, out, err) == 0 then res.inertia = out[0] end
    -- Exact silhouette is O(n^2): a seeded sample of 2000 rows bounds it.
    if kk >= 2 and K.silhouette(x, raw, math.min(n, 2000), 42, out, err) == 0 then
      res.silhouette = out[0]
    end
    return res
  end
  local y = M.label_codes(model, f)
  local pred = ffi.new("double[?]", math.max(n, 1))
  if model.task == "binary" then
    for i = 0, n - 1 do pred[i] = raw[i] >= 0.5 and 1 or 0 end
    local pr = prf_of(y, pred, 1, n)
    return { auc = M.auc(y, raw, n), accuracy = M.accuracy(y, pred, n), log_loss = M.log_loss(y, raw, n),
             precision = pr.precision, recall = pr.recall, f1 = pr.f1, rows = n }
  end
  for i = 0, n - 1 do
    local best, bp = 0, raw[i * k]
    for c = 1, k - 1 do
      if raw[i * k + c] > bp then best, bp = c, raw[i * k + c] end
    end
    pred[i] = best
  end
  return { accuracy = M.accuracy(y, pred, n), log_loss = M.log_loss_multi(y, raw, n, k),
           f1 = prf_of(y, pred, "macro", n).f1, rows = n }
end

--- One named metric of model on frame f (for tuning).
function M.score(name, model, f)
  local res = M.evaluate(model, f)
  local v = res[name]
  if v == nil then error("metric '" .. tostring(name) .. "' does not apply to a " .. model.task .. " model", 2) end
  return v
end

return M
