/* libFuzzer target: the CSV reader of core/frame (tz_csv_read) and, on what
 * it accepts, the writer (tz_csv_write).
 *
 * tz_csv_read only reads files, so the input is written to a memfd once per
 * run and read back through /proc/self/fd/N (a temp file when memfd is not
 * available). Each input is read twice:
 *  A. default options: type inference over the first 1000 records, the
 *     default null markers, ',' and a header, bad rows reported;
 *  B. options picked by the input's last byte (so they stay stable while
 *     the fuzzer mutates the front): delimiter , ; TAB |, no header, strict,
 *     inference over only 1..4 records (later values then widen int64 to
 *     float64 or get rejected), a line-number column, other null markers,
 *     and an explicit schema for the usual column names (a, b, c, x, y, id,
 *     name, line, column_1..3), each forced to one of the four types.
 * C. The file read in parts gives the serial read's frame; D. read a block
 * at a time (tz_csv_blocks) it gives the whole read's rows, lines and
 * refusals. On success the frame's invariants are checked (column lengths, null
 * counts against the bitmaps, float64 nulls stored as NaN and every other
 * float64 finite, string codes known to their dictionary, the report's
 * counts) and it is written out
 * as CSV again. Everything is freed: LeakSanitizer runs. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "frame/tz_frame.h"

static int in_fd = -1, out_fd = -1;
static char in_path[4096], out_path[4096];

static void fail(const char *what)
{
    fprintf(stderr, "csv_fuzz: invariant broken: %s\n", what);
    abort();
}

/* A file the reader can open by name: a memfd seen through /proc, else an
 * unlinked-at-exit temp file. */
static int scratch_file(const char *name, char *path, size_t path_size)
{
#ifdef MFD_CLOEXEC
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd >= 0) {
        snprintf(path, path_size, "/proc/self/fd/%d", fd);
        if (access(path, R_OK | W_OK) == 0) return fd;
        close(fd);
    }
#endif
    const char *tmp = getenv("TMPDIR");
    snprintf(path, path_size, "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    return mkstemp(path);
}

static void remove_scratch(void)
{
    if (strncmp(in_path, "/proc/", 6) != 0) unlink(in_path);
    if (strncmp(out_path, "/proc/", 6) != 0) unlink(out_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    in_fd = scratch_file("csv_fuzz_in", in_path, sizeof in_path);
    out_fd = scratch_file("csv_fuzz_out", out_path, sizeof out_path);
    if (in_fd < 0 || out_fd < 0) {
        fprintf(stderr, "csv_fuzz: cannot make a scratch file: %s\n", strerror(errno));
        exit(1);
    }
    atexit(remove_scratch);
    return 0;
}

static void write_input(const uint8_t *data, size_t size)
{
    if (ftruncate(in_fd, 0) != 0) abort();
    size_t off = 0;
    while (off < size) {
        ssize_t n = pwrite(in_fd, data + off, size - off, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) abort();
        off += (size_t)n;
    }
}

static void check_frame(const tz_frame *f, const tz_csv_report *rep, const tz_csv_opts *o)
{
    if (rep->rows_bad > rep->rows_read) fail("more bad rows than rows read");
    if (rep->n_issues > rep->rows_bad || rep->n_issues > TZ_CSV_MAX_ISSUES) fail("issue count");
    if (rep->rows_read - rep->rows_bad != f->n_rows) fail("rows read - bad rows != frame rows");
    if (o && o->strict && rep->rows_bad) fail("a strict read reported a bad row");
    for (size_t i = 0; i < rep->n_issues; i++)
        if (!memchr(rep->issues[i].message, 0, sizeof rep->issues[i].message)) fail("issue message unterminated");
    if (f->n_cols == 0) fail("a frame without columns");
    for (size_t j = 0; j < f->n_cols; j++) {
        const tz_column *c = f->cols[j];
        if (!c || !c->name) fail("missing column or name");
        if (c->n != f->n_rows) fail("column length differs from the frame's");
        if (c->type < TZ_COL_F64 || c->type > TZ_COL_STR) fail("unknown column type");
        if (tz_frame_find(f, c->name) != (int)j) fail("column names not unique");
        size_t nulls = 0;
        for (size_t i = 0; i < c->n; i++) {
            if (!tz_column_is_valid(c, i)) {
                nulls++;
                if (c->type == TZ_COL_F64 && !isnan(((const double *)c->data)[i])) fail("float64 null is not NaN");
                continue;
            }
            if (c->type == TZ_COL_F64 && !isfinite(((const double *)c->data)[i])) fail("float64 value not finite");
            if (c->type == TZ_COL_STR) {
                size_t len;
                const char *s = tz_dict_get(c->dict, ((const int32_t *)c->data)[i], &len);
                if (!s) fail("string code unknown to its dictionary");
            } else if (c->type == TZ_COL_BOOL && ((const uint8_t *)c->data)[i] > 1) {
                fail("bool value other than 0 or 1");
            }
        }
        if (nulls != c->null_count) fail("null_count differs from the validity bitmap");
    }
    (void)tz_frame_bytes(f);
    if (ftruncate(out_fd, 0) != 0) abort();
    tz_err err;
    if (tz_csv_write(f, out_path, o ? o->delimiter : 0, &err) != 0) fail(err.msg);
}

static void read_once(const tz_csv_opts *o)
{
    tz_frame *f = NULL;
    tz_csv_report rep;
    tz_err err;
    memset(&err, 0, sizeof err);
    int rc = tz_csv_read(in_path, o, &f, &rep, &err);
    if (rc == 0) {
        if (!f) fail("read returned 0 without a frame");
        check_frame(f, &rep, o);
        tz_frame_free(f);
    } else if (rc != TZ_EINVAL && rc != TZ_ENOMEM && rc != TZ_EIO) {
        fail("unexpected error code");
    } else if (!memchr(err.msg, 0, sizeof err.msg)) {
        fail("error message unterminated");
    }
    tz_csv_report_free(&rep);
}

/* f written back as CSV (malloc'd, *len bytes). */
static char *written(const tz_frame *f, char delim, size_t *len)
{
    tz_err err;
    if (ftruncate(out_fd, 0) != 0) abort();
    if (tz_csv_write(f, out_path, delim, &err) != 0) fail(err.msg);
    FILE *fp = fopen(out_path, "rb");
    if (!fp) abort();
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    rewind(fp);
    char *text = malloc((size_t)n + 1);
    if (!text || fread(text, 1, (size_t)n, fp) != (size_t)n) abort();
    fclose(fp);
    *len = (size_t)n;
    return text;
}

/* Read in parts of `part` bytes, the file gives what it gives serially:
 * the same error, or the same report and the same frame. */
static void parts_as_serial(const tz_csv_opts *o, size_t part)
{
    tz_csv_opts serial = *o, parts = *o;
    serial.part_bytes = SIZE_MAX;
    parts.part_bytes = part;
    tz_frame *fa = NULL, *fb = NULL;
    tz_csv_report ra, rb;
    tz_err ea, eb;
    memset(&ea, 0, sizeof ea);
    memset(&eb, 0, sizeof eb);
    int rca = tz_csv_read(in_path, &serial, &fa, &ra, &ea), rcb = tz_csv_read(in_path, &parts, &fb, &rb, &eb);
    if (rca != rcb) fail("read in parts: a different outcome");
    if (rca) {
        if (strcmp(ea.msg, eb.msg)) {
            fprintf(stderr, "serially: %s\nin parts: %s\n", ea.msg, eb.msg);
            fail("read in parts: a different error");
        }
        return;
    }
    if (ra.rows_read != rb.rows_read || ra.rows_bad != rb.rows_bad || ra.n_issues != rb.n_issues ||
        ra.n_more != rb.n_more)
        fail("read in parts: a different report");
    for (size_t i = 0; i < ra.n_issues; i++)
        if (ra.issues[i].line != rb.issues[i].line || strcmp(ra.issues[i].message, rb.issues[i].message)) {
            fprintf(stderr, "serially: line %ld: %s\nin parts: line %ld: %s\n", (long)ra.issues[i].line,
                    ra.issues[i].message, (long)rb.issues[i].line, rb.issues[i].message);
            fail("read in parts: a different issue");
        }
    size_t la, lb;
    char *ta = written(fa, o->delimiter, &la), *tb = written(fb, o->delimiter, &lb);
    if (la != lb || memcmp(ta, tb, la)) {
        size_t d = 0;
        while (d < la && d < lb && ta[d] == tb[d]) d++;
        fprintf(stderr, "frames differ at byte %zu of %zu / %zu\n", d, la, lb);
        fwrite(ta, 1, la, stderr);
        fprintf(stderr, "\n----\n");
        fwrite(tb, 1, lb, stderr);
        fprintf(stderr, "\n");
        fail("read in parts: a different frame");
    }
    for (size_t j = 0; j < fa->n_cols; j++)
        if (fa->cols[j]->type != fb->cols[j]->type) fail("read in parts: a different column type");
    free(ta);
    free(tb);
    tz_frame_free(fa);
    tz_frame_free(fb);
    tz_csv_report_free(&ra);
    tz_csv_report_free(&rb);
}

/* A line column's name that no column of f has. */
static void free_name(const tz_frame *f, char *name, size_t size)
{
    for (int k = 0;; k++) {
        snprintf(name, size, k ? "tycho_line_%d" : "tycho_line", k);
        if (tz_frame_find(f, name) < 0) return;
    }
}

/* Read a block at a time (tz_csv_blocks, blocks of `block` bytes and up)
 * the file gives what it gives read whole, every column read as text (so
 * no block's types refuse what the whole file's accept): the same
 * outcome, the same counts, every row at the same line, every refusal at
 * the same line; and each block's rows are written after their records. */
static void blocks_as_whole(size_t block, char delim)
{
    tz_csv_blocks *b = NULL;
    tz_err err;
    memset(&err, 0, sizeof err);
    int rc = tz_csv_blocks_open(in_path, out_path, delim, block, &b, &err);
    if (rc) {
        tz_csv_opts o = { .delimiter = delim };
        tz_frame *f = NULL;
        tz_csv_report rep;
        if (rc != TZ_EINVAL && rc != TZ_EIO && rc != TZ_ENOMEM) fail("blocks: unexpected error code");
        if (tz_csv_read(in_path, &o, &f, &rep, &err) == 0) fail("blocks: no header where the reader finds one");
        return;
    }
    const tz_frame *cols = tz_csv_blocks_columns(b);
    size_t n = cols->n_cols;
    const char **names = malloc((n ? n : 1) * sizeof *names);
    int *types = malloc((n ? n : 1) * sizeof *types);
    if (!names || !types) abort();
    for (size_t j = 0; j < n; j++) {
        names[j] = cols->cols[j]->name;
        types[j] = TZ_COL_STR;
    }
    char line_column[32];
    free_name(cols, line_column, sizeof line_column);
    tz_csv_opts o = { .delimiter = delim, .schema_names = names, .schema_types = types, .n_schema = n,
                      .line_column = line_column };
    tz_frame *whole = NULL;
    tz_csv_report rw;
    int rcw = tz_csv_read(in_path, &o, &whole, &rw, &err);
    size_t rows_read = 0, rows_bad = 0, at = 0, issue = 0;
    int rcb = 0;
    for (tz_frame *last = NULL;;) {
        tz_frame *f = NULL;
        tz_csv_report rb;
        rcb = tz_csv_blocks_next(b, &o, last, &f, &rb, &err);
        if (rcb || !f) break;
        rows_read += rb.rows_read;
        rows_bad += rb.rows_bad;
        const tz_column *lines = f->cols[f->n_cols - 1];
        if (rcw == 0) {
            for (size_t i = 0; i < rb.n_issues && issue < rw.n_issues; i++, issue++)
                if (rb.issues[i].line != rw.issues[issue].line) fail("blocks: a refusal at another line");
            for (size_t i = 0; i < f->n_rows; i++)
                if (at + i >= whole->n_rows ||
                    ((const int64_t *)lines->data)[i] != ((const int64_t *)whole->cols[whole->n_cols - 1]->data)[at + i])
                    fail("blocks: a row at another line");
        }
        at += f->n_rows;
        if (f->n_rows && tz_csv_blocks_write(b, (const int64_t *)lines->data, f, &err) != 0)
            fail("blocks: a block's rows could not be written after their records");
        tz_csv_report_free(&rb);
        last = f;
    }
    if ((rcw == 0) != (rcb == 0)) fail("blocks: a different outcome");
    if (rcw == 0 && (rows_read != rw.rows_read || rows_bad != rw.rows_bad || at != whole->n_rows))
        fail("blocks: different counts");
    if (rcw == 0) tz_csv_report_free(&rw);
    tz_frame_free(whole);
    tz_csv_blocks_close(b, 1, &err);
    free(names);
    free(types);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    write_input(data, size);

    /* A. Defaults. */
    read_once(NULL);

    /* B. Options from the last byte, an explicit schema. */
    uint8_t sel = size ? data[size - 1] : 0;
    static const char delims[] = { ',', ';', '\t', '|' };
    static const char *const names[] = { "a", "b", "c", "x", "y", "id", "name", "line",
                                         "column_1", "column_2", "column_3" };
    static const char *const na[] = { "", "-", "?", "NA" };
    enum { N_NAMES = sizeof names / sizeof names[0] };
    int types[N_NAMES];
    for (int k = 0; k < N_NAMES; k++) types[k] = (k + sel) % 4;
    tz_csv_opts o = {
        .delimiter = delims[(sel >> 4) & 3],
        .no_header = sel & 1,
        .strict = (sel >> 1) & 1,
        .infer_rows = 1 + ((sel >> 2) & 3),
        .line_column = (sel & 0x40) ? "line" : NULL,
        .na_values = (sel & 0x80) ? na : NULL,
        .n_na = (sel & 0x80) ? sizeof na / sizeof na[0] : 0,
        .schema_names = names,
        .schema_types = types,
        .n_schema = N_NAMES,
    };
    read_once(&o);

    /* C. The same options, the file read in parts as small as 4 bytes. */
    o.n_schema = sel & 8 ? N_NAMES : 0;
    parts_as_serial(&o, 1 + size / (4 + (sel & 7)));

    /* D. A block at a time, as tycho score reads. */
    blocks_as_whole(1 + (sel & 15), o.delimiter);
    return 0;
}
