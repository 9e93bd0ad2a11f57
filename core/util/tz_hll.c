/* tz_hll.c — HyperLogLog (Flajolet et al. 2007) over FNV-1a with a
 * 64-bit finaliser: FNV alone mixes short keys poorly in its high bits,
 * which pick the register. */
#include "util/tz_hll.h"

#include <math.h>
#include <string.h>

#include "util/tz_hash.h"

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

void tz_hll_add(uint8_t *regs, int p, const void *data, size_t len)
{
    uint64_t h = mix(tz_hash_fnv1a64(TZ_HASH_FNV_SEED, data, len));
    size_t idx = (size_t)(h >> (64 - p));
    uint64_t rest = (h << p) | (1ull << (p - 1));  /* a stop bit bounds the rank */
    uint8_t rank = (uint8_t)(__builtin_clzll(rest) + 1);
    if (rank > regs[idx]) regs[idx] = rank;
}

void tz_hll_add_f64(uint8_t *regs, int p, double x)
{
    unsigned char bytes[8];
    if (x == 0) x = 0; /* -0 and 0 are one value */
    memcpy(bytes, &x, 8);
    tz_hll_add(regs, p, bytes, 8);
}

double tz_hll_estimate(const uint8_t *regs, int p)
{
    size_t m = (size_t)1 << p;
    double sum = 0;
    size_t zeros = 0;
    for (size_t i = 0; i < m; i++) {
        sum += ldexp(1.0, -regs[i]);
        zeros += regs[i] == 0;
    }
    double alpha = m == 16 ? 0.673 : m == 32 ? 0.697 : m == 64 ? 0.709 : 0.7213 / (1 + 1.079 / (double)m);
    double e = alpha * (double)m * (double)m / sum;
    if (e <= 2.5 * (double)m && zeros) e = (double)m * log((double)m / (double)zeros);
    return e;
}
