/*
 * tz_progress — a terminal progress line for long kernels.
 *
 * tz_progress_report() has the shape of the kernels' per-round progress
 * callbacks: pass it with a tz_progress as `ud`. It prints, on stderr and
 * only when stderr is a terminal, one line rewritten in place (rounds done,
 * elapsed time, training and validation loss), at most ten times a second,
 * and ends the line when the last round is reported or tz_progress_done() is
 * called. It never asks the kernel to stop (returns 0). The struct is the
 * caller's; nothing is allocated.
 */
#ifndef TZ_PROGRESS_H
#define TZ_PROGRESS_H

typedef struct tz_progress {
    const char *label;   /* e.g. "gbt" */
    int total;           /* rounds expected, 0 if unknown */
    int quiet;           /* set: print nothing */
    double started;      /* filled on first report */
    double last_print;
    int printed;
} tz_progress;

int  tz_progress_report(void *ud, int round, double train_loss, double valid_loss);
void tz_progress_done(tz_progress *p);

#endif
