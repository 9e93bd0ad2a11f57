/* Test-only loader for the shared datasets (../shared/data/NAME.csv: numeric,
 * header row, no quoting, last column the label or target) and their .split
 * files, so C kernel tests can train on real data without the frame module.
 * Columns are column-major doubles, as tz_data wants them. */
#ifndef TZ_TEST_DATASET_H
#define TZ_TEST_DATASET_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/tz_data.h"

#ifndef TZ_SHARED_DATA
#define TZ_SHARED_DATA "../shared/data"
#endif

typedef struct test_split {
    size_t n_rows, n_cols;      /* features only */
    double **cols;              /* n_cols arrays of n_rows */
    double *y;
    tz_data data;
} test_split;

typedef struct test_dataset {
    test_split train, test;
} test_dataset;

static void test_split_alloc(test_split *s, size_t n_cols, size_t cap)
{
    s->n_cols = n_cols;
    s->cols = calloc(n_cols, sizeof *s->cols);
    for (size_t j = 0; j < n_cols; j++) s->cols[j] = malloc(cap * sizeof(double));
    s->y = malloc(cap * sizeof(double));
}

static void test_split_finish(test_split *s)
{
    s->data.n_rows = s->n_rows;
    s->data.n_cols = s->n_cols;
    s->data.cols = (const double *const *)s->cols;
    s->data.y = s->y;
    s->data.weight = NULL;
}

/* Loads NAME from the shared data directory (TZ_SHARED_DATA, or the
 * environment variable of the same name). max_rows > 0 keeps only the first
 * rows (of the file, before splitting). Returns 0 or -1 (file missing). */
static int test_dataset_load(const char *name, size_t max_rows, test_dataset *ds)
{
    const char *dir = getenv("TZ_SHARED_DATA") ? getenv("TZ_SHARED_DATA") : TZ_SHARED_DATA;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.csv", dir, name);
    FILE *f = fopen(path, "r");
    snprintf(path, sizeof path, "%s/%s.split", dir, name);
    FILE *sp = fopen(path, "r");
    if (!f || !sp) {
        if (f) fclose(f);
        if (sp) fclose(sp);
        return -1;
    }
    static char line[1 << 16];
    if (!fgets(line, sizeof line, f)) return -1;
    size_t n_fields = 1;
    for (char *p = line; *p; p++) n_fields += *p == ',';
    size_t cap = 1 << 16;
    memset(ds, 0, sizeof *ds);
    test_split_alloc(&ds->train, n_fields - 1, cap);
    test_split_alloc(&ds->test, n_fields - 1, cap);
    size_t row = 0;
    while (fgets(line, sizeof line, f) && (!max_rows || row < max_rows)) {
        int is_test = fgetc(sp) == '1';
        fgetc(sp);  /* newline */
        test_split *s = is_test ? &ds->test : &ds->train;
        if (s->n_rows == cap) break;  /* larger than the tests need */
        char *p = line;
        for (size_t j = 0; j < n_fields; j++) {
            double v = strtod(p, &p);
            if (j + 1 < n_fields) s->cols[j][s->n_rows] = v; else s->y[s->n_rows] = v;
            if (*p == ',') p++;
        }
        s->n_rows++;
        row++;
    }
    fclose(f);
    fclose(sp);
    test_split_finish(&ds->train);
    test_split_finish(&ds->test);
    return 0;
}

static void test_dataset_free(test_dataset *ds)
{
    test_split *s[2] = { &ds->train, &ds->test };
    for (int k = 0; k < 2; k++) {
        for (size_t j = 0; j < s[k]->n_cols; j++) free(s[k]->cols[j]);
        free(s[k]->cols);
        free(s[k]->y);
    }
}

#endif
