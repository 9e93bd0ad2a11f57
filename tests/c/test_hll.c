/* tz_hll: distinct counts within the sketch's error, duplicates ignored. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "util/tz_hll.h"
#include "tap.h"

int main(void)
{
    const int p = 10;
    uint8_t regs[1 << 10];
    int sizes[] = { 10, 1000, 100000 };
    for (int s = 0; s < 3; s++) {
        memset(regs, 0, sizeof regs);
        for (int round = 0; round < 3; round++)  /* every value three times */
            for (int i = 0; i < sizes[s]; i++) {
                char key[32];
                int n = snprintf(key, sizeof key, "user-%d", i);
                tz_hll_add(regs, p, key, (size_t)n);
            }
        double e = tz_hll_estimate(regs, p);
        double err = fabs(e - sizes[s]) / sizes[s];
        ok(err < 0.08, "%d distinct values counted as %.1f (error %.3f)", sizes[s], e, err);
    }
    memset(regs, 0, sizeof regs);
    ok(tz_hll_estimate(regs, p) == 0, "an empty sketch counts nothing");
    return tap_done();
}
