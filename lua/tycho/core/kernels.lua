--- FFI declarations of core/kernels, shared by tycho.models and tycho.metrics.
-- Kernel calls never call back into Lua (progress goes to tz_progress in C),
-- so they are safe FFI leaf calls.
local ffi = require "ffi"
require "tycho.core.base"  -- tz_err, and core/util's declarations

ffi.cdef [[
typedef struct tz_data { size_t n_rows, n_cols; const double *const *cols; const double *y; const double *weight; } tz_data;


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
]]

return ffi.C
