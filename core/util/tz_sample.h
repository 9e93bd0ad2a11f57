/*
 * tz_sample — seeded random draws for the bandits of experiments: uniform,
 * standard normal, gamma and beta variates from a caller-owned 64-bit state
 * (splitmix64). The same seed gives the same draws on every machine, so a
 * bandit's choices replay in tests.
 *
 * The caller owns the state (one per experiment) and starts it with any
 * value, e.g. the experiment's seed. Pure arithmetic: nothing allocates and
 * nothing fails; shapes must be positive and finite (others give NaN).
 */
#ifndef TZ_SAMPLE_H
#define TZ_SAMPLE_H

#include <stdint.h>

/* Uniform in [0, 1), 53 random bits. */
double tz_sample_uniform(uint64_t *state);
/* Standard normal (Box–Muller). */
double tz_sample_normal(uint64_t *state);
/* Gamma(shape, 1) by Marsaglia and Tsang. */
double tz_sample_gamma(uint64_t *state, double shape);
/* Beta(a, b) as X / (X + Y) of two gamma draws. */
double tz_sample_beta(uint64_t *state, double a, double b);

/* A Thompson-sampling bandit's pick among n arms: the index of the largest
 * of one draw per arm, from Beta(a[i], b[i]) (binary rewards) or from
 * Normal(mean[i], sd[i]) (continuous ones); ties go to the lower index. In
 * one call because the comparisons go either way at random: in Lua, each
 * is a trace exit on about every other new unit. */
int tz_sample_best_beta(uint64_t *state, int n, const double *a, const double *b);
int tz_sample_best_normal(uint64_t *state, int n, const double *mean, const double *sd);

#endif
