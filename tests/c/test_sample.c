#include <math.h>

#include "util/tz_sample.h"
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
    /* Thompson picks: a clear winner always; equal posteriors about evenly;
     * P(Beta(30, 70) > Beta(20, 80)) is about 0.95. */
    const double sure_a[3] = { 10, 1000, 10 }, sure_b[3] = { 1000, 10, 1000 };
    const double even[2] = { 2, 2 }, close_a[2] = { 20, 30 }, close_b[2] = { 80, 70 };
    int always = 1, first = 0, second = 0;
    for (int i = 0; i < 10000; i++) {
        always &= tz_sample_best_beta(&a, 3, sure_a, sure_b) == 1;
        first += tz_sample_best_beta(&a, 2, even, even) == 0;
        second += tz_sample_best_beta(&a, 2, close_a, close_b) == 1;
    }
    ok(always, "best_beta: the arm with a clear lead every time");
    ok(first > 4800 && first < 5200, "best_beta: equal posteriors split evenly (%d of 10000)", first);
    ok(second > 9300 && second < 9700, "best_beta: Beta(30, 70) beats Beta(20, 80) about 95 %% of the time (%d)", second);
    const double means[2] = { 0, 0.1 }, sds[2] = { 0.1, 0.1 };
    int upper = 0;
    for (int i = 0; i < 10000; i++) upper += tz_sample_best_normal(&a, 2, means, sds) == 1;
    /* P(N(0.1, 0.1) > N(0, 0.1)) = Phi(0.1 / (0.1 sqrt 2)) = 0.760. */
    ok(upper > 7450 && upper < 7750, "best_normal: the higher mean wins about 76 %% of the time (%d)", upper);
    return tap_done();
}
