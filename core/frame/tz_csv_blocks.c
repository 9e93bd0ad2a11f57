/* A CSV file read a block of whole records at a time, and a copy written
 * beside it with fields added to each row (tz_frame.h: tz_csv_blocks).
 *
 * A block is read once, here (cut after the last record that ends in it,
 * and each line's start found, for the copy), and handed to tz_csv_read
 * over the block's byte range, which parses it where it is as it parses a
 * whole file (in parts on the pool's threads): one parser for every file
 * Tycho reads. */
#define _GNU_SOURCE /* memrchr */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frame/tz_csv_internal.h"
#include "frame/tz_frame.h"

#define DEFAULT_BLOCK_BYTES ((size_t)8 << 20)

struct tz_csv_blocks {
    char *path;
    int fd;
    char delim;
    size_t block_bytes;
    size_t pos, line;          /* where the next block starts, and its line */
    int done;
    char *buf;                 /* the last block's text */
    size_t cap;
    size_t *line_at;           /* its lines' starts */
    size_t cap_lines;
    tz_csv_text text;
    tz_frame *columns;         /* the header's columns, no rows */
    char *header;
    size_t header_len;
    FILE *out;
    char *out_path, *tmp_path; /* tmp_path NULL: written in place */
    tz_csv_outs *outs;
};

static int grow_buf(tz_csv_blocks *b, size_t want)
{
    if (b->cap >= want) return 0;
    char *p = realloc(b->buf, want);
    if (!p) return -1;
    b->buf = p;
    b->cap = want;
    return 0;
}

size_t tz_csv_record_end(const char *t, size_t s, size_t len, char delim)
{
    enum { FIELD_START, UNQUOTED, QUOTED, QUOTE_SEEN } state = FIELD_START;
    for (size_t i = s; i < len; i++) {
        char c = t[i];
        switch (state) {
        case QUOTED:
            if (c == '"') state = QUOTE_SEEN;
            continue;
        case QUOTE_SEEN:
            if (c == '"') {  /* a doubled quote: still inside */
                state = QUOTED;
                continue;
            }
            break;  /* past the closing quote the field goes on unquoted */
        case FIELD_START:
            if (c == '"') {
                state = QUOTED;
                continue;
            }
            break;
        case UNQUOTED:
            break;
        }
        if (c == '\n') return i + 1;
        state = c == delim ? FIELD_START : UNQUOTED;
    }
    return TZ_CSV_NO_END;
}

/* The offset just past the last record that ends in t[0, len) (t starts a
 * record), or 0 when none does. */
static size_t last_record_end(const char *t, size_t len, char delim)
{
    if (!memchr(t, '"', len)) {
        const char *nl = memrchr(t, '\n', len);
        return nl ? (size_t)(nl - t) + 1 : 0;
    }
    size_t last = 0;
    for (size_t e; last < len && (e = tz_csv_record_end(t, last, len, delim)) != TZ_CSV_NO_END;) last = e;
    return last;
}

/* The header, where the reader finds it (past a byte order mark and blank
 * lines, with the reader's checks): its columns, its text (without its
 * line ending) and b->pos, b->line where the data starts. */
static int read_header(tz_csv_blocks *b, tz_err *err)
{
    tz_csv_opts o = { .delimiter = b->delim };
    tz_csv_header_at at;
    tz_csv_report rep;
    int rc = tz_csv_read_into(b->path, &o, &(tz_csv_into){ .header_at = &at }, &b->columns, &rep, err);
    if (rc) return rc;
    tz_csv_report_free(&rep);
    size_t len = at.end - at.start;
    if (!(b->header = malloc(len + 1))) return tz_err_set(err, TZ_ENOMEM, "out of memory");
    ssize_t got = tz_csv_pread(b->fd, b->header, len, at.start);
    if (got != (ssize_t)len) return tz_err_set(err, TZ_EIO, "cannot read %s: it changed while read", b->path);
    if (len && b->header[len - 1] == '\n') len--;
    if (len && b->header[len - 1] == '\r') len--;
    b->header_len = len;
    b->pos = at.end;
    b->line = at.line;
    return 0;
}

/* Where the copy goes: a temporary file beside out (renamed into place at
 * close), out itself when it is not a regular file (a device, a pipe, a
 * symbolic link: a rename would replace the link), or standard output. */
static int open_out(tz_csv_blocks *b, const char *out, tz_err *err)
{
    struct stat st;
    if (!strcmp(out, "-")) {
        int fd = dup(STDOUT_FILENO);
        b->out = fd < 0 ? NULL : fdopen(fd, "w");
        if (!b->out && fd >= 0) close(fd);
    } else if (lstat(out, &st) == 0 && !S_ISREG(st.st_mode)) {
        b->out = fopen(out, "w");
    } else {
        size_t n = strlen(out) + sizeof ".tycho-XXXXXX";
        if (!(b->out_path = strdup(out)) || !(b->tmp_path = malloc(n))) return tz_err_set(err, TZ_ENOMEM, "out of memory");
        snprintf(b->tmp_path, n, "%s.tycho-XXXXXX", out);
        int fd = mkstemp(b->tmp_path);
        if (fd >= 0) {
            mode_t mask = umask(0);
            umask(mask);
            if (fchmod(fd, 0666 & ~mask) == 0) b->out = fdopen(fd, "w");
            if (!b->out) {
                close(fd);
                unlink(b->tmp_path);
            }
        }
        if (!b->out) {
            free(b->tmp_path);
            b->tmp_path = NULL;
        }
    }
    return b->out ? 0 : tz_err_set(err, TZ_EIO, "cannot write %s: %s", out, strerror(errno));
}

int tz_csv_blocks_open(const char *in, const char *out, char delimiter, size_t block_bytes, tz_csv_blocks **out_b,
                       tz_err *err)
{
    tz_csv_blocks *b = calloc(1, sizeof *b);
    if (!b || !(b->path = strdup(in))) {
        free(b);
        return tz_err_set(err, TZ_ENOMEM, "out of memory");
    }
    b->delim = delimiter ? delimiter : ',';
    b->block_bytes = block_bytes ? block_bytes : DEFAULT_BLOCK_BYTES;
    b->fd = open(in, O_RDONLY | O_CLOEXEC);
    int rc = b->fd < 0 ? tz_err_set(err, TZ_EIO, "cannot open %s: %s", in, strerror(errno)) : read_header(b, err);
    if (!rc && out) rc = open_out(b, out, err);
    if (!rc && out && !(b->outs = tz_csv_outs_new())) rc = tz_err_set(err, TZ_ENOMEM, "out of memory");
    if (rc) {
        tz_csv_blocks_close(b, 0, NULL);
        return rc;
    }
    *out_b = b;
    return 0;
}

const tz_frame *tz_csv_blocks_columns(const tz_csv_blocks *b) { return b->columns; }

/* The next block's text into b->buf: whole records from b->pos, about
 * block_bytes of them, or more when one record is longer. Its length. */
static int read_block(tz_csv_blocks *b, size_t *cut, tz_err *err)
{
    size_t len = 0;
    for (size_t want = b->block_bytes;; want *= 2) {
        if (grow_buf(b, want + 1)) return tz_err_set(err, TZ_ENOMEM, "out of memory reading %s", b->path);
        ssize_t got = tz_csv_pread(b->fd, b->buf + len, want - len, b->pos + len);
        if (got < 0) return tz_err_set(err, TZ_EIO, "cannot read %s: %s", b->path, strerror(errno));
        len += (size_t)got;
        if (len < want) {  /* the file's end: the rest is the last block */
            b->done = 1;
            *cut = len;
            return 0;
        }
        if ((*cut = last_record_end(b->buf, len, b->delim)) > 0) return 0;
    }
}

/* Where each line of the block's text starts. */
static int index_lines(tz_csv_blocks *b, size_t len)
{
    size_t n = 0;
    for (const char *t = b->buf, *p = t;; p++) {
        if (n == b->cap_lines) {
            size_t cap = b->cap_lines ? 2 * b->cap_lines : 4096;
            size_t *grown = realloc(b->line_at, cap * sizeof *grown);
            if (!grown) return -1;
            b->line_at = grown;
            b->cap_lines = cap;
        }
        b->line_at[n++] = (size_t)(p - t);
        if (!(p = memchr(p, '\n', (size_t)(t + len - p))) || p + 1 == t + len) break;
    }
    b->text = (tz_csv_text){ .text = b->buf, .len = len, .line_at = b->line_at, .n_lines = n,
                             .first_line = b->line, .delim = b->delim };
    return 0;
}

int tz_csv_blocks_next(tz_csv_blocks *b, const tz_csv_opts *opts, tz_frame *recycle, tz_frame **out,
                       tz_csv_report *report, tz_err *err)
{
    *out = NULL;
    memset(report, 0, sizeof *report);
    size_t cut = 0;
    int rc = !opts->line_column ? tz_err_set(err, TZ_EINVAL, "tz_csv_blocks_next needs a line column")
             : b->done          ? 0
                                : read_block(b, &cut, err);
    if (!rc && cut && index_lines(b, cut)) rc = tz_err_set(err, TZ_ENOMEM, "out of memory reading %s", b->path);
    if (rc || cut == 0) {
        tz_frame_free(recycle);
        return rc;
    }
    tz_csv_opts o = *opts;
    o.delimiter = b->delim;
    o.no_header = 0;
    o.from = b->pos;
    o.to = b->pos + cut;
    o.from_line = b->line;
    rc = tz_csv_read_into(b->path, &o, &(tz_csv_into){ .recycle = recycle, .text = b->buf }, out, report, err);
    b->pos += cut;
    b->line += b->text.n_lines - (b->buf[cut - 1] != '\n');  /* the line feeds in the block */
    return rc;
}

int tz_csv_blocks_write_header(tz_csv_blocks *b, const char *const *names, size_t n, tz_err *err)
{
    if (!b->out) return tz_err_set(err, TZ_EINVAL, "no copy was opened");
    if (tz_csv_write_names(b->out, b->header, b->header_len, names, n, b->delim))
        return tz_err_set(err, TZ_EIO, "cannot write %s: %s", b->out_path ? b->out_path : "the copy", strerror(errno));
    return 0;
}

int tz_csv_blocks_write(tz_csv_blocks *b, const int64_t *lines, const tz_frame *tail, tz_err *err)
{
    if (!b->out) return tz_err_set(err, TZ_EINVAL, "no copy was opened");
    return tz_csv_write_after(b->out, &b->text, lines, tail, b->outs, err);
}

int tz_csv_blocks_close(tz_csv_blocks *b, int keep, tz_err *err)
{
    int rc = 0;
    if (b->out) {
        int failed = fflush(b->out) != 0 || ferror(b->out);
        failed |= fclose(b->out) != 0;
        if (failed && keep) rc = tz_err_set(err, TZ_EIO, "cannot write %s: %s", b->out_path ? b->out_path : "the copy",
                                            strerror(errno));
        if (b->tmp_path && keep && !rc && rename(b->tmp_path, b->out_path) != 0)
            rc = tz_err_set(err, TZ_EIO, "cannot write %s: %s", b->out_path, strerror(errno));
        if (b->tmp_path && (!keep || rc)) unlink(b->tmp_path);
    }
    if (b->fd >= 0) close(b->fd);
    tz_frame_free(b->columns);
    free(b->path);
    free(b->buf);
    free(b->line_at);
    free(b->header);
    free(b->out_path);
    free(b->tmp_path);
    tz_csv_outs_free(b->outs);
    free(b);
    return rc;
}
