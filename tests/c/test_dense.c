#include <math.h>

#include "kernels/tz_dense.h"
#include "tap.h"

#define ROWS 6

/* tz_dense_block against tz_dense_apply row by row: column 0 has no
 * operation, column 1 only a fill and no NaN in the block, column 2 a fill
 * and a NaN, column 3 a fill then log1p (in place: its scratch is its own
 * block), column 4 was dropped. */
int main(void)
{
    double c0[ROWS + 2], c1[ROWS + 2], c2[ROWS + 2], c3[ROWS + 2], c4[ROWS + 2];
    for (int r = 0; r < ROWS + 2; r++) {
        c0[r] = r;
        c1[r] = r * 0.5;
        c2[r] = r == 3 ? NAN : -r;
        c3[r] = r == 4 ? NAN : r * 2.0;
        c4[r] = 1;
    }
    c1[0] = NAN;  /* outside the block: rows 1 .. ROWS */
    const size_t lo = 1;
    const double *src[5] = { c0, c1, c2, c3, c4 };
    double s1[ROWS], s2[ROWS], s4[ROWS];
    double *scratch[5] = { NULL, s1, s2, c3 + lo, s4 };
    const double *out[5] = { NULL };
    const int op[] = { TZ_DENSE_FILL, TZ_DENSE_FILL, TZ_DENSE_FILL, TZ_DENSE_LOG1P, TZ_DENSE_MISSING };
    const int at[] = { 1, 2, 3, 3, 4 };
    const double a[] = { 7, 8, 9, 0, 0 }, b[] = { 0, 0, 0, 0, 0 };
    double want[ROWS][5];
    for (int r = 0; r < ROWS; r++) {
        for (int j = 0; j < 5; j++) want[r][j] = src[j][lo + (size_t)r];
        tz_dense_apply(want[r], 5, op, at, a, b);
    }
    tz_dense_block(src, lo, ROWS, 5, scratch, out, 5, op, at, a, b);
    ok(out[0] == c0 + lo, "a column no operation names is the source's own block");
    ok(out[1] == c1 + lo, "a fill over a block without NaN copies nothing");
    ok(out[2] == s2, "a fill over a block with a NaN writes the scratch");
    ok(out[3] == c3 + lo, "a scratch that is the source's block is changed in place");
    ok(out[4] == s4, "a dropped column is written");
    int same = 1;
    for (int r = 0; r < ROWS; r++)
        for (int j = 0; j < 5; j++) {
            double g = out[j][r], w = want[r][j];
            same &= (g == w) || (isnan(g) && isnan(w));
        }
    ok(same, "every value is tz_dense_apply's, row by row");
    ok(c2[lo + 2] != c2[lo + 2], "the source of a copied column keeps its NaN");
    ok(isnan(c1[0]), "rows outside the block are not read for the NaN test");
    return tap_done();
}
