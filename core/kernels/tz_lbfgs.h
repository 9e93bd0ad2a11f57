/*
 * tz_lbfgs — a limited-memory BFGS minimiser for smooth unconstrained
 * problems, shared by the kernels that fit by optimisation (logistic
 * regression today).
 *
 * The caller owns x (n doubles: the starting point on entry, the best point
 * found on return) and the callback's user data; the minimiser allocates its
 * own scratch (about (2m + 5) n doubles) and frees it before returning.
 * The callback fg(ud, x, g) returns f(x) and writes the gradient into g (n
 * doubles); it may return a non-finite value for a point outside the domain
 * (the line search then steps back). The iteration is sequential and
 * deterministic: the same callback values give the same iterates, so a
 * callback that reduces in a fixed order makes the whole fit reproducible.
 *
 * Stops when max|g_i| <= gtol (TZ_LBFGS_GTOL), when the relative decrease
 * (f_prev - f) / max(|f_prev|, |f|, 1) <= ftol (TZ_LBFGS_FTOL), after
 * max_iter iterations (TZ_LBFGS_MAXITER), or when no step along a descent
 * direction gives sufficient decrease (TZ_LBFGS_LINESEARCH: rounding noise
 * near the optimum, usually harmless). Those are all success (0); the status
 * is in result->status. Errors: TZ_EINVAL (n == 0, bad parameters, f or g
 * not finite at the starting point), TZ_ENOMEM.
 *
 * The line search looks for a step meeting the strong Wolfe conditions
 * (c1 = 1e-4, c2 = 0.9) by bracketing and cubic-interpolation zoom.
 */
#ifndef TZ_LBFGS_H
#define TZ_LBFGS_H

#include <stddef.h>

#include "util/tz_err.h"

typedef double (*tz_lbfgs_fg)(void *ud, const double *x, double *g);

typedef struct tz_lbfgs_params {
    int m;              /* history pairs kept (default 10) */
    int max_iter;       /* iterations (default 100) */
    int max_linesearch; /* evaluations per line search (default 20) */
    double gtol;        /* on max |g_i| (default 1e-5) */
    double ftol;        /* on the relative decrease of f (default 2.2e-9, scipy's) */
} tz_lbfgs_params;

enum {
    TZ_LBFGS_GTOL = 0,
    TZ_LBFGS_FTOL = 1,
    TZ_LBFGS_MAXITER = 2,
    TZ_LBFGS_LINESEARCH = 3,
};

typedef struct tz_lbfgs_result {
    double f;           /* f at the returned x */
    double gmax;        /* max |g_i| there */
    int n_iter, n_eval; /* iterations done, callback calls made */
    int status;         /* TZ_LBFGS_* */
} tz_lbfgs_result;

/* Fills the defaults listed above. */
void tz_lbfgs_params_default(tz_lbfgs_params *p);

/* Minimises fg from x; params NULL means the defaults. result may be NULL. */
int tz_lbfgs_minimize(size_t n, double *x, tz_lbfgs_fg fg, void *ud,
                      const tz_lbfgs_params *params, tz_lbfgs_result *result, tz_err *err);

#endif
