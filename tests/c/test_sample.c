#include <math.h>

#include "kernels/tz_sample.h"
#include "tap.h"

/* Mean and variance of n draws of f(state, a, b) against the distribution's. */
typedef double (*draw_fn)(uint64_t *state, double a, double b);

static double draw_beta(uint64_t *s, double a, double b) { return tz_sample_beta(s, a, b); }
static double draw_gamma(uint64_t *s, double a, double b) { (void)b; return tz_sample_gamma(s, a); }
static double draw_normal(uint64_t *s, double a, double b) { (void)a; (void)b; return tz_sample_normal(s); }

static void moments(draw_fn f, double a, double b, double mean, double var, const char *what)
{
    uint64_t state = 42;
    const int n = 200000;
    double sum = 0, sumsq = 0;
    for (int i = 0; i < n; i++) {
        double x = f(&state, a, b);
        sum += x;
        sumsq += x * x;
    }
    double m = sum / n, v = sumsq / n - m * m;
    /* Five standard errors of the mean; 5 % on the variance. */
    ok(fabs(m - mean) < 5 * sqrt(var / n), "%s: mean %.5f, expected %.5f", what, m, mean);
    ok(fabs(v - var) < 0.05 * var, "%s: variance %.5f, expected %.5f", what, v, var);
}

int main(void)
{
    uint64_t a = 7, b = 7;
    int same = 1, inside = 1;
    for (int i = 0; i < 1000; i++) {
        double x = tz_sample_uniform(&a);
        same &= x == tz_sample_uniform(&b);
        inside &= x >= 0 && x < 1;
    }
    ok(same, "the same seed gives the same draws");
    ok(inside, "uniform draws lie in [0, 1)");
    uint64_t c = 8;
    ok(tz_sample_uniform(&c) != tz_sample_uniform(&a), "another seed gives other draws");
    moments(draw_normal, 0, 0, 0, 1, "normal");
    moments(draw_gamma, 3.5, 0, 3.5, 3.5, "gamma(3.5)");
    moments(draw_gamma, 0.4, 0, 0.4, 0.4, "gamma(0.4)");
    moments(draw_beta, 2, 5, 2.0 / 7, 10.0 / (49 * 8), "beta(2, 5)");
    moments(draw_beta, 300, 700, 0.3, 0.3 * 0.7 / 1001, "beta(300, 700)");
    ok(isnan(tz_sample_gamma(&a, 0)) && isnan(tz_sample_gamma(&a, -1)), "gamma refuses shapes <= 0 with NaN");
    return tap_done();
}
