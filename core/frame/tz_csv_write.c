/* CSV writer for tz_frame (tz_csv_write), and the writer of scored copies
 * (tz_csv_write_after): rows formatted on the pool's threads a round at a
 * time and written in order. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame/tz_csv_internal.h"
#include "frame/tz_frame.h"
#include "util/tz_fmt.h"
#include "util/tz_pool.h"

/* ---- writer -------------------------------------------------------------- */

/* Text on its way out: gathered in buf, then written to fp in large
 * pieces (a field at a time through fputc and fwrite, each taking the
 * stream's lock, cost more than formatting the numbers), or (fp NULL: a
 * block of rows formatted on a pool thread) appended to mem. */
typedef struct csv_out {
    FILE *fp;
    char *mem;
    size_t mem_len, mem_cap;
    int failed;               /* mem could not grow */
    size_t n;
    char buf[1 << 16];
} csv_out;

static void out_sink(csv_out *o, const char *p, size_t len)
{
    if (o->fp) {
        fwrite(p, 1, len, o->fp);
        return;
    }
    if (o->failed) return;
    if (o->mem_cap - o->mem_len < len) {
        size_t cap = o->mem_cap ? o->mem_cap : 1 << 20;
        while (cap - o->mem_len < len) cap *= 2;
        char *m = realloc(o->mem, cap);
        if (!m) {
            o->failed = 1;
            return;
        }
        o->mem = m;
        o->mem_cap = cap;
    }
    memcpy(o->mem + o->mem_len, p, len);
    o->mem_len += len;
}

static void out_flush(csv_out *o)
{
    if (o->n) out_sink(o, o->buf, o->n);
    o->n = 0;
}

/* Room for `need` more bytes (need <= the buffer's size). */
static char *out_room(csv_out *o, size_t need)
{
    if (o->n + need > sizeof o->buf) out_flush(o);
    return o->buf + o->n;
}

static void out_char(csv_out *o, char c)
{
    *out_room(o, 1) = c;
    o->n++;
}

static void out_bytes(csv_out *o, const char *s, size_t len)
{
    if (len > sizeof o->buf / 2) {
        out_flush(o);
        out_sink(o, s, len);
        return;
    }
    memcpy(out_room(o, len), s, len);
    o->n += len;
}

static void write_string(csv_out *o, const char *s, size_t len, char delim)
{
    int quote = 0;
    for (size_t i = 0; i < len && !quote; i++)
        quote = s[i] == delim || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
    if (!quote && len) { out_bytes(o, s, len); return; }
    if (!len) { out_bytes(o, "\"\"", 2); return; }  /* empty string, not null */
    out_char(o, '"');
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"') out_char(o, '"');
        out_char(o, s[i]);
    }
    out_char(o, '"');
}

static void write_cell(csv_out *o, const tz_column *c, size_t i, char delim)
{
    switch (c->type) {
    case TZ_COL_F64:
        o->n += tz_fmt_double(out_room(o, TZ_FMT_DOUBLE_MAX), ((const double *)c->data)[i]);
        break;
    case TZ_COL_I64:
        o->n += tz_fmt_i64(out_room(o, TZ_FMT_I64_MAX), ((const int64_t *)c->data)[i]);
        break;
    case TZ_COL_BOOL:
        if (((const uint8_t *)c->data)[i]) out_bytes(o, "true", 4);
        else out_bytes(o, "false", 5);
        break;
    default: {
        size_t len;
        const char *s = tz_dict_get(c->dict, ((const int32_t *)c->data)[i], &len);
        write_string(o, s ? s : "", s ? len : 0, delim);
    }
    }
}

/* Rows formatted per pool task, and tasks per round: a round's text is
 * held in memory (some MB) and written in row order before the next. */
#define WRITE_BLOCK 16384
#define WRITE_TASKS 8

typedef struct write_job {
    const tz_frame *f;
    const tz_csv_text *text;  /* NULL, or where each row's record starts */
    const int64_t *lines;     /* with text: row i's line in the file */
    char delim;
    size_t first, last;       /* the round's rows */
    csv_out *outs;            /* one per task */
} write_job;

/* The record of t that starts at file line `line`, which the caller has
 * checked is one of t's lines: up to the line feed that ends it (outside
 * quotes), without that line feed or a carriage return before it. */
static const char *record_of(const tz_csv_text *t, size_t line, size_t *len)
{
    size_t k = line - t->first_line, start = t->line_at[k];
    size_t end = k + 1 < t->n_lines ? t->line_at[k + 1] : t->len;  /* past its first line's feed */
    if (memchr(t->text + start, '"', end - start)) {
        end = tz_csv_record_end(t->text, start, t->len, t->delim);
        if (end == TZ_CSV_NO_END) end = t->len;
    }
    if (end > start && t->text[end - 1] == '\n') end--;
    if (end > start && t->text[end - 1] == '\r') end--;
    *len = end - start;
    return t->text + start;
}

static void write_rows(csv_out *o, const write_job *job, size_t lo, size_t hi)
{
    const tz_frame *f = job->f;
    char delim = job->delim;
    for (size_t i = lo; i < hi; i++) {
        if (job->text) {
            size_t len;
            const char *rec = record_of(job->text, (size_t)job->lines[i], &len);
            out_bytes(o, rec, len);
            if (f->n_cols) out_char(o, delim);
        }
        for (size_t j = 0; j < f->n_cols; j++) {
            if (j) out_char(o, delim);
            if (tz_column_is_valid(f->cols[j], i)) write_cell(o, f->cols[j], i, delim);
        }
        out_char(o, '\n');
    }
}

static void write_task(void *ctx, size_t task, int worker)
{
    (void)worker;
    write_job *job = ctx;
    csv_out *o = &job->outs[task];
    size_t lo = job->first + task * WRITE_BLOCK, hi = lo + WRITE_BLOCK < job->last ? lo + WRITE_BLOCK : job->last;
    o->mem_len = 0;
    write_rows(o, job, lo, hi);
    out_flush(o);
}

/* The job's n rows, formatted in parallel a round at a time into outs
 * (WRITE_TASKS of them, whose memory the caller keeps or frees), written
 * in order. 0, or -1 when a block's memory could not grow. */
static int write_body(csv_out *o, write_job *job, size_t n, csv_out *outs)
{
    job->outs = outs;
    int failed = 0;
    for (size_t first = 0; first < n && !failed; first += (size_t)WRITE_BLOCK * WRITE_TASKS) {
        size_t left = n - first, tasks = (left + WRITE_BLOCK - 1) / WRITE_BLOCK;
        if (tasks > WRITE_TASKS) tasks = WRITE_TASKS;
        job->first = first;
        job->last = first + (left < tasks * WRITE_BLOCK ? left : tasks * WRITE_BLOCK);
        tz_pool_run(tasks, write_task, job);
        for (size_t t = 0; t < tasks; t++) {
            failed |= outs[t].failed;
            if (!failed) out_sink(o, outs[t].mem, outs[t].mem_len);
        }
    }
    return failed ? -1 : 0;
}

struct tz_csv_outs {
    csv_out task[WRITE_TASKS];
};

tz_csv_outs *tz_csv_outs_new(void) { return calloc(1, sizeof(tz_csv_outs)); }
void tz_csv_outs_free(tz_csv_outs *outs)
{
    for (size_t t = 0; outs && t < WRITE_TASKS; t++) free(outs->task[t].mem);
    free(outs);
}

int tz_csv_write_after(FILE *fp, const tz_csv_text *t, const int64_t *lines, const tz_frame *tail,
                       tz_csv_outs *outs, tz_err *err)
{
    for (size_t i = 0; i < tail->n_rows; i++)
        if (lines[i] < (int64_t)t->first_line || (size_t)lines[i] - t->first_line >= t->n_lines)
            return tz_err_set(err, TZ_EINVAL, "row %zu: line %lld is not in the block", i, (long long)lines[i]);
    csv_out *o = calloc(1, sizeof *o);
    if (!o) return tz_err_set(err, TZ_ENOMEM, "out of memory writing rows");
    o->fp = fp;
    write_job job = { .f = tail, .text = t, .lines = lines, .delim = t->delim };
    int nomem = write_body(o, &job, tail->n_rows, outs->task);
    out_flush(o);
    free(o);
    if (nomem) return tz_err_set(err, TZ_ENOMEM, "out of memory writing rows");
    return ferror(fp) ? tz_err_set(err, TZ_EIO, "cannot write rows: %s", strerror(errno)) : 0;
}

int tz_csv_write_names(FILE *fp, const char *raw, size_t len, const char *const *names, size_t n, char delim)
{
    csv_out *o = calloc(1, sizeof *o);
    if (!o) return -1;
    o->fp = fp;
    out_bytes(o, raw, len);
    for (size_t j = 0; j < n; j++) {
        if (j || len) out_char(o, delim);
        write_string(o, names[j], strlen(names[j]), delim);
    }
    out_char(o, '\n');
    out_flush(o);
    free(o);
    return ferror(fp) ? -1 : 0;
}

int tz_csv_write(const tz_frame *f, const char *path, char delimiter, tz_err *err)
{
    char delim = delimiter ? delimiter : ',';
    csv_out *o = calloc(1, sizeof *o);
    if (!o) return tz_err_set(err, TZ_ENOMEM, "out of memory writing %s", path);
    o->fp = fopen(path, "w");
    if (!o->fp) {
        free(o);
        return tz_err_set(err, TZ_EIO, "cannot write %s: %s", path, strerror(errno));
    }
    for (size_t j = 0; j < f->n_cols; j++) {
        if (j) out_char(o, delim);
        write_string(o, f->cols[j]->name, strlen(f->cols[j]->name), delim);
    }
    out_char(o, '\n');
    out_flush(o);
    write_job job = { .f = f, .delim = delim };
    tz_csv_outs *outs = tz_csv_outs_new();
    int nomem = !outs || write_body(o, &job, f->n_rows, outs->task);
    tz_csv_outs_free(outs);
    int bad = ferror(o->fp);
    int closed = fclose(o->fp);
    free(o);
    if (nomem) return tz_err_set(err, TZ_ENOMEM, "out of memory writing %s", path);
    if (closed != 0 || bad) return tz_err_set(err, TZ_EIO, "cannot write %s: %s", path, strerror(errno));
    return 0;
}
