/* The CSV reader on hostile input: thousands of mutated files (seeded) must
 * each give a frame or a clean error, never a crash (run under ASan in CI). */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "frame/tz_frame.h"
#include "kernels/tz_data.h"
#include "tap.h"

static const char SEED_CSV[] =
    "id,name,score,ok\n1,ada,0.5,true\n2,\"b, \"\"q\"\"\",1e3,false\n3,,NA,TRUE\n4,\"multi\nline\",-2,false\n";

static void write_file(const char *path, const char *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

/* One number written several ways (plain, signed, leading zeros, spaced,
 * quoted, with an exponent, with 17 digits, whole): the plain ones take the
 * reader's fast path, the rest the general one. */
static int format_number(char *out, size_t cap, double v, int how)
{
    switch (how) {
    case 0: return snprintf(out, cap, "%.2f", v);
    case 1: return snprintf(out, cap, "%+.3f", v);
    case 2: return snprintf(out, cap, "%08.4f", v);
    case 3: return snprintf(out, cap, " %.1f ", v);
    case 4: return snprintf(out, cap, "\"%.5f\"", v);
    case 5: return snprintf(out, cap, "%.3e", v);
    case 6: return snprintf(out, cap, "%.17g", v);
    case 7: return snprintf(out, cap, "%.0f", v);
    default: return snprintf(out, cap, "%g", v);
    }
}

/* A file mixing records for both paths (CRLF lines, blank lines, a
 * multi-line quoted record, an integer column that turns decimal late)
 * reads every value as strtod reads its text, on the right line. */
static void fast_and_general_paths_agree(const char *path)
{
    enum { ROWS = 3000 };
    static double want[ROWS][2];
    static long want_line[ROWS];
    tz_rng rng;
    tz_rng_seed(&rng, 99);
    FILE *out = fopen(path, "wb");
    fputs("a,b,n\n", out);
    long line = 2;
    for (int i = 0; i < ROWS; i++) {
        char cell[2][64];
        for (int k = 0; k < 2; k++) {
            double v = (tz_rng_uniform(&rng) - 0.5) * 2000;
            int how = (int)tz_rng_below(&rng, 18);  /* half plain */
            format_number(cell[k], sizeof cell[k], v, how > 8 ? 0 : how);
            const char *t = cell[k];
            if (*t == ' ' || *t == '"') t++;
            want[i][k] = strtod(t, NULL);
        }
        want_line[i] = line;
        const char *end = i % 7 == 0 ? "\r\n" : "\n";
        if (i == ROWS / 2) {
            fprintf(out, "%s,\"%s\",\"%d\n\"%s", cell[0], cell[1], i, end);  /* quoted, over two lines */
            line += 2;
        } else if (i == ROWS - 10) {
            fprintf(out, "%s,%s,%d.5%s", cell[0], cell[1], i, end);  /* n turns decimal */
            line++;
        } else {
            fprintf(out, "%s,%s,%d%s", cell[0], cell[1], i, end);
            line++;
        }
        if (i % 500 == 499) { fputs("\n", out); line++; }
    }
    fclose(out);
    tz_csv_opts o = { .line_column = "line", .infer_rows = 100 };
    tz_csv_report rep;
    tz_frame *f;
    tz_err err;
    is_int(tz_csv_read(path, &o, &f, &rep, &err), 0, "mixed fast and general records read");
    is_int(f->n_rows, ROWS - 1, "every row but the one whose n is not a number lands (%zu)", f->n_rows);
    int values = 1, lines = 1;
    for (size_t r = 0, i = 0; r < f->n_rows; r++, i++) {
        if (i == ROWS / 2) i++;
        for (int k = 0; k < 2; k++) values &= ((double *)f->cols[k]->data)[r] == want[i][k];
        lines &= ((int64_t *)f->cols[3]->data)[r] == want_line[i];
    }
    ok(values, "each value equals strtod of its text, whichever path read it");
    ok(lines, "each row carries the line it starts on");
    is_int(f->cols[2]->type, TZ_COL_F64, "the integer column widened when a decimal came");
    ok(((double *)f->cols[2]->data)[f->n_rows - 10] == ROWS - 10 + 0.5 && ((double *)f->cols[2]->data)[7] == 7,
       "widened values: earlier integers kept, the decimal read");
    tz_frame_free(f);
    tz_csv_report_free(&rep);
}

/* A file of more rows than one round of the parallel writer (blocks
 * formatted on pool threads) comes back byte for byte, rows in order. */
static void writes_back_in_order(const char *path)
{
    enum { ROWS = 140000 };
    FILE *out = fopen(path, "wb");
    fputs("id,x,name\n", out);
    for (int i = 0; i < ROWS; i++) fprintf(out, "%d,%d.25,%s\n", i - 7, i % 1000, i % 3 ? "a" : "\"b,c\"");
    fclose(out);
    long size_in;
    char *in = NULL, *back = NULL;
    tz_frame *f;
    tz_err err;
    ok(tz_csv_read(path, NULL, &f, NULL, &err) == 0 && f->n_rows == ROWS, "a 140000-row file reads");
    char *copy = malloc(strlen(path) + 6);
    sprintf(copy, "%s.back", path);
    is_int(tz_csv_write(f, copy, 0, &err), 0, "and writes");
    FILE *a = fopen(path, "rb"), *b = fopen(copy, "rb");
    fseek(a, 0, SEEK_END);
    size_in = ftell(a);
    rewind(a);
    in = malloc((size_t)size_in + 1);
    back = malloc((size_t)size_in + 1);
    size_t got_in = fread(in, 1, (size_t)size_in, a), got_back = fread(back, 1, (size_t)size_in + 1, b);
    ok(got_in == got_back && memcmp(in, back, got_in) == 0, "what is written is what was read, in order (%zu bytes)",
       got_back);
    fclose(a);
    fclose(b);
    unlink(copy);
    free(copy);
    free(in);
    free(back);
    tz_frame_free(f);
}

/* A random file of n records for the reader in parts: plain records
 * (which the parts read), and now and then what they leave to the general
 * path — quoted text with a delimiter or a line feed, blank lines, null
 * markers, a decimal in an integer column past the sample, rows of the
 * wrong width or with a bad number, CRLF — and maybe no final line feed. */
static size_t random_records(tz_rng *rng, char *out, size_t cap, int n)
{
    size_t len = (size_t)snprintf(out, cap, "id,name,x,k\n");
    for (int i = 0; i < n && len + 200 < cap; i++) {
        char *o = out + len;
        int odd = tz_rng_below(rng, 40) == 0 ? (int)tz_rng_below(rng, 8) : -1;
        int w;
        switch (odd) {
        case 0: w = sprintf(o, "%d,\"a, \"\"b\"\"\",%.2f,%d\n", i, i * 0.25, i % 7); break;
        case 1: w = sprintf(o, "%d,\"line\nfeed %d\",1.5,%d\n", i, i, i % 5); break;
        case 2: w = sprintf(o, "\n"); break;
        case 3: w = sprintf(o, "%d,NA,,%d\n", i, i % 3); break;
        case 4: w = sprintf(o, "%d,w%d,%.3f,%d.5\n", i, i % 11, i * 0.5, i % 9); break;
        case 5: w = sprintf(o, "%d,short\n", i); break;
        case 6: w = sprintf(o, "%d,v,abc,%d\n", i, i); break;
        case 7: w = sprintf(o, "%d,crlf%d,%.1f,%d\r\n", i, i % 4, i * 1.5, i % 2); break;
        default: w = sprintf(o, "%d,n%d,%.4f,%d\n", i, (int)tz_rng_below(rng, 50), i * 0.125 - 7, i % 13);
        }
        len += (size_t)w;
    }
    if (tz_rng_below(rng, 2) && len && out[len - 1] == '\n') len--;
    return len;
}

/* Whether two reads gave the same frame and the same report. */
static int same_read(const tz_frame *a, const tz_frame *b, const tz_csv_report *ra, const tz_csv_report *rb)
{
    if (a->n_rows != b->n_rows || a->n_cols != b->n_cols) return 0;
    if (ra->rows_read != rb->rows_read || ra->rows_bad != rb->rows_bad || ra->n_issues != rb->n_issues ||
        ra->n_more != rb->n_more)
        return 0;
    for (size_t i = 0; i < ra->n_issues; i++)
        if (ra->issues[i].line != rb->issues[i].line || ra->issues[i].column != rb->issues[i].column ||
            strcmp(ra->issues[i].message, rb->issues[i].message))
            return 0;
    for (size_t i = 0; i < ra->n_more; i++)
        if (ra->more_lines[i] != rb->more_lines[i]) return 0;
    for (size_t j = 0; j < a->n_cols; j++) {
        const tz_column *x = a->cols[j], *y = b->cols[j];
        if (x->type != y->type || strcmp(x->name, y->name) || x->null_count != y->null_count) return 0;
        for (size_t i = 0; i < a->n_rows; i++) {
            int vx = (x->valid[i / 8] >> (i % 8)) & 1, vy = (y->valid[i / 8] >> (i % 8)) & 1;
            if (vx != vy) return 0;
            if (!vx) continue;
            if (x->type == TZ_COL_STR) {
                size_t lx, ly;
                const char *sx = tz_dict_get(x->dict, ((int32_t *)x->data)[i], &lx);
                const char *sy = tz_dict_get(y->dict, ((int32_t *)y->data)[i], &ly);
                if (lx != ly || memcmp(sx, sy, lx)) return 0;
            } else if (x->type == TZ_COL_BOOL) {
                if (((uint8_t *)x->data)[i] != ((uint8_t *)y->data)[i]) return 0;
            } else if (memcmp((char *)x->data + i * 8, (char *)y->data + i * 8, 8)) {
                return 0;
            }
        }
    }
    return 1;
}

/* The reader in parts gives what it gives serially, whatever the parts'
 * size and whatever their records. */
static void parts_read_as_serially(const char *path)
{
    static char data[1 << 16];
    tz_rng rng;
    tz_rng_seed(&rng, 99);
    int same = 0, runs = 0, parted = 0, windowed = 0;
    for (int iter = 0; iter < 300; iter++) {
        size_t n = random_records(&rng, data, sizeof data, 50 + (int)tz_rng_below(&rng, 600));
        write_file(path, data, n);
        tz_csv_opts serial = { .infer_rows = 20, .line_column = "line", .part_bytes = SIZE_MAX };
        tz_csv_opts parts = serial;
        parts.part_bytes = 16 + tz_rng_below(&rng, iter % 2 ? 1500 : 120);  /* small ones: many windows */
        parts.strict = serial.strict = iter % 10 == 0;
        tz_frame *fa = NULL, *fb = NULL;
        tz_csv_report ra, rb;
        tz_err ea, eb;
        int rca = tz_csv_read(path, &serial, &fa, &ra, &ea);
        int rcb = tz_csv_read(path, &parts, &fb, &rb, &eb);
        runs++;
        parted += n > 4 * parts.part_bytes;
        windowed += n > 2 * 64 * parts.part_bytes;  /* more than one window of 64 parts (tz_csv.c) */
        if (rca == rcb && (rca ? !strcmp(ea.msg, eb.msg) : same_read(fa, fb, &ra, &rb))) same++;
        else printf("# differs at iteration %d (part_bytes %zu): rc %d/%d %s\n", iter, parts.part_bytes, rca, rcb,
                  rca ? ea.msg : "");
        if (!rca) { tz_frame_free(fa); tz_csv_report_free(&ra); }
        if (!rcb) { tz_frame_free(fb); tz_csv_report_free(&rb); }
    }
    is_int(same, runs, "300 random files read in parts as serially (%d of them in 4 parts or more)", parted);
    ok(windowed > 20, "%d of them in more than one window of the file", windowed);
    /* More refused rows than the report describes, in one part too: the
     * rest by their lines. */
    size_t cap = 1 << 20, n;
    char *big = malloc(cap);
    n = (size_t)snprintf(big, cap, "id,x\n");
    for (int i = 0; i < 60000 && n + 16 < cap; i++)
        n += (size_t)snprintf(big + n, cap - n, i > 10 && i % 3 ? "%d,bad\n" : "%d,1.5\n", i);
    write_file(path, big, n);
    free(big);
    tz_csv_opts serial = { .infer_rows = 5, .part_bytes = SIZE_MAX }, parts = serial;
    parts.part_bytes = 4096;
    tz_frame *fa, *fb;
    tz_csv_report ra, rb;
    tz_err e;
    ok(tz_csv_read(path, &serial, &fa, &ra, &e) == 0 && tz_csv_read(path, &parts, &fb, &rb, &e) == 0,
       "a file of %zu bytes with thousands of refused rows reads both ways", n);
    ok(ra.n_more > 0 && same_read(fa, fb, &ra, &rb), "the same rows, issues and lines past them (%zu)", rb.n_more);
    tz_frame_free(fa);
    tz_frame_free(fb);
    tz_csv_report_free(&ra);
    tz_csv_report_free(&rb);
    /* A negative zero in an integer column that an earlier part widens to
     * doubles: serially it is read as a double, -0; a part reading ahead
     * must not make it 0 (csv_fuzz found it). */
    char text[8192];
    n = (size_t)snprintf(text, sizeof text, "n,s\n");
    for (int i = 0; i < 300; i++) n += (size_t)snprintf(text + n, sizeof text - n, i == 40 ? "5.5,a\n" : "%d,a\n", i);
    for (int i = 0; i < 300; i++) n += (size_t)snprintf(text + n, sizeof text - n, i % 7 ? "%d,b\n" : "-0,b\n", i);
    write_file(path, text, n);
    parts.part_bytes = 64;
    ok(tz_csv_read(path, &serial, &fa, &ra, &e) == 0 && tz_csv_read(path, &parts, &fb, &rb, &e) == 0,
       "a file of negative zeros after a widening reads both ways");
    int signs = 1;
    for (size_t i = 0; i < fa->n_rows; i++)
        signs &= signbit(((double *)fa->cols[0]->data)[i]) == signbit(((double *)fb->cols[0]->data)[i]);
    ok(same_read(fa, fb, &ra, &rb) && signs && signbit(((double *)fa->cols[0]->data)[300]),
       "negative zeros keep their sign in parts as serially");
    tz_frame_free(fa);
    tz_frame_free(fb);
    tz_csv_report_free(&ra);
    tz_csv_report_free(&rb);
}

/* A file cut short while it is read in parts: the read ends where the file
 * ends now (it used to be mapped, and a page past the new end raised
 * SIGBUS), and what it read adds up. A thread cuts the file while the
 * reader is at it, at times that vary from run to run. */
typedef struct {
    const char *path;
    long delay_us;
} cutter;

static void *cut_file(void *arg)
{
    const cutter *c = arg;
    struct timespec ts = { 0, c->delay_us * 1000 };
    nanosleep(&ts, NULL);
    if (truncate(c->path, 4096) != 0) perror("truncate");
    return NULL;
}

static void cut_while_read(const char *path)
{
    size_t cap = 8u << 20, n = 0, rows = 0;
    char *big = malloc(cap);
    n = (size_t)snprintf(big, cap, "id,x,name\n");
    for (; n + 40 < cap; rows++)
        n += (size_t)snprintf(big + n, cap - n, "%zu,%zu.25,n%zu\n", rows, rows % 977, rows % 31);
    int whole = 0, sums = 0, runs = 12;
    for (int run = 0; run < runs; run++) {
        write_file(path, big, n);
        tz_csv_opts parts = { .infer_rows = 20, .part_bytes = 4096 };
        cutter c = { path, 500 + 2500L * run };
        pthread_t t;
        pthread_create(&t, NULL, cut_file, &c);
        tz_frame *f = NULL;
        tz_csv_report rep;
        tz_err e;
        int rc = tz_csv_read(path, &parts, &f, &rep, &e);
        pthread_join(t, NULL);
        if (rc == 0) {
            whole += f->n_rows == rows;
            sums += rep.rows_read == f->n_rows + rep.rows_bad;
            tz_frame_free(f);
            tz_csv_report_free(&rep);
        } else {
            sums++;  /* a clear error is an answer too */
        }
    }
    free(big);
    is_int(sums, runs, "a file cut short while read in parts: no crash, and counts add up (%d of %d read whole first)",
           whole, runs);
}

int main(void)
{
    char path[] = "/tmp/tz_csv_fuzz_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    tz_err err;
    tz_csv_report rep;
    tz_frame *f;

    write_file(path, SEED_CSV, sizeof SEED_CSV - 1);
    ok(tz_csv_read(path, NULL, &f, &rep, &err) == 0, "seed file reads");
    is_int(f->n_rows, 4, "four rows");
    is_int(f->cols[2]->type, TZ_COL_F64, "score is float");
    size_t len;
    const char *s = tz_dict_get(f->cols[1]->dict, ((int32_t *)f->cols[1]->data)[1], &len);
    is_str(s, "b, \"q\"", "quoted field unescaped");
    tz_frame_free(f);
    tz_csv_report_free(&rep);

    /* Without a header, the first record is read for its width and then as
     * data: a quoted field with doubled quotes over two lines reads whole
     * (counting it once used to unquote the buffer in place, so the second
     * reading cut it at its first line feed), and a byte order mark is no
     * part of the first field. */
    static const char FIRST_QUOTED[] = "\xEF\xBB\xBFk1,\"a \"\"q\"\"\nb\"\nk2,c\n";
    write_file(path, FIRST_QUOTED, sizeof FIRST_QUOTED - 1);
    tz_csv_opts raw = { .no_header = 1, .line_column = "line" };
    ok(tz_csv_read(path, &raw, &f, &rep, &err) == 0, "a headerless file reads");
    is_int(f->n_rows, 2, "two rows, the first over two lines");
    s = tz_dict_get(f->cols[0]->dict, ((int32_t *)f->cols[0]->data)[0], &len);
    is_str(s, "k1", "the first field without the byte order mark");
    s = tz_dict_get(f->cols[1]->dict, ((int32_t *)f->cols[1]->data)[0], &len);
    is_str(s, "a \"q\"\nb", "the first record's quoted field, whole and unescaped");
    ok(rep.n_issues == 0 && ((int64_t *)f->cols[2]->data)[1] == 3, "the second record starts on line 3");
    tz_frame_free(f);
    tz_csv_report_free(&rep);

    /* Non-finite numerals are refused by name, row by row; the column
     * stays a number column and the good rows land. */
    static const char NONFINITE_CSV[] = "id,x\na,1.5\nb,inf\nc,-Infinity\nd,1e999\ne,2\n";
    write_file(path, NONFINITE_CSV, sizeof NONFINITE_CSV - 1);
    ok(tz_csv_read(path, NULL, &f, &rep, &err) == 0, "file with non-finite numbers reads");
    is_int(f->cols[1]->type, TZ_COL_F64, "x stays a number column");
    is_int(f->n_rows, 2, "the two finite rows land");
    is_int(rep.rows_bad, 3, "three rows refused");
    ok(rep.n_issues == 3 && strstr(rep.issues[0].message, "finite") != NULL, "refusal names finiteness: %s",
       rep.n_issues ? rep.issues[0].message : "");
    tz_frame_free(f);
    tz_csv_report_free(&rep);

    /* An integer column meets 21 digits: the fast path leaves the record to
     * the general one (the fuzzer's find: the digits past the 18th used to
     * be added up, overflowing), which widens the column to float. */
    static const char LONG_INT_CSV[] = "id,n\na,7\nb,166666666666666666666\nc,9\n";
    write_file(path, LONG_INT_CSV, sizeof LONG_INT_CSV - 1);
    ok(tz_csv_read(path, NULL, &f, &rep, &err) == 0, "file with a 21-digit integer reads");
    is_int(f->n_rows, 3, "its three rows land");
    is_int(f->cols[1]->type, TZ_COL_F64, "n is widened to float");
    ok(((double *)f->cols[1]->data)[1] == 166666666666666666666.0, "the long integer as strtod reads it");
    tz_frame_free(f);
    tz_csv_report_free(&rep);

    fast_and_general_paths_agree(path);
    writes_back_in_order(path);
    parts_read_as_serially(path);
    cut_while_read(path);

    static const char alphabet[] = ",\"\n\r0123456789.e-+aNA \t\0;";
    tz_rng rng;
    tz_rng_seed(&rng, 1234);
    char buf[512];
    int parsed = 0, refused = 0;
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = sizeof SEED_CSV - 1;
        memcpy(buf, SEED_CSV, n);
        int edits = 1 + (int)tz_rng_below(&rng, 8);
        for (int e = 0; e < edits; e++) {
            size_t at = tz_rng_below(&rng, n);
            switch (tz_rng_below(&rng, 3)) {
            case 0: buf[at] = alphabet[tz_rng_below(&rng, sizeof alphabet - 1)]; break;  /* replace */
            case 1: n = at; break;                                                      /* truncate */
            default:                                                                    /* insert */
                if (n + 1 < sizeof buf) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = alphabet[tz_rng_below(&rng, sizeof alphabet - 1)];
                    n++;
                }
            }
        }
        write_file(path, buf, n);
        if (tz_csv_read(path, NULL, &f, &rep, &err) == 0) {
            parsed++;
            for (size_t j = 0; j < f->n_cols; j++)
                if (f->cols[j]->n != f->n_rows) { ok(0, "column length matches frame"); break; }
            tz_frame_free(f);
            tz_csv_report_free(&rep);
        } else {
            refused++;
            if (err.msg[0] == 0) { ok(0, "a refusal carries a message"); break; }
        }
    }
    ok(parsed > 100 && refused > 10, "3000 mutated files: %d read, %d refused, no crash", parsed, refused);
    unlink(path);
    return tap_done();
}
