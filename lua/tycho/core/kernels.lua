--- The face of core/ml: the model kernels (gbt, forest, linear, logistic,
-- kmeans) and the metric kernels. Each family is one table of Lua functions
-- over its C calls: params() gives the kernel's defaults as a plain table;
-- fit(params, train, valid, progress) takes such a table back; save and
-- load speak Lua strings; predict, n_outputs, n_features and importance are
-- the C calls themselves (hot paths, no wrapper). Kernel calls never call
-- back into Lua (progress goes to tz_progress in C), so they are safe FFI
-- leaf calls.
local ffi = require "ffi"
local base = require "tycho.core.base"  -- tz_err, and core/util's declarations

ffi.cdef [[
typedef struct tz_data { size_t n_rows, n_cols; const double *const *cols; const double *y; const double *weight; } tz_data;
typedef struct tz_tree_node { double threshold; int32_t feature; int32_t left, right; uint8_t default_left; } tz_tree_node;
typedef struct tz_tree {
  int32_t n_nodes; int32_t n_leaves; int32_t n_values; tz_tree_node *nodes; double *values; double *gain;
  void *steps; int32_t depth;
} tz_tree;


typedef struct tz_gbt_params {
  int objective; int n_classes; int rounds; double learning_rate; int max_depth; int max_leaves;
  double min_child_weight; double lambda; double gamma; double subsample; double colsample; int max_bins;
  uint64_t seed; int early_stopping_rounds; double base_score;
} tz_gbt_params;
typedef struct tz_gbt_model tz_gbt_model;
void tz_gbt_params_default(tz_gbt_params *p);
typedef int (*tz_gbt_progress_fn)(void *ud, int round, double train_loss, double valid_loss);
int tz_gbt_fit(const tz_gbt_params *p, const tz_data *train, const tz_data *valid,
               tz_gbt_progress_fn progress, void *ud, tz_gbt_model **out, tz_err *err);
int tz_gbt_predict(const tz_gbt_model *m, const tz_data *x, double *out, tz_err *err);
int tz_gbt_n_outputs(const tz_gbt_model *m);
int tz_gbt_n_features(const tz_gbt_model *m);
int tz_gbt_rounds(const tz_gbt_model *m);
int tz_gbt_objective(const tz_gbt_model *m);
double tz_gbt_base_margin(const tz_gbt_model *m);
const struct tz_tree *tz_gbt_tree(const tz_gbt_model *m, int i);
void tz_gbt_importance(const tz_gbt_model *m, double *gain_per_feature);
int tz_gbt_save(const tz_gbt_model *m, unsigned char **buf, size_t *len, tz_err *err);
int tz_gbt_load(const void *buf, size_t len, tz_gbt_model **out, tz_err *err);
void tz_gbt_free(tz_gbt_model *m);

typedef struct tz_forest_params {
  int task; int n_classes; int n_trees; int max_depth; int min_samples_leaf; double max_features;
  int bootstrap; int max_bins; uint64_t seed;
} tz_forest_params;
typedef struct tz_forest_model tz_forest_model;
void tz_forest_params_default(tz_forest_params *p);
int tz_forest_fit(const tz_forest_params *p, const tz_data *train, tz_forest_model **out, tz_err *err);
int tz_forest_predict(const tz_forest_model *m, const tz_data *x, double *out, tz_err *err);
int tz_forest_n_outputs(const tz_forest_model *m);
int tz_forest_n_features(const tz_forest_model *m);
double tz_forest_oob_score(const tz_forest_model *m);
int tz_forest_n_trees(const tz_forest_model *m);
const struct tz_tree *tz_forest_tree(const tz_forest_model *m, int i);
void tz_forest_importance(const tz_forest_model *m, double *gain_per_feature);
int tz_forest_save(const tz_forest_model *m, unsigned char **buf, size_t *len, tz_err *err);
int tz_forest_load(const void *buf, size_t len, tz_forest_model **out, tz_err *err);
void tz_forest_free(tz_forest_model *m);

typedef struct tz_linear_params { double alpha; int fit_intercept; } tz_linear_params;
typedef struct tz_linear_model tz_linear_model;
void tz_linear_params_default(tz_linear_params *p);
int tz_linear_fit(const tz_linear_params *params, const tz_data *data, tz_linear_model **out, tz_err *err);
int tz_linear_predict(const tz_linear_model *m, const tz_data *x, double *out, tz_err *err);
size_t tz_linear_n_features(const tz_linear_model *m);
const double *tz_linear_coef(const tz_linear_model *m);
double tz_linear_intercept(const tz_linear_model *m);
int tz_linear_save(const tz_linear_model *m, unsigned char **out, size_t *out_len, tz_err *err);
int tz_linear_load(const void *data, size_t len, tz_linear_model **out, tz_err *err);
void tz_linear_free(tz_linear_model *m);

typedef struct tz_logistic_params { double C; int max_iter; double tol; int fit_intercept; int n_classes; } tz_logistic_params;
typedef struct tz_logistic_model tz_logistic_model;
void tz_logistic_params_default(tz_logistic_params *p);
int tz_logistic_fit(const tz_logistic_params *params, const tz_data *data, tz_logistic_model **out, tz_err *err);
int tz_logistic_predict(const tz_logistic_model *m, const tz_data *x, double *out, tz_err *err);
size_t tz_logistic_n_features(const tz_logistic_model *m);
size_t tz_logistic_n_outputs(const tz_logistic_model *m);
const double *tz_logistic_coef(const tz_logistic_model *m);
const double *tz_logistic_intercept(const tz_logistic_model *m);
int tz_logistic_n_iter(const tz_logistic_model *m);
int tz_logistic_converged(const tz_logistic_model *m);
int tz_logistic_save(const tz_logistic_model *m, unsigned char **out, size_t *out_len, tz_err *err);
int tz_logistic_load(const void *data, size_t len, tz_logistic_model **out, tz_err *err);
void tz_logistic_free(tz_logistic_model *m);

typedef struct tz_kmeans_params { int k; int n_init; int max_iter; double tol; uint64_t seed; } tz_kmeans_params;
typedef struct tz_kmeans_model tz_kmeans_model;
void tz_kmeans_params_default(tz_kmeans_params *p);
int tz_kmeans_fit(const tz_kmeans_params *params, const tz_data *data, tz_kmeans_model **out, tz_err *err);
int tz_kmeans_predict(const tz_kmeans_model *m, const tz_data *x, double *out, tz_err *err);
size_t tz_kmeans_k(const tz_kmeans_model *m);
size_t tz_kmeans_n_features(const tz_kmeans_model *m);
const double *tz_kmeans_centroids(const tz_kmeans_model *m);
double tz_kmeans_inertia(const tz_kmeans_model *m);
int tz_kmeans_n_iter(const tz_kmeans_model *m);
int tz_kmeans_save(const tz_kmeans_model *m, unsigned char **out, size_t *out_len, tz_err *err);
int tz_kmeans_load(const void *data, size_t len, tz_kmeans_model **out, tz_err *err);
void tz_kmeans_free(tz_kmeans_model *m);



typedef struct tz_metrics_prf { double precision, recall, f1; } tz_metrics_prf_result;
int tz_metrics_accuracy(const double *y_true, const double *y_pred, size_t n, double *out, tz_err *err);
int tz_metrics_prf(const double *y_true, const double *y_pred, size_t n, int pos_label,
                   tz_metrics_prf_result *out, tz_err *err);
int tz_metrics_confusion(const double *y_true, const double *y_pred, size_t n, size_t k, uint64_t *out, tz_err *err);
int tz_metrics_auc(const double *y_true, const double *score, size_t n, double *out, tz_err *err);
int tz_metrics_log_loss(const double *y_true, const double *p1, size_t n, double *out, tz_err *err);
int tz_metrics_log_loss_multi(const double *y_true, const double *prob, size_t n, size_t k, double *out, tz_err *err);
int tz_metrics_rmse(const double *y_true, const double *y_pred, size_t n, double *out, tz_err *err);
int tz_metrics_mae(const double *y_true, const double *y_pred, size_t n, double *out, tz_err *err);
int tz_metrics_r2(const double *y_true, const double *y_pred, size_t n, double *out, tz_err *err);
int tz_metrics_inertia(const tz_data *x, const double *labels, const double *centers, size_t k, double *out, tz_err *err);
int tz_metrics_silhouette(const tz_data *x, const double *labels, size_t sample_size, uint64_t seed,
                          double *out, tz_err *err);

void tz_dense_apply(double *x, int n, const int *op, const int *at, const double *a, const double *b);
void tz_dense_columns(const double *rows, int n_rows, int width, int p, double *scratch, double *cols,
                      int n, const int *op, const int *at, const double *a, const double *b);
void tz_dense_block(const double *const *src, size_t lo, size_t n, int p, double *const *scratch,
                    const double **out, int n_ops, const int *op, const int *at, const double *a, const double *b);
]]

local C = ffi.C
local err = base.err
local M = {}

-- A struct's fields as a table (the C defaults, so Lua never retypes them).
local function fields_of(p, names)
  local out = {}
  for _, name in ipairs(names) do
    local v = p[name]
    out[name] = type(v) == "cdata" and tonumber(v) or v
  end
  return out
end

local buf_out, len_out = ffi.new("unsigned char*[1]"), ffi.new("size_t[1]")

--- The buffer a kernel allocated, as a Lua string (the buffer is freed).
local function take_buffer()
  local s = ffi.string(buf_out[0], len_out[0])
  C.free(buf_out[0])
  return s
end

-- name: the family's C prefix; fields: its params struct's fields;
-- fit(p, train, valid, out, progress): the C call; info(handle): what the
-- fit determined, for the model's metadata.
local function family(name, fields, fit, info, extra)
  local pre = "tz_" .. name .. "_"
  local handle_t = ffi.typeof("tz_" .. name .. "_model*[1]")
  local params_t = ffi.typeof("tz_" .. name .. "_params")
  local free = C[pre .. "free"]
  local n_features = C[pre .. "n_features"]
  local k = {
    predict = C[pre .. "predict"],
    n_features = function(h) return tonumber(n_features(h)) end,
  }
  local has_outputs, n_outputs = pcall(function() return C[pre .. "n_outputs"] end)
  if has_outputs then k.n_outputs = function(h) return tonumber(n_outputs(h)) end end
  --- The kernel's default parameters, by field name.
  function k.params()
    local p = params_t()
    C[pre .. "params_default"](p)
    return fields_of(p, fields)
  end
  --- A trained handle (freed with the last reference), or nil and the
  -- kernel's message. progress: { label =, total =, quiet = } or nil.
  function k.fit(params, train, valid, progress)
    local p = params_t()
    C[pre .. "params_default"](p)
    for field, v in pairs(params) do p[field] = v end
    local out = handle_t()
    local rc = fit(p, train, valid, out, progress)
    if rc ~= 0 then return nil, ffi.string(err.msg) end
    return ffi.gc(out[0], free), info(out[0])
  end
  --- The kernel's own versioned, checksummed bytes, or nil and why.
  function k.save(h)
    if C[pre .. "save"](h, buf_out, len_out, err) ~= 0 then return nil, ffi.string(err.msg) end
    return take_buffer()
  end
  --- A handle from save's bytes (any part of a larger string: ptr, len),
  -- or nil and why.
  function k.load(ptr, len)
    local out = handle_t()
    if C[pre .. "load"](ptr, len, out, err) ~= 0 then return nil, ffi.string(err.msg) end
    return ffi.gc(out[0], free)
  end
  for key, v in pairs(extra or {}) do k[key] = v end
  return k
end

-- ---- a trained model's parts, for exporters (ml/onnx) ---------------------------

local function list_of(ptr, n)
  local out = {}
  for i = 1, n do out[i] = ptr[i - 1] end
  return out
end

-- A tree as plain tables: nodes { feature, left, right, default_left,
-- threshold } (children numbered as tz_tree numbers them: a later split's
-- 0-based index, or ~leaf), n_leaves, and values (n_leaves x n_values).
local function tree_parts(t)
  local nodes = {}
  for i = 0, t.n_nodes - 1 do
    local n = t.nodes[i]
    nodes[i + 1] = { feature = n.feature, left = n.left, right = n.right, default_left = n.default_left,
                     threshold = n.threshold }
  end
  return { nodes = nodes, n_leaves = t.n_leaves, values = list_of(t.values, t.n_leaves * t.n_values) }
end

local function trees_of(h, n, tree_at)
  local out = {}
  for i = 1, n do out[i] = tree_parts(tree_at(h, i - 1)) end
  return out
end

local function progress_of(opts)
  return ffi.new("tz_progress", { label = opts.label, total = opts.total or 0, quiet = opts.quiet and 1 or 0 })
end

M.gbt = family("gbt",
  { "objective", "n_classes", "rounds", "learning_rate", "max_depth", "max_leaves", "min_child_weight", "lambda",
    "gamma", "subsample", "colsample", "max_bins", "seed", "early_stopping_rounds", "base_score" },
  function(p, train, valid, out, progress)
    local pr = progress_of(progress or { label = "gbt", total = p.rounds, quiet = true })
    local rc = C.tz_gbt_fit(p, train, valid, C.tz_progress_report, pr, out, err)
    C.tz_progress_done(pr)
    return rc
  end,
  function(h) return { rounds = C.tz_gbt_rounds(h) } end,
  { importance = C.tz_gbt_importance,
    --- The model as exporters read it: objective (0 squared, 1 logistic,
    -- 2 softmax), n_outputs (trees per round), rounds, base_margin, and
    -- trees (rounds x n_outputs, round-major).
    parts = function(h)
      local k, rounds = C.tz_gbt_n_outputs(h), C.tz_gbt_rounds(h)
      return { objective = C.tz_gbt_objective(h), n_outputs = k, rounds = rounds,
               base_margin = C.tz_gbt_base_margin(h), trees = trees_of(h, rounds * k, C.tz_gbt_tree) }
    end })

local GBT_KIND = 1  -- as tz_gbt.c writes it: version 1, or 2 with flags
M.gbt.SUM_F32 = 1  -- TZ_GBT_SUM_F32: predictions sum in float32, as XGBoost's

local function u32(w, v) C.tz_blob_put_u32(w, v < 0 and v + 4294967296 or v) end

--- The bytes tz_gbt_save would write for a model made elsewhere (an
-- imported XGBoost model), or nil and why. m: objective (0 squared, 1
-- logistic, 2 softmax), n_features, n_outputs (1, or K for softmax),
-- base_margin, flags (0, or SUM_F32), importance (n_features numbers),
-- trees (rounds x n_outputs, round-major), each { feature, left, right,
-- default_left, threshold } (one entry per split, tz_tree's numbering: a
-- child is a later split's 0-based index or ~leaf) and values (one per
-- leaf). Nothing is checked here: load checks every count and index, as
-- for any model file.
function M.gbt.pack(m)
  local w = ffi.new("tz_blob_writer")
  C.tz_blob_writer_init(w)
  for _, v in ipairs({ m.objective, m.n_features, m.n_outputs, #m.trees / m.n_outputs }) do u32(w, v) end
  C.tz_blob_put_f64(w, m.base_margin)
  local flags = m.flags or 0
  if flags ~= 0 then u32(w, flags) end
  for j = 1, m.n_features do C.tz_blob_put_f64(w, m.importance[j] or 0) end
  for _, t in ipairs(m.trees) do
    u32(w, #t.feature)
    u32(w, #t.values)
    for i = 1, #t.feature do
      u32(w, t.feature[i])
      u32(w, t.left[i])
      u32(w, t.right[i])
      C.tz_blob_put_u8(w, t.default_left[i])
      C.tz_blob_put_f64(w, t.threshold[i])
    end
    for i = 1, #t.values do C.tz_blob_put_f64(w, t.values[i]) end
  end
  if C.tz_blob_finish(w, GBT_KIND, flags ~= 0 and 2 or 1, buf_out, len_out, err) ~= 0 then return nil, ffi.string(err.msg) end
  return take_buffer()
end

M.forest = family("forest",
  { "task", "n_classes", "n_trees", "max_depth", "min_samples_leaf", "max_features", "bootstrap", "max_bins", "seed" },
  function(p, train, _, out) return C.tz_forest_fit(p, train, out, err) end,
  function(h) return { oob_score = C.tz_forest_oob_score(h) } end,
  { importance = C.tz_forest_importance,
    --- The model as exporters read it: n_outputs (values per leaf) and trees.
    parts = function(h)
      return { n_outputs = C.tz_forest_n_outputs(h), trees = trees_of(h, C.tz_forest_n_trees(h), C.tz_forest_tree) }
    end })

M.logistic = family("logistic", { "C", "max_iter", "tol", "fit_intercept", "n_classes" },
  function(p, train, _, out) return C.tz_logistic_fit(p, train, out, err) end,
  function(h) return { iterations = C.tz_logistic_n_iter(h), converged = C.tz_logistic_converged(h) ~= 0 } end,
  { --- The model as exporters read it: n_outputs (1 for binary), coef on the
    -- raw features (n_outputs x n_features, row-major) and intercepts.
    parts = function(h)
      local p, k = tonumber(C.tz_logistic_n_features(h)), tonumber(C.tz_logistic_n_outputs(h))
      return { n_outputs = k, coef = list_of(C.tz_logistic_coef(h), k * p),
               intercept = list_of(C.tz_logistic_intercept(h), k) }
    end })

M.linear = family("linear", { "alpha", "fit_intercept" },
  function(p, train, _, out) return C.tz_linear_fit(p, train, out, err) end,
  function(h) return { intercept = C.tz_linear_intercept(h) } end,
  { n_outputs = function() return 1 end,
    --- The model as exporters read it: coef (n_features) and intercept.
    parts = function(h)
      return { coef = list_of(C.tz_linear_coef(h), tonumber(C.tz_linear_n_features(h))),
               intercept = C.tz_linear_intercept(h) }
    end })

M.kmeans = family("kmeans", { "k", "n_init", "max_iter", "tol", "seed" },
  function(p, train, _, out) return C.tz_kmeans_fit(p, train, out, err) end,
  function(h) return { inertia = C.tz_kmeans_inertia(h), iterations = C.tz_kmeans_n_iter(h) } end,
  { n_outputs = function() return 1 end,
    --- The centroids (k rows of n_features, row-major, owned by the model) and k.
    centroids = function(h) return C.tz_kmeans_centroids(h), tonumber(C.tz_kmeans_k(h)) end,
    --- The model as exporters read it: centers (k lists of n_features).
    parts = function(h)
      local k, p, c = tonumber(C.tz_kmeans_k(h)), tonumber(C.tz_kmeans_n_features(h)), C.tz_kmeans_centroids(h)
      local centers = {}
      for i = 1, k do centers[i] = list_of(c + (i - 1) * p, p) end
      return { centers = centers }
    end })

--- The metric kernels: each takes arrays and a count, writes *out and
-- returns 0, or fills core/base's err.
M.metrics = {
  accuracy = C.tz_metrics_accuracy, auc = C.tz_metrics_auc, log_loss = C.tz_metrics_log_loss,
  log_loss_multi = C.tz_metrics_log_loss_multi, rmse = C.tz_metrics_rmse, mae = C.tz_metrics_mae,
  r2 = C.tz_metrics_r2, prf = C.tz_metrics_prf, confusion = C.tz_metrics_confusion,
  inertia = C.tz_metrics_inertia, silhouette = C.tz_metrics_silhouette,
}

--- Elementwise pipeline steps on one row of doubles (core/kernels/tz_dense):
-- apply(x, n, op, at, a, b); columns(rows, n_rows, width, p, scratch, cols,
-- n, op, at, a, b) for a batch of rows; block(src, lo, n, p, scratch, out,
-- n_ops, op, at, a, b): a block of whole columns as a model's input, copied
-- only where an operation changes it; the op codes by name.
M.dense = { apply = C.tz_dense_apply, columns = C.tz_dense_columns, block = C.tz_dense_block,
            FILL = 1, AFFINE = 2, CLIP = 3, LOG1P = 4, MISSING = 5 }

return M
