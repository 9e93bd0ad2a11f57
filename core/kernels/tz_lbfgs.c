#include "kernels/tz_lbfgs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define C1 1e-4  /* sufficient decrease */
#define C2 0.9   /* curvature (loose, as quasi-Newton methods want) */

void tz_lbfgs_params_default(tz_lbfgs_params *p)
{
    p->m = 10;
    p->max_iter = 100;
    p->max_linesearch = 20;
    p->gtol = 1e-5;
    p->ftol = 2.2204460492503131e-09;
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double absmax(const double *g, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double a = fabs(g[i]);
        if (!(a <= m)) m = a;  /* NaN propagates */
    }
    return m;
}

/* One line search along d from x0: trial points in xt/gt; gl keeps the
 * gradient of the best point that satisfies sufficient decrease. */
typedef struct lsearch {
    size_t n;
    tz_lbfgs_fg fg;
    void *ud;
    const double *x0, *d;
    double f0, dg0;
    double *xt, *gt, *gl;
    int n_eval, max_eval;
} lsearch;

static double eval_at(lsearch *s, double a, double *dg)
{
    for (size_t i = 0; i < s->n; i++) s->xt[i] = s->x0[i] + a * s->d[i];
    double f = s->fg(s->ud, s->xt, s->gt);
    s->n_eval++;
    *dg = isfinite(f) ? dot(s->gt, s->d, s->n) : NAN;
    if (!isfinite(f) || !isfinite(*dg)) {
        *dg = NAN;
        return INFINITY;
    }
    return f;
}

/* Minimiser of the cubic (or quadratic) through the two end points, kept
 * inside [left, right]; bisection when the model is unusable. */
static double interpolate(double a, double fa, double da, double b, double fb, double db,
                          double left, double right)
{
    double t = NAN;
    if (isfinite(fb) && isfinite(db)) {
        double d1 = da + db - 3 * (fa - fb) / (a - b);
        double disc = d1 * d1 - da * db;
        if (disc >= 0) {
            double d2 = copysign(sqrt(disc), b - a);
            double den = db - da + 2 * d2;
            if (den != 0) t = b - (b - a) * (db + d2 - d1) / den;
        }
    } else if (isfinite(fb)) {
        double h = b - a, c = fb - fa - da * h;
        if (c > 0) t = a - da * h * h / (2 * c);
    }
    if (!isfinite(t) || t < left || t > right) t = 0.5 * (left + right);
    return t;
}

/* Point the search at lo (already known to decrease f enough). */
static int accept_lo(lsearch *s, double lo, double flo, double *a_out, double *f_out)
{
    if (lo <= 0) return -1;
    for (size_t i = 0; i < s->n; i++) s->xt[i] = s->x0[i] + lo * s->d[i];
    memcpy(s->gt, s->gl, s->n * sizeof *s->gt);
    *a_out = lo;
    *f_out = flo;
    return 0;
}

static int zoom(lsearch *s, double lo, double flo, double dlo, double hi, double fhi, double dhi,
                double *a_out, double *f_out)
{
    while (s->n_eval < s->max_eval) {
        double left = fmin(lo, hi), right = fmax(lo, hi), w = right - left;
        if (w <= 1e-15 * right) break;
        double a = interpolate(lo, flo, dlo, hi, fhi, dhi, left + 0.1 * w, right - 0.1 * w);
        double dg, f = eval_at(s, a, &dg);
        if (f > s->f0 + C1 * a * s->dg0 || f >= flo) {
            hi = a;
            fhi = f;
            dhi = dg;
            continue;
        }
        if (fabs(dg) <= -C2 * s->dg0) {
            *a_out = a;
            *f_out = f;
            return 0;
        }
        memcpy(s->gl, s->gt, s->n * sizeof *s->gl);
        if (dg * (hi - lo) >= 0) {
            hi = lo;
            fhi = flo;
            dhi = dlo;
        }
        lo = a;
        flo = f;
        dlo = dg;
    }
    return accept_lo(s, lo, flo, a_out, f_out);
}

/* Strong Wolfe search (Nocedal & Wright, algorithms 3.5 and 3.6). On
 * success the new point and gradient are in xt/gt. */
static int line_search(lsearch *s, double a, double *a_out, double *f_out)
{
    double a_prev = 0, f_prev = s->f0, dg_prev = s->dg0;
    for (int it = 0; s->n_eval < s->max_eval; it++) {
        double dg, f = eval_at(s, a, &dg);
        if (f > s->f0 + C1 * a * s->dg0 || (it > 0 && f >= f_prev))
            return zoom(s, a_prev, f_prev, dg_prev, a, f, dg, a_out, f_out);
        if (fabs(dg) <= -C2 * s->dg0) {
            *a_out = a;
            *f_out = f;
            return 0;
        }
        memcpy(s->gl, s->gt, s->n * sizeof *s->gl);
        if (dg >= 0) return zoom(s, a, f, dg, a_prev, f_prev, dg_prev, a_out, f_out);
        a_prev = a;
        f_prev = f;
        dg_prev = dg;
        a *= 4;
    }
    return accept_lo(s, a_prev, f_prev, a_out, f_out);
}

int tz_lbfgs_minimize(size_t n, double *x, tz_lbfgs_fg fg, void *ud,
                      const tz_lbfgs_params *params, tz_lbfgs_result *result, tz_err *err)
{
    tz_lbfgs_params p;
    if (params) p = *params; else tz_lbfgs_params_default(&p);
    if (n == 0 || !x || !fg)
        return tz_err_set(err, TZ_EINVAL, "lbfgs: empty problem or missing callback");
    if (p.m < 1 || p.max_iter < 0 || p.max_linesearch < 1 || !(p.gtol >= 0) || !(p.ftol >= 0))
        return tz_err_set(err, TZ_EINVAL, "lbfgs: bad parameters (m >= 1, max_iter >= 0, max_linesearch >= 1, tolerances >= 0)");
    size_t m = (size_t)p.m;
    if (n > ((size_t)-1 / sizeof(double)) / (2 * m + 6))
        return tz_err_set(err, TZ_ENOMEM, "lbfgs: problem too large");
    double *mem = malloc((2 * m + 5) * n * sizeof *mem + 2 * m * sizeof *mem);
    if (!mem) return tz_err_set(err, TZ_ENOMEM, "lbfgs: out of memory for %zu variables", n);
    double *g = mem, *d = g + n, *xt = d + n, *gt = xt + n, *gl = gt + n;
    double *S = gl + n, *Y = S + m * n, *rho = Y + m * n, *alpha = rho + m;

    tz_lbfgs_result res = { 0 };
    double f = fg(ud, x, g);
    res.n_eval = 1;
    res.gmax = absmax(g, n);
    if (!isfinite(f) || !isfinite(res.gmax)) {
        free(mem);
        return tz_err_set(err, TZ_EINVAL, "lbfgs: objective or gradient not finite at the starting point");
    }
    res.status = TZ_LBFGS_MAXITER;
    size_t start = 0, k = 0;  /* ring of k pairs, oldest at start */
    if (res.gmax <= p.gtol) res.status = TZ_LBFGS_GTOL;
    while (res.status == TZ_LBFGS_MAXITER && res.n_iter < p.max_iter) {
        /* Two-loop recursion: d = -H g. */
        for (size_t i = 0; i < n; i++) d[i] = -g[i];
        for (size_t c = k; c-- > 0;) {
            size_t j = (start + c) % m;
            alpha[j] = rho[j] * dot(S + j * n, d, n);
            for (size_t i = 0; i < n; i++) d[i] -= alpha[j] * Y[j * n + i];
        }
        if (k > 0) {
            size_t j = (start + k - 1) % m;
            const double *yj = Y + j * n;
            double gamma = 1.0 / (rho[j] * dot(yj, yj, n));
            for (size_t i = 0; i < n; i++) d[i] *= gamma;
        }
        for (size_t c = 0; c < k; c++) {
            size_t j = (start + c) % m;
            double b = rho[j] * dot(Y + j * n, d, n);
            for (size_t i = 0; i < n; i++) d[i] += (alpha[j] - b) * S[j * n + i];
        }
        double dg0 = dot(g, d, n);
        if (!(dg0 < 0)) {  /* not a descent direction: forget the history */
            k = 0;
            for (size_t i = 0; i < n; i++) d[i] = -g[i];
            dg0 = -dot(g, g, n);
        }
        double step0 = k == 0 ? fmin(1.0, 1.0 / sqrt(-dg0)) : 1.0;
        lsearch ls = { n, fg, ud, x, d, f, dg0, xt, gt, gl, res.n_eval, res.n_eval + p.max_linesearch };
        double step, f_new;
        int rc = line_search(&ls, step0, &step, &f_new);
        res.n_eval = ls.n_eval;
        if (rc != 0) {
            if (k > 0) {  /* retry once along steepest descent */
                k = 0;
                continue;
            }
            res.status = TZ_LBFGS_LINESEARCH;
            break;
        }
        res.n_iter++;
        size_t slot = k < m ? (start + k) % m : start;
        double *s = S + slot * n, *y = Y + slot * n;
        for (size_t i = 0; i < n; i++) {
            s[i] = xt[i] - x[i];
            y[i] = gt[i] - g[i];
        }
        double sy = dot(s, y, n), yy = dot(y, y, n);
        if (sy > 1e-10 * yy && sy > 0) {
            rho[slot] = 1.0 / sy;
            if (k < m) k++; else start = (start + 1) % m;
        } else if (k == m) {  /* the oldest pair was overwritten: drop it */
            start = (start + 1) % m;
            k--;
        }
        double f_prev = f;
        f = f_new;
        memcpy(x, xt, n * sizeof *x);
        memcpy(g, gt, n * sizeof *g);
        res.gmax = absmax(g, n);
        if (res.gmax <= p.gtol) res.status = TZ_LBFGS_GTOL;
        else if ((f_prev - f) / fmax(fmax(fabs(f_prev), fabs(f)), 1.0) <= p.ftol) res.status = TZ_LBFGS_FTOL;
    }
    res.f = f;
    if (result) *result = res;
    free(mem);
    return 0;
}
