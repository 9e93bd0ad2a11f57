/*
 * tz_hll — HyperLogLog distinct counts for feature statistics: 2^p one-byte
 * registers (p from 4 to 16; 2^p bytes, standard error about 1.04/sqrt(2^p)),
 * updated value by value as rows land and kept with the view's statistics,
 * so a distinct count never needs a rescan of the history. Sketches of the
 * same p merge by taking the larger register.
 */
#ifndef TZ_HLL_H
#define TZ_HLL_H

#include <stddef.h>
#include <stdint.h>

/* Counts the value data[0..len) into the registers. */
void tz_hll_add(uint8_t *regs, int p, const void *data, size_t len);

/* Counts a number by its IEEE-754 bytes (-0 as 0): the same number always
 * counts once, with no text formatting on the way. */
void tz_hll_add_f64(uint8_t *regs, int p, double x);

/* The estimated number of distinct values counted (with the small-range
 * correction: exact-ish by linear counting while registers are empty). */
double tz_hll_estimate(const uint8_t *regs, int p);

#endif
