#include "util/tz_progress.h"

#include <math.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int tz_progress_report(void *ud, int round, double train_loss, double valid_loss)
{
    tz_progress *p = ud;
    if (!p || p->quiet || !isatty(STDERR_FILENO)) return 0;
    double t = now();
    if (!p->started) p->started = t;
    int last = p->total && round >= p->total;
    if (!last && t - p->last_print < 0.1) return 0;
    p->last_print = t;
    p->printed = 1;
    fprintf(stderr, "\r%s: round %d", p->label ? p->label : "training", round);
    if (p->total) fprintf(stderr, "/%d", p->total);
    fprintf(stderr, "  %.1fs  train %.5g", t - p->started, train_loss);
    if (!isnan(valid_loss)) fprintf(stderr, "  valid %.5g", valid_loss);
    fputs("\033[K", stderr);  /* clear what a longer previous line left */
    if (last) tz_progress_done(p);
    return 0;
}

void tz_progress_done(tz_progress *p)
{
    if (p && p->printed) {
        fputc('\n', stderr);
        p->printed = 0;
    }
}
