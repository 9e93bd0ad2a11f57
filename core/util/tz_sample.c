#include "util/tz_sample.h"

#include <math.h>

/* splitmix64: one add and a finalizer per draw, every state value valid. */
static uint64_t next64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double tz_sample_uniform(uint64_t *state)
{
    return (double)(next64(state) >> 11) * 0x1.0p-53;
}

double tz_sample_normal(uint64_t *state)
{
    /* 1 - u is in (0, 1]: the log is finite. */
    double u1 = 1.0 - tz_sample_uniform(state), u2 = tz_sample_uniform(state);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double tz_sample_gamma(uint64_t *state, double shape)
{
    if (!(shape > 0) || !isfinite(shape)) return NAN;
    /* Shapes below 1: Gamma(shape + 1) * U^(1 / shape). */
    if (shape < 1) return tz_sample_gamma(state, shape + 1) * pow(1.0 - tz_sample_uniform(state), 1.0 / shape);
    double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = tz_sample_normal(state), t = 1.0 + c * x;
        if (t <= 0) continue;
        double v = t * t * t, u = 1.0 - tz_sample_uniform(state);
        /* The squeeze accepts most draws without the two logs; it only
         * accepts what the exact test below would. */
        if (u < 1.0 - 0.0331 * (x * x) * (x * x)) return d * v;
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v)) return d * v;
    }
}

double tz_sample_beta(uint64_t *state, double a, double b)
{
    double x = tz_sample_gamma(state, a);
    return x / (x + tz_sample_gamma(state, b));
}

int tz_sample_best_beta(uint64_t *state, int n, const double *a, const double *b)
{
    int best = 0;
    double top = -INFINITY;
    for (int i = 0; i < n; i++) {
        double x = tz_sample_beta(state, a[i], b[i]);
        if (x > top) top = x, best = i;
    }
    return best;
}

int tz_sample_best_normal(uint64_t *state, int n, const double *mean, const double *sd)
{
    int best = 0;
    double top = -INFINITY;
    for (int i = 0; i < n; i++) {
        double x = mean[i] + sd[i] * tz_sample_normal(state);
        if (x > top) top = x, best = i;
    }
    return best;
}
