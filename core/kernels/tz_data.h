/*
 * tz_data — how kernels receive training data.
 *
 * Columnar and borrowed: `cols` holds n_cols pointers, each to n_rows
 * doubles (a frame's float64 columns are passed as they are, no copy). NaN
 * marks a missing value; kernels that cannot take missing values reject them
 * with TZ_EINVAL naming the column. `y` holds the label (class index 0..K-1
 * as a double) or regression target; `weight` is optional (NULL = 1).
 * Nothing here is owned by the kernel: the caller keeps it alive for the
 * duration of the call.
 *
 * Randomness: kernels take a uint64 seed and use tz_rng (splitmix64 seeding
 * xoshiro256**), so a seed reproduces a run to the bit.
 */
#ifndef TZ_DATA_H
#define TZ_DATA_H

#include <stddef.h>
#include <stdint.h>

typedef struct tz_data {
    size_t n_rows, n_cols;
    const double *const *cols;
    const double *y;
    const double *weight;
} tz_data;

typedef struct tz_rng {
    uint64_t s[4];
} tz_rng;

static inline uint64_t tz_rng_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline void tz_rng_seed(tz_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = tz_rng_splitmix(&seed);
}

static inline uint64_t tz_rng_next(tz_rng *r)
{
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5, result = ((x << 7) | (x >> 57)) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Uniform double in [0, 1). */
static inline double tz_rng_uniform(tz_rng *r) { return (double)(tz_rng_next(r) >> 11) * 0x1.0p-53; }

/* Uniform integer in [0, n). */
static inline uint64_t tz_rng_below(tz_rng *r, uint64_t n) { return n ? tz_rng_next(r) % n : 0; }

#endif
